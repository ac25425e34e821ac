"""Widen the motion prior while staying human: mirroring, upper/lower recombination, bounded joint perturbations
and procedural everyday poses (balance, kick, reach, crouch, lean, sit) blended into real clips.

Everything acts on `MotionWindows` (local joint rotations + pelvis path) before the synthetic camera sees them.
Joint limits (`JOINT_LIMITS`) bound every change; `keep_feet_grounded` keeps the lowest foot at the original clip's
height (a crouch lowers the pelvis instead of pushing the feet through the floor) and planted feet planted. `python -m
mocap.data.plausibility` measures how human the result stays (docs/data_card.md has the figures).

SMPL local axes at rest (T-pose, Y up, +Z forward, +X the person's left): knee flexion is +X, hip flexion -X,
forward spine flexion +X; raising the left arm sideways is +Z, the right arm -Z; bending the left elbow is -Y,
the right elbow +Y.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion, quaternion_to_matrix
from ..skeleton import FOOT_KEYPOINT_IDS, NUM_JOINTS, SMPL_JOINT_FLIP, SMPL_JOINT_NAMES
from .contacts import foot_contacts
from .motion_bank import MotionWindows

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
#: Joints taken from the donor clip when recombining (spine1 stays with the pelvis so the waist stays consistent).
UPPER_BODY = tuple(_J[n] for n in ("spine2", "spine3", "neck", "l_collar", "r_collar", "head", "l_shoulder",
                                   "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand"))


@dataclass(frozen=True)
class Limit:
    """A joint's range: a hinge (angle about `axis` in [lo, hi] degrees, at most `off` degrees off-axis) or a
    cone (total rotation at most `hi` degrees) when axis is None."""

    hi: float
    axis: tuple[float, float, float] | None = None
    lo: float = 0.0
    off: float = 15.0


#: Ranges (degrees) used to clamp augmented poses and to count violations: anatomical ranges widened to the
#: 99.9th percentile of the retargeted mocap (retargeting puts the rest-pose offsets into collars, neck and elbow
#: twist), so the real data sits inside them. A proxy, not a medical table.
JOINT_LIMITS: dict[int, Limit] = {
    _J["l_hip"]: Limit(125), _J["r_hip"]: Limit(125),
    _J["l_knee"]: Limit(155, (1, 0, 0), -5), _J["r_knee"]: Limit(155, (1, 0, 0), -5),
    _J["spine1"]: Limit(90), _J["spine2"]: Limit(50), _J["spine3"]: Limit(50),
    _J["l_ankle"]: Limit(60), _J["r_ankle"]: Limit(60), _J["l_foot"]: Limit(50), _J["r_foot"]: Limit(50),
    _J["neck"]: Limit(85), _J["head"]: Limit(60), _J["l_collar"]: Limit(70), _J["r_collar"]: Limit(70),
    _J["l_shoulder"]: Limit(160), _J["r_shoulder"]: Limit(160),
    _J["l_elbow"]: Limit(155, (0, -1, 0), -5, 60), _J["r_elbow"]: Limit(155, (0, 1, 0), -5, 60),
    _J["l_wrist"]: Limit(90), _J["r_wrist"]: Limit(90), _J["l_hand"]: Limit(60), _J["r_hand"]: Limit(60),
}


@dataclass(frozen=True)
class Augment:
    """Probabilities (per window) and sizes of each augmentation."""

    mirror_prob: float = 0.5
    recombine_prob: float = 0.25
    perturb_prob: float = 0.5
    perturb_deg: float = 18.0       # amplitude of slow per-joint rotation noise (before clamping)
    pose_prob: float = 0.35         # blend one procedural pose (balance, kick, reach, crouch, lean, sit) in


def limit_violation_deg(pose_aa: torch.Tensor) -> torch.Tensor:
    """pose_aa: (..., 24, 3) local axis-angle -> (..., 24) degrees beyond the joint's range (0 inside; root 0)."""
    out = torch.zeros(pose_aa.shape[:-1], dtype=pose_aa.dtype)
    for j, lim in JOINT_LIMITS.items():
        aa = pose_aa[..., j, :]
        if lim.axis is None:
            out[..., j] = (torch.rad2deg(aa.norm(dim=-1)) - lim.hi).clamp_min(0)
        else:
            axis = torch.tensor(lim.axis, dtype=aa.dtype)
            along = torch.rad2deg(aa @ axis)
            off = torch.rad2deg((aa - (aa @ axis)[..., None] * axis).norm(dim=-1))
            out[..., j] = (along - lim.hi).clamp_min(0) + (lim.lo - along).clamp_min(0) + (off - lim.off).clamp_min(0)
    return out


