"""Check a BVH recording against the messages it was made from: what a re-import gives back.

Re-reads the file with our BVH reader and the retargeter's loader (`mocap.bvh`, `mocap.retarget.source_from_bvh`:
units and up axis detected, as for any BVH) and compares, per recorded message, (a) the joints to forward
kinematics of the streamed rotations and root translation on the file's skeleton -- the recording's own error,
and (b) to the streamed joints -- which adds the model's frame-to-frame shape changes a one-skeleton BVH cannot
hold. With bvhio installed, (c) compares an independent parser's world positions with ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from mocap.bvh import read_bvh
from mocap.kinematics import forward_kinematics_offsets
from mocap.retarget import source_from_bvh
from mocap.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from stream.protocol import ARRAY_LENGTHS, PoseMessage


def check_bvh(path: str | Path, messages: Sequence[PoseMessage]) -> dict:
    """Errors in millimetres (max, median) of the BVH at path against the posed messages of its first track."""
    posed = [m for m in messages if len(m.joints) == ARRAY_LENGTHS["joints"]]
    if not posed:
        raise ValueError("no posed message to compare with")
    track = posed[0].track
    posed = [m for m in posed if m.track == track]
    bvh = read_bvh(path)
    ids = [bvh.index(n) for n in SMPL_JOINT_NAMES]
    src = source_from_bvh(bvh, {n: n for n in SMPL_JOINT_NAMES})
    seq = np.array([m.seq for m in posed])
    got = src.positions[seq - seq.min()][:, ids]  # (F, 24, 3) metres
    quat = np.array([m.pose_quat for m in posed]).reshape(-1, 4)
    local = torch.from_numpy(Rotation.from_quat(quat).as_matrix().reshape(len(posed), NUM_JOINTS, 3, 3))
    offsets = torch.from_numpy(bvh.offsets[ids])[None].expand(len(posed), -1, -1).contiguous()
    trans = torch.tensor([m.root_trans for m in posed], dtype=torch.float64)
    fk, _ = forward_kinematics_offsets(local, offsets, SMPL_PARENTS, trans)
    streamed = np.array([m.joints for m in posed]).reshape(-1, NUM_JOINTS, 3)

    def mm(a: np.ndarray, b: np.ndarray) -> dict:
        d = np.linalg.norm(a - b, axis=-1) * 1e3
        return {"max": round(float(d.max()), 4), "median": round(float(np.median(d)), 4)}

    out = {"file": str(path), "track": track, "frames": bvh.num_frames, "fps": round(bvh.fps, 4),
           "compared": len(posed), "units_m_per_unit": src.scale,
           "vs_stream_pose_on_file_skeleton_mm": mm(got, fk.numpy()), "vs_streamed_joints_mm": mm(got, streamed)}
    try:
        import bvhio
    except ImportError:
        return out
    root = bvhio.readAsHierarchy(str(path))
    layout = root.layout()
    ours, _ = bvh.fk()
    worst = 0.0
    for frame in range(bvh.num_frames):
        root.loadPose(frame)
        theirs = np.array([list(j[0].PositionWorld) for j in layout])
        worst = max(worst, float(np.linalg.norm(theirs - ours[frame], axis=-1).max()))
    out["bvhio_vs_ours_max_mm"] = round(worst * 1e3, 4)
    return out
