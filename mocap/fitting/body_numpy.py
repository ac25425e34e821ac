"""The network's body (`BuiltinBody`) in numpy, per person-frame or batched, with the sparsity the Jacobians need.

The tables are `mocap.builtin_body.posing_tables()`, the float32 arrays `BuiltinBody` registers as its buffers,
so the refinement poses exactly the body the network's graph poses, without torch; FK is
`mocap.kinematics.forward_kinematics_offsets_numpy`. Tests check `pose` against `BuiltinBody.forward`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mocap.builtin_body import posing_tables
from mocap.kinematics import forward_kinematics_offsets_numpy
from mocap.skeleton import NUM_JOINTS, NUM_KEYPOINTS, SMPL_PARENTS


@dataclass(frozen=True)
class BodyTables:
    """float64 copies of BuiltinBody's tables plus the kinematic masks of the 21 keypoints."""

    rest_offsets: np.ndarray     # (24, 3) parent-relative rest offsets (row 0 = pelvis rest position = 0)
    shape_basis: np.ndarray      # (24, 10) per-bone relative scale per unit beta
    kp_delta: np.ndarray         # (21, 3) keypoint offsets in their frame joint's rest frame
    kp_shape_basis: np.ndarray   # (21, 10)
    kp_anchor: np.ndarray        # (21,) joint giving the keypoint position
    kp_frame: np.ndarray         # (21,) joint whose rotation carries the offset
    parents: np.ndarray          # (24,) parent per joint (0 for the root, which has none)
    moves: np.ndarray            # (21, 24) bool: rotating joint j (its subtree about it) moves keypoint k
    scales: np.ndarray           # (21, 24) float: bone j's length enters keypoint k's position (via its anchor)


@functools.lru_cache(maxsize=1)
def body_tables() -> BodyTables:
    body = posing_tables()
    as64 = lambda a: a.astype(np.float64)  # noqa: E731
    anchor = body["kp_anchor"].astype(np.int64)
    frame = body["kp_frame"].astype(np.int64)
    ancestors = np.zeros((NUM_JOINTS, NUM_JOINTS), dtype=bool)  # [j, i]: i is a strict ancestor of j
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0:
            ancestors[j] = ancestors[p]
            ancestors[j, p] = True
    moves = ancestors[anchor].copy()
    moves[np.arange(NUM_KEYPOINTS), frame] = True
    # Bone i (parent(i) -> i) is on the chain of joint j when i is j or one of its ancestors (pelvis excluded).
    chain = ancestors | np.eye(NUM_JOINTS, dtype=bool)
    chain[:, 0] = False
    return BodyTables(
        rest_offsets=as64(body["rest_offsets"]),
        shape_basis=as64(body["shape_basis"]),
        kp_delta=as64(body["kp_delta"]),
        kp_shape_basis=as64(body["kp_shape_basis"]),
        kp_anchor=anchor,
        kp_frame=frame,
        parents=np.asarray([max(p, 0) for p in SMPL_PARENTS], dtype=np.int64),
        moves=moves,
        scales=chain[anchor].astype(np.float64),
    )


class PosedBody(NamedTuple):
    joints: np.ndarray       # (..., 24, 3) pelvis at the origin, the root rotation's frame (camera frame here)
    keypoints: np.ndarray    # (..., 21, 3)
    glob: np.ndarray         # (..., 24, 3, 3) global rotations


def shaped(betas: np.ndarray, tables: BodyTables | None = None) -> tuple[np.ndarray, np.ndarray]:
    """betas (10,) -> bone offsets (24, 3) and keypoint offsets (21, 3) of that shape (as BuiltinBody scales them)."""
    t = tables or body_tables()
    return (t.rest_offsets * (1.0 + t.shape_basis @ betas)[:, None],
            t.kp_delta * (1.0 + t.kp_shape_basis @ betas)[:, None])


def pose(rotmats: np.ndarray, betas: np.ndarray, tables: BodyTables | None = None,
         shape: tuple[np.ndarray, np.ndarray] | None = None) -> PosedBody:
    """rotmats (..., 24, 3, 3) local (joint 0 = root), betas (10,) -> joints (..., 24, 3), keypoints (..., 21, 3),
    global rotations (..., 24, 3, 3), float64. shape: `shaped(betas)` when the caller poses one shape many times."""
    t = tables or body_tables()
    offsets, delta = shape if shape is not None else shaped(betas, t)
    joints, glob = forward_kinematics_offsets_numpy(rotmats, offsets, SMPL_PARENTS)
    keypoints = joints[..., t.kp_anchor, :] + (glob[..., t.kp_frame, :, :] @ delta[:, :, None])[..., 0]
    return PosedBody(joints, keypoints, glob)


def keypoint_beta_jacobian(glob: np.ndarray, tables: BodyTables | None = None) -> np.ndarray:
    """d keypoints / d betas (21, 3, 10) at global rotations glob (24, 3, 3): bone offsets scale linearly with
    betas, so each bone on a keypoint's chain adds its rotated rest offset times its basis row."""
    t = tables or body_tables()
    bones = (glob[t.parents] @ t.rest_offsets[:, :, None])[..., 0]                  # (24, 3), row 0 unused
    chain = (t.scales @ (bones[:, :, None] * t.shape_basis[:, None, :]).reshape(NUM_JOINTS, -1)).reshape(-1, 3, 10)
    own = (glob[t.kp_frame] @ t.kp_delta[:, :, None])[..., 0]                         # (21, 3)
    return chain + own[:, :, None] * t.kp_shape_basis[:, None, :]
