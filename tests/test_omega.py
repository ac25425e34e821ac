"""Training and live agree on omega: one known camera motion through both paths gives the same model input.

A sign or convention slip between `mocap.data.virtual_camera.angular_velocity_6d` (what the network was trained
on) and the live providers (`stream.camera_motion`, the demo source) would pass every other test and quietly
degrade the live model, so the same rotation sequence is driven through each of them here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap.camera import camera_omega, frame_rotation
from mocap.data.virtual_camera import angular_velocity_6d
from mocap.rotations import axis_rotation
from stream.camera_motion import CameraMotion, GyroCameraMotion
from stream.sources.synthetic import SyntheticSource

FPS = 30.0
A, PHI_AMP, PHI_RATE = 0.8, 0.5, 3.0  # yaw rate (rad/s), pitch-wobble amplitude (rad) and frequency (rad/s)
C0 = axis_rotation(np.array(0.3), 0) @ axis_rotation(np.array(-1.0), 1)


def camera_to_world(t: float) -> np.ndarray:
    """C(t) = C0 Ry(A t) Rx(phi(t)): a pan with a pitch wobble, so successive steps do not commute."""
    return C0 @ axis_rotation(np.array(A * t), 1) @ axis_rotation(np.array(PHI_AMP * np.sin(PHI_RATE * t)), 0)


def body_rate(t: float) -> np.ndarray:
    """What a camera-mounted gyro reads for `camera_to_world`: w with dC/dt = C [w]x."""
    phi = PHI_AMP * np.sin(PHI_RATE * t)
    return axis_rotation(np.array(phi), 0).T @ np.array([0.0, A, 0.0]) + np.array(
        [PHI_AMP * PHI_RATE * np.cos(PHI_RATE * t), 0.0, 0.0])


def world_to_camera(times: np.ndarray) -> np.ndarray:
    return np.stack([camera_to_world(float(t)).T for t in times])  # (T, 3, 3), the project's R_t


def training_omega(rotations: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """The training path: (T, 3, 3) world->camera -> (T, 6), at FPS or at the given frame times."""
    rot = torch.from_numpy(rotations)[None]
    if times is None:
        return angular_velocity_6d(rot, fps=FPS)[0].numpy()
    dt = torch.from_numpy(np.diff(times, prepend=times[0]))[None]
    return angular_velocity_6d(rot, dt=dt)[0].numpy()


class KnownRotation(CameraMotion):
    """A live provider that measures the true per-frame rotation exactly (what a perfect sensor would report)."""

    def __init__(self, rotations: dict[float, np.ndarray], fps: float | None = None) -> None:
        super().__init__(fps)
        self._rotations = rotations

    def _step(self, t_prev: float | None, t: float, frame: np.ndarray | None, bbox: np.ndarray | None
              ) -> tuple[np.ndarray, str]:
        if t_prev is None:
            return np.eye(3), "init"
        return frame_rotation(self._rotations[t], self._rotations[t_prev]), "ok"


def live_omega(camera: CameraMotion, times: np.ndarray) -> np.ndarray:
    return np.stack([camera.update(float(t)) for t in times])


@pytest.mark.parametrize("fixed_rate", [True, False], ids=["fps", "timestamps"])
def test_live_provider_gives_the_training_omega(fixed_rate: bool) -> None:
    # Irregular frame times (jitter and one dropped frame) so the 1/dt path is exercised too.
    times = 0.05 + np.cumsum(np.r_[0.0, np.full(5, 1 / FPS), 2 / FPS, 1 / FPS + 0.004, np.full(4, 1 / FPS)])
    rotations = world_to_camera(times)
    want = training_omega(rotations, None if fixed_rate else times)
    got = live_omega(KnownRotation(dict(zip(times.tolist(), rotations)), FPS if fixed_rate else None), times)
    assert np.abs(want[1:]).max() > 0.1  # the motion is far from static
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_gyro_integrated_motion_gives_the_training_omega() -> None:
    """The gyro provider integrates body rates; the omega it hands the model is the one training computed."""
    times = 0.05 + np.arange(12) / FPS
    camera = GyroCameraMotion()
    for t in np.arange(0.0, 1.0, 0.001):
        camera.push(float(t), body_rate(float(t)))
    got = live_omega(camera, times)
    want = training_omega(world_to_camera(times), times)
    np.testing.assert_allclose(got[1:], want[1:], atol=5e-4)
    # The inverse convention (the body increment itself, or a flipped sign) is far off.
    flipped = training_omega(np.swapaxes(world_to_camera(times), -1, -2), times)
    assert np.abs(got[1:] - flipped[1:]).max() > 0.05


def test_synthetic_source_omega_is_the_training_omega() -> None:
    source = SyntheticSource(pan_deg=8.0, pan_period_s=2.0, realtime=False, render=False)
    rotations = np.stack([source.rotation(i) for i in range(40)])
    want = training_omega(rotations)
    got = np.stack([source.omega(i) for i in range(1, 40)])
    assert np.abs(got).max() > 0.1
    np.testing.assert_allclose(got, want[1:], rtol=1e-9, atol=1e-12)


def test_one_function_serves_numpy_and_torch() -> None:
    q = frame_rotation(camera_to_world(0.2).T, camera_to_world(0.1).T)
    as_numpy = camera_omega(q, rate=FPS)
    as_torch = camera_omega(torch.from_numpy(q), rate=FPS)
    assert isinstance(as_numpy, np.ndarray) and isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), as_numpy, rtol=1e-12)
    np.testing.assert_allclose(camera_omega(q, dt=np.array(1 / FPS)), as_numpy, rtol=1e-12)
    assert np.all(camera_omega(np.eye(3), rate=FPS) == 0)
    with pytest.raises(ValueError, match="rate or dt"):
        camera_omega(q)
