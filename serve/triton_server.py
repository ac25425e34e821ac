"""The PyTriton side: a Triton Inference Server whose model is one stateless step of the exported graph.

Why PyTriton: its wheel carries a real ``tritonserver`` (HTTP/gRPC front ends, dynamic batcher, statistics) that
starts without Docker; the model itself is a Python callable here (onnxruntime on the ONNX), where production runs
the same ONNX on Triton's onnxruntime or TensorRT backend (``python -m export triton``). Clients cannot tell the
two apart: the tensor names, shapes and the metadata parameter are the same.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engines.base import Engine
from engines.triton_engine import METADATA_PARAMETER, TRITON_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """What `python -m serve` was asked for (ports 0 are not allowed: Triton needs them fixed)."""

    model: str = "default"                 # ONNX file, checkpoint or "default" (engines.load)
    backend: str = "onnxruntime"           # engines.BACKENDS entry run inside the callable
    device: str | None = None              # engines.load device
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 64                    # rows per execution (tracks of all merged requests)
    queue_delay_us: int = 500              # how long the dynamic batcher waits to fill a batch
    instances: int = 1                     # model instances (each its own session)
    access_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    name: str = TRITON_MODEL
    log_file: Path | None = None           # Triton's own log (None: it writes to stdout)


def encode_metadata(meta: dict[str, Any]) -> str:
    """Parsed metadata -> the JSON object of strings the ONNX carries (what ``parse_metadata`` reads back)."""
    return json.dumps({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})


def _stub_libpython() -> None:
    """Let Triton's Python-backend stub load this interpreter's libpython.

    The stub is linked against ``libpython3.X.so.1.0`` and finds the system one first; when this interpreter is
    another patch release (pyenv, a venv over it) the stub runs our stdlib on a foreign libpython and fails in
    multiprocessing. Putting our LIBDIR first in LD_LIBRARY_PATH (inherited by tritonserver and the stub) fixes it.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
        if libdir not in paths:
            os.environ["LD_LIBRARY_PATH"] = ":".join([libdir] + paths)


def bundled_tritonserver() -> tuple[Path, dict[str, str]]:
    """The tritonserver binary inside the PyTriton wheel and the environment it runs in (its own libraries)."""
    import pytriton

    root = Path(pytriton.__file__).resolve().parent
    binary = root / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise RuntimeError(f"{binary}: not found (is nvidia-pytriton installed whole?)")
    _stub_libpython()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(root.parent / "nvidia_pytriton.libs"),
                                                  env.get("LD_LIBRARY_PATH", "")) if p)
    return binary, env


def step_callable(engine: Engine) -> Callable[..., dict[str, np.ndarray]]:
    """A PyTriton inference callable: the merged batch of every request -> model outputs and ``<state>_out``."""
    from pytriton.decorators import batch

    state_outputs = engine.metadata.get("state_outputs") or {n: f"{n}_out" for n in engine.state_shapes}
    inputs = tuple(engine.input_shapes)

    @batch
    def infer(**tensors: np.ndarray) -> dict[str, np.ndarray]:
        outputs, state = engine.step({n: tensors[n] for n in inputs},
                                     {n: tensors[n] for n in engine.state_shapes})
        outputs = dict(outputs)
        outputs.update({state_outputs[n]: state[n] for n in state})
        return outputs

    return infer


def _tensor_specs(engine: Engine) -> tuple[list[Any], list[Any]]:
    """PyTriton input/output specs from one real batch-1 step (output dims exactly as the engine returns them)."""
    from pytriton.model_config import Tensor

    state_outputs = engine.metadata.get("state_outputs") or {n: f"{n}_out" for n in engine.state_shapes}
    probe = {n: np.zeros((1,) + s, np.float32) for n, s in engine.input_shapes.items()}
    outputs, state = engine.step(probe, engine.initial_state(1))
    ins = [Tensor(name=n, dtype=np.float32, shape=s) for n, s in engine.input_shapes.items()]
    ins += [Tensor(name=n, dtype=np.float32, shape=s) for n, s in engine.state_shapes.items()]
    outs = [Tensor(name=n, dtype=np.float32, shape=tuple(np.shape(v)[1:])) for n, v in outputs.items()]
    outs += [Tensor(name=state_outputs[n], dtype=np.float32, shape=tuple(np.shape(v)[1:])) for n, v in state.items()]
    return ins, outs


def _set_parameters(triton: Any, name: str, parameters: dict[str, str]) -> None:
    """Add string parameters to a bound model's Triton configuration (PyTriton 0.7 keeps them in the generated
    config's ``parameters``; its public ModelConfig has no field for them)."""
    models = [m for m in getattr(getattr(triton, "_model_manager", None), "models", []) if m.model_name == name]
    config = models[0]._get_triton_model_config() if models else None
    if config is None or not isinstance(getattr(config, "backend_parameters", None), dict):
        raise RuntimeError("this nvidia-pytriton does not expose model parameters as 0.7 does; install "
                           "nvidia-pytriton>=0.7,<0.8")
    config.backend_parameters.update(parameters)


def build_server(cfg: ServeConfig, load: Callable[[], Engine]) -> tuple[Any, Engine]:
    """A bound (not yet running) ``pytriton.triton.Triton`` and the first instance's engine.

    load: makes one engine (called once per instance: each instance owns its session).
    """
    _stub_libpython()
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    if cfg.max_batch < 1 or cfg.instances < 1 or cfg.queue_delay_us < 0:
        raise ValueError("--max-batch and --instances must be >= 1, --queue-delay-us >= 0")
    engines_ = [load() for _ in range(cfg.instances)]
    first = engines_[0]
    inputs, outputs = _tensor_specs(first)
    triton = Triton(
        config=TritonConfig(http_address=cfg.host, http_port=cfg.http_port, grpc_address=cfg.host,
                            grpc_port=cfg.grpc_port, metrics_address=cfg.host, metrics_port=cfg.metrics_port,
                            exit_timeout_secs=2, log_verbose=0, log_file=cfg.log_file),
        security_config=TritonSecurityConfig(access_token=cfg.access_token),
    )
    triton.bind(
        model_name=cfg.name,
        infer_func=[step_callable(e) for e in engines_],
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(max_batch_size=cfg.max_batch,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=cfg.queue_delay_us)),
        strict=True,
    )
    _set_parameters(triton, cfg.name, {METADATA_PARAMETER: encode_metadata(first.metadata)})
    return triton, first


__all__ = ["ServeConfig", "build_server", "bundled_tritonserver", "encode_metadata", "step_callable"]
