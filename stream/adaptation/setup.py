"""Build the adaptation worker for `run_live.py --adapt` from the command's choices (one clear error per problem)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .profile import ProfileError, ProfileStore, default_profile_dir


class AdaptSetupError(ValueError):
    """--adapt cannot run with these arguments (the message says why, in one line)."""


def build_worker(engine: Any, checkpoint: str, *, profile: str = "default", profile_dir: str | Path | None = None,
                 mode: str = "thread", interval_s: float = 3.0, rest: float = 0.0) -> Any:
    """An (unstarted) AdaptationWorker for ENGINE, adapting the torch checkpoint it was loaded from."""
    if importlib.util.find_spec("torch") is None:
        raise AdaptSetupError("--adapt needs torch (pip install torch==2.13.0); run without --adapt otherwise")
    from export.metadata import file_sha256
    from mocap.model import CheckpointError, load_model
    from mocap.model.checkpoint import resolve_checkpoint

    from .runner import RunnerSpec
    from .worker import AdaptationWorker

    if Path(str(checkpoint)).suffix.lower() in (".onnx", ".engine", ".plan"):
        raise AdaptSetupError(f"--adapt trains the torch checkpoint: give --checkpoint a .safetensors file or run "
                              f"folder (the engine may still run its ONNX export), not {checkpoint}")
    try:
        weights = resolve_checkpoint(checkpoint)
        base = load_model(weights)
    except CheckpointError as exc:
        raise AdaptSetupError(f"--adapt: {exc}") from None
    if tuple(engine.state_shapes.items()) != tuple((k, tuple(v)) for k, v in _state_shapes(base).items()):
        raise AdaptSetupError(f"--adapt: the engine does not run the checkpoint {weights} (state shapes differ)")
    try:
        store = ProfileStore(profile_dir if profile_dir is not None else default_profile_dir(), profile)
    except ProfileError as exc:
        raise AdaptSetupError(f"--adapt-profile: {exc}") from None
    try:
        return AdaptationWorker(engine, base, RunnerSpec(str(weights), rest=rest), mode=mode,  # type: ignore[arg-type]
                                interval_s=interval_s,
                                profile=store, base_sha256=file_sha256(weights))
    except ValueError as exc:
        raise AdaptSetupError(f"--adapt: {exc}") from None


def _state_shapes(model: Any) -> dict:
    from mocap.model import state_shapes

    return state_shapes(model.config)


__all__ = ["AdaptSetupError", "build_worker"]
