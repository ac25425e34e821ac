"""Detector-like corruption of clean 2D keypoints, fitted to what BlazePose does on real video.

The parameters (`DetectorNoise`) and how each was obtained are in docs/data_card.md; the measurements come from
`python -m stream.detector.noise_stats` on the shared real videos. In short: real 2D error is mostly *slow*
(a per-joint offset that drifts over ~0.3-1 s, median 2-4 % of the box height against triangulated ground truth)
with a small white jitter on top (residual 0.07-0.3 % of the box height); left/right labels swap for runs of
several frames on side views; heel and toe points slide along the foot; confidence is near 1 for most visible
points and falls under occlusion; whole frames are sometimes missed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..skeleton import FOOT_KEYPOINT_IDS, KEYPOINT_FLIP, KEYPOINT_PARENTS, NUM_KEYPOINTS, Keypoint


@dataclass(frozen=True)
class DetectorNoise:
    """Noise parameters, in units of the person's height in pixels unless stated (fractions per coordinate)."""

    bias: float = 0.012             # static per-joint offset (sd) per window
    drift: float = 0.012            # slowly varying per-joint offset (sd)
    drift_seconds: tuple[float, float] = (0.2, 1.0)   # its time constant
    jitter: float = 0.004           # white per-frame noise (sd)
    level: tuple[float, float] = (0.3, 1.5)           # per-window detector quality multiplier
    outlier_rate: float = 0.008     # per point-frame
    outlier: float = 0.15           # outlier displacement (sd)
    swap_rate: float = 0.08         # left/right swap events per second (side views make BlazePose swap)
    swap_frames: tuple[int, int] = (3, 40)
    foot_slide: float = 0.02        # extra drift of heel / toe points along the ground (sd)
    occlusions_per_64: float = 2.0  # occlusion events (a keypoint subtree hidden) per 64 frames
    no_feet_prob: float = 0.15      # detectors without foot points
    frame_drop: float = 0.02        # whole-frame misses
    conf_drop: float = 0.55         # visible confidence = 1 - conf_drop * Beta(1, 5): mostly 0.9-1.0, as measured
    conf_uniform: tuple[float, float] | None = None   # legacy: visible confidence uniform in this range instead


#: The `shifted` evaluation protocol's detector: stronger, and swapping sides more often.
SHIFTED_NOISE = DetectorNoise(level=(1.0, 1.8), swap_rate=0.2)
#: The first model's noise (the `standard` protocol): white jitter and a static bias, no drift, swaps or sliding.
LEGACY_NOISE = DetectorNoise(drift=0.0, jitter=0.006, swap_rate=0.0, foot_slide=0.0, conf_uniform=(0.45, 1.0))


def _children_closure() -> np.ndarray:
    """(21, 21) bool: [k, j] = j is k or a descendant of k in the keypoint tree (occluding k hides j)."""
    closure = np.eye(NUM_KEYPOINTS, dtype=bool)
    for j in range(NUM_KEYPOINTS):
        p = KEYPOINT_PARENTS[j]
        while p >= 0:
            closure[p, j] = True
            p = KEYPOINT_PARENTS[p]
    return closure


_SUBTREE = torch.from_numpy(_children_closure())
_FLIP = torch.tensor(KEYPOINT_FLIP)
#: Which points a swap event exchanges: legs (hips down, with the feet), arms, or the whole body.
_SWAP_GROUPS = (np.arange(Keypoint.L_HIP, NUM_KEYPOINTS), np.arange(Keypoint.L_SHOULDER, Keypoint.L_HIP),
                np.arange(NUM_KEYPOINTS))


