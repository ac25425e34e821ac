"""The loop's camera angular velocity: one provider update per processed frame, never an exception.

Why apart: whatever the provider does (raise, give NaN, lose its gyro), the model gets a finite omega
(OMEGA_DIM,) and the message says what measured it (``PoseMessage.camera_motion``), for both loops.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mocap.model.state import OMEGA_DIM
from stream.loop.stats import LoopStats


def motion_source(camera_motion: Any) -> str:
    """``PoseMessage.camera_motion`` for the provider's last update: what actually measured the rotation, or
    "none" when the provider had nothing (a gyro gap, too few visual features) and a static camera was assumed."""
    used = getattr(camera_motion, "source_used", None)
    if isinstance(used, str):
        return used
    if type(camera_motion).__name__ == "StaticCameraMotion":
        return "static"
    return "visual" if camera_motion.status in ("ok", "init") else "none"


class Motion:
    """Wraps a `stream.camera_motion.CameraMotion`: ``update`` -> omega (OMEGA_DIM,) float32; ``used`` says what
    measured it ("none" and zeros after a failure or a non-finite value, counted as "camera_motion")."""

    def __init__(self, camera_motion: Any, stats: LoopStats) -> None:
        self.camera_motion, self.stats = camera_motion, stats
        self.used = ""

    def update(self, t: float, image: np.ndarray | None, bbox: np.ndarray | None) -> np.ndarray:
        """t: the frame's time on the loop's clock (s); bbox: the main person's (3,) box or None."""
        try:
            omega = np.asarray(self.camera_motion.update(t, image, bbox), dtype=np.float32).reshape(OMEGA_DIM)
        except Exception as exc:
            self.stats.fail("camera_motion", exc)
            self.used = "none"
            return np.zeros(OMEGA_DIM, np.float32)
        self.used = motion_source(self.camera_motion)
        if not np.all(np.isfinite(omega)):
            self.used = "none"
            return np.zeros(OMEGA_DIM, np.float32)
        return omega


__all__ = ["Motion", "motion_source"]
