"""Camera geometry and the network's input normalizer (docs/architecture.md, "Camera and input normalization").

Camera frame: OpenCV (X right, Y down, Z forward), pixels. Every function takes torch tensors or numpy arrays:
with any tensor argument it runs (and returns) torch, so it can sit inside a network or its ONNX graph; with
numpy-only arguments it returns numpy. `cam_crop_to_full` is pure torch ops for the exported graph.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import Tensor

from mocap.skeleton import NUM_KEYPOINTS

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)

#: Length of one frame's normalized input: 21 x (x, y, visible) + 3 CLIFF terms.
NORMALIZED_DIM = 3 * NUM_KEYPOINTS + 3
#: Keypoints whose confidence is below this are masked (coordinates zeroed, visible flag 0).
CONF_THRESHOLD = 0.3
_MIN_DEPTH = 1e-6


def _torch_or_numpy(fn: Callable) -> Callable:
    """Run the torch implementation; return numpy when no argument is a tensor (float dtypes kept)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(v, Tensor) for v in (*args, *kwargs.values())):
            return fn(*args, **kwargs)

        def to_torch(v: Any) -> Any:
            if not isinstance(v, np.ndarray):
                return v
            return torch.from_numpy(np.ascontiguousarray(v if v.dtype.kind == "f" else v.astype(np.float64)))

        out = fn(*(to_torch(a) for a in args), **{k: to_torch(v) for k, v in kwargs.items()})
        return out.numpy()

    return wrapper


def _main(x: Any) -> Tensor:
    """The leading array argument as a floating tensor."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.float64)


def _like(x: Any, ref: Tensor) -> Tensor:
    """A secondary argument (number, sequence, array or tensor) in ref's dtype and device."""
    if isinstance(x, Tensor):
        return x.to(dtype=ref.dtype, device=ref.device)
    return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)


