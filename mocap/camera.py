"""Camera geometry and the network's input normalizer (docs/architecture.md, "Camera and input normalization").

Camera frame: OpenCV (X right, Y down, Z forward), pixels. Every function takes torch tensors or numpy arrays:
with any tensor argument it runs (and returns) torch, so it can sit inside a network or its ONNX graph; with
numpy-only arguments it runs numpy and never loads torch (`mocap.arrays`). Float dtypes are kept, others become
float64. `cam_crop_to_full` is pure tensor ops for the exported graph.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mocap.arrays import as_float, cast, clamp_min, is_tracing, like, namespace, sum_last, unbind
from mocap.model.state import INPUT_DIM_NO_INTERVAL, X_KEYPOINTS
from mocap.rotations import IDENTITY_6D, matrix_to_rot6d
from mocap.skeleton import NUM_KEYPOINTS

if TYPE_CHECKING:
    import torch

    ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
else:
    ArrayT = TypeVar("ArrayT")

#: Length of one frame's normalized input: 21 x (x, y, visible) + 3 CLIFF terms (`mocap.model.state` layout).
NORMALIZED_DIM = INPUT_DIM_NO_INTERVAL
#: Keypoints whose confidence is below this are masked (coordinates zeroed, visible flag 0).
CONF_THRESHOLD = 0.3
_MIN_DEPTH = 1e-6
#: Axis lengths `look_at` floors before dividing (a camera on its target), and below which it calls a view vertical.
_LOOK_AT_EPS = 1e-6
_VERTICAL_EPS = 1e-9
#: Frame intervals (s) below this are floored when omega divides by one (a repeated timestamp must not explode).
OMEGA_MIN_DT = 1e-4


def _check_last(x: Any, size: int, name: str, xp: ModuleType) -> None:
    if is_tracing(xp):  # shapes are symbolic while exporting; the eager path checks them
        return
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """K (3, 3) float64 when no calibration is known: f = sqrt(W^2 + H^2), principal point at the centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = math.hypot(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def check_intrinsics(K: Any) -> np.ndarray:
    """A caller's calibration as a float64 (3, 3) K, or ValueError (not a K, or a focal length not positive)."""
    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or not k[0, 0] > 0 or not k[1, 1] > 0:
        raise ValueError(f"intrinsics must be a (3, 3) K with positive focal lengths, got {k}")
    return k


def project(points_cam: ArrayT, K: ArrayT) -> ArrayT:
    """points_cam (..., N, 3) camera frame, K (3, 3) or (..., 3, 3) -> pixels (..., N, 2).

    Points at or behind the camera plane (Z <= 1e-6) project to NaN rather than to a mirrored pixel.
    """
    xp = namespace(points_cam, K)
    pts = as_float(points_cam, xp)
    _check_last(pts, 3, "points_cam", xp)
    k = like(K, pts, xp)
    if k.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {tuple(k.shape)}")
    hom = (k[..., None, :, :] @ pts[..., None])[..., 0]  # (..., N, 3)
    uv = hom[..., :2] / hom[..., 2:]
    return xp.where(pts[..., 2:] > _MIN_DEPTH, uv, xp.full_like(uv, float("nan")))


def backproject(uv: ArrayT, depth: ArrayT, K: ArrayT) -> ArrayT:
    """Inverse of `project`: pixels uv (..., N, 2) at camera depth Z (..., N) -> points (..., N, 3)."""
    xp = namespace(uv, depth, K)
    pix = as_float(uv, xp)
    _check_last(pix, 2, "uv", xp)
    z = like(depth, pix, xp)
    k_inv = xp.linalg.inv(like(K, pix, xp))
    hom = xp.concatenate((pix, xp.ones_like(pix[..., :1])), axis=-1)
    rays = (k_inv[..., None, :, :] @ hom[..., None])[..., 0]  # (..., N, 3) with z = 1
    return rays * z[..., None]


def bbox_from_keypoints(kp2d: ArrayT, conf_threshold: float = CONF_THRESHOLD, scale: float = 1.2) -> ArrayT:
    """kp2d (..., K, 3) pixels + confidence -> square box (..., 3) [cx, cy, size] in pixels.

    The box spans the visible keypoints (conf >= threshold, finite), its side is the larger extent times
    `scale`. NaN where fewer than 2 keypoints are visible or they coincide (no usable box).
    """
    xp = namespace(kp2d)
    kp = as_float(kp2d, xp)
    _check_last(kp, 3, "kp2d", xp)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    xy, conf = kp[..., :2], kp[..., 2]
    visible = (conf >= conf_threshold) & xp.isfinite(xy).all(axis=-1)  # (..., K)
    inf = xp.full_like(xy, float("inf"))
    lo = xp.amin(xp.where(visible[..., None], xy, inf), axis=-2)
    hi = xp.amax(xp.where(visible[..., None], xy, -inf), axis=-2)
    size = xp.amax(hi - lo, axis=-1) * scale
    box = xp.concatenate(((lo + hi) / 2, size[..., None]), axis=-1)
    usable = (visible.sum(-1) >= 2) & (size > 0)
    return xp.where(usable[..., None], box, xp.full_like(box, float("nan")))


def _crop_camera_args(values: Any, name: str, bbox: Any, focal: Any, principal: Any
                      ) -> tuple[ModuleType, Any, Any, Any, Any]:
    """The checked arguments of the crop <-> full camera maps: (xp, values (..., 3), bbox (..., 3), focal,
    principal (..., 2)), all in values' library and dtype."""
    xp = namespace(values, bbox, focal, principal)
    v = as_float(values, xp)
    _check_last(v, 3, name, xp)
    box = like(bbox, v, xp)
    _check_last(box, 3, "bbox", xp)
    f, pp = like(focal, v, xp), like(principal, v, xp)
    _check_last(pp, 2, "principal", xp)
    return xp, v, box, f, pp


def cam_crop_to_full(cam_wp: ArrayT, bbox: ArrayT, focal: Any, principal: Any) -> ArrayT:
    """CLIFF: weak-perspective crop camera (..., 3) [s, tx, ty] -> root translation in the full camera (..., 3).

    tz = 2 f / (s size), tx_full = tx + 2 (cx - px) / (s size), ty_full = ty + 2 (cy - py) / (s size).
    bbox (..., 3) [cx, cy, size]; focal scalar or (...); principal (2,) or (..., 2). Pure tensor ops (ONNX);
    numbers and sequences become graph constants. The caller keeps s > 0 (e.g. softplus): the formula means
    nothing else.
    """
    xp, cam, box, f, pp = _crop_camera_args(cam_wp, "cam_wp", bbox, focal, principal)
    s, tx, ty = unbind(cam)
    cx, cy, size = unbind(box)
    s_size = s * size
    return xp.stack(
        (tx + 2.0 * (cx - pp[..., 0]) / s_size, ty + 2.0 * (cy - pp[..., 1]) / s_size, 2.0 * f / s_size), axis=-1
    )


def full_to_cam_crop(trans: ArrayT, bbox: ArrayT, focal: Any, principal: Any) -> ArrayT:
    """Inverse of `cam_crop_to_full`: camera-frame translation (..., 3) -> [s, tx, ty] (..., 3); needs tz > 0."""
    xp, t, box, f, pp = _crop_camera_args(trans, "trans", bbox, focal, principal)
    x, y, z = unbind(t)
    cx, cy, size = unbind(box)
    return xp.stack(
        (2.0 * f / (z * size), x - (cx - pp[..., 0]) * z / f, y - (cy - pp[..., 1]) * z / f), axis=-1
    )


def look_at(eye: ArrayT, target: Any) -> ArrayT:
    """World->camera rotation (..., 3, 3) of an OpenCV camera at eye (..., 3) looking at target (..., 3), world
    Y up, no roll: rows (x right, y down, z forward). Written once for the training cameras
    (`mocap.data.virtual_camera`, torch batches) and the demo source (`stream.sources.synthetic`, numpy).

    y is world down with its component along z removed; raises ValueError (eager only) when a view is vertical,
    where roll is undefined."""
    xp = namespace(eye, target)
    e = as_float(eye, xp)
    _check_last(e, 3, "eye", xp)
    z = like(target, e, xp) - e
    z = z / clamp_min(xp.linalg.norm(z, axis=-1, keepdims=True), _LOOK_AT_EPS)
    down = like((0.0, -1.0, 0.0), z, xp)
    y = down - sum_last(down * z) * z
    y_len = xp.linalg.norm(y, axis=-1, keepdims=True)
    if not is_tracing(xp) and bool((y_len < _VERTICAL_EPS).any()):
        raise ValueError("look_at: viewing direction is vertical, roll is undefined")
    y = y / clamp_min(y_len, _LOOK_AT_EPS)
    x = np.cross(y, z) if xp is np else xp.linalg.cross(y, z)  # torch's own cross: the training cameras' bits
    return xp.stack((x, y, z), axis=-2)


# ------------------------------------------------------------------------------------------------ camera omega
def frame_rotation(rotation: ArrayT, rotation_prev: ArrayT) -> ArrayT:
    """World->camera rotations R_t, R_{t-1} (..., 3, 3) -> Q_t = R_t R_{t-1}^T, the rotation between two frames in
    camera axes (a static world direction seen at t-1 maps onto the same direction seen at t)."""
    xp = namespace(rotation, rotation_prev)
    return as_float(rotation, xp) @ xp.swapaxes(as_float(rotation_prev, xp), -1, -2)


def camera_omega(q: ArrayT, rate: Any = None, dt: Any = None) -> ArrayT:
    """The camera angular velocity the network reads (omega), written once for training, the live camera-motion
    providers and the demo source: q (..., 3, 3) = `frame_rotation` Q_t -> (6D(Q_t) - 6D(I)) * rate (..., 6).

    rate: frames per second (a number), or dt: seconds since the previous frame (...), floored at
    OMEGA_MIN_DT, divided by. Zeros mean a static camera. The dtype of q is kept (float64 for numpy input)."""
    xp = namespace(q, dt)
    q = as_float(q, xp)
    delta = matrix_to_rot6d(q) - like(IDENTITY_6D, q, xp)
    if dt is not None:
        return delta / clamp_min(dt, OMEGA_MIN_DT)[..., None]
    if rate is None:
        raise ValueError("camera_omega needs rate or dt")
    return delta * rate


def normalize_keypoints(
    kp2d: ArrayT, bbox: ArrayT, focal: Any, principal: Any, conf_threshold: float = CONF_THRESHOLD
) -> ArrayT:
    """kp2d (..., 21, 3) pixels + confidence, bbox (..., 3) -> network input x (..., 66).

    Per keypoint ((u - cx) / (size / 2), (v - cy) / (size / 2), visible), coordinates zeroed where not visible
    (conf < threshold or non-finite), flattened to 63, then the CLIFF terms ((cx - px) / f, (cy - py) / f,
    size / f) that tell the network where the crop sits in the camera's field of view. Invariant to translating
    (with the principal point) and scaling (with the focal length) the image. Raises ValueError for a box that
    is NaN or empty: a frame without a box has no meaningful input and must be handled by the caller.
    """
    xp = namespace(kp2d, bbox, focal, principal)
    kp = as_float(kp2d, xp)
    if tuple(kp.shape[-2:]) != (NUM_KEYPOINTS, 3):
        raise ValueError(f"kp2d must be (..., {NUM_KEYPOINTS}, 3), got {tuple(kp.shape)}")
    box = like(bbox, kp, xp)
    _check_last(box, 3, "bbox", xp)
    f, pp = like(focal, kp, xp), like(principal, kp, xp)
    _check_last(pp, 2, "principal", xp)
    if not bool(xp.isfinite(box).all()) or not bool((box[..., 2] > 0).all()):
        raise ValueError("bbox must be finite with size > 0 (bbox_from_keypoints gives NaN when too few points)")
    if not bool(xp.isfinite(f).all()) or not bool((f > 0).all()):
        raise ValueError("focal must be finite and positive")
    cx, cy, size = (c[..., None] for c in unbind(box))  # (..., 1) each
    visible = (kp[..., 2] >= conf_threshold) & xp.isfinite(kp[..., :2]).all(axis=-1)  # (..., 21)
    u = (kp[..., 0] - cx) / (size / 2)
    v = (kp[..., 1] - cy) / (size / 2)
    zero = xp.zeros_like(u)
    per_kp = xp.stack((xp.where(visible, u, zero), xp.where(visible, v, zero), cast(visible, kp)), axis=-1)
    cx, cy, size = unbind(box)
    cliff = xp.stack(((cx - pp[..., 0]) / f, (cy - pp[..., 1]) / f, size / f), axis=-1)
    return xp.concatenate((per_kp.reshape(per_kp.shape[:-2] + (X_KEYPOINTS.stop,)), cliff), axis=-1)
