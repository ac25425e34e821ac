"""Record the pose stream as BVH: the SMPL skeleton, world translation, the stream's frame rate.

Skeleton. The 24 SMPL joints under their `mocap.skeleton` names, pelvis as ROOT, OFFSETs in metres in the SMPL
rest frame (every joint's rest frame is world-aligned, so a BVH local rotation *is* the SMPL local rotation).
A BVH has one fixed skeleton while the model re-estimates the body shape every frame, so each OFFSET is the
median over the track of that bone's vector in its parent's frame, taken from the streamed joints (right for
the built-in body and for a real SMPL body alike). End Sites give the leaves (head, toes, hands) a length.

Channels. ROOT: ``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` (the streamed pelvis position
``root_trans`` and world orientation); every other joint ``Zrotation Xrotation Yrotation``, degrees, i.e.
R = Rz @ Rx @ Ry, the common CMU order.

Axes. The stream's world frame: right-handed, Y up, metres, floor at y = 0, +Z towards the camera as it was at
the track's start. Blender's BVH importer with its defaults (Scale 1, Forward -Z, Up Y) therefore brings it in
upright on its Z-up floor, in metres, a person who faced the camera facing Blender's front view (-Y).

Time. One BVH frame per source frame: frame k is the message with ``seq = seq_first + k``; frames the stream
skipped or lost (no pose) repeat the previous pose, so the clip keeps the video's timing. Frame Time is
1 / the source's fps (`set_fps`; estimated from the capture clock when it was never given).

Several people: BVH holds one skeleton per file, so the first track seen goes to FILE and every other track t to
``FILE-stem.track<t>.bvh`` beside it.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from mocap.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from stream.protocol import ARRAY_LENGTHS, PoseMessage
from stream.recorder import PARTIAL_SUFFIX
from stream.recording.common import WriteOnClose, estimate_fps

log = logging.getLogger("livemocap.recording")

ROTATION_ORDER = "ZXY"  # channel order; R = Rz @ Rx @ Ry (scipy's intrinsic "ZXY")
DEFAULT_FPS = 30.0
_CHILDREN = [[k for k, p in enumerate(SMPL_PARENTS) if p == j] for j in range(NUM_JOINTS)]
#: End Site offsets (metres, rest frame) for leaves without a natural length; hands continue their last bone.
_END_SITES = {"head": (0.0, 0.2, 0.0), "l_foot": (0.0, 0.0, 0.05), "r_foot": (0.0, 0.0, 0.05)}


def dfs_order() -> list[int]:
    """SMPL joint ids in BVH file order (depth first from the pelvis, children in SMPL order)."""
    order, stack = [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(_CHILDREN[j]))
    return order


def bone_offsets(pose_quat: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(F, 24, 4) local rotations x y z w + (F, 24, 3) world joints -> (24, 3) median rest offsets.

    offset_j = G_parent^T (p_j - p_parent), G the world rotation: constant for a rigid skeleton, so the median
    over frames is the track's skeleton; offset of the root = 0.
    """
    frames = pose_quat.shape[0]
    local = Rotation.from_quat(pose_quat.reshape(-1, 4)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    world = np.empty_like(local)
    offsets = np.zeros((frames, NUM_JOINTS, 3))
    for j, p in enumerate(SMPL_PARENTS):
        if p < 0:
            world[:, j] = local[:, j]
            continue
        world[:, j] = world[:, p] @ local[:, j]
        offsets[:, j] = np.einsum("fji,fj->fi", world[:, p], joints[:, j] - joints[:, p])
    return np.median(offsets, axis=0)


def bvh_text(pose_quat: np.ndarray, root_trans: np.ndarray, offsets: np.ndarray, fps: float) -> tuple[str, np.ndarray]:
    """(header text, motion (F, 3 + 72) values) of one track: pose_quat (F, 24, 4), root_trans (F, 3)."""
    order = dfs_order()
    frames = pose_quat.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gimbal lock: angles still reproduce the rotation exactly
        euler = Rotation.from_quat(pose_quat.reshape(-1, 4)).as_euler(ROTATION_ORDER, degrees=True)
    euler = euler.reshape(frames, NUM_JOINTS, 3)
    motion = np.concatenate([root_trans] + [euler[:, j] for j in order], axis=1)
    rot_channels = " ".join(f"{axis}rotation" for axis in ROTATION_ORDER)
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if SMPL_PARENTS[j] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {SMPL_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[j, 0]:.6f} {offsets[j, 1]:.6f} {offsets[j, 2]:.6f}")
        if kind == "ROOT":
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        for k in _CHILDREN[j]:
            emit(k, depth + 1)
        if not _CHILDREN[j]:
            end = _END_SITES.get(SMPL_JOINT_NAMES[j], offsets[j])
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines.extend(["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.8f}"])
    return "\n".join(lines) + "\n", motion


class _Track:
    def __init__(self) -> None:
        self.seq: list[int] = []
        self.t: list[float] = []
        self.quat: list[np.ndarray] = []
        self.trans: list[np.ndarray] = []
        self.joints: list[np.ndarray] = []


class BvhWriter(WriteOnClose):
    """A `stream.recorder` format: keeps each pose, writes one BVH per track on ``close`` (module docstring).

    path: the file to write (the Recorder's ``FILE.partial``); further tracks go beside FILE, each through its
    own ``.partial`` file; an existing one is replaced only with ``overwrite`` (set by the Recorder from
    ``--overwrite``), else close raises FileExistsError and the recording stays in ``FILE.partial``.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._tracks: dict[int, _Track] = {}
        self.paths: list[Path] = []  # the extra track files written by close
        self.overwrite = False

    def _keep(self, msg: PoseMessage) -> None:
        if any(len(getattr(msg, key)) != ARRAY_LENGTHS[key] for key in ("pose_quat", "joints", "root_trans")):
            return  # lost / init without a pose: the clip holds the previous pose there
        quat = np.asarray(msg.pose_quat, dtype=np.float64).reshape(NUM_JOINTS, 4)
        joints = np.asarray(msg.joints, dtype=np.float64).reshape(NUM_JOINTS, 3)
        trans = np.asarray(msg.root_trans, dtype=np.float64)
        if not (np.isfinite(quat).all() and np.isfinite(joints).all() and np.isfinite(trans).all()):
            raise ValueError(f"seq {msg.seq}: non-finite pose")
        track = self._tracks.setdefault(msg.track, _Track())
        track.seq.append(msg.seq)
        track.t.append(msg.t_capture)
        track.quat.append(quat)
        track.trans.append(trans)
        track.joints.append(joints)

    def track_path(self, track: int) -> Path:
        """Where a track after the first one goes: FILE-stem.track<t>.bvh beside FILE."""
        final = self.path.with_name(self.path.name.removesuffix(PARTIAL_SUFFIX))
        return final.with_name(f"{final.stem}.track{track}{final.suffix}")

    def _finish(self, fh: io.BufferedWriter) -> None:
        if not self._tracks:
            raise ValueError("no pose was recorded: the BVH would be empty")
        tracks = list(self._tracks.items())
        self._write(fh, *tracks[0])
        for track, rec in tracks[1:]:
            path = self.track_path(track)
            if path.exists() and not self.overwrite:
                raise FileExistsError(f"{path} exists (track {track} of this recording); move it away or pass "
                                      "--overwrite")
            partial = path.with_name(path.name + PARTIAL_SUFFIX)
            with open(partial, "xb") as extra:
                self._write(extra, track, rec)
            os.replace(partial, path)
            self.paths.append(path)
            log.info("recorded track %d to %s", track, path)

    def _write(self, fh: io.BufferedWriter, track: int, rec: _Track) -> None:
        seq = np.asarray(rec.seq)
        fps = self.fps or estimate_fps(rec.seq, rec.t)
        if fps is None:
            log.warning("BVH track %d: frame rate unknown, writing %.0f fps", track, DEFAULT_FPS)
            fps = DEFAULT_FPS
        # Frame k <- the last message with seq <= seq0 + k (held through gaps; a repeated seq keeps the last).
        frame_seq = np.arange(seq.min(), seq.max() + 1)
        order = np.argsort(seq, kind="stable")
        pick = order[np.searchsorted(seq[order], frame_seq, side="right") - 1]
        quat, trans = np.asarray(rec.quat)[pick], np.asarray(rec.trans)[pick]
        header, motion = bvh_text(quat, trans, bone_offsets(np.asarray(rec.quat), np.asarray(rec.joints)), fps)
        fh.write(header.encode("ascii"))
        np.savetxt(fh, np.round(motion, 6) + 0.0, fmt="%.6f")  # + 0.0: no "-0.000000"


__all__ = ["BvhWriter", "bone_offsets", "bvh_text", "dfs_order"]
