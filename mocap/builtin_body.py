"""Data tables of the built-in SMPL-compatible skeleton: rest joints, shape basis, keypoint offsets.

Rest joints (metres, SMPL T-pose layout: Y up, body facing +Z, left side at +X, pelvis at the origin)
-------------------------------------------------------------------------------------------------------
Values approximate the joint locations that SMPL's joint regressor gives on its neutral adult template
(stature about 1.70 m), re-centred so the pelvis rest position is the origin (so a body's `trans` is its
pelvis position), rounded to the centimetre and made exactly left/right symmetric: only the left side and the
midline are written below, the right side is the mirror image (x -> -x). They are typed in from the published
layout, not read from any SMPL file, so the project ships no SMPL data (SMPL's licence forbids that).

Shape basis (10 betas acting on bone lengths)
---------------------------------------------
SMPL's betas are PCA coefficients of a mesh; a skeleton-only body has no mesh, so its betas act on what a
skeleton can express: bone lengths and proportions. Each bone j (the segment parent(j) -> j) is scaled
isotropically by `1 + SHAPE_BASIS[j] @ beta`. One unit of beta is sized to about one standard deviation of
adult anthropometric variation (stature sd ~7 cm of 170 cm ~ 4 %; segment-proportion and breadth sd 2-5 %):

    b0 stature (all bones) +4 %          b5 spine length (spine1/2/3 bones) +4 %
    b1 legs +3 % against spine -2 %      b6 neck and head bones +5 %
    b2 arm length (upper arm and         b7 forearm +2.5 % against upper arm -2.5 %
       forearm) +3 %                     b8 shin +2.5 % against thigh -2.5 %
    b3 shoulder width (collar and        b9 foot length (ankle -> toe base) +5 %; heel/toe points follow
       shoulder bones) +5 %
    b4 hip width (pelvis -> hip) +5 %

Scaling a vector isotropically scales its length by the same factor, so bone lengths are *exactly linear* in
beta: `length_j(beta) = L0_j + L0_j * SHAPE_BASIS[j] @ beta`, which lets retargeting fit betas to measured bone
lengths by linear least squares. The 10 columns are linearly independent on the 23 bones (rank 10): b1-b9
together touch every bone except the hands, so the hands (scaled by b0 only) separate stature from them.

Keypoints (COCO-17 + L heel, L toe, R heel, R toe)
--------------------------------------------------
keypoint = joint[anchor] + R_global[frame] @ (delta * (1 + SHAPE_BASIS[scale_bone] @ beta)).
`anchor` gives the position, `frame` the joint whose rotation carries the offset (the bone the landmark sits
on), `scale_bone` the bone whose length the offset scales with. Deltas are anatomical estimates in the rest
(T-pose) frame: face points in front of / beside the head joint (which sits near the skull base), COCO
shoulders slightly above the gleno-humeral centre and carried by the shoulder girdle (collar), COCO hips lateral
and lower than SMPL's hip centres (annotators mark the greater trochanter region) and carried by the pelvis,
heel behind and below the ankle, toe (big-toe tip) ahead of the toe-base joint `l_foot`; elbows, wrists, knees
and ankles coincide with the SMPL joints.
"""
from __future__ import annotations

import numpy as np

from mocap.kinematics import offsets_from_rest_joints
from mocap.skeleton import KEYPOINT_NAMES, NUM_BETAS, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

# --- rest joints: left side and midline; the right side is mirrored -------------------------------------------
_REST_LEFT_AND_MID: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, 0.0, 0.0),
    "l_hip": (0.07, -0.09, 0.0),
    "spine1": (0.0, 0.11, -0.03),
    "l_knee": (0.105, -0.45, 0.01),
    "spine2": (0.0, 0.24, 0.0),
    "l_ankle": (0.09, -0.85, -0.03),
    "spine3": (0.0, 0.29, 0.005),
    "l_foot": (0.12, -0.91, 0.09),
    "neck": (0.0, 0.50, -0.04),
    "l_collar": (0.08, 0.41, -0.03),
    "head": (0.0, 0.57, 0.02),
    "l_shoulder": (0.17, 0.46, -0.04),
    "l_elbow": (0.42, 0.44, -0.06),
    "l_wrist": (0.68, 0.45, -0.07),
    "l_hand": (0.76, 0.44, -0.08),
}


def _mirror(p: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-p[0], p[1], p[2])


def _rest_joints() -> np.ndarray:
    rows = []
    for name in SMPL_JOINT_NAMES:
        if name.startswith("r_"):
            rows.append(_mirror(_REST_LEFT_AND_MID["l_" + name[2:]]))
        else:
            rows.append(_REST_LEFT_AND_MID[name])
    return np.asarray(rows, dtype=np.float64)


#: (24, 3) rest joint positions, metres, pelvis at the origin.
REST_JOINTS: np.ndarray = _rest_joints()

# --- shape basis ------------------------------------------------------------------------------------------------
_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def _both(stem: str) -> tuple[int, int]:
    return _J["l_" + stem], _J["r_" + stem]


