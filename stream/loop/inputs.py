"""A frame's way into the model: its size and intrinsics, its detections, a tracked person's network input.

Why apart: the single- and multi-person loops read frames the same way, and each step here has its own failure
that must become "nobody usable" (counted in the stats), never an exception: a frame without a size, keypoints
of the wrong shape, a detector that raises, a box the normalizer rejects.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mocap.camera import CONF_THRESHOLD, check_intrinsics, default_intrinsics, normalize_keypoints
from mocap.skeleton import NUM_KEYPOINTS
from stream.detector.base import Detection, bbox_of_visible
from stream.loop.stats import LoopStats
from stream.sources.base import Frame
from stream.tracker import TrackResult

log = logging.getLogger(__name__)


class FrameGeometry:
    """Image size (W, H) and intrinsics K (3, 3) of each frame: the caller's K, else the default for its size
    (`mocap.camera.default_intrinsics`, cached while the size stays)."""

    def __init__(self, source: Any, intrinsics: np.ndarray | None = None) -> None:
        self.source = source
        self.user_K = check_intrinsics(intrinsics) if intrinsics is not None else None
        self._K: np.ndarray | None = None
        self._K_size: tuple[int, int] | None = None

    def size(self, frame: Frame) -> tuple[int, int]:
        """(W, H) of the frame's image, else the source's size (a keypoint-only frame)."""
        if frame.image is not None and getattr(frame.image, "ndim", 0) >= 2:
            return int(frame.image.shape[1]), int(frame.image.shape[0])
        w, h = self.source.size
        return int(w), int(h)

    def K(self, size: tuple[int, int]) -> np.ndarray:
        if self.user_K is not None:
            return self.user_K
        if self._K is None or self._K_size != size:
            self._K, self._K_size = default_intrinsics(*size), size
        return self._K

    def of(self, frame: Frame) -> tuple[tuple[int, int], np.ndarray]:
        """(size (W, H), K (3, 3)); ValueError for a frame without a size."""
        size = self.size(frame)
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"frame {frame.seq} has no size (image {getattr(frame.image, 'shape', None)})")
        return size, self.K(size)


def detections(frame: Frame, detector: Any, stats: LoopStats, **detect_args: Any) -> list[Detection]:
    """The frame's people: its own keypoints (NUM_KEYPOINTS, 3) when it carries them (the synthetic source),
    else the detector's (``detect(image, **detect_args)``); errors -> [] counted as "detector"."""
    if frame.keypoints is not None:
        kp = np.asarray(frame.keypoints, dtype=np.float32)
        if kp.shape != (NUM_KEYPOINTS, 3):
            stats.n.errors["detector"] += 1
            log.warning("frame %d carries keypoints of shape %s, expected (%d, 3)", frame.seq, kp.shape,
                        NUM_KEYPOINTS)
            return []
        conf = kp[:, 2][np.isfinite(kp[:, 2])]
        return [Detection(kp, bbox_of_visible(kp, CONF_THRESHOLD), float(conf.mean()) if conf.size else 0.0)]
    if detector is None or frame.image is None:
        return []
    try:
        return list(detector.detect(frame.image, **detect_args))
    except Exception as exc:
        stats.fail("detector", exc)
        return []


def network_input(result: TrackResult, K: np.ndarray, stats: LoopStats) -> np.ndarray | None:
    """The tracked person's input x (NORMALIZED_DIM,) float32 (`mocap.camera.normalize_keypoints`), or None when
    the box or keypoints are unusable (the loop treats that as lost; the normalizer's refusals count as
    "normalize")."""
    if result.keypoints is None or result.bbox is None or not np.all(np.isfinite(result.bbox)):
        return None
    try:
        x = normalize_keypoints(result.keypoints.astype(np.float64), np.asarray(result.bbox, np.float64),
                                float(K[0, 0]), K[:2, 2].astype(np.float64))
    except ValueError as exc:
        stats.fail("normalize", exc)
        return None
    x = np.asarray(x, dtype=np.float32)
    return x if np.all(np.isfinite(x)) else None


__all__ = ["FrameGeometry", "detections", "network_input"]
