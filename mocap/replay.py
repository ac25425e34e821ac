"""One frame of the live loop replayed offline on torch tensors: the network's `step`, then (optionally) the
live test-time refinement to the frame's keypoints with its state fed back.

Why one function: `mocap.eval` replays clips with and without the background adaptation
(`mocap.adapt.simulate`), and both must take exactly the live loop's frame (the refinement's temporal terms
scaled by each frame's interval, as `stream.loop` does from the source's fps); two copies had drifted apart.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .fitting import RefineConfig, TrackState, refine_step
from .model import CausalMocap

Tensors = dict[str, torch.Tensor]


def frame_dt(sample: Mapping[str, torch.Tensor], t: int) -> float | None:
    """Seconds between frame t and the one before it in a synthetic clip (None when the clip has no timing)."""
    return float(sample["dt"][t]) if "dt" in sample else None


def sample_intrinsics(sample: Mapping[str, torch.Tensor]) -> np.ndarray:
    """K (3, 3) of a synthetic clip's camera (its focal and principal point)."""
    f, (px, py) = float(sample["focal"]), (float(v) for v in sample["principal"])
    return np.array([[f, 0.0, px], [0.0, f, py], [0.0, 0.0, 1.0]])


@torch.no_grad()
def replay_step(model: CausalMocap, x: torch.Tensor, omega: torch.Tensor, state: Mapping[str, torch.Tensor],
                refine: RefineConfig | None = None, kp2d: np.ndarray | None = None, K: np.ndarray | None = None,
                track: TrackState | None = None, dt: float | None = None) -> tuple[Tensors, Tensors]:
    """x (1, D), omega (1, 6), state (batch-1 tensors) -> (outputs, new state), batch 1.

    With `refine`: kp2d (21, 3) pixels + confidence, K (3, 3), the person's `TrackState` and dt (seconds since
    the previous frame; None = the reference rate) are required; the refined body replaces the network's and
    its feet / root go into the new state."""
    out, new_state = model.step(x, omega, dict(state))
    if refine is None:
        return out, new_state
    if kp2d is None or K is None or track is None:
        raise ValueError("refinement needs the frame's kp2d, the intrinsics K and the person's TrackState")

    def as_np(d: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in d.items()}

    res = refine_step(as_np(out), as_np(state), as_np(new_state), kp2d, K, track, refine, dt=dt)
    return ({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.outputs.items()},
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.state.items()})


__all__ = ["frame_dt", "replay_step", "sample_intrinsics"]
