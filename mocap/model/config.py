"""Model hyper-parameters, stored as a small JSON beside each checkpoint (no pickle)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .state import INPUT_DIM, REFERENCE_FPS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    kind: str = "causal"            # "causal" (the product) or "single-frame" (baseline lifter, no memory)
    input_dim: int = INPUT_DIM       # 21 x (u, v, visible) + 3 CLIFF bbox terms + frame interval (state.py layout)
    encoder_hidden: int = 256
    encoder_layers: int = 2
    decoder_hidden: int = 256
    traj_hidden: int = 128
    traj_layers: int = 1
    fps: float = REFERENCE_FPS      # the exported model's fps; the contract (export.metadata) requires this one
    contact_threshold: float = 0.5  # contact probability above which a foot pins the root

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
