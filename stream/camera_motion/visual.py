"""Camera rotation from the image itself: track background corners and fit the pure rotation between frames.

Model: between two frames a far-away (or purely rotating) background moves by the homography K Q K^-1, i.e.
bearings obey ``b_t = Q @ b_{t-1}`` with ``b = normalize(K^-1 [u, v, 1])`` and Q = R_t R_{t-1}^T (the project's
convention, see ``base``). We track Shi-Tomasi corners with pyramidal Lucas-Kanade (forward-backward checked) on
a downscaled grayscale image, ignore the tracked person's enlarged box, and fit Q by RANSAC over 2-point
Kabsch (SVD) hypotheses on the bearings, refined on the inliers. Independently moving things (other people,
cars) fall out as outliers; camera translation with a near background is the model's known blind spot.
Lens distortion is ignored: pass undistorted frames when it matters.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from mocap.camera import check_intrinsics, default_intrinsics
from mocap.rotations import kabsch

from .base import IDENTITY, CameraMotion


def kabsch_rotations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Best rotations Q with b ~ Q a. a, b: (H, N, 3) bearing sets -> (H, 3, 3), proper (det +1)."""
    return kabsch(np.einsum("hni,hnj->hij", b, a))  # sum b a^T


def fit_rotation_ransac(
    a: np.ndarray, b: np.ndarray, threshold: float, hypotheses: int = 64, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Robust Q with b ~ Q a from unit bearings a, b: (N, 3), N >= 2; threshold on |Q a - b| (radians).

    Returns (Q (3, 3), inlier mask (N,)).
    """
    n = len(a)
    if n < 2:
        raise ValueError(f"need at least 2 correspondences, got {n}")
    rng = rng or np.random.default_rng(0)
    idx = np.stack([rng.choice(n, size=2, replace=False) for _ in range(hypotheses)])  # (H, 2)
    candidates = kabsch_rotations(a[idx], b[idx])  # (H, 3, 3)
    err = np.linalg.norm(np.einsum("hij,nj->hni", candidates, a) - b[None], axis=-1)  # (H, N)
    inliers = err[np.argmax((err < threshold).sum(1))] < threshold
    q = IDENTITY
    for _ in range(2):  # refit on the consensus, then re-select with the refined model
        if inliers.sum() < 2:
            break
        q = kabsch_rotations(a[inliers][None], b[inliers][None])[0]
        inliers = np.linalg.norm(a @ q.T - b, axis=-1) < threshold
    return q, inliers


class VisualCameraMotion(CameraMotion):
    """Inter-frame rotation from background optical flow (causal: uses only the previous frame).

    Args:
        intrinsics: (3, 3) K at full frame resolution; None = default (f = sqrt(W^2 + H^2), centred).
        work_width: frames wider than this are downscaled to it first (speed; accuracy stays sub-pixel).
        max_features, min_features: corners detected; fewer surviving tracks than ``min_features`` -> zeros.
        bbox_margin: the person box is scaled by this before masking (limbs stick out of keypoint boxes).
        inlier_px: RANSAC threshold in working-resolution pixels.
        min_inlier_ratio: below this fraction of tracks agreeing on one rotation -> zeros, "no consensus".
    """

    def __init__(
        self,
        intrinsics: np.ndarray | None = None,
        *,
        work_width: int = 320,
        max_features: int = 300,
        min_features: int = 20,
        bbox_margin: float = 1.4,
        inlier_px: float = 1.0,
        min_inlier_ratio: float = 0.3,
        fps: float | None = None,
        seed: int = 0,
    ) -> None:
        if intrinsics is not None:
            intrinsics = check_intrinsics(intrinsics)
        if work_width < 64 or min_features < 2 or max_features < min_features:
            raise ValueError("need work_width >= 64 and 2 <= min_features <= max_features")
        self.intrinsics = intrinsics
        self.work_width, self.max_features, self.min_features = work_width, max_features, min_features
        self.bbox_margin, self.inlier_px, self.min_inlier_ratio = bbox_margin, inlier_px, min_inlier_ratio
        self._rng = np.random.default_rng(seed)
        self._lk_criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        self.inliers = 0
        super().__init__(fps)
        self._reset()

    def _reset(self) -> None:
        self._prev_gray: np.ndarray | None = None
        self._prev_pts: np.ndarray | None = None  # (N, 1, 2) float32 corners of the previous frame
        self._size: tuple[int, int] | None = None
        self._kinv: np.ndarray | None = None  # K^-1 at working resolution
        self._scale = 1.0

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        """Validate, convert to grayscale, downscale; (re)compute K^-1 when the frame size changes."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise ValueError("frame must be a (H, W) or (H, W, C) uint8 array")
        if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
            raise ValueError(f"frame must have 1, 3 or 4 channels, got {frame.shape[2]}")
        h, w = frame.shape[:2]
        if (w, h) != self._size:
            self._reset()
            self._size = (w, h)
            self._scale = min(1.0, self.work_width / w)
            k = self.intrinsics if self.intrinsics is not None else default_intrinsics(w, h)
            self._kinv = np.linalg.inv(np.diag([self._scale, self._scale, 1.0]) @ k)
        if frame.ndim == 3 and frame.shape[2] == 3:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        elif frame.ndim == 3 and frame.shape[2] == 4:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
        else:
            gray = frame.reshape(h, w)
        if self._scale < 1.0:
            size = (round(w * self._scale), round(h * self._scale))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def _mask(self, shape: tuple[int, ...], bbox: np.ndarray | None) -> np.ndarray | None:
        if bbox is None:
            return None
        mask = np.full(shape, 255, np.uint8)
        cx, cy, size = bbox * self._scale
        half = size * self.bbox_margin / 2
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(int(math.ceil(cx + half)), shape[1]), min(int(math.ceil(cy + half)), shape[0])
        mask[y0:y1, x0:x1] = 0
        return mask

    def _working_kinv(self) -> np.ndarray:
        """K^-1 (3, 3) at working resolution (`_prepare` sets it with the frame's size)."""
        assert self._kinv is not None, "_prepare sets K^-1 before any bearing is computed"
        return self._kinv

    def _flow(self, gray_a: np.ndarray, gray_b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pyramidal Lucas-Kanade: pts (N, 1, 2) in a -> (their positions in b, found (N, 1), error (N, 1))."""
        out = np.empty_like(pts)  # output only (no OPTFLOW_USE_INITIAL_FLOW): the same as passing None
        return tuple(np.asarray(a) for a in cv2.calcOpticalFlowPyrLK(
            gray_a, gray_b, pts, out, winSize=(21, 21), maxLevel=3, criteria=self._lk_criteria))

    def _bearings(self, pts: np.ndarray) -> np.ndarray:
        """pts: (N, 2) working pixels -> (N, 3) unit bearings."""
        rays = np.concatenate([pts.astype(np.float64), np.ones((len(pts), 1))], axis=1) @ self._working_kinv().T
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def _step(
        self, t_prev: float | None, t: float, frame: np.ndarray | None, bbox: np.ndarray | None
    ) -> tuple[np.ndarray, str]:
        if frame is None:
            self._prev_gray = self._prev_pts = None  # the next frame starts over rather than span the hole
            return IDENTITY.copy(), "no frame"
        gray = self._prepare(frame)
        prev_gray, prev_pts = self._prev_gray, self._prev_pts
        mask = self._mask(gray.shape, bbox)
        self._prev_gray = gray
        self._prev_pts = cv2.goodFeaturesToTrack(gray, self.max_features, 0.01, 8, mask=mask, blockSize=7)
        self.inliers = 0
        if t_prev is None or prev_gray is None:
            return IDENTITY.copy(), "init"
        if prev_pts is None or len(prev_pts) < self.min_features:
            return IDENTITY.copy(), "few features"
        nxt, ok, _ = self._flow(prev_gray, gray, prev_pts)
        back, ok_back, _ = self._flow(gray, prev_gray, nxt)
        good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & (np.linalg.norm(back - prev_pts, axis=2)[:, 0] < 0.5)
        p0, p1 = prev_pts[good, 0], nxt[good, 0]
        if mask is not None and len(p1):  # drop tracks that ended on the person
            xi = np.clip(p1[:, 0].astype(int), 0, gray.shape[1] - 1)
            yi = np.clip(p1[:, 1].astype(int), 0, gray.shape[0] - 1)
            keep = mask[yi, xi] > 0
            p0, p1 = p0[keep], p1[keep]
        if len(p0) < self.min_features:
            return IDENTITY.copy(), "few features"
        threshold = self.inlier_px * float(self._working_kinv()[0, 0])  # pixels -> radians (1 / f)
        q, inliers = fit_rotation_ransac(self._bearings(p0), self._bearings(p1), threshold, rng=self._rng)
        self.inliers = int(inliers.sum())
        if self.inliers < max(self.min_features, self.min_inlier_ratio * len(p0)):
            return IDENTITY.copy(), "no consensus"
        return q, "ok"


__all__ = ["VisualCameraMotion", "fit_rotation_ransac", "kabsch_rotations"]
