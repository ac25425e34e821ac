"""The one rotation module: axis-angle, quaternion (x, y, z, w), matrix, 6D, Euler and the Kabsch fit.

All functions are batched over leading dims and accept a torch tensor or a numpy array (returned in kind, the
float dtype kept). The maths is written once against `mocap.arrays.namespace`, so numpy callers (the live loop)
never load torch. They avoid ops ONNX cannot export (no torch.cross / atan2 branches on data) so networks may
call them.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from mocap.arrays import as_float, clamp_min, eye3, namespace, sum_last, take_along_axis, unbind

if TYPE_CHECKING:
    import torch

    ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
else:
    ArrayT = TypeVar("ArrayT")
_EPS = 1e-8
#: 6D of the identity rotation (`matrix_to_rot6d(eye(3))`): the rest value that residual 6D outputs and the camera
#: angular velocity (`mocap.camera.camera_omega`) are measured from.
IDENTITY_6D: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _cross(a: ArrayT, b: ArrayT) -> ArrayT:
    """Cross product over the last dim, written out so it exports to any ONNX opset."""
    ax, ay, az = unbind(a)
    bx, by, bz = unbind(b)
    return namespace(a).stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), axis=-1)


def _unit(v: ArrayT, xp: ModuleType) -> ArrayT:
    """v / |v| over the last dim (|v| floored at 1e-8)."""
    return v / clamp_min(xp.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def axis_angle_to_matrix(aa: ArrayT) -> ArrayT:
    """aa: (..., 3) rotation vector (radians) -> (..., 3, 3). Taylor-safe near zero."""
    xp = namespace(aa)
    aa = as_float(aa, xp)
    theta2 = sum_last(aa * aa)  # (..., 1)
    theta = xp.sqrt(theta2 + _EPS * _EPS)
    small = theta2 < 1e-6
    # sin(t)/t and (1-cos t)/t^2 with series fallbacks near t = 0.
    a = xp.where(small, 1.0 - theta2 / 6.0, xp.sin(theta) / theta)
    b = xp.where(small, 0.5 - theta2 / 24.0, (1.0 - xp.cos(theta)) / (theta * theta))
    x, y, z = unbind(aa)
    zero = xp.zeros_like(x)
    k = xp.stack((zero, -z, y, z, zero, -x, -y, x, zero), axis=-1).reshape(aa.shape[:-1] + (3, 3))
    return eye3(aa, xp) + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_quaternion(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 4) unit quaternion (x, y, z, w) with w >= 0.

    Picks the best-conditioned of the four Shepperd candidates per element, so it is stable near pi.
    """
    xp = namespace(m)
    m = as_float(m, xp)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * squares of each component, each candidate well conditioned when its component is large.
    cand = xp.stack(
        (
            xp.stack((1 + m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12), axis=-1),
            xp.stack((m01 + m10, 1 - m00 + m11 - m22, m12 + m21, m02 - m20), axis=-1),
            xp.stack((m02 + m20, m12 + m21, 1 - m00 - m11 + m22, m10 - m01), axis=-1),
            xp.stack((m21 - m12, m02 - m20, m10 - m01, 1 + m00 + m11 + m22), axis=-1),
        ),
        axis=-2,
    )  # (..., 4 candidates, 4 comps)
    diag = xp.stack((cand[..., 0, 0], cand[..., 1, 1], cand[..., 2, 2], cand[..., 3, 3]), axis=-1)
    best = xp.argmax(diag, axis=-1)  # (...)
    q = _unit(take_along_axis(cand, best[..., None, None], -2)[..., 0, :], xp)
    return xp.where(q[..., 3:4] < 0, -q, q)


