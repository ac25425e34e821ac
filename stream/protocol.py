"""Wire protocol v1: one MessagePack map per tracked person per frame (schema in docs/protocol.md).

Plain MessagePack (maps, ints, floats, strings, arrays of floats) so any language's stock msgpack library reads
it. Floats travel as MessagePack float64 holding float32-precision values; readers must accept float32 too.
Readers ignore keys they do not know, writers only ever *add* keys (the version bump rule), so a v1 reader keeps
working against later publishers.
"""
from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from mocap.model.state import OUTPUT_SHAPES
from mocap.skeleton import NUM_JOINTS, NUM_KEYPOINTS

PROTOCOL_VERSION = 1
TOPIC_PREFIX = b"pose/"
STATUSES = ("tracking", "lost", "init")
#: ``camera_motion`` values: the provider that measured this frame's camera rotation, or "none" when the chosen
#: provider had no measurement (a gyro gap, too few visual features) and a static camera was assumed.
CAMERA_MOTION_SOURCES = ("static", "visual", "gyro", "none")

# key -> element shape of the flattened float list (row-major). The counts are the model's (`mocap.model.state`,
# `mocap.skeleton`), stated there once: v1 carries 24 joints, 10 betas, 4 contacts and 21 keypoints.
ARRAY_SHAPES: dict[str, tuple[int, ...]] = {
    "pose_aa": (NUM_JOINTS, 3),
    "pose_quat": (NUM_JOINTS, 4),
    **{key: OUTPUT_SHAPES[key] for key in ("betas", "root_trans", "joints", "contact", "cam_trans")},
    "kp2d": (NUM_KEYPOINTS, 3),
    "cam_root_aa": (3,),
}
ARRAY_LENGTHS = {key: math.prod(shape) for key, shape in ARRAY_SHAPES.items()}
#: Additive fields a `tracking` message may omit (publishers older than the field do not send it).
OPTIONAL_ARRAYS = frozenset({"cam_root_aa"})


class PoseMessage(msgspec.Struct, kw_only=True):
    """One person, one frame. Units: radians, metres, pixels, seconds (monotonic clock of the capture host).

    Arrays are flat float lists (see ``ARRAY_SHAPES``); with status ``lost`` / ``init`` they may be empty.
    """

    v: int = PROTOCOL_VERSION
    seq: int
    track: int
    t_capture: float
    t_publish: float = 0.0
    status: str = "tracking"
    pose_aa: list[float] = msgspec.field(default_factory=list)
    pose_quat: list[float] = msgspec.field(default_factory=list)
    betas: list[float] = msgspec.field(default_factory=list)
    root_trans: list[float] = msgspec.field(default_factory=list)
    joints: list[float] = msgspec.field(default_factory=list)
    contact: list[float] = msgspec.field(default_factory=list)
    cam_trans: list[float] = msgspec.field(default_factory=list)
    kp2d: list[float] = msgspec.field(default_factory=list)
    model: str = ""
    # Additive to v1 (readers that do not know it ignore it): root orientation in the camera frame, axis-angle,
    # so overlays / AR can place the body in the image without solving for the camera.
    cam_root_aa: list[float] = msgspec.field(default_factory=list)
    # Additive to v1: the camera-motion source actually used for this frame (CAMERA_MOTION_SOURCES; "" = not
    # said, older publishers), and whether this is a heartbeat (a "lost" sent while no frame arrives, repeating
    # the last frame's seq: not a frame, so readers leave it out of latency and gap counts).
    camera_motion: str = ""
    heartbeat: bool = False

    @classmethod
    def from_arrays(
        cls, *, seq: int, track: int, t_capture: float, status: str = "tracking", model: str = "", **arrays: Any
    ) -> "PoseMessage":
        """Build from numpy arrays of any shape with the right element count (e.g. pose_aa (24, 3)).

        Values are rounded to float32, the precision the protocol promises.
        """
        unknown = set(arrays) - set(ARRAY_SHAPES)
        if unknown:
            raise ValueError(f"unknown array fields {sorted(unknown)}; expected some of {list(ARRAY_SHAPES)}")
        lists = {key: np.asarray(value, dtype=np.float32).reshape(-1).tolist() for key, value in arrays.items()}
        return cls(seq=int(seq), track=int(track), t_capture=float(t_capture), status=status, model=model, **lists)

    def arrays(self) -> dict[str, np.ndarray]:
        """The non-empty array fields as float32 numpy arrays in their natural shapes (pose_aa -> (24, 3))."""
        out = {}
        for key, shape in ARRAY_SHAPES.items():
            values = getattr(self, key)
            if values:
                if len(values) != ARRAY_LENGTHS[key]:
                    raise ValueError(f"{key}: expected {ARRAY_LENGTHS[key]} floats, got {len(values)}")
                out[key] = np.asarray(values, dtype=np.float32).reshape(shape)
        return out


