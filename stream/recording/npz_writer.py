"""Record the pose stream as NumPy .npz: every message field as one array, messages along the first axis.

For analysis in Python (``np.load(path)``, no pickle needed). With N messages in publish order:

- one array per scalar field of the message, typed like the field: ``v, seq, track`` (N,) int64,
  ``t_capture, t_publish`` (N,) float64 (seconds, the capture host's monotonic clock), ``status, model,
  camera_motion`` (N,) unicode strings, ``heartbeat`` (N,) bool, and any field a later protocol adds;
- one float32 array per pose field in its natural shape (``pose_aa`` (N, 24, 3), ``pose_quat`` (N, 24, 4),
  ``betas`` (N, 10), ``root_trans`` (N, 3), ``joints`` (N, 24, 3), ``contact`` (N, 4), ``cam_trans`` (N, 3),
  ``kp2d`` (N, 21, 3), ``cam_root_aa`` (N, 3)), NaN where a message did not carry it (``lost`` / ``init``
  messages, optional fields): ``np.isfinite(a).all(axis=...)`` tells which rows hold values;
- ``fps`` () float64, the source's frame rate (NaN if unknown); ``joint_names`` (24,), ``keypoint_names`` (21,).

Field names, shapes and meanings are the wire protocol's (docs/protocol.md, `stream.protocol.ARRAY_SHAPES`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES
from stream.protocol import ARRAY_LENGTHS, ARRAY_SHAPES, PoseMessage
from stream.recording.common import WriteOnClose, estimate_fps

#: Python type of a scalar field's default -> its array dtype.
_DTYPES = {bool: np.bool_, int: np.int64, float: np.float64, str: np.str_}


def scalar_fields() -> dict[str, type[np.generic]]:
    """Every non-array field of `PoseMessage` -> numpy dtype (from its annotation, so added fields come along).

    Fields of an unforeseen type are stored as text."""
    hints = PoseMessage.__annotations__
    out = {}
    for name in PoseMessage.__struct_fields__:
        if name in ARRAY_SHAPES:
            continue
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(str(hints[name]), str)
        out[name] = _DTYPES[kind]  # an unforeseen type is kept as its text
    return out


class NpzWriter(WriteOnClose):
    """A `stream.recorder` format: keeps every message, writes the arrays on ``close`` (module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._scalars: dict[str, list] = {key: [] for key in scalar_fields()}
        self._arrays: dict[str, list[np.ndarray]] = {key: [] for key in ARRAY_SHAPES}
        self._nan = {key: np.full(ARRAY_LENGTHS[key], np.nan, dtype=np.float32) for key in ARRAY_SHAPES}

    def _keep(self, msg: PoseMessage) -> None:
        rows = {}
        for key in ARRAY_SHAPES:
            values = getattr(msg, key)
            if values and len(values) != ARRAY_LENGTHS[key]:
                raise ValueError(f"seq {msg.seq}: {key}: expected {ARRAY_LENGTHS[key]} floats, got {len(values)}")
            rows[key] = np.asarray(values, dtype=np.float32) if values else self._nan[key]
        for key, column in self._arrays.items():
            column.append(rows[key])
        for key, column in self._scalars.items():
            column.append(getattr(msg, key))

    def arrays(self) -> dict[str, np.ndarray | np.generic]:
        """The recording so far, as the file will hold it."""
        n = len(self._scalars["seq"])
        dtypes = scalar_fields()
        out: dict[str, np.ndarray] = {key: np.asarray(col, dtype=dtypes[key]) for key, col in self._scalars.items()}
        for key, shape in ARRAY_SHAPES.items():
            rows = self._arrays[key]
            out[key] = (np.stack(rows) if rows else np.zeros((0, ARRAY_LENGTHS[key]), np.float32)).reshape((n, *shape))
        fps = self.fps
        if fps is None:
            posed = np.isfinite(out["pose_quat"]).all(axis=(1, 2))
            fps = estimate_fps(out["seq"][posed], out["t_capture"][posed])
        result: dict[str, np.ndarray | np.generic] = dict(out)
        result["fps"] = np.float64(fps if fps is not None else math.nan)
        result["joint_names"] = np.asarray(SMPL_JOINT_NAMES, dtype=np.str_)
        result["keypoint_names"] = np.asarray(KEYPOINT_NAMES, dtype=np.str_)
        return result

    def _finish(self, fh: io.BufferedWriter) -> None:
        if not self._scalars["seq"]:
            raise ValueError("no message was recorded: the NPZ would be empty")
        np.savez(fh, **self.arrays())


__all__ = ["NpzWriter", "scalar_fields"]