def quaternion_to_matrix(q: ArrayT) -> ArrayT:
    """q: (..., 4) quaternion (x, y, z, w), need not be unit -> (..., 3, 3)."""
    xp = namespace(q)
    q = _unit(as_float(q, xp), xp)
    x, y, z, w = unbind(q)
    m = xp.stack(
        (
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ),
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def axis_angle_to_quaternion(aa: ArrayT) -> ArrayT:
    """aa: (..., 3) -> (..., 4) (x, y, z, w); series-safe near zero."""
    xp = namespace(aa)
    aa = as_float(aa, xp)
    theta2 = sum_last(aa * aa)
    theta = xp.sqrt(theta2 + _EPS * _EPS)
    small = theta2 < 1e-6
    s = xp.where(small, 0.5 - theta2 / 48.0, xp.sin(theta / 2) / theta)
    return xp.concatenate((aa * s, xp.cos(theta / 2)), axis=-1)


def quaternion_to_axis_angle(q: ArrayT) -> ArrayT:
    """q: (..., 4) (x, y, z, w) -> (..., 3) with angle in [0, pi]."""
    xp = namespace(q)
    q = _unit(as_float(q, xp), xp)
    q = xp.where(q[..., 3:4] < 0, -q, q)
    v, w = q[..., :3], q[..., 3:4]
    s = xp.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2 * xp.arctan2(s, w)
    small = s < 1e-6
    scale = xp.where(small, 2.0 / clamp_min(w, _EPS), angle / clamp_min(s, _EPS))
    return v * scale


def matrix_to_axis_angle(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 3)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def matrix_to_rot6d(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 6): first column then second column (docs/design.md's 6D)."""
    xp = namespace(m)
    m = as_float(m, xp)
    return xp.concatenate((m[..., :, 0], m[..., :, 1]), axis=-1)


def rot6d_to_matrix(r6: ArrayT) -> ArrayT:
    """r6: (..., 6) -> (..., 3, 3) by Gram-Schmidt; any non-degenerate 6D maps to a rotation."""
    xp = namespace(r6)
    r6 = as_float(r6, xp)
    a1, a2 = r6[..., :3], r6[..., 3:]
    b1 = _unit(a1, xp)
    a2 = a2 - sum_last(b1 * a2) * b1
    b2 = _unit(a2, xp)
    b3 = _cross(b1, b2)
    return xp.stack((b1, b2, b3), axis=-1)


def axis_angle_to_rot6d(aa: ArrayT) -> ArrayT:
    return matrix_to_rot6d(axis_angle_to_matrix(aa))


def rot6d_to_axis_angle(r6: ArrayT) -> ArrayT:
    return matrix_to_axis_angle(rot6d_to_matrix(r6))


def _axis_matrix(angle: ArrayT, axis: str) -> ArrayT:
    xp = namespace(angle)
    c, s = xp.cos(angle), xp.sin(angle)
    one, zero = xp.ones_like(angle), xp.zeros_like(angle)
    rows = {
        "X": (one, zero, zero, zero, c, -s, zero, s, c),
        "Y": (c, zero, s, zero, one, zero, -s, zero, c),
        "Z": (c, -s, zero, s, c, zero, zero, zero, one),
    }[axis]
    return xp.stack(rows, axis=-1).reshape(angle.shape + (3, 3))


def axis_rotation(angle: ArrayT, axis: int | str) -> ArrayT:
    """angle: (...) radians -> (..., 3, 3) rotation about one coordinate axis (0/1/2 or "X"/"Y"/"Z")."""
    return _axis_matrix(as_float(angle, namespace(angle)), "XYZ"[axis] if isinstance(axis, int) else axis.upper())


def euler_to_matrix(angles: ArrayT, order: str, degrees: bool = True) -> ArrayT:
    """angles: (..., 3) in the listed axis order, e.g. order="ZXY" -> R = Rz @ Rx @ Ry (BVH convention)."""
    order = order.upper()
    if len(order) != 3 or set(order) - set("XYZ"):
        raise ValueError(f"Euler order must be three of X/Y/Z, got {order!r}")
    angles = as_float(angles, namespace(angles))
    if degrees:
        angles = angles * (math.pi / 180.0)
    r = _axis_matrix(angles[..., 0], order[0])
    r = r @ _axis_matrix(angles[..., 1], order[1])
    return r @ _axis_matrix(angles[..., 2], order[2])


def rotation_angle(m: ArrayT) -> ArrayT:
    """Geodesic angle (radians) of rotation matrices (..., 3, 3); use on R_a^T R_b for an angular distance."""
    xp = namespace(m)
    m = as_float(m, xp)
    cos = ((m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]) - 1.0) / 2.0
    return xp.arccos(xp.clip(cos, -1.0, 1.0))


def kabsch_svd(cov: ArrayT) -> tuple[ArrayT, ArrayT]:
    """cov (..., 3, 3) = sum_i w_i b_i a_i^T -> (R (..., 3, 3), signed singular values (..., 3)).

    R is the proper rotation (det +1) maximizing tr(R^T cov), so b ~ R a (Kabsch / Umeyama: the smallest singular
    direction flips instead of reflecting); the signed singular values sum to that maximum (Umeyama's scale)."""
    xp = namespace(cov)
    cov = as_float(cov, xp)
    u, sig, vt = xp.linalg.svd(cov)
    d = xp.sign(xp.linalg.det(u @ vt))
    d = xp.where(d == 0, xp.ones_like(d), d)
    ones = xp.ones_like(d)
    flip = xp.stack((ones, ones, d), axis=-1)  # (..., 3)
    return (u * flip[..., None, :]) @ vt, sig * flip


def kabsch(cov: ArrayT) -> ArrayT:
    """cov (..., 3, 3) = sum_i w_i b_i a_i^T -> the proper rotation R (..., 3, 3) with b ~ R a (see kabsch_svd)."""
    return kabsch_svd(cov)[0]
