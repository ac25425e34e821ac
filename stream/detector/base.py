"""The 2D detector interface: one BGR image in, zero or more people's 21 keypoints out.

Keypoint order is `mocap.skeleton.KEYPOINT_NAMES` (COCO-17 then L heel, L toe, R heel, R toe). A detector that
lacks a point (e.g. a COCO-17 model has no feet) reports it with confidence 0; the tracker and the normalizer
mask low-confidence points instead of trusting their coordinates.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from mocap.skeleton import NUM_KEYPOINTS


@dataclass
class Detection:
    """keypoints: (21, 3) float32 pixels (x, y) + confidence in [0, 1]; bbox: (4,) x0, y0, x1, y1; score in [0, 1]."""

    keypoints: np.ndarray
    bbox: np.ndarray
    score: float

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.bbox = np.asarray(self.bbox, dtype=np.float32)
        if self.keypoints.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"Detection.keypoints must be ({NUM_KEYPOINTS}, 3), got {self.keypoints.shape}")
        if self.bbox.shape != (4,):
            raise ValueError(f"Detection.bbox must be (4,) x0, y0, x1, y1, got {self.bbox.shape}")
        self.score = float(self.score)


def bbox_of_visible(keypoints: np.ndarray, conf_threshold: float) -> np.ndarray:
    """keypoints (K, 3) -> tight (4,) x0, y0, x1, y1 over finite points with conf >= threshold (NaN if none)."""
    ok = (keypoints[:, 2] >= conf_threshold) & np.isfinite(keypoints[:, :2]).all(axis=1)
    if not ok.any():
        return np.full(4, np.nan, dtype=np.float32)
    xy = keypoints[ok, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float32)


def check_image(image: np.ndarray) -> np.ndarray:
    """Reject what a detector cannot read with a clear message: expects (H, W, 3) BGR uint8."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"detector input must be an (H, W, 3) BGR uint8 image, got shape {shape} dtype {dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"detector input image is too small: {image.shape}")
    return image


class Detector(ABC):
    """`detect(image)` -> people found in one frame, most confident first. Stateful detectors may track."""

    name: str = "detector"

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """image: (H, W, 3) BGR uint8 -> detections (possibly empty)."""

    def reset(self) -> None:
        """Forget any temporal state (call when the source changes)."""

    def close(self) -> None:
        """Release model resources; idempotent."""

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
