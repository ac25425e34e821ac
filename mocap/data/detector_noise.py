"""Detector-like corruption of clean 2D keypoints: bias, jitter, outliers, occlusions down the tree, drops."""
from __future__ import annotations

import numpy as np
import torch

from ..skeleton import FOOT_KEYPOINT_IDS, KEYPOINT_PARENTS, NUM_KEYPOINTS


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


def corrupt_keypoints(
    rng: np.random.Generator,
    kp_clean: torch.Tensor,   # (B, T, 21, 2) pixels
    scale: torch.Tensor,      # (B,) person size in pixels (noise is relative to it)
    in_view: torch.Tensor,    # (B, T, 21) bool: in front of the camera and inside the image (with margin)
    strength: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns noisy keypoints (B, T, 21, 2) and confidences (B, T, 21) in [0, 1] (masked ones < 0.25)."""
    b, t, k, _ = kp_clean.shape
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    s = scale[:, None, None, None] * strength
    level = f32(rng.uniform(0.3, 1.5, size=(b, 1, 1, 1)))                         # per-window detector quality
    bias = f32(rng.normal(0, 0.012, size=(b, 1, k, 2))) * s * level
    jitter = f32(rng.normal(0, 0.006, size=(b, t, k, 2))) * s * level
    outlier = f32(rng.uniform(size=(b, t, k, 1)) < 0.008 * strength)
    outlier_shift = f32(rng.normal(0, 0.15, size=(b, t, k, 2))) * s
    kp = kp_clean + bias + jitter + outlier * outlier_shift

    # Occlusions: a keypoint subtree disappears for a run of frames.
    visible = in_view.clone()
    n_occ = rng.poisson(2.0 * strength * t / 64.0, size=b)
    for i in np.nonzero(n_occ)[0]:
        for _ in range(n_occ[i]):
            root = int(rng.integers(0, k))
            start = int(rng.integers(0, t))
            length = int(rng.integers(3, 30))
            visible[i, start : start + length] &= ~_SUBTREE[root]
    # Some detectors have no foot points at all.
    no_feet = torch.from_numpy(rng.uniform(size=b) < 0.15)
    visible[no_feet.nonzero()[:, 0][:, None], :, list(FOOT_KEYPOINT_IDS)] = False
    # Whole-frame drops (detector missed the person).
    drop = torch.from_numpy(rng.uniform(size=(b, t)) < 0.02 * strength)
    visible &= ~drop[..., None]

    conf_visible = f32(rng.uniform(0.45, 1.0, size=(b, t, k)))
    conf_hidden = f32(rng.uniform(0.0, 0.25, size=(b, t, k)))
    conf = torch.where(visible, conf_visible, conf_hidden)
    return kp, conf
