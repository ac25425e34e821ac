"""Run the step model: one Engine interface (engines.base), three backends, and `load` to pick one.

`load(path)` picks by artifact: `.onnx` -> onnxruntime (TensorRT EP / CUDA EP / CPU, best available);
`.engine` -> native TensorRT; `http://HOST:PORT` / `grpc://HOST:PORT` -> a Triton server (engines.triton_engine,
the state stays with the caller); a checkpoint (`.safetensors`, a run folder, or "default") -> onnxruntime on the
ONNX exported beside it when that export is current, else torch. It logs one line saying what it chose and why
the others were skipped. torch is imported only when the torch backend is chosen.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mocap
from export.metadata import file_sha256

from .base import Engine, EngineLoadError

__all__ = ["Engine", "EngineLoadError", "load", "BACKENDS", "DEFAULT_CHECKPOINT", "DEFAULT_ONNX"]

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime", "torch")
#: The shipped model (mocap.model.checkpoint.DEFAULT_CHECKPOINT, named here without importing torch) and its
#: export: `python -m export onnx --checkpoint default --out mocap/checkpoints/default.onnx`.
DEFAULT_CHECKPOINT = Path(mocap.__file__).resolve().parent / "checkpoints" / "default.safetensors"
DEFAULT_ONNX = DEFAULT_CHECKPOINT.with_suffix(".onnx")

_ENGINE_SUFFIXES = (".engine", ".plan")
#: Addresses `load` hands to the Triton engine (the step runs on a server; see engines/triton_engine.py).
_REMOTE_SCHEMES = ("http://", "grpc://")


@dataclass(frozen=True)
class _Candidate:
    backend: str
    runs: Path                                   # the file the backend will actually run
    make: Callable[[str | None], Engine]         # device -> Engine


def _candidates(path: Path, is_default: bool) -> tuple[list[_Candidate], list[str]]:
    """Backends able to run this artifact, in natural order, and the reasons the others cannot."""

    def onnxruntime(device: str | None, source: Path) -> Engine:
        from .onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(source, device=None if device == "auto" else device)

    def tensorrt(device: str | None) -> Engine:
        if device not in (None, "auto") and not str(device).startswith("cuda"):
            raise EngineLoadError(f"a TensorRT engine runs on CUDA only, not on device {device!r}")
        from .tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path)

    def torch_(device: str | None) -> Engine:
        try:
            from .torch_engine import TorchEngine
        except ImportError as exc:
            raise EngineLoadError(f"torch is not installed ({exc})") from None
        return TorchEngine("default" if is_default else path, device=None if device == "auto" else device)

    no_engine = "tensorrt: needs a built .engine (python -m export tensorrt)"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return [_Candidate("onnxruntime", path, lambda d: onnxruntime(d, path))], [
            no_engine, "torch: cannot run an ONNX file"]
    if suffix in _ENGINE_SUFFIXES:
        return [_Candidate("tensorrt", path, tensorrt)], [
            "onnxruntime: cannot run a TensorRT engine", "torch: cannot run a TensorRT engine"]
    checkpoint = path / "model.safetensors" if path.is_dir() else path
    onnx_path = checkpoint.with_suffix(".onnx")
    found, skipped = [], [no_engine]
    if onnx_path.is_file():
        found.append(_Candidate("onnxruntime", onnx_path, lambda d: onnxruntime(d, onnx_path)))
    else:
        skipped.append(f"onnxruntime: no exported {onnx_path.name} beside the checkpoint")
    found.append(_Candidate("torch", checkpoint, torch_))
    return found, skipped


def load(path: str | Path = "default", prefer: list[str] | None = None, device: str | None = None) -> Engine:
    """The best available engine for PATH; PREFER reorders/limits backends; DEVICE: None (best), 'cpu', 'cuda[:N]'.

    Raises EngineLoadError (naming the file and the problem) when no backend can run the artifact.
    """
    if str(path).startswith(_REMOTE_SCHEMES):  # a model served by Triton (engines.triton_engine)
        if prefer is not None and "triton" not in prefer:
            raise ValueError(f"{path} is a Triton server address: only the 'triton' backend runs it")
        from .triton_engine import TritonEngine

        engine: Engine = TritonEngine(str(path))
        log.info("engines.load: triton at %s (model %s)", path, engine.model_id)
        return engine
    if prefer is not None:
        unknown = [p for p in prefer if p not in BACKENDS + ("triton",)]
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS) + ['triton']}")
    is_default = str(path) == "default"
    artifact = DEFAULT_CHECKPOINT if is_default else Path(path)
    if not is_default and not artifact.exists():
        raise EngineLoadError(f"{artifact}: no such file or folder")
    if is_default and not artifact.is_file() and not DEFAULT_ONNX.is_file():
        raise EngineLoadError(
            f"{artifact}: the shipped model is missing (train one, or export it to {DEFAULT_ONNX.name})"
        )
    found, skipped = _candidates(artifact, is_default)
    if prefer is not None:
        skipped += [f"{c.backend}: not in prefer={prefer}" for c in found if c.backend not in prefer]
        found = sorted((c for c in found if c.backend in prefer), key=lambda c: prefer.index(c.backend))
        if not found:
            raise EngineLoadError(f"{artifact}: none of prefer={prefer} can run it ({'; '.join(skipped)})")

    errors: list[str] = []
    for i, candidate in enumerate(found):
        try:
            engine = candidate.make(device)
        except (EngineLoadError, ValueError) as exc:
            errors.append(f"{candidate.backend}: {exc}")
            continue
        beside = candidate.backend == "onnxruntime" and candidate.runs != artifact
        stale = _stale_export(engine, artifact) if beside else None
        if stale:
            if i + 1 < len(found):
                errors.append(f"onnxruntime: {stale}")
                continue
            log.warning("engines.load: using it anyway (the only backend allowed): %s", stale)
        later = [f"{c.backend}: lower in preference" for c in found[i + 1:]]
        log.info(
            "engines.load: %s on %s running %s (model %s, asked for %s); skipped: %s",
            candidate.backend, engine.device, candidate.runs.name, engine.model_id,
            "default" if is_default else artifact.name, "; ".join(errors + skipped + later) or "none",
        )
        return engine
    if len(errors) == 1:
        raise EngineLoadError(errors[0].split(": ", 1)[1])
    raise EngineLoadError(f"{artifact}: no backend could load it: " + "; ".join(errors))


def _stale_export(engine: Engine, checkpoint: Path) -> str | None:
    """A reason not to trust an ONNX found beside a checkpoint: it was exported from other weights."""
    weights = checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint
    if not weights.is_file():
        return None  # only the export ships: it is the model
    exported_from = engine.metadata.get("checkpoint_sha256")
    if exported_from is None:
        return f"the ONNX beside {weights.name} does not record which weights it came from; re-export it"
    if exported_from != file_sha256(weights):
        return f"the ONNX beside {weights.name} was exported from other weights (stale); re-export it"
    return None