_BONES_LEG = _both("knee") + _both("ankle")
_BONES_SPINE = (_J["spine1"], _J["spine2"], _J["spine3"])
_BONES_ARM = _both("elbow") + _both("wrist")  # hands follow stature only (keeps b0 independent)
# (beta index, bones, relative scale per unit beta)
_SHAPE_TERMS: tuple[tuple[int, tuple[int, ...], float], ...] = (
    (0, tuple(range(1, NUM_JOINTS)), 0.04),
    (1, _BONES_LEG, 0.03),
    (1, _BONES_SPINE, -0.02),
    (2, _BONES_ARM, 0.03),
    (3, _both("collar") + _both("shoulder"), 0.05),
    (4, _both("hip"), 0.05),
    (5, _BONES_SPINE, 0.04),
    (6, (_J["neck"], _J["head"]), 0.05),
    (7, _both("wrist"), 0.025),
    (7, _both("elbow"), -0.025),
    (8, _both("ankle"), 0.025),
    (8, _both("knee"), -0.025),
    (9, _both("foot"), 0.05),
)


def _shape_basis() -> np.ndarray:
    basis = np.zeros((NUM_JOINTS, NUM_BETAS), dtype=np.float64)
    for beta, bones, scale in _SHAPE_TERMS:
        for bone in bones:
            basis[bone, beta] += scale
    return basis


#: (24, 10) per-bone relative scale per unit beta; row j scales the bone parent(j) -> j (row 0 unused).
SHAPE_BASIS: np.ndarray = _shape_basis()

BETA_MEANINGS: tuple[str, ...] = (
    "stature", "legs vs spine", "arm length", "shoulder width", "hip width",
    "spine length", "neck and head", "forearm vs upper arm", "shin vs thigh", "foot length",
)

# --- keypoints --------------------------------------------------------------------------------------------------
# name: (anchor joint, frame joint, scale bone, delta in the frame joint's rest frame, metres), left/midline only.
_KP_LEFT_AND_MID: dict[str, tuple[str, str, str, tuple[float, float, float]]] = {
    "nose": ("head", "head", "head", (0.0, 0.05, 0.10)),
    "l_eye": ("head", "head", "head", (0.032, 0.085, 0.075)),
    "l_ear": ("head", "head", "head", (0.075, 0.055, -0.015)),
    "l_shoulder": ("l_shoulder", "l_collar", "l_shoulder", (0.01, 0.02, 0.0)),
    "l_elbow": ("l_elbow", "l_elbow", "l_elbow", (0.0, 0.0, 0.0)),
    "l_wrist": ("l_wrist", "l_wrist", "l_wrist", (0.0, 0.0, 0.0)),
    "l_hip": ("l_hip", "pelvis", "l_hip", (0.025, -0.04, 0.0)),
    "l_knee": ("l_knee", "l_knee", "l_knee", (0.0, 0.0, 0.0)),
    "l_ankle": ("l_ankle", "l_ankle", "l_ankle", (0.0, 0.0, 0.0)),
    "l_heel": ("l_ankle", "l_ankle", "l_foot", (0.0, -0.07, -0.055)),
    "l_toe": ("l_foot", "l_foot", "l_foot", (-0.005, -0.005, 0.075)),
}


def _mirror_joint(name: str) -> str:
    return "r_" + name[2:] if name.startswith("l_") else name


def _keypoint_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    anchor, frame, scale_bone, delta = [], [], [], []
    for name in KEYPOINT_NAMES:
        if name.startswith("r_"):
            a, f, s, d = _KP_LEFT_AND_MID["l_" + name[2:]]
            a, f, s, d = _mirror_joint(a), _mirror_joint(f), _mirror_joint(s), _mirror(d)
        else:
            a, f, s, d = _KP_LEFT_AND_MID[name]
        anchor.append(_J[a])
        frame.append(_J[f])
        scale_bone.append(_J[s])
        delta.append(d)
    as_idx = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return as_idx(anchor), as_idx(frame), as_idx(scale_bone), np.asarray(delta, dtype=np.float64)


#: (21,) joint giving each keypoint's position, (21,) joint whose rotation carries its offset,
#: (21,) bone its offset scales with, (21, 3) offset at rest in metres.
KP_ANCHOR, KP_FRAME, KP_SCALE_BONE, KP_DELTA = _keypoint_table()


def posing_tables() -> dict[str, np.ndarray]:
    """The tables as the network's body (`mocap.body.BuiltinBody`) poses with them: float32, indices int64.

    Derived here once so the torch body and the numpy one of the per-frame solver (`mocap.fitting.body_numpy`)
    pose the same skeleton to the bit. rest_offsets (24, 3) parent-relative (row 0 = the pelvis rest position,
    0), shape_basis (24, 10), kp_delta (21, 3), kp_shape_basis (21, 10) (each keypoint's scale bone's row),
    kp_anchor (21,), kp_frame (21,).
    """
    return {
        "rest_offsets": offsets_from_rest_joints(REST_JOINTS.astype(np.float32), SMPL_PARENTS),
        "shape_basis": SHAPE_BASIS.astype(np.float32),
        "kp_delta": KP_DELTA.astype(np.float32),
        "kp_shape_basis": SHAPE_BASIS[KP_SCALE_BONE].astype(np.float32),
        "kp_anchor": KP_ANCHOR,
        "kp_frame": KP_FRAME,
    }
