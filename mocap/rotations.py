"""The one rotation module: axis-angle, quaternion (x, y, z, w), matrix, 6D and Euler.

All functions are batched over leading dims and accept a torch tensor or a numpy array (returned in kind).
They avoid ops ONNX cannot export (no torch.cross / atan2 branches on data) so networks may call them.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
_EPS = 1e-8


def _numpy_in_numpy_out(fn: Callable) -> Callable:
    """Let a torch implementation serve numpy callers (float64 kept for precision)."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if isinstance(x, np.ndarray):
            out = fn(torch.from_numpy(np.ascontiguousarray(x)), *args, **kwargs)
            return out.numpy()
        return fn(x, *args, **kwargs)

    return wrapper


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last dim, written out so it exports to any ONNX opset."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), dim=-1)


@_numpy_in_numpy_out
def axis_angle_to_matrix(aa: ArrayT) -> ArrayT:
    """aa: (..., 3) rotation vector (radians) -> (..., 3, 3). Taylor-safe near zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True)  # (..., 1)
    theta = torch.sqrt(theta2 + _EPS * _EPS)
    small = theta2 < 1e-6
    # sin(t)/t and (1-cos t)/t^2 with series fallbacks near t = 0.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(aa.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


@_numpy_in_numpy_out
def matrix_to_quaternion(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 4) unit quaternion (x, y, z, w) with w >= 0.

    Picks the best-conditioned of the four Shepperd candidates per element, so it is stable near pi.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * squares of each component, each candidate well conditioned when its component is large.
    cand = torch.stack(
        (
            torch.stack((1 + m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12), -1),
            torch.stack((m01 + m10, 1 - m00 + m11 - m22, m12 + m21, m02 - m20), -1),
            torch.stack((m02 + m20, m12 + m21, 1 - m00 - m11 + m22, m10 - m01), -1),
            torch.stack((m21 - m12, m02 - m20, m10 - m01, 1 + m00 + m11 + m22), -1),
        ),
        dim=-2,
    )  # (..., 4 candidates, 4 comps)
    diag = torch.stack((cand[..., 0, 0], cand[..., 1, 1], cand[..., 2, 2], cand[..., 3, 3]), -1)
    best = diag.argmax(-1)  # (...)
    q = torch.gather(cand, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True).clamp_min(_EPS)
    return torch.where(q[..., 3:4] < 0, -q, q)


@_numpy_in_numpy_out
def quaternion_to_matrix(q: ArrayT) -> ArrayT:
    """q: (..., 4) quaternion (x, y, z, w), need not be unit -> (..., 3, 3)."""
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True).clamp_min(_EPS)
    x, y, z, w = q.unbind(-1)
    m = torch.stack(
        (
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ),
        dim=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


@_numpy_in_numpy_out
def axis_angle_to_quaternion(aa: ArrayT) -> ArrayT:
    """aa: (..., 3) -> (..., 4) (x, y, z, w); series-safe near zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + _EPS * _EPS)
    small = theta2 < 1e-6
    s = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(theta / 2) / theta)
    return torch.cat((aa * s, torch.cos(theta / 2)), dim=-1)


@_numpy_in_numpy_out
def quaternion_to_axis_angle(q: ArrayT) -> ArrayT:
    """q: (..., 4) (x, y, z, w) -> (..., 3) with angle in [0, pi]."""
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True).clamp_min(_EPS)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    v, w = q[..., :3], q[..., 3:4]
    s = torch.linalg.norm(v, dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, w)
    small = s < 1e-6
    scale = torch.where(small, 2.0 / w.clamp_min(_EPS), angle / s.clamp_min(_EPS))
    return v * scale


@_numpy_in_numpy_out
def matrix_to_axis_angle(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 3)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


@_numpy_in_numpy_out
def matrix_to_rot6d(m: ArrayT) -> ArrayT:
    """m: (..., 3, 3) -> (..., 6): first column then second column (DESIGN.md's 6D)."""
    return torch.cat((m[..., :, 0], m[..., :, 1]), dim=-1)


@_numpy_in_numpy_out
def rot6d_to_matrix(r6: ArrayT) -> ArrayT:
    """r6: (..., 6) -> (..., 3, 3) by Gram-Schmidt; any non-degenerate 6D maps to a rotation."""
    a1, a2 = r6[..., :3], r6[..., 3:]
    b1 = a1 / torch.linalg.norm(a1, dim=-1, keepdim=True).clamp_min(_EPS)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / torch.linalg.norm(a2, dim=-1, keepdim=True).clamp_min(_EPS)
    b3 = _cross(b1, b2)
    return torch.stack((b1, b2, b3), dim=-1)


@_numpy_in_numpy_out
def axis_angle_to_rot6d(aa: ArrayT) -> ArrayT:
    return matrix_to_rot6d(axis_angle_to_matrix(aa))


@_numpy_in_numpy_out
def rot6d_to_axis_angle(r6: ArrayT) -> ArrayT:
    return matrix_to_axis_angle(rot6d_to_matrix(r6))


def _axis_matrix(angle: torch.Tensor, axis: str) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "X": (one, zero, zero, zero, c, -s, zero, s, c),
        "Y": (c, zero, s, zero, one, zero, -s, zero, c),
        "Z": (c, -s, zero, s, c, zero, zero, zero, one),
    }[axis]
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


@_numpy_in_numpy_out
def axis_rotation(angle: ArrayT, axis: int | str) -> ArrayT:
    """angle: (...) radians -> (..., 3, 3) rotation about one coordinate axis (0/1/2 or "X"/"Y"/"Z")."""
    return _axis_matrix(angle, "XYZ"[axis] if isinstance(axis, int) else axis.upper())


@_numpy_in_numpy_out
def euler_to_matrix(angles: ArrayT, order: str, degrees: bool = True) -> ArrayT:
    """angles: (..., 3) in the listed axis order, e.g. order="ZXY" -> R = Rz @ Rx @ Ry (BVH convention)."""
    order = order.upper()
    if len(order) != 3 or set(order) - set("XYZ"):
        raise ValueError(f"Euler order must be three of X/Y/Z, got {order!r}")
    if degrees:
        angles = angles * (torch.pi / 180.0)
    r = _axis_matrix(angles[..., 0], order[0])
    r = r @ _axis_matrix(angles[..., 1], order[1])
    return r @ _axis_matrix(angles[..., 2], order[2])


@_numpy_in_numpy_out
def rotation_angle(m: ArrayT) -> ArrayT:
    """Geodesic angle (radians) of rotation matrices (..., 3, 3); use on R_a^T R_b for an angular distance."""
    cos = ((m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]) - 1.0) / 2.0
    return torch.arccos(cos.clamp(-1.0, 1.0))
