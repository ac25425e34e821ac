"""numpy-or-torch dispatch, so geometry written once serves both kinds of caller.

The live loop calls `mocap.rotations`, `mocap.camera` and `mocap.kinematics` with numpy arrays and must never
load torch; networks call the same functions with tensors inside their ONNX graphs. Each function asks
`namespace(...)` for its library and writes its maths against it, using only calls that numpy and torch spell
alike (`xp.stack(xs, axis=-1)`, `xp.concatenate`, `xp.linalg.norm(v, axis=-1, keepdims=True)`, `xp.where`, ...);
the few that differ are the helpers below. Nothing here imports torch: a tensor can only exist once torch is loaded.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np


def is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def namespace(*values: Any) -> ModuleType:
    """torch when any value is a tensor, else numpy (the module itself: `xp.sin`, `xp.linalg.norm`, ...)."""
    for value in values:
        if is_tensor(value):
            return sys.modules["torch"]
    return np


def as_float(x: Any, xp: ModuleType) -> Any:
    """A leading array argument in its library: numpy input becomes an ndarray, non-float dtypes float64
    (float32 stays float32); the same for torch."""
    if xp is np:
        arr = np.asarray(x)
        return arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    t = x if is_tensor(x) else xp.as_tensor(x)
    return t if t.is_floating_point() else t.double()


def like(x: Any, ref: Any, xp: ModuleType) -> Any:
    """A secondary argument (number, sequence, array or tensor) in ref's library, dtype and device."""
    if xp is np:
        return np.asarray(x, dtype=ref.dtype)
    if is_tensor(x):
        return x.to(dtype=ref.dtype, device=ref.device)
    return xp.as_tensor(x, dtype=ref.dtype, device=ref.device)


def cast(x: Any, ref: Any) -> Any:
    """x (e.g. a bool mask) in ref's dtype."""
    return x.to(ref.dtype) if is_tensor(x) else np.asarray(x).astype(ref.dtype)


def eye3(ref: Any, xp: ModuleType) -> Any:
    """(3, 3) identity in ref's dtype (and device); broadcasts against (..., 3, 3)."""
    if xp is np:
        return np.eye(3, dtype=ref.dtype)
    return xp.eye(3, dtype=ref.dtype, device=ref.device)


def clamp_min(x: Any, low: float) -> Any:
    return x.clamp_min(low) if is_tensor(x) else np.maximum(x, low)


def sum_last(x: Any) -> Any:
    """Sum over the last axis, kept: (..., n) -> (..., 1)."""
    return x.sum(-1, keepdim=True) if is_tensor(x) else np.sum(x, axis=-1, keepdims=True)


def unbind(x: Any) -> tuple[Any, ...]:
    """The components along the last axis (views), e.g. x, y, z = unbind(points)."""
    return x.unbind(-1) if is_tensor(x) else tuple(np.moveaxis(x, -1, 0))


def take_along_axis(x: Any, idx: Any, axis: int) -> Any:
    """numpy's take_along_axis; torch through `gather` (idx broadcast over the other axes), which ONNX exports."""
    if not is_tensor(x):
        return np.take_along_axis(x, idx, axis)
    shape = list(x.shape)
    shape[axis] = idx.shape[axis]
    return x.gather(axis, idx.expand(shape))


def is_tracing(xp: ModuleType) -> bool:
    """True while torch traces a graph (shapes are symbolic then: eager-only checks skip)."""
    return xp is not np and bool(xp.jit.is_tracing())
