"""Random windows of real motion from a cached dataset, with speed augmentation (quaternion nlerp)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import axis_angle_to_quaternion, quaternion_to_matrix


@dataclass
class MotionWindows:
    pose_rotmat: torch.Tensor   # (B, T, 24, 3, 3) local rotations, joint 0 = world root (Y up)
    trans: torch.Tensor         # (B, T, 3) world pelvis, metres
    betas: torch.Tensor         # (B, 10)


class MotionBank:
    """Holds the clips of one split (cache arrays, see docs/architecture.md) and cuts windows from them."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.quat = axis_angle_to_quaternion(arrays["pose_aa"].astype(np.float32))   # (N, 24, 4)
        self.trans = arrays["trans"].astype(np.float32)                                # (N, 3)
        self.betas = arrays["betas"].astype(np.float32)                                # (N, 10)
        self.clip_start = arrays["clip_start"].astype(np.int64)
        self.clip_len = arrays["clip_len"].astype(np.int64)
        if len(self.clip_start) == 0:
            raise ValueError("motion bank is empty: the cache holds no clips")

    @property
    def frames(self) -> int:
        return int(self.clip_len.sum())

    def sample(self, rng: np.random.Generator, batch: int, window: int, speed: tuple[float, float] = (0.8, 1.25)) -> MotionWindows:
        """`batch` windows of `window` frames, each played back at a random speed factor."""
        rate = rng.uniform(speed[0], speed[1], size=batch)
        need = (window - 1) * rate + 2                                 # source frames a window spans
        ok_weights = np.maximum(self.clip_len[None, :] - need[:, None], 0).astype(np.float64)  # (B, C)
        short = ok_weights.sum(1) == 0
        if short.any():  # no clip long enough at this speed: play at normal speed
            rate[short] = 1.0
            need[short] = window + 1
            ok_weights[short] = np.maximum(self.clip_len[None, :] - need[short, None], 0)
        if (ok_weights.sum(1) == 0).any():
            raise ValueError(f"no clip has {window + 1} frames; use a shorter window")
        probs = ok_weights / ok_weights.sum(1, keepdims=True)
        clip = np.array([rng.choice(len(self.clip_len), p=p) for p in probs])
        start = self.clip_start[clip] + rng.uniform(0, 1, size=batch) * (self.clip_len[clip] - need)
        t = start[:, None] + rate[:, None] * np.arange(window)[None, :]   # (B, T) fractional frame index
        i0 = np.floor(t).astype(np.int64)
        a = (t - i0).astype(np.float32)[..., None]
        q0, q1 = self.quat[i0], self.quat[i0 + 1]                          # (B, T, 24, 4)
        q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
        q = q0 * (1 - a[..., None]) + q1 * a[..., None]
        trans = self.trans[i0] * (1 - a) + self.trans[i0 + 1] * a
        return MotionWindows(
            pose_rotmat=quaternion_to_matrix(torch.from_numpy(q)),
            trans=torch.from_numpy(trans),
            betas=torch.from_numpy(self.betas[self.clip_start[clip]]),
        )

    def clip(self, index: int) -> MotionWindows:
        """One whole clip as a batch of 1 (for evaluation)."""
        s, n = self.clip_start[index], self.clip_len[index]
        return MotionWindows(
            pose_rotmat=quaternion_to_matrix(torch.from_numpy(self.quat[s : s + n]))[None],
            trans=torch.from_numpy(self.trans[s : s + n])[None],
            betas=torch.from_numpy(self.betas[s])[None],
        )
