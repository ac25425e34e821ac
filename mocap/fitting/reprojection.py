"""The reprojection error the live loop reports (and the refinement is judged by), in plain numpy."""
from __future__ import annotations

import numpy as np

from mocap.camera import CONF_THRESHOLD


def reprojection_error(kp3d_cam: np.ndarray, kp2d: np.ndarray, K: np.ndarray) -> float | None:
    """Median pixel distance between the model's keypoints projected with K and the confident detected ones,
    relative to the height of the detected keypoints' box; None when fewer than 4 points are usable.

    kp3d_cam: (21, 3) camera frame metres; kp2d: (21, 3) pixels + confidence; K: (3, 3). Points at or behind
    the camera plane are unusable (as `mocap.camera.project` makes them NaN).
    """
    pts = np.asarray(kp3d_cam, dtype=np.float64)
    kp = np.asarray(kp2d, dtype=np.float64)
    hom = pts @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.where(pts[:, 2:] > 1e-6, hom[:, :2] / hom[:, 2:], np.nan)
    ok = (kp[:, 2] >= CONF_THRESHOLD) & np.isfinite(uv).all(axis=1) & np.isfinite(kp[:, :2]).all(axis=1)
    if ok.sum() < 4:
        return None
    height = float(np.ptp(kp[ok, 1]))
    if height <= 0:
        return None
    return float(np.median(np.linalg.norm(uv[ok] - kp[ok, :2], axis=1)) / height)
