"""Numpy-native SO(3) maps for the per-frame solver: exp, log and the left Jacobian.

`mocap.rotations` is the project's rotation module (numpy or torch); its forms are the ones an exported graph
needs (series branches through `where`, the log through Shepperd's quaternion) and cost two to three times these
closed forms per call, which a refinement iteration cannot spare. These are the same maps (tests check
`exp`/`log` agree with `mocap.rotations.axis_angle_to_matrix` / `matrix_to_axis_angle`), plus the left Jacobian
that the Gauss-Newton steps need and `mocap.rotations` has no use for.
"""
from __future__ import annotations

import numpy as np

_SMALL2 = 1e-8  # floor of theta^2 in the closed forms (see _coefficients)


def hat(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) skew matrices [v]x (hat(a) @ b == cross(a, b))."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    _add_hat(out, v, 1.0)
    return out


#: [v]x as (flat index in the 3x3, component of v, sign): (0,1) -z, (0,2) +y, (1,0) +z, (1,2) -x, (2,0) -y, (2,1) +x.
_HAT_DST = np.array([1, 2, 3, 5, 6, 7])
_HAT_SRC = np.array([2, 1, 2, 0, 1, 0])
_HAT_SIGN = np.array([-1.0, 1.0, 1.0, -1.0, -1.0, 1.0])
_DIAG9 = np.array([0, 4, 8])


def _add_hat(out: np.ndarray, v: np.ndarray, scale: np.ndarray | float) -> None:
    """out (..., 3, 3) C-contiguous += scale (...,) * [v]x, in place (one gather, one scatter-add)."""
    flat = out.reshape(out.shape[:-2] + (9,))
    flat[..., _HAT_DST] += v[..., _HAT_SRC] * (np.asarray(scale)[..., None] * _HAT_SIGN)


def _coefficients(aa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """theta^2 (exact), sin(t)/t, (1 - cos t)/t^2, (t - sin t)/t^3 for theta = |aa|; each (...,).

    theta^2 is floored at 1e-8: below that the closed forms lose digits, and the coefficients there differ from
    their limits by O(theta^2) = 1e-8 relative, far below what the solver resolves (no branch, fewer numpy ops).
    """
    raw = np.einsum("...i,...i->...", aa, aa)
    t2 = np.maximum(raw, _SMALL2)
    t = np.sqrt(t2)
    s = np.sin(t)
    return raw, s / t, (1.0 - np.cos(t)) / t2, (t - s) / (t2 * t)


def exp(aa: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) radians -> matrices (..., 3, 3) (Rodrigues: I + a K + b K^2, K^2 = v v^T - t^2 I)."""
    t2, a, b, _ = _coefficients(aa)
    out = (b[..., None, None] * aa[..., :, None]) * aa[..., None, :]
    out.reshape(out.shape[:-2] + (9,))[..., _DIAG9] += (1.0 - b * t2)[..., None]
    _add_hat(out, aa, a)
    return out


def left_jacobian(aa: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) J_l with exp(aa + d) ~= exp(J_l(aa) d) exp(aa) for small d
    (I + b K + c K^2 with b = (1 - cos t)/t^2, c = (t - sin t)/t^3)."""
    t2, _, b, c = _coefficients(aa)
    out = (c[..., None, None] * aa[..., :, None]) * aa[..., None, :]
    out.reshape(out.shape[:-2] + (9,))[..., _DIAG9] += (1.0 - c * t2)[..., None]
    _add_hat(out, aa, b)
    return out


def log(m: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) -> rotation vectors (..., 3) with angle in [0, pi]; stable near 0 and near pi."""
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cos = np.clip((tr - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    skew = np.stack((m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), -1)
    sin = np.sin(theta)
    near_pi = cos < -0.99
    # Away from pi: axis * theta = skew * theta / (2 sin theta); theta / sin theta -> 1 near 0.
    scale = np.where(theta < 1e-4, 0.5 + theta**2 / 12.0, theta / (2.0 * np.where(near_pi | (sin == 0), 1.0, sin)))
    out = skew * scale[..., None]
    if np.any(near_pi):
        # Near pi the skew part vanishes: the axis comes from the symmetric part, n n^T = (sym - cos I) / (1 - cos).
        sym = (m + np.swapaxes(m, -1, -2)) / 2.0
        b = (sym - cos[..., None, None] * np.eye(3)) / np.maximum(1.0 - cos, 1e-12)[..., None, None]
        diag = np.stack((b[..., 0, 0], b[..., 1, 1], b[..., 2, 2]), -1)
        col = np.argmax(diag, axis=-1)
        axis = np.take_along_axis(b, col[..., None, None], axis=-1)[..., 0]
        axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
        # The sign follows the (small) skew part, so the result is continuous through the switch.
        sign = np.where(np.einsum("...i,...i->...", axis, skew) < 0, -1.0, 1.0)
        out = np.where(near_pi[..., None], axis * (sign * theta)[..., None], out)
    return out
