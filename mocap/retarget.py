"""Retarget a source skeleton's motion (BVH) onto SMPL-24: local rotations, root translation, fitted betas.

Why not copy source Euler angles: source rest poses differ from SMPL's T-pose (Bandai's zero pose lies flat along
X), so per mapped joint we solve one constant rest correction C_j with R_smpl_j(t) = R_src_j(t) @ C_j:
- C_j is the closed-form (Kabsch/Wahba) rotation mapping SMPL rest bone directions (joint -> first mapped joint
  of each branch below) onto the source's, in the source joint's frame, over all frames; with a single branch the
  bone is matched exactly and the free twist about it is set so the mean local twist is zero; leaves follow
  their parent on average; a head is calibrated on upright frames to face where the body faces.
- `calibrate` pools those statistics over many clips of one skeleton, so every clip maps the same source pose to
  the same SMPL pose (per-clip fits let the twists drift by tens of degrees between clips).
Per frame:
- a joint with a single mapped branch below it swings so its bone points at the source child (from SMPL's own
  joint position when the bone is long, so offsets inherited from above stop accumulating along limbs);
- the first unmapped joint on a branch (e.g. spine1 when only the chest is mapped) swings to aim at the next
  mapped joint, so spine bends land on SMPL's spine; further unmapped joints on it keep identity;
- an unmapped joint above several mapped branches takes the per-frame Kabsch fit of those branches;
- joints with nothing mapped below them (hands) keep identity local rotations.
Betas are fitted by least squares so SMPL distances between mapped joints match the source's, and the pelvis is
placed (constant offset in its frame) so SMPL's hip joints sit on the source's: legs and feet keep floor contact.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mocap.body import Body, BuiltinBody
from mocap.bvh import Bvh, bvh_files, read_bvh
from mocap.retarget_auto import auto_mapping
from mocap.retarget_presets import get_mapping
from mocap.rotations import axis_angle_to_matrix, axis_angle_to_quaternion, kabsch, matrix_to_axis_angle, \
    matrix_to_quaternion, quaternion_to_axis_angle
from mocap.skeleton import NUM_BETAS, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

#: Candidate unit scales to metres, chosen by the standing height they give (see `detect_unit_scale`). "cmu" is
#: the CMU ASF/AMC length unit (1/0.45 inch) that many CMU BVH conversions kept.
UNIT_SCALES: dict[str, float] = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "inch": 0.0254,
                                 "cmu": 0.0254 / 0.45}
#: Adult standing height the unit choice aims at, and standing height over (pelvis -> ankle + pelvis -> head bone
#: paths) in SMPL's rest skeleton (ankle height and the skull above the head joint make up the difference).
_STANDING_HEIGHT_M = 1.70
_HEIGHT_PER_PATH = 1.15
_LEG_SHARE = 0.59  # pelvis -> ankle path over the sum above, for skeletons without a head/neck mapped
#: Weight of the parent-orientation prior in the rest-correction fit (per frame; bone terms weigh ~0.1-0.4).
_PARENT_PRIOR = 0.01
_HEAD = SMPL_JOINT_NAMES.index("head")
#: Frames whose source pelvis -> head direction is within this angle of vertical count as "standing upright";
#: the head is calibrated on them when there are at least this many.
_UPRIGHT_DEG = 20.0
_MIN_UPRIGHT_FRAMES = 5
#: Bones at least this long (m) aim from SMPL's joint position; shorter ones keep the source's direction.
_AIM_FROM_SMPL_MIN_BONE = 0.12


@dataclass
class SourceMotion:
    """A source skeleton's motion in the SMPL world convention (metres, Y up).

    positions: (T, J, 3) world joint positions; rotations: (T, J, 3, 3) global joint rotations.
    """

    names: list[str]
    parents: list[int]
    positions: np.ndarray
    rotations: np.ndarray
    fps: float
    name: str = "<source>"
    scale: float = 1.0

    def index(self, joint: str) -> int:
        if joint not in self.names:
            raise ValueError(f"{self.name}: no joint {joint!r}; joints are {self.names}")
        return self.names.index(joint)


@dataclass
class RetargetResult:
    """pose_aa (T, 24, 3) f32 SMPL local axis-angle (joint 0 = world root); trans (T, 3) f32 pelvis position;
    betas (10,) f32; joint_error (24,) f32 mean distance (m) of SMPL joint to its mapped source joint, NaN where
    unmapped; mapping {smpl: source}."""

    pose_aa: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    joint_error: np.ndarray
    mapping: dict[str, str] = field(default_factory=dict)
    name: str = "<source>"
    preset: str = ""
    scale: float = 1.0

    @property
    def num_frames(self) -> int:
        return int(self.pose_aa.shape[0])

    @property
    def mean_error(self) -> float:
        """Mean over mapped joints of joint_error, metres."""
        return float(np.nanmean(self.joint_error))


# --- source preparation -------------------------------------------------------------------------------------------


def _path_length(bvh: Bvh, a: int, b: int) -> float:
    """Sum of OFFSET lengths from joint a down to its descendant b (median over frames of per-frame offsets)."""
    offsets = np.median(bvh.frame_offsets(), axis=0) if bvh.num_frames else bvh.offsets
    total, j = 0.0, b
    while j != a:
        if j < 0:
            raise ValueError(f"{bvh.path}: {bvh.names[b]!r} is not below {bvh.names[a]!r}")
        total += float(np.linalg.norm(offsets[j]))
        j = bvh.parents[j]
    return total


def standing_height(bvh: Bvh, mapping: dict[str, str]) -> float:
    """Standing height in file units from bone path lengths (pose independent): legs and trunk, scaled by the
    ratio SMPL's rest skeleton has (ankle height and skull on top)."""
    pelvis = bvh.index(mapping["pelvis"])
    legs = [_path_length(bvh, pelvis, bvh.index(mapping[k])) for k in ("l_ankle", "r_ankle", "l_knee", "r_knee")
            if k in mapping][:2]
    if not legs or not max(legs) > 0:
        raise ValueError(f"{bvh.path}: need l_ankle or l_knee mapped to detect units; pass scale=")
    leg = max(legs)
    top = next((mapping[k] for k in ("head", "neck") if k in mapping), None)
    if top is None:
        return leg / _LEG_SHARE * _HEIGHT_PER_PATH
    return (leg + _path_length(bvh, pelvis, bvh.index(top))) * _HEIGHT_PER_PATH