def topic(track: int) -> bytes:
    """ZeroMQ topic of a track: ``b"pose/<track>"``; subscribe to ``b"pose/"`` for everyone."""
    if track < 0:
        raise ValueError(f"track id must be >= 0, got {track}")
    return TOPIC_PREFIX + str(int(track)).encode()


def validate(msg: PoseMessage) -> PoseMessage:
    """Check a v1 message (writer side contract); returns it, raises ValueError naming the first problem."""
    if msg.v < 1:
        raise ValueError(f"v must be >= 1, got {msg.v}")
    if msg.seq < 0 or msg.track < 0:
        raise ValueError(f"seq and track must be >= 0, got seq={msg.seq} track={msg.track}")
    if msg.status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {msg.status!r}")
    for key in ("t_capture", "t_publish"):
        if not math.isfinite(getattr(msg, key)):
            raise ValueError(f"{key} must be finite, got {getattr(msg, key)}")
    for key, length in ARRAY_LENGTHS.items():
        values = getattr(msg, key)
        if msg.status == "tracking" and len(values) != length and key not in OPTIONAL_ARRAYS:
            raise ValueError(f"{key}: status 'tracking' needs {length} floats, got {len(values)}")
        if values and len(values) != length:
            raise ValueError(f"{key}: expected {length} floats (or none), got {len(values)}")
        if values and not all(math.isfinite(x) for x in values):
            raise ValueError(f"{key}: non-finite value")
    if msg.camera_motion and msg.camera_motion not in CAMERA_MOTION_SOURCES:
        raise ValueError(f"camera_motion must be one of {CAMERA_MOTION_SOURCES} (or empty), got {msg.camera_motion!r}")
    if msg.contact and not all(0.0 <= p <= 1.0 for p in msg.contact):
        raise ValueError(f"contact probabilities must lie in [0, 1], got {msg.contact}")
    return msg


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PoseMessage)


def encode(msg: PoseMessage) -> bytes:
    """PoseMessage -> MessagePack bytes (a map with every key)."""
    return _ENCODER.encode(msg)


def decode(data: bytes) -> PoseMessage:
    """MessagePack bytes -> PoseMessage; unknown keys are ignored, wrong types raise ValueError."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:  # also a ValueError; re-raised with context for log readers
        raise ValueError(f"not a v1 pose message ({len(data)} bytes): {exc}") from exc


def to_dict(msg: PoseMessage) -> dict[str, Any]:
    """Plain dict (for JSON printing / recording)."""
    return msgspec.structs.asdict(msg)


__all__ = [
    "ARRAY_LENGTHS",
    "ARRAY_SHAPES",
    "CAMERA_MOTION_SOURCES",
    "PROTOCOL_VERSION",
    "STATUSES",
    "TOPIC_PREFIX",
    "PoseMessage",
    "decode",
    "encode",
    "to_dict",
    "topic",
    "validate",
]
