"""Realistic step inputs for parity checks and benchmarks: motion -> virtual camera -> noisy 2D -> (x, omega).

Real motion from the cached validation set when it exists, otherwise a procedural walk, so the check runs on a
fresh clone with no data. Either way the inputs go through `SyntheticGenerator`, i.e. the same normalization,
detector noise, occlusion and camera motion the model sees in training.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mocap.data.motion_bank import MotionBank, MotionWindows
from mocap.data.synth import SyntheticGenerator
from mocap.rotations import axis_angle_to_matrix
from mocap.skeleton import NUM_BETAS, NUM_JOINTS, SMPL_JOINT_NAMES

DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "cache" / "bandai" / "val.npz"

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def procedural_walk(rng: np.random.Generator, batch: int, frames: int, fps: float = 30.0) -> MotionWindows:
    """A walking gait per person (random cadence, speed, turn rate, phase): swinging legs/arms, bobbing pelvis."""
    t = np.arange(frames, dtype=np.float64)[None] / fps                               # (1, T)
    cadence = rng.uniform(0.8, 1.1, (batch, 1))                                        # gait cycles per second
    speed = rng.uniform(0.6, 1.5, (batch, 1))                                          # m/s
    turn = rng.uniform(-0.4, 0.4, (batch, 1))                                          # rad/s
    phase = 2 * np.pi * cadence * t + rng.uniform(0, 2 * np.pi, (batch, 1))            # (B, T)
    heading = turn * t + rng.uniform(0, 2 * np.pi, (batch, 1))

    aa = np.zeros((batch, frames, NUM_JOINTS, 3))
    aa[..., _J["pelvis"], 1] = heading
    swing = 0.45 * np.sin(phase)
    aa[..., _J["l_hip"], 0] = -swing
    aa[..., _J["r_hip"], 0] = swing
    aa[..., _J["l_knee"], 0] = 0.6 * np.clip(np.sin(phase + np.pi / 2), 0, None) + 0.05
    aa[..., _J["r_knee"], 0] = 0.6 * np.clip(np.sin(phase - np.pi / 2), 0, None) + 0.05
    aa[..., _J["spine1"], 1] = 0.1 * np.sin(phase)
    aa[..., _J["l_shoulder"], 2] = -1.2
    aa[..., _J["r_shoulder"], 2] = 1.2
    aa[..., _J["l_shoulder"], 1] = 0.35 * np.sin(phase)
    aa[..., _J["r_shoulder"], 1] = 0.35 * np.sin(phase)
    aa[..., _J["l_elbow"], 1] = -0.3
    aa[..., _J["r_elbow"], 1] = 0.3

    # Body +Z is forward at zero rotation; yaw `heading` about +Y turns it to (sin h, 0, cos h).
    step = speed / fps
    pos_x = np.cumsum(step * np.sin(heading), axis=1)
    pos_z = np.cumsum(step * np.cos(heading), axis=1)
    pos_y = 0.92 + 0.02 * np.cos(2 * phase)
    trans = np.stack((pos_x, pos_y, pos_z), axis=-1)
    return MotionWindows(
        pose_rotmat=axis_angle_to_matrix(torch.as_tensor(aa, dtype=torch.float32)),
        trans=torch.as_tensor(trans, dtype=torch.float32),
        betas=torch.zeros(batch, NUM_BETAS),
    )


def realistic_inputs(
    batch: int, steps: int, seed: int = 0, cache: str | Path | None = DEFAULT_CACHE, width: int | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """-> x (steps, batch, width), omega (steps, batch, 6) float32, and where the motion came from.

    width: the model's input_dim (66 for a model without the frame-interval column); default the full 67."""
    if batch < 1 or steps < 1:
        raise ValueError(f"batch and steps must be >= 1, got batch={batch} steps={steps}")
    rng = np.random.default_rng(seed)
    motion, source = None, "procedural walk"
    if cache is not None and Path(cache).is_file():
        from mocap.data.build import load_cache

        try:
            motion = MotionBank(load_cache(cache)).sample(rng, batch, steps)
            source = f"cached motion {cache}"
        except ValueError:  # clips shorter than `steps`: fall back to the procedural walk
            motion = None
    if motion is None:
        motion = procedural_walk(rng, batch, steps)
    sample = SyntheticGenerator()(motion, rng)
    x = sample["x"].numpy().astype(np.float32).transpose(1, 0, 2)[..., :width]
    omega = sample["omega"].numpy().astype(np.float32).transpose(1, 0, 2)
    return np.ascontiguousarray(x), np.ascontiguousarray(omega), source