def clamp_to_limits(pose_aa: torch.Tensor) -> torch.Tensor:
    """pose_aa: (..., 24, 3) -> the same with every joint pulled back inside its range (axis-angle projection)."""
    out = pose_aa.clone()
    for j, lim in JOINT_LIMITS.items():
        aa = out[..., j, :]
        if lim.axis is None:
            norm = aa.norm(dim=-1, keepdim=True)
            cap = np.deg2rad(lim.hi)
            out[..., j, :] = aa * (cap / norm.clamp_min(1e-9)).clamp_max(1.0)
        else:
            axis = torch.tensor(lim.axis, dtype=aa.dtype)
            along = (aa @ axis).clamp(np.deg2rad(lim.lo), np.deg2rad(lim.hi))
            rest = aa - (aa @ axis)[..., None] * axis
            rest = rest * (np.deg2rad(lim.off) / rest.norm(dim=-1, keepdim=True).clamp_min(1e-9)).clamp_max(1.0)
            out[..., j, :] = along[..., None] * axis + rest
    return out


def mirror(motion: MotionWindows, which: torch.Tensor) -> MotionWindows:
    """Reflect the windows selected by `which` (B,) bool through the body's sagittal plane (x -> -x)."""
    flip = list(SMPL_JOINT_FLIP)
    rot = motion.pose_rotmat.clone()
    rot[which] = (_MIRROR @ motion.pose_rotmat[which][:, :, flip] @ _MIRROR)
    trans = motion.trans.clone()
    trans[which, :, 0] = -trans[which, :, 0]
    return MotionWindows(rot, trans, motion.betas, motion.dt)


#: Joints whose rotation moves the left / right foot point.
LEFT_LEG = tuple(_J[n] for n in ("l_hip", "l_knee", "l_ankle", "l_foot"))
RIGHT_LEG = tuple(_J[n] for n in ("r_hip", "r_knee", "r_ankle", "r_foot"))


def _swing_weight(motion: MotionWindows, body: torch.nn.Module, smooth_frames: int = 9) -> np.ndarray:
    """(B, T, 8) weight of the leg perturbation (LEFT_LEG then RIGHT_LEG joints): 0 while that foot is planted,
    1 in swing, eased over `smooth_frames`. A stance leg that is bent drags its foot over the floor, which no
    single pelvis shift (`keep_feet_grounded`) can undo when both feet are down."""
    b, t = motion.pose_rotmat.shape[:2]
    dt = motion.dt if motion.dt is not None else torch.full((b, t), 1 / 30)
    with torch.no_grad():
        kp = body(motion.pose_rotmat.reshape(b * t, NUM_JOINTS, 3, 3), motion.betas.repeat_interleave(t, 0),
                  motion.trans.reshape(b * t, 3)).keypoints
    planted = foot_contacts(kp[:, list(FOOT_KEYPOINT_IDS)].reshape(b, t, 4, 3), dt).numpy()
    sides = np.stack((planted[..., :2].any(-1), planted[..., 2:].any(-1)), -1).astype(np.float64)  # (B, T, 2)
    swing = np.stack([_moving_average(1.0 - sides[i], smooth_frames) for i in range(b)])
    return np.repeat(swing, len(LEFT_LEG), axis=-1)