def detect_unit_scale(bvh: Bvh, mapping: dict[str, str]) -> float:
    """Metres per file unit: the UNIT_SCALES entry giving the most plausible adult standing height."""
    height = standing_height(bvh, mapping)
    return min(UNIT_SCALES.values(), key=lambda s: abs(np.log(height * s / _STANDING_HEIGHT_M)))


def unit_name(scale: float) -> str:
    """Name of a UNIT_SCALES value ('' when it is not one, e.g. a user scale)."""
    return next((k for k, v in UNIT_SCALES.items() if abs(v - scale) < 1e-12), "")


def _up_rotation(up: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking the dominant axis of `up` (a vector) to +Y (identity when it already is +Y)."""
    axis = int(np.argmax(np.abs(up)))
    sign = float(np.sign(up[axis]))
    e = np.zeros(3)
    e[axis] = sign
    return _swing(e[None], np.array([[0.0, 1.0, 0.0]]))[0]


def source_from_bvh(bvh: Bvh, mapping: dict[str, str], scale: float | None = None, up: str = "auto") -> SourceMotion:
    """FK a BVH into a SourceMotion: metres (scale None = detect), Y up (up: 'auto', 'y' or 'z')."""
    if bvh.num_frames == 0:
        raise ValueError(f"{bvh.path}: no frames")
    scale = detect_unit_scale(bvh, mapping) if scale is None else float(scale)
    pos, rot = bvh.fk()
    pos = pos * scale
    if up == "y":
        fix = np.eye(3)
    elif up == "z":
        fix = _up_rotation(np.array([0.0, 0.0, 1.0]))
    elif up == "auto":
        top = mapping.get("head", mapping.get("neck", mapping.get("spine3")))
        if top is None:
            raise ValueError(f"{bvh.path}: need head, neck or spine3 mapped to detect the up axis; pass up='y'")
        vec = np.median(pos[:, bvh.index(top)] - pos[:, bvh.index(mapping["pelvis"])], axis=0)
        fix = _up_rotation(vec)
    else:
        raise ValueError(f"up must be 'auto', 'y' or 'z', got {up!r}")
    pos = pos @ fix.T
    rot = fix @ rot
    pos = pos + _root_offset_shift(bvh, pos, fix, scale)
    return SourceMotion(list(bvh.names), list(bvh.parents), pos, rot, bvh.fps, Path(bvh.path).name, scale)


def _root_offset_shift(bvh: Bvh, pos: np.ndarray, fix: np.ndarray, scale: float) -> np.ndarray:
    """(3,) world shift adding the root's OFFSET back where the file means root position = OFFSET + channels.

    The BVH habit is that root position channels are absolute (they replace OFFSET), but some exporters
    (Reallusion iClone "origin at hip") write them relative to OFFSET: read the usual way the whole clip floats
    a metre below the floor. Pick the reading whose floor (low percentile of the lowest joint, Y up) is nearer 0.
    """
    offset = bvh.offsets[0]
    if not any(c in bvh.channels[0] for c in ("Xposition", "Yposition", "Zposition")) or not np.any(offset):
        return np.zeros(3)
    shift = fix @ (offset * scale)
    floor = float(np.percentile(pos[..., 1].min(axis=1), 5))
    return shift if abs(floor + shift[1]) < abs(floor) else np.zeros(3)


# --- small rotation helpers (numpy, batched) ------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 3), (T, 3) -> (T, 3, 3) smallest rotation turning direction a onto direction b (any axis if opposite)."""
    a, b = _unit(a), _unit(b)
    cross = np.cross(a, b)
    sin = np.linalg.norm(cross, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    axis = cross / np.maximum(sin, 1e-12)
    # Opposite directions: rotate by pi about any axis perpendicular to a.
    perp = np.cross(a, np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    axis = np.where(sin < 1e-9, _unit(perp), axis)
    return axis_angle_to_matrix(axis * np.arctan2(sin, cos))


# --- betas --------------------------------------------------------------------------------------------------------


def _nearest_mapped_ancestor(j: int, mapped: np.ndarray) -> int:
    p = SMPL_PARENTS[j]
    while p >= 0 and not mapped[p]:
        p = SMPL_PARENTS[p]
    return p


def fit_betas(body: Body, src: SourceMotion, src_idx: np.ndarray, root_pos: np.ndarray | None = None,
              ridge: float = 1e-5, iters: int = 5) -> np.ndarray:
    """Least-squares betas (10,) so SMPL distances between each mapped joint and its nearest mapped ancestor match
    the source's (median over frames). Rest joints are linear in betas (finite differences give the basis); the
    distances are norms of those, so a few Gauss-Newton steps converge. root_pos (T, 3): where the SMPL pelvis
    goes, if not on the source's root joint."""
    mapped = src_idx >= 0
    pairs = [(a, k) for k in range(1, NUM_JOINTS) if mapped[k] and (a := _nearest_mapped_ancestor(k, mapped)) >= 0]
    if not pairs:
        raise ValueError(f"{src.name}: no pair of mapped joints to fit betas to")
    a_idx = np.array([a for a, _ in pairs])
    k_idx = np.array([k for _, k in pairs])
    positions = src.positions[:, np.maximum(src_idx, 0)]  # (T, 24, 3) by SMPL joint (unmapped: unused)
    if root_pos is not None:
        positions = positions.copy()
        positions[:, 0] = root_pos
    target = np.median(np.linalg.norm(positions[:, k_idx] - positions[:, a_idx], axis=-1), 0)
    with torch.no_grad():
        probe = torch.cat((torch.zeros(1, NUM_BETAS), torch.eye(NUM_BETAS)), 0).double()
        rest = body.rest_joints(probe).double().numpy()  # (11, 24, 3)
    rest0, basis = rest[0], rest[1:] - rest[0]  # basis (10, 24, 3)
    vec0 = rest0[k_idx] - rest0[a_idx]  # (P, 3)
    dvec = basis[:, k_idx] - basis[:, a_idx]  # (10, P, 3)
    betas = np.zeros(NUM_BETAS)
    for _ in range(iters):
        vec = vec0 + np.einsum("b,bpc->pc", betas, dvec)
        length = np.linalg.norm(vec, axis=-1)
        jac = np.einsum("pc,bpc->pb", vec / np.maximum(length, 1e-9)[:, None], dvec)  # (P, 10)
        resid = target - length
        step = np.linalg.solve(jac.T @ jac + ridge * np.eye(NUM_BETAS), jac.T @ resid - ridge * betas)
        betas = betas + step
        if np.abs(step).max() < 1e-6:
            break
    return betas


# --- rotations ------------------------------------------------------------------------------------------------------


def _children(j: int) -> list[int]:
    return [k for k, p in enumerate(SMPL_PARENTS) if p == j]


def _first_mapped_below(j: int, mapped: np.ndarray) -> list[int]:
    """Mapped descendants of j reached without passing another mapped joint (one per branch, at most)."""
    out: list[int] = []
    stack = _children(j)
    while stack:
        k = stack.pop(0)
        if mapped[k]:
            out.append(k)
        else:
            stack = _children(k) + stack
    return out


def _rest_terms(j: int, glob_j: np.ndarray, src: SourceMotion, src_idx: np.ndarray, rest: np.ndarray,
                mapped: np.ndarray, parent_rot: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Wahba matrix B (3, 3) whose Kabsch rotation is C_j (R_smpl_j = R_src_j @ C_j), summed over frames.

    Pairs: SMPL rest direction j -> first mapped joint of each branch below, against the source's direction in the
    source joint's frame (weighted by bone length); plus a weak prior towards the parent's orientation, which
    alone sets what bones leave free: the twist about a single bone (the mean local twist becomes zero) and a
    leaf's orientation. Deeper joints are not used: they move, and fitting straight rest limbs to bent ones tilts
    C. Also returns `aim` (3,), the summed source direction of a single branch (zeros if several), which the
    correction then reproduces exactly. Sums over clips pool clips (see `calibrate`)."""
    b = np.zeros((3, 3))
    aim = np.zeros(3)
    targets = _first_mapped_below(j, mapped)
    for k in targets:
        v = rest[k] - rest[j]
        length = float(np.linalg.norm(v))
        if length < 1e-6:
            continue
        world = src.positions[:, src_idx[k]] - src.positions[:, src_idx[j]]  # (T, 3)
        keep = np.linalg.norm(world, axis=-1) > 1e-6
        local = _unit(np.einsum("tji,tj->ti", glob_j[keep], world[keep]))  # R_src^T @ world
        b += length * np.einsum("ti,j->ij", local, v / length)
        if len(targets) == 1:
            aim += local.sum(0)
    if parent_rot is not None:
        # Pairs (e_a, R_src^T R_parent e_a): C close to R_src^T R_parent means local rotation close to identity.
        b += _PARENT_PRIOR * np.einsum("tji,tjk->ik", glob_j, parent_rot)
    return b, aim


def _heading(root_rot: np.ndarray) -> np.ndarray:
    """(T, 3, 3) root rotations -> (T, 3, 3) their rotation about +Y alone (the body's facing direction)."""
    fwd = root_rot[:, :, 2]  # rest forward is +Z
    yaw = np.arctan2(fwd[:, 0], fwd[:, 2])
    return axis_angle_to_matrix(np.stack((np.zeros_like(yaw), yaw, np.zeros_like(yaw)), -1))


def _head_terms(glob_head: np.ndarray, root_rot: np.ndarray, src: SourceMotion, src_idx: np.ndarray
                ) -> tuple[np.ndarray, int]:
    """Head Wahba matrix from upright frames (standing upright, the face looks where the body faces) and their count.

    The head ends the chain, so no bone fixes its orientation, and skeletons place neck and head joints
    differently (SMPL's head joint sits 40 degrees forward of its neck, Bandai's straight above): aligning the
    neck bone tilts the neck, and a head that merely followed it would face the sky. The face keypoints come from
    this rotation, so it is calibrated on what is known instead.
    """
    up = _unit(src.positions[:, src_idx[_HEAD]] - src.positions[:, src_idx[0]])
    upright = up[:, 1] > np.cos(np.radians(_UPRIGHT_DEG))
    b = np.einsum("tji,tjk->ik", glob_head[upright], _heading(root_rot[upright]))  # sum of R_src^T R_heading
    return b, int(upright.sum())


def _root_offset(root_rot: np.ndarray, src: SourceMotion, src_idx: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Constant pelvis-frame offset d (3,) placing SMPL's hips on the source's hips (least squares over frames).

    A source root joint is rarely where SMPL's pelvis sits (Bandai's Hips is 2 cm above the hip joints, SMPL's
    pelvis 9 cm): without the shift the whole leg chain, feet included, would sit off by the difference.
    """
    hips = [k for k in (1, 2) if src_idx[k] >= 0]
    if not hips:
        return np.zeros(3)
    root = src.positions[:, src_idx[0]]
    local = [np.einsum("tji,tj->ti", root_rot, src.positions[:, src_idx[k]] - root) - rest[k] for k in hips]
    return np.concatenate(local, 0).mean(0)


def _source_index(src: SourceMotion, mapping: dict[str, str]) -> np.ndarray:
    unknown = [k for k in mapping if k not in SMPL_JOINT_NAMES]
    if unknown or "pelvis" not in mapping:
        raise ValueError(f"mapping needs 'pelvis' and SMPL joint names only; bad keys {unknown}")
    src_idx = np.full(NUM_JOINTS, -1)
    for smpl, name in mapping.items():
        src_idx[SMPL_JOINT_NAMES.index(smpl)] = src.index(name)
    return src_idx


class _ClipSolver:
    """Per-clip state of the joint-by-joint solve: betas, rest joints, SMPL global rotations and positions so far.

    `terms(j)` gives the Wahba matrices for joint j's rest correction, `apply(j, C)` fixes joint j. Splitting the
    two lets `calibrate` pool the terms of many clips into one correction per skeleton.
    """

    def __init__(self, src: SourceMotion, mapping: dict[str, str], body: Body, hip_offset: bool,
                 root_correction: np.ndarray | None) -> None:
        self.src, self.hip_offset = src, hip_offset
        self.src_idx = _source_index(src, mapping)
        self.mapped = self.src_idx >= 0
        frames = src.positions.shape[0]
        if frames == 0:
            raise ValueError(f"{src.name}: no frames")
        # Betas and the root placement depend on each other (the shifted pelvis changes pelvis -> spine distances):
        # two rounds settle it (the shift is a few cm).
        self.root_pos = src.positions[:, self.src_idx[0]]
        glob_root = src.rotations[:, self.src_idx[0]]
        for _ in range(2 if hip_offset else 1):
            self.betas = fit_betas(body, src, self.src_idx, self.root_pos)
            with torch.no_grad():
                rest = body.rest_joints(torch.as_tensor(self.betas[None], dtype=torch.float64))
            self.rest = rest.double().numpy()[0]
            if hip_offset:
                corr = root_correction if root_correction is not None else self.correction(0, *self.terms(0))
                self._place_root(glob_root @ corr)
        self.glob = np.zeros((NUM_JOINTS, frames, 3, 3))
        self.pos = np.zeros((NUM_JOINTS, frames, 3))
        self.aimed_at: dict[int, int] = {}  # joint -> the mapped joint its per-frame swing points at

    def _place_root(self, root_rot: np.ndarray) -> None:
        src, idx = self.src, self.src_idx
        self.root_pos = src.positions[:, idx[0]]
        if self.hip_offset:
            self.root_pos = self.root_pos + root_rot @ _root_offset(root_rot, src, idx, self.rest)

    def terms(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Additive statistics for mapped joint j's correction: (B from bones, aim direction sum, B from upright
        frames, upright frame count). The upright terms are filled only for a head with nothing mapped below."""
        p = SMPL_PARENTS[j]
        glob_src = self.src.rotations[:, self.src_idx[j]]
        b, aim = _rest_terms(j, glob_src, self.src, self.src_idx, self.rest, self.mapped,
                             None if p < 0 else self.glob[p])
        if j == _HEAD and not _first_mapped_below(j, self.mapped):
            b_up, n_up = _head_terms(glob_src, self.glob[0], self.src, self.src_idx)
            return b, aim, b_up, n_up
        return b, aim, np.zeros((3, 3)), 0

    def correction(self, j: int, b: np.ndarray, aim: np.ndarray, b_up: np.ndarray, n_up: int) -> np.ndarray:
        """C_j from (pooled) terms: Kabsch of the upright terms for a calibrated head, else of the bone terms,
        then turned so the single branch below (if any) points exactly along its mean source direction; the
        per-frame swing then stays small and the twist stays the pooled one."""
        if n_up >= _MIN_UPRIGHT_FRAMES:
            return kabsch(b_up)
        corr = kabsch(b)
        targets = _first_mapped_below(j, self.mapped)
        if len(targets) == 1 and np.linalg.norm(aim) > 1e-9:
            corr = _swing((corr @ (self.rest[targets[0]] - self.rest[j]))[None], aim[None])[0] @ corr
        return corr

    def twist_terms(self, j: int, corr: np.ndarray) -> np.ndarray:
        """(2,) sums of (cos, sin) over frames of the twist angle, about joint j's single bone, of the SMPL local
        rotation that `corr` would give (zeros where the twist is not free: several branches, leaves, heads)."""
        targets = _first_mapped_below(j, self.mapped)
        p = SMPL_PARENTS[j]
        if len(targets) != 1 or p < 0:
            return np.zeros(2)
        axis = _unit(self.rest[targets[0]] - self.rest[j])
        local = np.swapaxes(self.glob[p], -1, -2) @ self.src.rotations[:, self.src_idx[j]] @ corr
        q = matrix_to_quaternion(local)  # (T, 4) x, y, z, w
        twist = 2.0 * np.arctan2(q[:, :3] @ axis, q[:, 3])
        return np.array([np.cos(twist).sum(), np.sin(twist).sum()])

    def untwist(self, j: int, corr: np.ndarray, twist_sums: np.ndarray) -> np.ndarray:
        """corr turned about its bone so the (pooled) mean local twist is zero: a bone's direction leaves its twist
        free, and 'no twist on average' is the neutral choice that recovers C = I for a T-pose source."""
        targets = _first_mapped_below(j, self.mapped)
        if len(targets) != 1 or np.hypot(*twist_sums) < 1e-9:
            return corr
        mean = np.arctan2(twist_sums[1], twist_sums[0])
        axis = _unit(self.rest[targets[0]] - self.rest[j])
        return corr @ axis_angle_to_matrix(-mean * axis)

    def apply(self, j: int, corr: np.ndarray | None) -> None:
        """Fix joint j's global rotation and position (corr: C_j for a mapped joint, ignored otherwise)."""
        src, idx, rest, glob, pos = self.src, self.src_idx, self.rest, self.glob, self.pos
        p = SMPL_PARENTS[j]
        targets = _first_mapped_below(j, self.mapped)
        if self.mapped[j]:
            rot = src.rotations[:, idx[j]] @ corr
            if p < 0:
                self._place_root(rot)
                pos[0] = self.root_pos
            else:
                pos[j] = pos[p] + glob[p] @ (rest[j] - rest[p])
            if len(targets) == 1:
                k = targets[0]
                rot = _swing(rot @ (rest[k] - rest[j]), self._aim_target(j, k)) @ rot
                self.aimed_at[j] = k
            glob[j] = rot
            return
        if p < 0:
            raise ValueError("the pelvis must be mapped")
        pos[j] = pos[p] + glob[p] @ (rest[j] - rest[p])
        if len(targets) == 1 and self.aimed_at.get(p) != targets[0]:
            k = targets[0]
            glob[j] = _swing(glob[p] @ (rest[k] - rest[j]), src.positions[:, idx[k]] - pos[j]) @ glob[p]
            self.aimed_at[j] = k
        elif len(targets) == 1:
            glob[j] = glob[p]
            self.aimed_at[j] = targets[0]
        elif targets:
            b = np.zeros((pos.shape[1], 3, 3))
            for k in targets:
                b += np.einsum("ti,tj->tij", src.positions[:, idx[k]] - pos[j], glob[p] @ (rest[k] - rest[j]))
            glob[j] = kabsch(b) @ glob[p]
        else:
            glob[j] = glob[p]

    def _aim_target(self, j: int, k: int) -> np.ndarray:
        """(T, 3) direction mapped joint j's bone should take towards mapped joint k.

        From SMPL's own joint position when the bone is long, so offsets inherited from above stop there; from
        the source joint when it is short (collar, neck -> head), where a few cm of inherited offset would turn
        the bone by tens of degrees.
        """
        src, idx = self.src, self.src_idx
        if np.linalg.norm(self.rest[k] - self.rest[j]) >= _AIM_FROM_SMPL_MIN_BONE:
            return src.positions[:, idx[k]] - self.pos[j]
        return src.positions[:, idx[k]] - src.positions[:, idx[j]]

    def local_pose(self) -> np.ndarray:
        """(T, 24, 3) local axis-angle from the solved global rotations."""
        local = np.empty_like(self.glob)
        local[0] = self.glob[0]
        for j in range(1, NUM_JOINTS):
            local[j] = np.swapaxes(self.glob[SMPL_PARENTS[j]], -1, -2) @ self.glob[j]
        return matrix_to_axis_angle(np.ascontiguousarray(local.transpose(1, 0, 2, 3)))


def _solve_correction(solvers: list[_ClipSolver], j: int) -> np.ndarray:
    """C_j for mapped joint j from the pooled terms of one or more clips of a skeleton."""
    (b, aim, b_up, n_up), *rest = [s.terms(j) for s in solvers]
    for t in rest:  # in clip order, as the sums always were
        b, aim, b_up, n_up = b + t[0], aim + t[1], b_up + t[2], n_up + t[3]
    corr = solvers[0].correction(j, b, aim, b_up, n_up)
    if n_up >= _MIN_UPRIGHT_FRAMES:
        return corr
    first, *others = [s.twist_terms(j, corr) for s in solvers]
    return solvers[0].untwist(j, corr, sum(others, first))


def calibrate(sources: list[SourceMotion], mapping: dict[str, str], body: Body | None = None,
              hip_offset: bool = True) -> np.ndarray:
    """One set of rest corrections (24, 3, 3) for a skeleton, pooled over several clips of it.

    Per-clip fits leave each single-bone joint's twist to that clip's motion, so the same source pose could map to
    SMPL rotations tens of degrees apart in two clips; pooling gives every clip of a skeleton the same C_j.
    Unmapped joints get identity (unused).
    """
    if not sources:
        raise ValueError("calibrate needs at least one clip")
    body = BuiltinBody() if body is None else body
    solvers = [_ClipSolver(s, mapping, body, hip_offset, None) for s in sources]
    corrections = np.broadcast_to(np.eye(3), (NUM_JOINTS, 3, 3)).copy()
    for j in range(NUM_JOINTS):
        if solvers[0].mapped[j]:
            corrections[j] = _solve_correction(solvers, j)
        for s in solvers:
            s.apply(j, corrections[j])
    return corrections


def retarget(src: SourceMotion, mapping: dict[str, str], body: Body | None = None, preset: str = "",
             hip_offset: bool = True, corrections: np.ndarray | None = None) -> RetargetResult:
    """Source motion + {smpl_joint: source_joint} -> SMPL pose, pelvis translation and betas (see module doc).

    hip_offset: shift the SMPL pelvis (constant, in its own frame) so SMPL's hip joints land on the source's,
    instead of putting it on the source root joint; this keeps legs and feet (floor contact) in place.
    corrections: (24, 3, 3) rest corrections from `calibrate` (consistent across clips); None fits this clip alone.
    """
    body = BuiltinBody() if body is None else body
    if corrections is not None and np.shape(corrections) != (NUM_JOINTS, 3, 3):
        raise ValueError(f"corrections must be ({NUM_JOINTS}, 3, 3), got {np.shape(corrections)}")
    solver = _ClipSolver(src, mapping, body, hip_offset, None if corrections is None else corrections[0])
    for j in range(NUM_JOINTS):
        corr = None
        if solver.mapped[j]:
            corr = corrections[j] if corrections is not None else _solve_correction([solver], j)
        solver.apply(j, corr)
    pose_aa = solver.local_pose().astype(np.float32)
    result = RetargetResult(pose_aa, solver.root_pos.astype(np.float32), solver.betas.astype(np.float32),
                            float(src.fps), np.full(NUM_JOINTS, np.nan), dict(mapping), src.name, preset, src.scale)
    result.joint_error = joint_errors(result, src, solver.src_idx, body)
    return result


def smpl_joints(result: RetargetResult, body: Body | None = None) -> np.ndarray:
    """(T, 24, 3) SMPL joints of a result through the body model (float32 forward, as training will see it)."""
    body = BuiltinBody() if body is None else body
    with torch.no_grad():
        out = body(torch.from_numpy(result.pose_aa), torch.from_numpy(result.betas)[None].expand(result.num_frames, -1),
                   torch.from_numpy(result.trans))
    return out.joints.numpy()


def joint_errors(result: RetargetResult, src: SourceMotion, src_idx: np.ndarray,
                 body: Body | None = None) -> np.ndarray:
    """(24,) mean distance (m) between each SMPL joint and its mapped source joint; NaN where unmapped."""
    joints = smpl_joints(result, body)
    err = np.full(NUM_JOINTS, np.nan, dtype=np.float32)
    mapped = np.flatnonzero(src_idx >= 0)
    dist = np.linalg.norm(joints[:, mapped] - src.positions[:, src_idx[mapped]], axis=-1)
    err[mapped] = dist.mean(0)
    return err


def load_source(path: str | Path, preset: str = "auto", mapping_file: str | Path | None = None,
                scale: float | None = None, up: str = "auto") -> tuple[SourceMotion, dict[str, str], str]:
    """Read a BVH and prepare it: (SourceMotion, mapping, label). preset 'auto' maps any humanoid skeleton
    (mocap/retarget_auto.py; the label is its naming family); a named preset or mapping file maps by names."""
    bvh = read_bvh(path)
    if mapping_file is None and preset == "auto":
        auto = auto_mapping(bvh)
        return source_from_bvh(auto.bvh, auto.mapping, scale, up), auto.mapping, auto.family
    label, mapping = get_mapping(bvh.names, preset, mapping_file)
    return source_from_bvh(bvh, mapping, scale, up), mapping, label


def retarget_bvh(path: str | Path, preset: str = "auto", mapping_file: str | Path | None = None,
                 scale: float | None = None, up: str = "auto", body: Body | None = None,
                 corrections: np.ndarray | None = None) -> RetargetResult:
    """Read a BVH file and retarget it (preset 'auto' | 'bandai' | 'cmu' | 'poser', or a mapping JSON file)."""
    src, mapping, label = load_source(path, preset, mapping_file, scale, up)
    return retarget(src, mapping, body, label, corrections=corrections)


def calibrate_files(files: list[Path] | list[str], preset: str = "auto", mapping_file: str | Path | None = None,
                    max_files: int = 48, frame_step: int = 3) -> np.ndarray:
    """Pooled rest corrections (24, 3, 3) from up to max_files evenly spaced files of one skeleton (every
    frame_step-th frame: neighbouring frames add little). Files that fail to load are skipped."""
    sources, mapping = [], None
    for f in pick_evenly([Path(f) for f in files], max_files):
        try:
            src, m, _ = load_source(f, preset, mapping_file)
        except ValueError:
            continue
        if mapping is not None and m != mapping:
            raise ValueError(f"{f}: calibration files must share one skeleton mapping")
        mapping = m
        sources.append(SourceMotion(src.names, src.parents, src.positions[::frame_step], src.rotations[::frame_step],
                                    src.fps / frame_step, src.name, src.scale))
    if mapping is None:
        raise ValueError("no calibration file could be read")
    return calibrate(sources, mapping)


def resample(result: RetargetResult, fps: float) -> RetargetResult:
    """Resample to `fps`: rotations by normalized quaternion interpolation, translation linearly."""
    if abs(result.fps - fps) < 1e-2 * fps / 30.0 or result.num_frames < 2:
        return result
    duration = (result.num_frames - 1) / result.fps
    # A quarter-frame slack: headers round the frame time (CMU's 0.008333 s is 120.005 fps), which must not
    # drop the last output frame; times past the last source frame hold it.
    count = int(np.floor(duration * fps + 0.25)) + 1
    t = np.minimum(np.arange(count) / fps * result.fps, result.num_frames - 1)  # in source frames
    i0 = np.minimum(np.floor(t).astype(np.int64), result.num_frames - 2)
    alpha = (t - i0)[:, None]
    q = axis_angle_to_quaternion(result.pose_aa.astype(np.float64))  # (T, 24, 4)
    q0, q1 = q[i0], q[i0 + 1]
    q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
    qi = q0 * (1 - alpha[..., None]) + q1 * alpha[..., None]
    pose = quaternion_to_axis_angle(qi).astype(np.float32)
    trans = (result.trans[i0] * (1 - alpha) + result.trans[i0 + 1] * alpha).astype(np.float32)
    return RetargetResult(pose, trans, result.betas, float(fps), result.joint_error, result.mapping, result.name,
                          result.preset, result.scale)


# --- CLI --------------------------------------------------------------------------------------------------------------


def pick_evenly(files: list[Path], limit: int | None) -> list[Path]:
    """Evenly spaced subsample (so a limit still covers every content/style), or all files."""
    if limit is None or limit >= len(files):
        return files
    idx = np.unique(np.linspace(0, len(files) - 1, max(limit, 1)).round().astype(int))
    return [files[i] for i in idx]


def evaluate(root: str | Path, limit: int | None = None, preset: str = "auto") -> dict:
    """Frame-weighted mean SMPL-vs-source distance over mapped joints, over the BVH files under root."""
    files = pick_evenly(bvh_files(root), limit)
    t0 = time.perf_counter()
    corrections = calibrate_files(files, preset)
    sums = np.zeros(NUM_JOINTS)
    frames_total, per_file, failures = 0, [], []
    for f in files:
        try:
            res = retarget_bvh(f, preset, corrections=corrections)
        except ValueError as exc:
            failures.append(str(exc))
            continue
        sums += np.nan_to_num(res.joint_error) * res.num_frames
        frames_total += res.num_frames
        per_file.append((res.mean_error, f.name))
    if not frames_total:
        raise ValueError(f"{root}: no file could be retargeted ({failures[:3]})")
    per_joint = sums / frames_total
    mapped = per_joint > 0
    worst = max(per_file)
    return {
        "dir": str(root), "files": len(per_file), "failed": len(failures), "frames": frames_total,
        "mean_error_cm": round(100 * float(per_joint[mapped].mean()), 3),
        "worst_file": worst[1], "worst_file_error_cm": round(100 * worst[0], 3),
        "per_joint_cm": {SMPL_JOINT_NAMES[j]: round(100 * float(per_joint[j]), 2) for j in np.flatnonzero(mapped)},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def check_file(path: str | Path) -> dict:
    """What the automatic mapping makes of one file: family, method, mapping, derived joints, units."""
    bvh = read_bvh(path)
    auto = auto_mapping(bvh)
    scale = detect_unit_scale(auto.bvh, auto.mapping)
    return {"file": str(path), "family": auto.family, "method": auto.method, "units": unit_name(scale),
            "metres_per_unit": round(scale, 6), "height_m": round(standing_height(auto.bvh, auto.mapping) * scale, 3),
            "frames": bvh.num_frames, "fps": round(bvh.fps, 3),
            "mapping": {j: auto.mapping[j] for j in SMPL_JOINT_NAMES if j in auto.mapping}, "derived": auto.derived}


def _check_main(paths: list[str], as_json: bool) -> int:
    """--check: print each file's mapping; 1 when any file cannot be mapped (each named with its reason)."""
    failed = 0
    files: list[str] = []
    for p in paths:  # a folder stands for the BVH files under it
        try:
            found = bvh_files(p)
        except ValueError as exc:
            found = []
            print(json.dumps({"file": p, "error": str(exc)}) if as_json else f"{p}: CANNOT MAP: {exc}")
            failed += 1
        if Path(p).is_dir() and not found:
            print(json.dumps({"file": p, "error": "no .bvh files"}) if as_json else f"{p}: no .bvh files")
            failed += 1
        files.extend(str(f) for f in found)
    for p in files:
        try:
            out = check_file(p)
        except ValueError as exc:
            failed += 1
            print(json.dumps({"file": p, "error": str(exc)}) if as_json else f"{p}: CANNOT MAP: {exc}")
            continue
        if as_json:
            print(json.dumps(out))
            continue
        print(f"{p}: family {out['family']} ({out['method']}), units {out['units'] or out['metres_per_unit']} "
              f"({out['metres_per_unit']} m/unit, standing height {out['height_m']} m), "
              f"{out['frames']} frames at {out['fps']} fps")
        for j in SMPL_JOINT_NAMES:
            if j in out["mapping"]:
                how = f"  ({out['derived'][j]})" if j in out["derived"] else ""
                print(f"  {j:<11} <- {out['mapping'][j]}{how}")
        print("  unmapped: " + (", ".join(j for j in SMPL_JOINT_NAMES if j not in out["mapping"]) or "none"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mocap.retarget", description="Retarget BVH motion to SMPL-24.")
    ap.add_argument("path", nargs="?", help="a .bvh/.bvh.xz file to retarget and summarize")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="print the automatic joint mapping and units of "
                    "each file (a folder: of each BVH under it); exit 1 if any cannot be mapped")
    ap.add_argument("--eval", metavar="DIR", help="mean retarget error over the BVH files under DIR")
    ap.add_argument("--limit", type=int, help="with --eval: evenly spaced subset of this many files")
    ap.add_argument("--preset", default="auto", help="auto | bandai | cmu | poser")
    ap.add_argument("--mapping", help="JSON file {smpl_joint: source_joint} (overrides --preset)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    if args.check:
        return _check_main(args.check, args.json)
    if args.eval:
        out = evaluate(args.eval, args.limit, args.preset)
    elif args.path:
        res = retarget_bvh(args.path, args.preset, args.mapping)
        out = {"file": args.path, "preset": res.preset, "frames": res.num_frames, "fps": round(res.fps, 3),
               "scale": res.scale, "betas": [round(float(b), 3) for b in res.betas],
               "mean_error_cm": round(100 * res.mean_error, 3)}
    else:
        ap.error("give a file, --check FILE..., or --eval DIR")
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
