"""The causal WHAM-style network and its checkpoints.

The contract (`state`) and the hyper-parameters (`config`) are torch-free and load eagerly; the network and the
checkpoint I/O load torch, so they are imported on first use (PEP 562): the live loop reads the contract
without torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .state import INPUT_NAMES, OUTPUT_NAMES, OUTPUT_SHAPES, state_shapes

if TYPE_CHECKING:
    from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model, save_checkpoint
    from .network import CausalMocap

_LAZY = {
    "CausalMocap": ".network", "load_model": ".checkpoint", "save_checkpoint": ".checkpoint",
    "CheckpointError": ".checkpoint", "DEFAULT_CHECKPOINT": ".checkpoint",
}

__all__ = [
    "CausalMocap", "ModelConfig", "load_model", "save_checkpoint", "CheckpointError", "DEFAULT_CHECKPOINT",
    "INPUT_NAMES", "OUTPUT_NAMES", "OUTPUT_SHAPES", "state_shapes",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
