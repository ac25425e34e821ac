"""The camera-motion interface: one 6D angular velocity per frame, whatever measures it.

Convention (docs/design.md): R_t is the world->camera rotation at frame t (OpenCV camera frame: X right, Y down,
Z forward). The per-frame rotation is ``Q_t = R_t @ R_{t-1}.T``: it maps a static world direction seen from the
camera at t-1 onto the same direction seen at t (``bearing_t = Q_t @ bearing_{t-1}`` for a purely rotating camera).
The network input is ``omega_t = (rot6d(Q_t) - rot6d(I)) * rate``, rot6d = first two columns; the one function
that computes it is ``mocap.camera.camera_omega``, which training (``mocap.data.virtual_camera``) and the demo
source use too. Zeros mean a static camera.

``rate`` is ``fps`` when the provider was given one (WHAM's fixed scaling), else ``1 / dt`` from the capture
timestamps, so the value is a physical rate and stays comparable when the live frame rate drifts.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from mocap.camera import camera_omega
from mocap.model.state import OMEGA_DIM

IDENTITY = np.eye(3)


def omega_from_rotation(delta: np.ndarray, rate: float) -> np.ndarray:
    """delta: (3, 3) per-frame rotation Q_t, rate: frames per second -> omega (6,) float32 (`camera_omega`)."""
    delta = np.asarray(delta, dtype=np.float64)
    if delta.shape != (3, 3):
        raise ValueError(f"rotation delta must be (3, 3), got {delta.shape}")
    return camera_omega(delta, rate=float(rate)).astype(np.float32)


def parse_bbox(person_bbox: np.ndarray | None) -> np.ndarray | None:
    """(3,) [cx, cy, size] pixels -> float64 array, or None when absent or NaN (too few keypoints seen)."""
    if person_bbox is None:
        return None
    box = np.asarray(person_bbox, dtype=np.float64).reshape(-1)
    if box.shape != (3,):
        raise ValueError(f"person_bbox must be (3,) [cx, cy, size], got shape {np.shape(person_bbox)}")
    if not np.all(np.isfinite(box)):
        return None
    if box[2] <= 0:
        raise ValueError(f"person_bbox size must be positive, got {box[2]}")
    return box


class CameraMotion(ABC):
    """Causal per-frame camera rotation. Subclasses implement ``_step``; ``update`` never blocks.

    Attributes after each ``update``: ``rotation_delta`` (3, 3) float64 = Q_t of that step (identity when unknown),
    ``status`` a short string (``"ok"`` when the value was measured; ``"init"`` on the first frame; provider
    specific otherwise, e.g. ``"gyro gap"``, ``"few features"``). A non-``"ok"`` status comes with zeros or a
    degraded estimate, never with an exception, so the live loop keeps running.
    """

    def __init__(self, fps: float | None = None) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        self.fps = fps
        self.rotation_delta: np.ndarray = IDENTITY.copy()
        self.status: str = "init"
        self._t_prev: float | None = None

    def update(
        self, t_capture: float, frame: np.ndarray | None = None, person_bbox: np.ndarray | None = None
    ) -> np.ndarray:
        """t_capture: monotonic seconds; frame: (H, W[, C]) uint8 or None; person_bbox: (3,) or None -> (6,)."""
        t = float(t_capture)
        if not math.isfinite(t):
            raise ValueError(f"t_capture must be finite, got {t_capture!r}")
        bbox = parse_bbox(person_bbox)
        t_prev = self._t_prev
        if t_prev is not None and t <= t_prev:
            # A repeated or backwards timestamp carries no interval to measure; keep the older reference.
            self.rotation_delta, self.status = IDENTITY.copy(), "time not increasing"
            return np.zeros(OMEGA_DIM, dtype=np.float32)
        delta, status = self._step(t_prev, t, frame, bbox)
        self._t_prev = t
        self.rotation_delta, self.status = delta, status
        if t_prev is None:
            return np.zeros(OMEGA_DIM, dtype=np.float32)
        rate = self.fps if self.fps is not None else 1.0 / (t - t_prev)
        return omega_from_rotation(delta, rate)

    def reset(self) -> None:
        """Forget the previous frame (new video, camera switch); the next update reports ``"init"``."""
        self._t_prev = None
        self.rotation_delta = IDENTITY.copy()
        self.status = "init"
        self._reset()

    def close(self) -> None:
        """Release threads and sockets; the default has none."""

    def __enter__(self) -> "CameraMotion":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _step(
        self, t_prev: float | None, t: float, frame: np.ndarray | None, bbox: np.ndarray | None
    ) -> tuple[np.ndarray, str]:
        """Return (Q_t (3, 3), status) for the interval [t_prev, t]; t_prev is None on the first frame."""

    def _reset(self) -> None:
        """Provider-specific part of ``reset``."""
