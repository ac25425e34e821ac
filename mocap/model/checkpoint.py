"""Checkpoints as safetensors weights + a JSON config (no pickle); `default` = the shipped model."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .network import CausalMocap

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the model it claims to be."""


def resolve_checkpoint(path: str | Path) -> Path:
    """`default` -> the shipped checkpoint; a directory -> its `model.safetensors`; else the file itself."""
    if str(path) == "default":
        path = DEFAULT_CHECKPOINT
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def config_path_for(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_checkpoint(model: CausalMocap, path: str | Path, extra: dict | None = None) -> Path:
    """Writes PATH (.safetensors) and PATH.json (config + `extra` metadata such as the model id)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(path))
    meta = {"config": json.loads(model.config.to_json()), **(extra or {})}
    config_path_for(path).write_text(json.dumps(meta, indent=2))
    return path


def load_checkpoint_meta(path: str | Path) -> dict:
    weights = resolve_checkpoint(path)
    cfg = config_path_for(weights)
    if not cfg.is_file():
        raise CheckpointError(f"checkpoint config missing: {cfg} (expected beside {weights.name})")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint config is not valid JSON: {cfg}: {exc}") from exc


def load_model(path: str | Path = "default", device: str | torch.device = "cpu") -> CausalMocap:
    """Build the model its JSON describes and load its weights; any mismatch is a CheckpointError."""
    weights = resolve_checkpoint(path)
    meta = load_checkpoint_meta(weights)
    model = CausalMocap(ModelConfig.from_dict(meta.get("config", {})))
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint weights unreadable: {weights}: {exc}") from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {weights} does not match the model: missing={missing} unexpected={unexpected}")
    model.model_id = meta.get("model_id", weights.stem)
    return model.to(device).eval()