def _smooth_noise(rng: np.random.Generator, b: int, t: int, joints: int, seconds: np.ndarray) -> np.ndarray:
    """(B, T, J, 3) smooth unit-amplitude noise: a few random sinusoids per joint axis (0.1-1 Hz)."""
    freq = rng.uniform(0.1, 1.0, size=(b, 1, joints, 3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(b, 1, joints, 3, 2))
    tt = seconds[:, :, None, None, None]
    return np.sin(2 * np.pi * freq * tt + phase).mean(-1) * np.sqrt(2)


def _pose_target(rng: np.random.Generator, kind: str) -> dict[int, np.ndarray]:
    """One procedural pose as absolute local axis-angle targets (radians) for the joints it moves."""
    d = np.deg2rad
    side = rng.choice(["l", "r"])
    sgn = 1.0 if side == "l" else -1.0
    other = "r" if side == "l" else "l"
    if kind == "balance":     # stand on one leg, the other raised, arms out for balance
        return {_J[f"{side}_hip"]: np.array([-d(rng.uniform(30, 100)), 0, sgn * d(rng.uniform(0, 30))]),
                _J[f"{side}_knee"]: np.array([d(rng.uniform(20, 120)), 0, 0]),
                _J["l_shoulder"]: np.array([0, 0, d(rng.uniform(0, 60))]),
                _J["r_shoulder"]: np.array([0, 0, -d(rng.uniform(0, 60))])}
    if kind == "kick":        # leg swung forward, knee nearly straight
        return {_J[f"{side}_hip"]: np.array([-d(rng.uniform(50, 110)), 0, 0]),
                _J[f"{side}_knee"]: np.array([d(rng.uniform(0, 30)), 0, 0]),
                _J["spine1"]: np.array([-d(rng.uniform(0, 20)), 0, 0])}
    if kind == "reach":       # arm forward / up, trunk leaning after it
        return {_J[f"{side}_shoulder"]: np.array([0, -sgn * d(rng.uniform(40, 90)), sgn * d(rng.uniform(0, 80))]),
                _J[f"{side}_elbow"]: np.array([0, -sgn * d(rng.uniform(0, 40)), 0]),
                _J["spine1"]: np.array([d(rng.uniform(0, 30)), 0, 0]),
                _J["spine2"]: np.array([d(rng.uniform(0, 20)), 0, 0])}
    if kind == "crouch":      # deep knee bend, trunk forward
        hip, knee = rng.uniform(60, 110), rng.uniform(80, 140)
        return {_J["l_hip"]: np.array([-d(hip), 0, d(5)]), _J["r_hip"]: np.array([-d(hip), 0, -d(5)]),
                _J["l_knee"]: np.array([d(knee), 0, 0]), _J["r_knee"]: np.array([d(knee), 0, 0]),
                _J["l_ankle"]: np.array([d(knee - hip) * 0.5, 0, 0]), _J["r_ankle"]: np.array([d(knee - hip) * 0.5, 0, 0]),
                _J["spine1"]: np.array([d(rng.uniform(10, 35)), 0, 0])}
    if kind == "lean":        # trunk bent forward, back or sideways
        axis = rng.choice([0, 2])
        amount = d(rng.uniform(-25, 35) if axis == 0 else rng.uniform(-25, 25))
        return {_J[n]: np.eye(3)[axis] * amount for n in ("spine1", "spine2", "spine3")}
    if kind == "sit":         # seated on a chair-height support, feet on the floor
        return {_J["l_hip"]: np.array([-d(rng.uniform(75, 95)), 0, d(rng.uniform(0, 15))]),
                _J["r_hip"]: np.array([-d(rng.uniform(75, 95)), 0, -d(rng.uniform(0, 15))]),
                _J["l_knee"]: np.array([d(rng.uniform(70, 100)), 0, 0]),
                _J["r_knee"]: np.array([d(rng.uniform(70, 100)), 0, 0]),
                _J[f"{other}_shoulder"]: np.array([0, 0, 0])}
    raise ValueError(f"unknown pose kind {kind!r}")


POSE_KINDS: tuple[str, ...] = ("balance", "kick", "reach", "crouch", "lean", "sit")


def _envelope(rng: np.random.Generator, seconds: np.ndarray, fast: bool) -> np.ndarray:
    """(T,) smooth 0 -> 1 -> 0 blend weight: rise, hold, fall (a kick is fast; a sit is slow)."""
    span = seconds[-1] - seconds[0] + 1e-6
    rise = rng.uniform(0.1, 0.3) if fast else rng.uniform(0.3, 0.8)
    start = rng.uniform(-0.3, 0.6) * span
    hold = rng.uniform(0.1, 0.5) if fast else rng.uniform(0.5, 3.0)
    t = seconds - seconds[0]
    up = np.clip((t - start) / rise, 0, 1)
    down = np.clip((start + rise + hold + rise - t) / rise, 0, 1)
    w = np.minimum(up, down)
    return w * w * (3 - 2 * w)                                                  # smoothstep


def _nlerp_to(rot: torch.Tensor, target_aa: np.ndarray, weight: np.ndarray) -> torch.Tensor:
    """rot: (T, 3, 3), target (3,), weight (T,) -> rotations moved towards the target by `weight`."""
    q0 = matrix_to_quaternion(rot)
    q1 = matrix_to_quaternion(axis_angle_to_matrix(torch.as_tensor(target_aa, dtype=rot.dtype)))[None].expand_as(q0)
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)
    w = torch.as_tensor(weight, dtype=rot.dtype)[:, None]
    q = q0 * (1 - w) + q1 * w
    return quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True))


