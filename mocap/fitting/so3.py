"""Numpy-native SO(3) maps for the per-frame solver: exp, log, the left Jacobian and hat.

`mocap.rotations` is the project's rotation module (numpy or torch); its forms are the ones an exported graph
needs (series branches through `where`, the log through Shepperd's quaternion) and cost two to three times these
closed forms per call, which a refinement iteration cannot spare. These are the same maps (tests check
`exp`/`log` agree with `mocap.rotations.axis_angle_to_matrix` / `matrix_to_axis_angle`), plus the left Jacobian
that the Gauss-Newton steps need and `mocap.rotations` has no use for.

On one person-frame (24 rotations) every numpy call costs about a microsecond whatever its size, so each map is
written as few calls as it can be: the 3x3 results are linear in a handful of per-rotation features (1, v, v v^T)
and come out of one product with a constant (13, 9) matrix instead of scattered in-place adds.
"""
from __future__ import annotations

import numpy as np

_SMALL2 = 1e-8  # floor of theta^2 in the closed forms (see _coefficients)

#: [v]x as (flat index in the 3x3, component of v, sign): (0,1) -z, (0,2) +y, (1,0) +z, (1,2) -x, (2,0) -y, (2,1) +x.
HAT_DST = np.array([1, 2, 3, 5, 6, 7])
HAT_SRC = np.array([2, 1, 2, 0, 1, 0])
HAT_SIGN = np.array([-1.0, 1.0, 1.0, -1.0, -1.0, 1.0])

#: v (3,) @ HAT9 = [v]x flattened (9,).
HAT9 = np.zeros((3, 9))
HAT9[HAT_SRC, HAT_DST] = HAT_SIGN

#: (alpha, beta v (3), gamma v v^T (9)) @ _FORM = alpha I + beta [v]x + gamma v v^T, flattened (9,).
_FORM = np.zeros((13, 9))
_FORM[0, [0, 4, 8]] = 1.0
_FORM[1:4] = HAT9
_FORM[4:] = np.eye(9)

#: m (..., 9) flattened @ _TRACE = trace; @ _SKEW = (m21 - m12, m02 - m20, m10 - m01) = 2 sin(theta) axis.
_TRACE = np.array([1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
_SKEW = np.zeros((9, 3))
_SKEW[[7, 2, 3], [0, 1, 2]] = 1.0
_SKEW[[5, 6, 1], [0, 1, 2]] = -1.0


def hat(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) skew matrices [v]x (hat(a) @ b == cross(a, b))."""
    return (v @ HAT9).reshape(v.shape[:-1] + (3, 3))


def _coefficients(aa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta^2 (exact), floored theta^2 and theta, each (...,), for theta = |aa|.

    theta^2 is floored at 1e-8: below that the closed forms lose digits, and the coefficients there differ from
    their limits by O(theta^2) = 1e-8 relative, far below what the solver resolves (no branch, fewer numpy ops).
    """
    raw = np.add.reduce(aa * aa, axis=-1)
    t2 = np.maximum(raw, _SMALL2)
    return raw, t2, np.sqrt(t2)


def _form(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray, aa: np.ndarray) -> np.ndarray:
    """alpha I + beta [aa]x + gamma aa aa^T (..., 3, 3), as one product of the features with `_FORM`."""
    lead = aa.shape[:-1]
    feat = np.empty(lead + (13,))
    feat[..., 0] = alpha
    np.multiply(beta[..., None], aa, out=feat[..., 1:4])
    np.multiply((gamma[..., None] * aa)[..., :, None], aa[..., None, :], out=feat[..., 4:].reshape(lead + (3, 3)))
    return (feat @ _FORM).reshape(lead + (3, 3))


def exp(aa: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) radians -> matrices (..., 3, 3) (Rodrigues: I + a K + b K^2, K^2 = v v^T - t^2 I)."""
    raw, t2, t = _coefficients(aa)
    b = (1.0 - np.cos(t)) / t2
    return _form(1.0 - b * raw, np.sin(t) / t, b, aa)


def left_jacobian(aa: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) J_l with exp(aa + d) ~= exp(J_l(aa) d) exp(aa) for small d
    (I + b K + c K^2 with b = (1 - cos t)/t^2, c = (t - sin t)/t^3)."""
    raw, t2, t = _coefficients(aa)
    c = (t - np.sin(t)) / (t2 * t)
    return _form(1.0 - c * raw, (1.0 - np.cos(t)) / t2, c, aa)


def log(m: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) -> rotation vectors (..., 3) with angle in [0, pi]; stable near 0 and near pi."""
    flat = m.reshape(m.shape[:-2] + (9,))
    cos = np.minimum(np.maximum((flat @ _TRACE - 1.0) * 0.5, -1.0), 1.0)
    theta = np.arccos(cos)
    skew = flat @ _SKEW
    # Away from pi: axis * theta = skew * theta / (2 sin theta). Below theta = 1e-4 the factor is its limit 1/2 to
    # 1e-9 (float32 inputs round small rotations' traces to 3, theta to 0: the skew part still carries them).
    floor = np.maximum(theta, 1e-4)
    out = skew * (0.5 * floor / np.sin(floor))[..., None]
    near_pi = cos < -0.99
    if near_pi.any():
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
