"""A tripod: the camera never rotates, so omega is always zeros (the default when nothing else is known)."""
from __future__ import annotations

import numpy as np

from .base import IDENTITY, CameraMotion


class StaticCameraMotion(CameraMotion):
    """Zeros every frame; status ``"ok"`` after the first frame (a static camera is a measurement, not a guess)."""

    def _step(
        self, t_prev: float | None, t: float, frame: np.ndarray | None, bbox: np.ndarray | None
    ) -> tuple[np.ndarray, str]:
        return IDENTITY.copy(), "init" if t_prev is None else "ok"