def _check_last(x: Tensor, size: int, name: str) -> None:
    if torch.jit.is_tracing():  # shapes are symbolic while exporting; the eager path checks them
        return
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """K (3, 3) float64 when no calibration is known: f = sqrt(W^2 + H^2), principal point at the centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = math.hypot(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


@_torch_or_numpy
def project(points_cam: ArrayT, K: ArrayT) -> ArrayT:
    """points_cam (..., N, 3) camera frame, K (3, 3) or (..., 3, 3) -> pixels (..., N, 2).

    Points at or behind the camera plane (Z <= 1e-6) project to NaN rather than to a mirrored pixel.
    """
    pts = _main(points_cam)
    _check_last(pts, 3, "points_cam")
    k = _like(K, pts)
    if k.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {tuple(k.shape)}")
    hom = (k[..., None, :, :] @ pts[..., None])[..., 0]  # (..., N, 3)
    uv = hom[..., :2] / hom[..., 2:]
    return torch.where(pts[..., 2:] > _MIN_DEPTH, uv, torch.full_like(uv, float("nan")))


@_torch_or_numpy
def backproject(uv: ArrayT, depth: ArrayT, K: ArrayT) -> ArrayT:
    """Inverse of `project`: pixels uv (..., N, 2) at camera depth Z (..., N) -> points (..., N, 3)."""
    pix = _main(uv)
    _check_last(pix, 2, "uv")
    z = _like(depth, pix)
    k_inv = torch.linalg.inv(_like(K, pix))
    hom = torch.cat((pix, torch.ones_like(pix[..., :1])), dim=-1)
    rays = (k_inv[..., None, :, :] @ hom[..., None])[..., 0]  # (..., N, 3) with z = 1
    return rays * z[..., None]


@_torch_or_numpy
def bbox_from_keypoints(kp2d: ArrayT, conf_threshold: float = CONF_THRESHOLD, scale: float = 1.2) -> ArrayT:
    """kp2d (..., K, 3) pixels + confidence -> square box (..., 3) [cx, cy, size] in pixels.

    The box spans the visible keypoints (conf >= threshold, finite), its side is the larger extent times
    `scale`. NaN where fewer than 2 keypoints are visible or they coincide (no usable box).
    """
    kp = _main(kp2d)
    _check_last(kp, 3, "kp2d")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    xy, conf = kp[..., :2], kp[..., 2]
    visible = (conf >= conf_threshold) & torch.isfinite(xy).all(-1)  # (..., K)
    inf = torch.full_like(xy, float("inf"))
    lo = torch.where(visible[..., None], xy, inf).amin(-2)
    hi = torch.where(visible[..., None], xy, -inf).amax(-2)
    size = (hi - lo).amax(-1) * scale
    box = torch.cat(((lo + hi) / 2, size[..., None]), dim=-1)
    usable = (visible.sum(-1) >= 2) & (size > 0)
    return torch.where(usable[..., None], box, torch.full_like(box, float("nan")))


@_torch_or_numpy
def cam_crop_to_full(cam_wp: ArrayT, bbox: ArrayT, focal: Any, principal: Any) -> ArrayT:
    """CLIFF: weak-perspective crop camera (..., 3) [s, tx, ty] -> root translation in the full camera (..., 3).

    tz = 2 f / (s size), tx_full = tx + 2 (cx - px) / (s size), ty_full = ty + 2 (cy - py) / (s size).
    bbox (..., 3) [cx, cy, size]; focal scalar or (...); principal (2,) or (..., 2). Pure torch (ONNX); numbers
    and sequences become graph constants. The caller keeps s > 0 (e.g. softplus): the formula means nothing else.
    """
    cam = _main(cam_wp)
    _check_last(cam, 3, "cam_wp")
    box = _like(bbox, cam)
    _check_last(box, 3, "bbox")
    f, pp = _like(focal, cam), _like(principal, cam)
    _check_last(pp, 2, "principal")
    s, tx, ty = cam.unbind(-1)
    cx, cy, size = box.unbind(-1)
    s_size = s * size
    return torch.stack(
        (tx + 2.0 * (cx - pp[..., 0]) / s_size, ty + 2.0 * (cy - pp[..., 1]) / s_size, 2.0 * f / s_size), dim=-1
    )


@_torch_or_numpy
def full_to_cam_crop(trans: ArrayT, bbox: ArrayT, focal: Any, principal: Any) -> ArrayT:
    """Inverse of `cam_crop_to_full`: camera-frame translation (..., 3) -> [s, tx, ty] (..., 3); needs tz > 0."""
    t = _main(trans)
    _check_last(t, 3, "trans")
    box = _like(bbox, t)
    _check_last(box, 3, "bbox")
    f, pp = _like(focal, t), _like(principal, t)
    _check_last(pp, 2, "principal")
    x, y, z = t.unbind(-1)
    cx, cy, size = box.unbind(-1)
    return torch.stack(
        (2.0 * f / (z * size), x - (cx - pp[..., 0]) * z / f, y - (cy - pp[..., 1]) * z / f), dim=-1
    )


@_torch_or_numpy
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
    kp = _main(kp2d)
    if tuple(kp.shape[-2:]) != (NUM_KEYPOINTS, 3):
        raise ValueError(f"kp2d must be (..., {NUM_KEYPOINTS}, 3), got {tuple(kp.shape)}")
    box = _like(bbox, kp)
    _check_last(box, 3, "bbox")
    f, pp = _like(focal, kp), _like(principal, kp)
    _check_last(pp, 2, "principal")
    if not bool(torch.isfinite(box).all()) or not bool((box[..., 2] > 0).all()):
        raise ValueError("bbox must be finite with size > 0 (bbox_from_keypoints gives NaN when too few points)")
    if not bool(torch.isfinite(f).all()) or not bool((f > 0).all()):
        raise ValueError("focal must be finite and positive")
    cx, cy, size = (c[..., None] for c in box.unbind(-1))  # (..., 1) each
    visible = (kp[..., 2] >= conf_threshold) & torch.isfinite(kp[..., :2]).all(-1)  # (..., 21)
    u = (kp[..., 0] - cx) / (size / 2)
    v = (kp[..., 1] - cy) / (size / 2)
    zero = torch.zeros_like(u)
    per_kp = torch.stack((torch.where(visible, u, zero), torch.where(visible, v, zero), visible.to(kp.dtype)), -1)
    cx, cy, size = box.unbind(-1)
    cliff = torch.stack(((cx - pp[..., 0]) / f, (cy - pp[..., 1]) / f, size / f), dim=-1)
    return torch.cat((per_kp.flatten(-2), cliff), dim=-1)
