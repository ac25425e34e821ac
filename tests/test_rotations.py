"""mocap.rotations against scipy's Rotation and against itself (round trips), torch and numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mocap import rotations as rot

RNG = np.random.default_rng(7)


def _random_axis_angle(n: int) -> np.ndarray:
    """Axis-angle with angles spread over [0, pi), including near 0 and near pi."""
    axis = RNG.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.concatenate((
        RNG.uniform(0.0, np.pi - 1e-2, n - 12),
        [0.0, 1e-9, 1e-7, 1e-5, 1e-4, 1e-3],
        np.pi - np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]),
    ))
    return axis * angle[:, None]


AA = _random_axis_angle(400)


def _quat_close(q1: np.ndarray, q2: np.ndarray, atol: float) -> bool:
    """Quaternions equal up to the q / -q double cover."""
    same = np.abs(q1 - q2).max(-1)
    flipped = np.abs(q1 + q2).max(-1)
    return bool(np.all(np.minimum(same, flipped) < atol))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_axis_angle_to_matrix_matches_scipy(kind: str) -> None:
    x = AA if kind == "numpy" else torch.from_numpy(AA)
    m = rot.axis_angle_to_matrix(x)
    assert isinstance(m, type(x))
    np.testing.assert_allclose(np.asarray(m), Rotation.from_rotvec(AA).as_matrix(), atol=1e-10)


def test_matrices_are_rotations() -> None:
    m = rot.axis_angle_to_matrix(torch.from_numpy(AA).float())
    eye = torch.eye(3).expand_as(m)
    torch.testing.assert_close(m @ m.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(len(AA)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-8), (np.float32, 2e-5)])
def test_axis_angle_round_trip_incl_near_zero_and_pi(dtype, atol: float) -> None:
    aa = AA.astype(dtype)
    back = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(aa))
    assert back.dtype == dtype
    tol = 50 * np.finfo(dtype).eps
    np.testing.assert_allclose(rot.axis_angle_to_matrix(back), rot.axis_angle_to_matrix(aa), atol=tol)
    # The vector is unique below pi; float32 cannot tell pi - 1e-5 from pi, so there only the rotation is checked.
    unique = np.linalg.norm(AA, axis=1) < (np.pi - 1e-7 if dtype == np.float64 else np.pi - 1e-2)
    np.testing.assert_allclose(back[unique], aa[unique], atol=atol)


def test_axis_angle_round_trip_exactly_pi_gives_same_rotation() -> None:
    axis = RNG.standard_normal((50, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    m = rot.axis_angle_to_matrix(np.pi * axis)
    back = rot.matrix_to_axis_angle(m)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), np.pi, atol=1e-7)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(back), m, atol=1e-7)


def test_near_zero_is_exact_to_first_order() -> None:
    aa = np.array([[1e-9, -2e-9, 3e-9], [0.0, 0.0, 0.0]])
    m = rot.axis_angle_to_matrix(aa)
    skew = np.array([[0, -3e-9, -2e-9], [3e-9, 0, -1e-9], [2e-9, 1e-9, 0]])
    np.testing.assert_allclose(m[0], np.eye(3) + skew, atol=1e-15)
    np.testing.assert_allclose(rot.matrix_to_axis_angle(m), aa, atol=1e-15)


def test_gradient_finite_at_zero() -> None:
    aa = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    rot.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_quaternion_conventions_match_scipy(kind: str) -> None:
    x = AA if kind == "numpy" else torch.from_numpy(AA)
    q = np.asarray(rot.axis_angle_to_quaternion(x))
    assert _quat_close(q, Rotation.from_rotvec(AA).as_quat(), atol=1e-10)  # scipy is (x, y, z, w) too
    m = Rotation.from_rotvec(AA).as_matrix()
    q_from_m = np.asarray(rot.matrix_to_quaternion(m if kind == "numpy" else torch.from_numpy(m)))
    assert np.all(q_from_m[:, 3] >= 0)
    assert _quat_close(q_from_m, q, atol=1e-8)
    np.testing.assert_allclose(rot.quaternion_to_matrix(q), m, atol=1e-10)


def test_quaternion_round_trips_and_normalisation() -> None:
    q = RNG.standard_normal((300, 4)) * RNG.uniform(0.1, 10, (300, 1))  # not unit
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    m = rot.quaternion_to_matrix(q)
    np.testing.assert_allclose(m, Rotation.from_quat(unit).as_matrix(), atol=1e-10)
    assert _quat_close(rot.matrix_to_quaternion(m), unit, atol=1e-8)
    aa = rot.quaternion_to_axis_angle(q)
    assert np.all(np.linalg.norm(aa, axis=1) <= np.pi + 1e-9)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(aa), m, atol=1e-8)


def test_matrix_to_quaternion_stable_near_pi_float32() -> None:
    near_pi = AA[-6:].astype(np.float32)
    m = rot.axis_angle_to_matrix(torch.from_numpy(near_pi))
    np.testing.assert_allclose(rot.quaternion_to_matrix(rot.matrix_to_quaternion(m)).numpy(), m.numpy(), atol=1e-5)


def test_rot6d_round_trip_and_gram_schmidt() -> None:
    m = rot.axis_angle_to_matrix(torch.from_numpy(AA))
    r6 = rot.matrix_to_rot6d(m)
    assert r6.shape == (len(AA), 6)
    torch.testing.assert_close(r6[:, :3], m[:, :, 0])  # first column, then second
    torch.testing.assert_close(rot.rot6d_to_matrix(r6), m)
    noisy = r6 * 3.0 + 0.1 * torch.randn_like(r6)
    mn = rot.rot6d_to_matrix(noisy)
    torch.testing.assert_close(mn @ mn.transpose(-1, -2), torch.eye(3, dtype=mn.dtype).expand_as(mn))
    torch.testing.assert_close(torch.linalg.det(mn), torch.ones(len(AA), dtype=mn.dtype))
    # The first column keeps the first 6D vector's direction.
    torch.testing.assert_close(mn[:, :, 0], noisy[:, :3] / noisy[:, :3].norm(dim=-1, keepdim=True))
    np.testing.assert_allclose(rot.rot6d_to_axis_angle(rot.axis_angle_to_rot6d(AA[:-6])), AA[:-6], atol=1e-8)


def test_euler_order_zxy_is_rz_rx_ry() -> None:
    angles = RNG.uniform(-180, 180, (100, 3))
    m = rot.euler_to_matrix(angles, "ZXY")
    rz = Rotation.from_euler("z", angles[:, 0:1], degrees=True).as_matrix()
    rx = Rotation.from_euler("x", angles[:, 1:2], degrees=True).as_matrix()
    ry = Rotation.from_euler("y", angles[:, 2:3], degrees=True).as_matrix()
    np.testing.assert_allclose(m, rz @ rx @ ry, atol=1e-12)
    # scipy's upper-case orders are intrinsic: the same composition.
    for order in ("ZXY", "XYZ", "YZX", "ZYX"):
        np.testing.assert_allclose(
            rot.euler_to_matrix(angles, order), Rotation.from_euler(order, angles, degrees=True).as_matrix(), atol=1e-12
        )
    radians = rot.euler_to_matrix(torch.from_numpy(np.deg2rad(angles)), "zxy", degrees=False)
    np.testing.assert_allclose(radians.numpy(), m, atol=1e-12)


@pytest.mark.parametrize("order", ["ZX", "ZXW", "ZXYX"])
def test_euler_bad_order_raises(order: str) -> None:
    with pytest.raises(ValueError, match="Euler order"):
        rot.euler_to_matrix(np.zeros(3), order)


def test_rotation_angle() -> None:
    m = rot.axis_angle_to_matrix(AA)
    np.testing.assert_allclose(rot.rotation_angle(m), np.linalg.norm(AA, axis=1), atol=1e-6)
    np.testing.assert_allclose(rot.rotation_angle(np.swapaxes(m, -1, -2) @ m), 0.0, atol=1e-6)


def test_batched_leading_dims_kept() -> None:
    aa = torch.randn(2, 5, 24, 3)
    assert rot.axis_angle_to_matrix(aa).shape == (2, 5, 24, 3, 3)
    assert rot.axis_angle_to_quaternion(aa).shape == (2, 5, 24, 4)
    assert rot.axis_angle_to_rot6d(aa).shape == (2, 5, 24, 6)