def _low_pass(rng: np.random.Generator, shape: tuple[int, ...], times: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Unit-variance AR(1) noise sampled at `times` (B, T) seconds with time constant tau (B,): shape (B, T, ...)."""
    b, t = times.shape
    out = np.empty(shape, dtype=np.float64)
    out[:, 0] = rng.normal(size=(b,) + shape[2:])
    gap = np.diff(times, axis=1, prepend=times[:, :1])
    a = np.exp(-gap / tau[:, None])                                            # (B, T)
    extra = (1,) * (len(shape) - 2)
    for i in range(1, t):
        ai = a[:, i].reshape((b,) + extra)
        out[:, i] = ai * out[:, i - 1] + np.sqrt(1 - ai**2) * rng.normal(size=(b,) + shape[2:])
    return out


def corrupt_keypoints(
    rng: np.random.Generator,
    kp_clean: torch.Tensor,   # (B, T, 21, 2) pixels
    scale: torch.Tensor,      # (B,) person size in pixels (noise is relative to it)
    in_view: torch.Tensor,    # (B, T, 21) bool: in front of the camera and inside the image (with margin)
    strength: float = 1.0,
    times: torch.Tensor | None = None,   # (B, T) seconds (default: 30 fps)
    params: DetectorNoise = DetectorNoise(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns noisy keypoints (B, T, 21, 2) and confidences (B, T, 21) in [0, 1] (masked ones < 0.25)."""
    b, t, k, _ = kp_clean.shape
    p = params
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    sec = (times.double().numpy() if times is not None else np.arange(t)[None].repeat(b, 0) / 30.0)
    s = scale[:, None, None, None] * strength
    level = f32(rng.uniform(*p.level, size=(b, 1, 1, 1)))                     # per-window detector quality
    bias = f32(rng.normal(0, p.bias, size=(b, 1, k, 2))) * s * level
    tau = rng.uniform(*p.drift_seconds, size=b)
    drift = f32(_low_pass(rng, (b, t, k, 2), sec, tau)) * p.drift * s * level if p.drift > 0 else 0.0
    jitter = f32(rng.normal(0, p.jitter, size=(b, t, k, 2))) * s * level
    outlier = f32(rng.uniform(size=(b, t, k, 1)) < p.outlier_rate * strength)
    outlier_shift = f32(rng.normal(0, p.outlier, size=(b, t, k, 2))) * s
    slide = torch.zeros(b, t, k, 2)
    if p.foot_slide > 0:
        slide[:, :, list(FOOT_KEYPOINT_IDS)] = f32(_low_pass(rng, (b, t, 4, 2), sec, tau)) * p.foot_slide * s * level
    kp = kp_clean + bias + drift + jitter + outlier * outlier_shift + slide

    # Left/right swaps: runs of frames where the detector labels a limb group with the other side's names.
    duration = sec[:, -1] - sec[:, 0] + 1e-3
    n_swap = rng.poisson(p.swap_rate * strength * duration)
    for i in np.nonzero(n_swap)[0]:
        for _ in range(n_swap[i]):
            group = _SWAP_GROUPS[rng.choice(3, p=[0.5, 0.2, 0.3])]
            start = int(rng.integers(0, t))
            stop = start + int(rng.integers(*p.swap_frames))
            idx = torch.from_numpy(group)
            kp[i, start:stop, idx] = kp[i, start:stop][:, _FLIP[idx]]

    # Occlusions: a keypoint subtree disappears for a run of frames.
    visible = in_view.clone()
    n_occ = rng.poisson(p.occlusions_per_64 * strength * t / 64.0, size=b)
    for i in np.nonzero(n_occ)[0]:
        for _ in range(n_occ[i]):
            root = int(rng.integers(0, k))
            start = int(rng.integers(0, t))
            length = int(rng.integers(3, 30))
            visible[i, start : start + length] &= ~_SUBTREE[root]
    # Some detectors have no foot points at all.
    no_feet = torch.from_numpy(rng.uniform(size=b) < p.no_feet_prob)
    visible[no_feet.nonzero()[:, 0][:, None], :, list(FOOT_KEYPOINT_IDS)] = False
    # Whole-frame drops (detector missed the person).
    drop = torch.from_numpy(rng.uniform(size=(b, t)) < p.frame_drop * strength)
    visible &= ~drop[..., None]

    if p.conf_uniform is not None:
        conf_visible = f32(rng.uniform(*p.conf_uniform, size=(b, t, k)))
    else:
        conf_visible = 1.0 - p.conf_drop * f32(rng.beta(1.0, 5.0, size=(b, t, k)))
    conf_hidden = f32(rng.uniform(0.0, 0.25, size=(b, t, k)))
    conf = torch.where(visible, conf_visible, conf_hidden)
    return kp, conf
