"""The network's body (`BuiltinBody`) in numpy, per person-frame or batched, with the sparsity the Jacobians need.

The tables are `mocap.builtin_body.posing_tables()`, the float32 arrays `BuiltinBody` registers as its buffers,
so the refinement poses exactly the body the network's graph poses, without torch. Batched FK is
`mocap.kinematics.forward_kinematics_offsets_numpy`. One person-frame (the solver's case, several times a frame)
takes about a dozen numpy calls, since each costs about a microsecond whatever its size: SMPL's joints are
numbered level by level, so each tree level is one `matmul` on contiguous slices written in place; and every
joint and keypoint is a sum of rotated rest vectors, sum_j R_j (sum of the vectors R_j carries), linear in the
betas, so all 45 points are one product of the frame's `shape_map` (45, 72) with the stacked R_j^T.
Tests check `pose` against `BuiltinBody.forward`.
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
    fk_levels: tuple[tuple[slice, slice | int], ...]   # (children, parents) runs in order (`fk_levels`)
    map_rest: np.ndarray         # (45 * 72,) `shape_map` at betas 0 ...
    map_betas: np.ndarray        # (10, 45 * 72) ... plus betas @ this


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
    parents = np.asarray([max(p, 0) for p in SMPL_PARENTS], dtype=np.int64)
    levels = fk_levels(SMPL_PARENTS)
    rest, delta = as64(body["rest_offsets"]), as64(body["kp_delta"])
    if levels is None or np.any(rest[0] != 0):
        raise ValueError("the per-frame body needs joints numbered level by level and the pelvis at the origin")
    # Point p (joints 0..23, keypoints 24..44) = sum over vectors i on its chain of R_frame(i) v_i, where v_i is
    # bone i's rest offset (carried by its parent) or keypoint i's offset (carried by its frame joint).
    points = np.zeros((NUM_JOINTS + NUM_KEYPOINTS,) * 2)
    points[:NUM_JOINTS, :NUM_JOINTS] = chain
    points[NUM_JOINTS:, :NUM_JOINTS] = chain[anchor]
    points[NUM_JOINTS:, NUM_JOINTS:] = np.eye(NUM_KEYPOINTS)
    carrier = np.concatenate((parents, frame))
    basis = np.concatenate((body["shape_basis"], body["kp_shape_basis"])).astype(np.float64)   # (45, 10)
    vectors = np.concatenate((rest, delta))                                                      # (45, 3)
    per_beta = np.concatenate((vectors[None], vectors[None] * basis.T[:, :, None]))              # (11, 45, 3)
    scattered = np.zeros((1 + basis.shape[1], NUM_JOINTS + NUM_KEYPOINTS, NUM_JOINTS, 3))
    scattered[:, np.arange(carrier.size), carrier] = per_beta
    maps = (points @ scattered.reshape(scattered.shape[0], carrier.size, -1)).reshape(scattered.shape[0], -1)
    chain[:, 0] = False
    return BodyTables(
        rest_offsets=as64(body["rest_offsets"]),
        shape_basis=as64(body["shape_basis"]),
        kp_delta=as64(body["kp_delta"]),
        kp_shape_basis=as64(body["kp_shape_basis"]),
        kp_anchor=anchor,
        kp_frame=frame,
        parents=parents,
        moves=moves,
        scales=chain[anchor].astype(np.float64),
        fk_levels=levels,
        map_rest=maps[0],
        map_betas=maps[1:],
    )


def fk_levels(parents: tuple[int, ...] | list[int]) -> tuple[tuple[slice, slice | int], ...] | None:
    """Runs (children, parents) covering every non-root joint, parents before children, each a slice of
    consecutive joints whose parents are one joint (int) or consecutive too (slice); None unless the joints are
    numbered level by level with one root, joint 0 (SMPL is), where the runs would not be contiguous."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if (p < 0) != (j == 0) or p >= j:
            return None
        depth[j] = depth[p] + 1 if p >= 0 else 0
    if depth != sorted(depth):
        return None
    runs: list[tuple[slice, slice | int]] = []
    j = 1
    while j < len(parents):
        end = j + 1
        same = end < len(parents) and depth[end] == depth[j] and parents[end] == parents[j]
        while end < len(parents) and depth[end] == depth[j] and (
                parents[end] == parents[end - 1] if same else parents[end] == parents[end - 1] + 1):
            end += 1
        runs.append((slice(j, end), parents[j] if same or end == j + 1 else slice(parents[j], parents[end - 1] + 1)))
        j = end
    return tuple(runs)


class PosedBody(NamedTuple):
    joints: np.ndarray       # (..., 24, 3) pelvis at the origin, the root rotation's frame (camera frame here)
    keypoints: np.ndarray    # (..., 21, 3)
    glob: np.ndarray         # (..., 24, 3, 3) global rotations


def shaped(betas: np.ndarray, tables: BodyTables | None = None) -> tuple[np.ndarray, np.ndarray]:
    """betas (10,) -> bone offsets (24, 3) and keypoint offsets (21, 3) of that shape (as BuiltinBody scales them)."""
    t = tables or body_tables()
    return (t.rest_offsets * (1.0 + t.shape_basis @ betas)[:, None],
            t.kp_delta * (1.0 + t.kp_shape_basis @ betas)[:, None])


def shape_map(betas: np.ndarray, tables: BodyTables | None = None) -> np.ndarray:
    """betas (10,) -> (45, 72) M: [joints (24); keypoints (21)] (45, 3) = M @ G, G (72, 3) the global rotations'
    transposes stacked (`posed`). Rows can be taken (a frame's visible keypoints only)."""
    t = tables or body_tables()
    # einsum, not matmul: a (10, 3240) product is past OpenBLAS's threading threshold, and a threaded gemv next
    # to a busy core costs milliseconds.
    return (t.map_rest + np.einsum("b,bk->k", betas, t.map_betas)).reshape(NUM_JOINTS + NUM_KEYPOINTS, 3 * NUM_JOINTS)


def posed(rotmats: np.ndarray, smap: np.ndarray, tables: BodyTables | None = None,
          root: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One person-frame: rotmats (24, 3, 3) local, smap (m, 72) rows of a `shape_map`, root: (3, 3) applied to
    the root's rotation from the right (rotmats[0] @ root) or None -> points (m, 3), global rotations (24, 3, 3)."""
    t = tables or body_tables()
    glob = np.empty((NUM_JOINTS, 3, 3))
    if root is None:
        glob[0] = rotmats[0]
    else:
        np.matmul(rotmats[0], root, out=glob[0])
    for child, parent in t.fk_levels:
        np.matmul(glob[parent], rotmats[child], out=glob[child])
    return smap @ glob.transpose(0, 2, 1).reshape(3 * NUM_JOINTS, 3), glob


def pose(rotmats: np.ndarray, betas: np.ndarray, tables: BodyTables | None = None,
         shape: tuple[np.ndarray, np.ndarray] | None = None) -> PosedBody:
    """rotmats (..., 24, 3, 3) local (joint 0 = root), betas (10,) -> joints (..., 24, 3), keypoints (..., 21, 3),
    global rotations (..., 24, 3, 3), float64. shape: `shaped(betas)` (batched rotations only, ignored otherwise)."""
    t = tables or body_tables()
    if rotmats.ndim == 3:
        points, glob = posed(rotmats, shape_map(np.asarray(betas, np.float64), t), t)
        return PosedBody(points[:NUM_JOINTS], points[NUM_JOINTS:], glob)
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