def _hold_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """values: (T, D), valid: (T,) -> invalid frames take the last valid value (the first valid before it; zeros
    when none is valid)."""
    if not valid.any():
        return np.zeros_like(values)
    idx = np.where(valid, np.arange(len(valid)), 0)
    idx = np.maximum.accumulate(idx)
    idx = np.where(valid[idx], idx, int(np.argmax(valid)))
    return values[idx]


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """x: (T, D) -> centred moving average over `width` frames (edges use the frames that exist)."""
    kernel = np.ones(width)
    pad = width // 2
    num = np.stack([np.convolve(np.pad(x[:, d], pad, mode="edge"), kernel, "valid") for d in range(x.shape[1])], -1)
    return num / width


def keep_feet_grounded(before: MotionWindows, after: MotionWindows, body: torch.nn.Module,
                       smooth_frames: int = 5) -> MotionWindows:
    """Move the pelvis so the edited motion stands where the original did.

    1. Height: each frame's lowest foot point at the original one's height (a crouch lowers the pelvis instead
       of pushing the feet through the floor).
    2. Stance: a foot point planted in the original (`contacts.foot_contacts`) stays planted: the pelvis moves
       horizontally by the mean offset of the planted points, held through flight phases and smoothed over
       `smooth_frames` so the change of support foot is not a jump. Without it a perturbed stance leg drags the
       foot over the floor, and the contact labels and the trajectory learnt from such windows disagree with
       how people walk.
    """
    b, t = before.pose_rotmat.shape[:2]
    flat = lambda a: a.reshape((b * t,) + a.shape[2:])  # noqa: E731
    betas = before.betas.repeat_interleave(t, 0)
    feet = list(FOOT_KEYPOINT_IDS)
    with torch.no_grad():
        feet0 = body(flat(before.pose_rotmat), betas).keypoints[:, feet].reshape(b, t, len(feet), 3)
        feet1 = body(flat(after.pose_rotmat), betas).keypoints[:, feet].reshape(b, t, len(feet), 3)
    trans = after.trans.clone()
    trans[..., 1] += feet0[..., 1].amin(-1) - feet1[..., 1].amin(-1)
    dt = before.dt if before.dt is not None else torch.full((b, t), 1 / 30)
    planted = foot_contacts(feet0 + before.trans[:, :, None], dt).numpy()             # (B, T, F)
    offset = (feet0 - feet1)[..., [0, 2]].numpy()                                      # (B, T, F, 2) original - edited
    for i in range(b):
        n = planted[i].sum(-1)                                                         # (T,)
        mean = (offset[i] * planted[i][..., None]).sum(1) / np.maximum(n, 1)[:, None]  # (T, 2)
        shift = _moving_average(_hold_nearest(mean, n > 0), smooth_frames)
        trans[i, :, 0] += torch.as_tensor(shift[:, 0], dtype=trans.dtype)
        trans[i, :, 2] += torch.as_tensor(shift[:, 1], dtype=trans.dtype)
    return MotionWindows(after.pose_rotmat, trans, after.betas, after.dt)


