"""Engine outputs of one person + the frame's bookkeeping -> one wire `PoseMessage` (docs/design.md, protocol v1).

Kept apart from the loop so the mapping from model outputs to wire fields is in one small, testable place:
rotation matrices become axis-angle and (x, y, z, w) quaternions here, with `mocap.rotations` (the project's
only rotation code), and values that cannot travel (NaN, wrong shapes) are refused here rather than on the wire.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mocap.model.state import OUTPUT_SHAPES
from mocap.rotations import matrix_to_quaternion, quaternion_to_axis_angle
from mocap.skeleton import NUM_JOINTS
from stream.protocol import ARRAY_SHAPES, STATUSES, PoseMessage

#: Engine outputs a pose message needs, with their per-person shapes (`mocap/model/state.py` OUTPUT_SHAPES).
REQUIRED_OUTPUTS: dict[str, tuple[int, ...]] = {
    name: OUTPUT_SHAPES[name] for name in ("pose_rotmat", "betas", "root_trans", "joints", "contact", "cam_trans")
}


def model_label(model_id: str, generation: int) -> str:
    """The message's `model` field: model id + adaptation generation, e.g. ``livemocap-causal-v6-bandai-cmu@g2`` (docs/protocol.md)."""
    return f"{model_id}@g{int(generation)}"


def person_outputs(outputs: Mapping[str, np.ndarray], index: int = 0) -> dict[str, np.ndarray]:
    """Batch-first engine outputs -> one person's float64 arrays (checked shapes, all finite).

    Raises ValueError naming the first missing, misshapen or non-finite output: a NaN pose must never be
    published as if it were a measurement.
    """
    return {name: row.astype(np.float64) for name, row in _person_rows(outputs, index).items()}


def pose_message(
    outputs: Mapping[str, np.ndarray],
    *,
    seq: int,
    track: int,
    t_capture: float,
    kp2d: np.ndarray | None,
    model: str,
    status: str = "tracking",
    index: int = 0,
) -> PoseMessage:
    """A message carrying the pose of person `index` of `outputs` (batch-first engine outputs).

    kp2d: (21, 3) detected keypoints (pixels + confidence) the pose was estimated from; None = not sent.
    status: "tracking", or "init" on the first frame of a track (the pose is valid, the model's memory is new).

    The wire carries float32 values; outputs that are float32 already (the engines') go to the message's lists
    straight from their float32 rows: the float64 round trip of `person_outputs` gives back the same values, and
    skipping it (and `PoseMessage.from_arrays`'s checks of names this function writes itself) halves the cost of
    a message. Only the rotations are converted in float64, as before.
    """
    if status not in ("tracking", "init"):
        raise ValueError(f"a message with a pose has status 'tracking' or 'init', got {status!r}")
    rows = _person_rows(outputs, index)
    rotmat = rows["pose_rotmat"].astype(np.float64)  # (24, 3, 3) local, joint 0 = world root
    cam_root = np.asarray(outputs["cam_root_rotmat"])[index].astype(np.float64) if "cam_root_rotmat" in outputs else None
    with_cam = rotmat if cam_root is None or not np.all(np.isfinite(cam_root)) else np.concatenate((rotmat, cam_root[None]))
    quat = matrix_to_quaternion(with_cam)           # one conversion for all rotations (25 or 24, 4) x, y, z, w
    aa = quaternion_to_axis_angle(quat)
    aa32, quat32 = aa.astype(np.float32), quat.astype(np.float32)
    msg = PoseMessage(
        seq=int(seq), track=int(track), t_capture=float(t_capture), status=status, model=model,
        pose_aa=aa32[:NUM_JOINTS].reshape(-1).tolist(),                 # (24, 3)
        pose_quat=quat32[:NUM_JOINTS].reshape(-1).tolist(),             # (24, 4) x, y, z, w
        betas=_wire(rows["betas"]),
        root_trans=_wire(rows["root_trans"]),
        joints=_wire(rows["joints"]),
        contact=_wire(np.clip(rows["contact"], 0.0, 1.0)),
        cam_trans=_wire(rows["cam_trans"]),
    )
    if len(aa) == NUM_JOINTS + 1:
        msg.cam_root_aa = aa32[NUM_JOINTS].tolist()
    if kp2d is not None:
        kp = np.asarray(kp2d, dtype=np.float64)
        if kp.shape != ARRAY_SHAPES["kp2d"]:
            raise ValueError(f"kp2d must be {ARRAY_SHAPES['kp2d']} pixels + confidence, got {kp.shape}")
        # masked points travel as (0, 0, conf 0)
        msg.kp2d = np.where(np.isfinite(kp), kp, 0.0).astype(np.float32).reshape(-1).tolist()
    return msg


def _person_rows(outputs: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """`person_outputs`' checks (same errors) on row `index`, without its float64 copies: the rows as given."""
    rows: dict[str, np.ndarray] = {}
    for name, shape in REQUIRED_OUTPUTS.items():
        if name not in outputs:
            raise ValueError(f"engine output {name!r} missing (got {sorted(outputs)})")
        batch = np.asarray(outputs[name])
        if batch.ndim != len(shape) + 1 or batch.shape[1:] != shape or not 0 <= index < batch.shape[0]:
            raise ValueError(f"engine output {name!r}: expected (B, {', '.join(map(str, shape))}) with B > {index}, "
                             f"got {batch.shape}")
        value = batch[index]
        if not np.isfinite(value).all():  # a float64 copy is finite exactly where the row is
            raise ValueError(f"engine output {name!r} has non-finite values")
        rows[name] = value
    return rows


def _wire(value: np.ndarray) -> list[float]:
    """An output row as the wire's flat list of float32 values (what `PoseMessage.from_arrays` makes of it).
    A float32 row is listed as it is; any other dtype goes through float64 first, as `person_outputs` did."""
    if value.dtype != np.float32:
        value = value.astype(np.float64).astype(np.float32)
    return value.reshape(-1).tolist()


def status_message(status: str, *, seq: int, track: int, t_capture: float, model: str = "") -> PoseMessage:
    """A message without a pose: "lost" (no person / no frame) or "init" (the model is restarting)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if status == "tracking":
        raise ValueError("status 'tracking' needs a pose: use pose_message")
    return PoseMessage(seq=int(seq), track=int(track), t_capture=float(t_capture), status=status, model=model)


__all__ = ["REQUIRED_OUTPUTS", "model_label", "person_outputs", "pose_message", "status_message"]
