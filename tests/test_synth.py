"""Synthetic sample generator: camera motion conventions, labels, determinism, realistic inputs."""
from __future__ import annotations

import numpy as np
import torch

from mocap.data.motion_bank import MotionBank, MotionWindows
from mocap.data.synth import SynthConfig, SyntheticGenerator
from mocap.data.virtual_camera import angular_velocity_6d, look_at
from mocap.rotations import axis_angle_to_matrix, rot6d_to_matrix, rotation_angle


def _walk(batch: int, frames: int, speed: float = 1.0) -> MotionWindows:
    t = torch.arange(frames, dtype=torch.float32) / 30
    aa = torch.zeros(batch, frames, 24, 3)
    aa[:, :, 1, 0], aa[:, :, 2, 0] = 0.5 * torch.sin(6.28 * t), -0.5 * torch.sin(6.28 * t)
    trans = torch.zeros(batch, frames, 3)
    trans[..., 1], trans[..., 2] = 0.92, speed * t
    return MotionWindows(axis_angle_to_matrix(aa), trans, torch.zeros(batch, 10))


def test_static_camera_has_zero_angular_velocity() -> None:
    out = SyntheticGenerator()(_walk(4, 30), np.random.default_rng(0), camera="static")
    assert not out["camera_moving"].any()
    assert out["omega"].abs().max() < 1e-4


def test_rotating_camera_gives_its_rate() -> None:
    fps, rate = 30.0, 0.6  # rad/s about the vertical axis
    t = torch.arange(20, dtype=torch.float32) / fps
    base = look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 5.0]))
    yaw = axis_angle_to_matrix(torch.stack((torch.zeros(20), rate * t, torch.zeros(20)), -1))
    rotation = (base @ yaw.transpose(-1, -2))[None]        # world->camera of a camera panning at `rate`
    omega = angular_velocity_6d(rotation, fps)
    assert torch.all(omega[0, 0] == 0)
    step = rot6d_to_matrix(omega[0, 1:] / fps + torch.tensor([1.0, 0, 0, 0, 1, 0]))
    assert torch.allclose(rotation_angle(step), torch.full((19,), rate / fps), atol=1e-5)


def test_moving_camera_omega_matches_its_rotations() -> None:
    out = SyntheticGenerator()(_walk(6, 40), np.random.default_rng(1), camera="moving")
    assert out["camera_moving"].all()
    rot = out["cam_rotation"]
    expected = rot[:, 1:] @ rot[:, :-1].transpose(-1, -2)
    recovered = rot6d_to_matrix(out["omega"][:, 1:] / 30 + torch.tensor([1.0, 0, 0, 0, 1, 0]))
    assert torch.allclose(recovered, expected, atol=1e-4)
    assert out["omega"].abs().max() > 1e-3  # it does move


def test_deterministic_by_seed() -> None:
    gen = SyntheticGenerator()
    a = gen(_walk(3, 25), np.random.default_rng(7))
    b = gen(_walk(3, 25), np.random.default_rng(7))
    c = gen(_walk(3, 25), np.random.default_rng(8))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["x"], c["x"])


def test_inputs_and_labels_are_consistent() -> None:
    gen = SyntheticGenerator(SynthConfig(noise=0.0, random_betas=0.0))
    out = gen(_walk(4, 30), np.random.default_rng(3), camera="static")
    assert torch.isfinite(out["x"]).all()
    # Clean keypoints: the visible inputs are the clean normalized keypoints.
    x = out["x"][..., :63].reshape(4, 30, 21, 3)
    vis = x[..., 2] > 0.5
    assert torch.allclose(x[..., :2][vis], out["gt_kp2d_norm"][vis], atol=1e-4)
    # Projecting the camera-frame keypoints gives the pixel keypoints.
    kp_cam = out["gt_kp_cam_rel"] + out["gt_cam_trans"][:, :, None]
    f = out["focal"][:, None, None, None]
    px = f * kp_cam[..., :2] / kp_cam[..., 2:] + out["principal"][:, None, None]
    assert torch.allclose(px[vis], out["kp2d"][..., :2][vis], atol=0.05)
    # Canonical world: starts at the origin (horizontally), floor near y = 0, Y up.
    assert torch.allclose(out["gt_trans_world"][:, 0, [0, 2]], torch.zeros(4, 2), atol=1e-5)
    assert (out["gt_joints_world"][..., 15, 1] > out["gt_joints_world"][..., 0, 1]).all()  # head above pelvis


def test_contact_labels_follow_foot_speed() -> None:
    """A body gliding at 1 m/s has no contact; standing still, the feet on the floor are in contact."""
    gen = SyntheticGenerator(SynthConfig(random_betas=0.0))
    gliding = gen(MotionWindows(torch.eye(3).expand(1, 30, 24, 3, 3).clone(), _walk(1, 30).trans * torch.tensor([1.0, 1, 1]), torch.zeros(1, 10)), np.random.default_rng(0))
    standing_trans = torch.zeros(1, 30, 3)
    standing_trans[..., 1] = 0.92
    standing = gen(MotionWindows(torch.eye(3).expand(1, 30, 24, 3, 3).clone(), standing_trans, torch.zeros(1, 10)), np.random.default_rng(0))
    assert gliding["gt_contact"].mean() < 0.05
    assert standing["gt_contact"].mean() > 0.95


def test_motion_bank_windows_with_speed() -> None:
    n = 200
    aa = np.zeros((n, 24, 3), np.float32)
    aa[:, 1, 0] = np.linspace(0, 1, n)
    trans = np.zeros((n, 3), np.float32)
    trans[:, 2] = np.arange(n) / 30
    bank = MotionBank({"pose_aa": aa, "trans": trans, "betas": np.zeros((n, 10), np.float32),
                       "clip_start": np.array([0, 100]), "clip_len": np.array([100, 100])})
    win = bank.sample(np.random.default_rng(0), 8, 20, speed=(1.5, 1.5))
    step = win.trans[:, 1:, 2] - win.trans[:, :-1, 2]
    assert torch.allclose(step, torch.full_like(step, 1.5 / 30), atol=1e-4)  # 1.5x playback speed
    assert win.pose_rotmat.shape == (8, 20, 24, 3, 3)