def augment_motion(motion: MotionWindows, rng: np.random.Generator, cfg: Augment, body: torch.nn.Module) -> MotionWindows:
    """Apply the augmentations to a batch of windows (each window independently, by cfg's probabilities)."""
    b, t = motion.pose_rotmat.shape[:2]
    dt = motion.dt.numpy() if motion.dt is not None else np.full((b, t), 1 / 30)
    seconds = np.cumsum(dt, axis=1) - dt[:, :1]
    changed = np.zeros(b, dtype=bool)          # windows whose pose was edited (mirroring alone keeps it human)
    # 1. Mirror.
    motion = mirror(motion, torch.from_numpy(rng.uniform(size=b) < cfg.mirror_prob))
    rot = motion.pose_rotmat.clone()
    # 2. Upper body of another window on this one's pelvis and legs (time-aligned frame by frame).
    donor = rng.permutation(b)
    mix = np.nonzero(rng.uniform(size=b) < cfg.recombine_prob)[0]
    if len(mix):
        upper = list(UPPER_BODY)
        for i in mix:
            rot[i, :, upper] = motion.pose_rotmat[donor[i], :, upper]
        changed[mix] = True
    # 3. Procedural poses, blended in over time.
    for i in np.nonzero(rng.uniform(size=b) < cfg.pose_prob)[0]:
        kind = POSE_KINDS[int(rng.integers(len(POSE_KINDS)))]
        weight = _envelope(rng, seconds[i], fast=kind == "kick")
        for j, target in _pose_target(rng, kind).items():
            rot[i, :, j] = _nlerp_to(rot[i, :, j], target, weight)
        changed[i] = True
    # 4. Slow bounded per-joint perturbation, then everything back inside the joint limits.
    aa = matrix_to_axis_angle(rot)
    which = torch.from_numpy(rng.uniform(size=b) < cfg.perturb_prob)
    if which.any():
        noise = _smooth_noise(rng, b, t, 23, seconds) * np.deg2rad(cfg.perturb_deg) * rng.uniform(0.2, 1.0, size=(b, 1, 1, 1))
        noise[:, :, [j - 1 for j in LEFT_LEG + RIGHT_LEG]] *= _swing_weight(motion, body)[:, :, :, None]
        aa[:, :, 1:] += torch.as_tensor(noise, dtype=aa.dtype) * which[:, None, None, None]
        changed |= which.numpy()
    if not changed.any():
        return motion
    edit = torch.from_numpy(changed)
    aa[edit, :, 1:] = clamp_to_limits(aa[edit])[:, :, 1:]
    rot = motion.pose_rotmat.clone()
    rot[edit] = axis_angle_to_matrix(aa[edit])
    # Only edited windows need their feet put back where they were (two FKs of those windows alone).
    sub = lambda m: MotionWindows(m.pose_rotmat[edit], m.trans[edit], m.betas[edit],  # noqa: E731
                                  None if m.dt is None else m.dt[edit])
    fixed = keep_feet_grounded(sub(motion), sub(MotionWindows(rot, motion.trans, motion.betas, motion.dt)), body)
    trans = motion.trans.clone()
    trans[edit] = fixed.trans
    return MotionWindows(rot, trans, motion.betas, motion.dt)
