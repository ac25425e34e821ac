"""The causal WHAM-style network and its checkpoints."""
from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model, save_checkpoint
from .config import ModelConfig
from .network import CausalMocap
from .state import INPUT_NAMES, OUTPUT_NAMES, OUTPUT_SHAPES, state_shapes

__all__ = [
    "CausalMocap", "ModelConfig", "load_model", "save_checkpoint", "CheckpointError", "DEFAULT_CHECKPOINT",
    "INPUT_NAMES", "OUTPUT_NAMES", "OUTPUT_SHAPES", "state_shapes",
]
