"""Camera angular velocity providers behind one interface (``CameraMotion.update(t, frame, bbox) -> (6,)``).

``make_camera_motion(spec)`` builds one from a command-line style string:
``static`` | ``visual`` | ``gyro:csv:PATH`` | ``gyro:zmq:ADDR`` (e.g. ``gyro:zmq:tcp://127.0.0.1:5560``) |
``gyro:udp:HOST:PORT``.
"""
from __future__ import annotations

from typing import Any

from .base import CameraMotion, omega_from_rotation
from .gyro import GyroCameraMotion
from .static import StaticCameraMotion
from .visual import VisualCameraMotion


def make_camera_motion(spec: str, **kwargs: Any) -> CameraMotion:
    """Provider from a spec string; ``kwargs`` go to its constructor (e.g. ``imu_to_camera``, ``intrinsics``)."""
    kind, _, rest = spec.partition(":")
    if kind == "static" and not rest:
        return StaticCameraMotion(**kwargs)
    if kind == "visual" and not rest:
        return VisualCameraMotion(**kwargs)
    if kind == "gyro":
        transport, _, target = rest.partition(":")
        if transport == "csv" and target:
            return GyroCameraMotion.from_csv(target, **kwargs)
        if transport == "zmq" and target:
            return GyroCameraMotion.from_zmq(target, **kwargs)
        if transport == "udp" and target:
            host, _, port = target.rpartition(":")
            if host and port.isdigit():
                return GyroCameraMotion.from_udp(host, int(port), **kwargs)
    raise ValueError(
        f"unknown camera motion spec {spec!r}; expected static | visual | gyro:csv:PATH | gyro:zmq:ADDR | "
        "gyro:udp:HOST:PORT"
    )


__all__ = [
    "CameraMotion",
    "GyroCameraMotion",
    "StaticCameraMotion",
    "VisualCameraMotion",
    "make_camera_motion",
    "omega_from_rotation",
]
