"""Soft joint limits: per-joint box bounds on the local axis-angle of the 23 body joints.

Frames are the body's rest frame (Y up, facing +Z, left at +X), as in `mocap/builtin_body.py`. A positive x
rotation swings a limb hanging down backwards (knee flexion, hip extension) and tips the torso forwards; a
positive z rotation moves a left limb outwards. Right-side bounds are the mirror image of the left ones
(x -> -x flips the y and z components of a rotation vector). The boxes are loose ranges of motion: they stop
anatomically impossible fits (a knee bending forwards, an elbow hyper-extended, a head turned backwards), they
do not replace the prior toward the network's pose.
"""
from __future__ import annotations

import numpy as np

from mocap.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES

# (lo, hi) radians for the x, y, z components; left side and midline only.
_LEFT_AND_MID: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "l_hip": ((-2.6, 0.8), (-1.0, 1.0), (-0.7, 1.5)),
    "spine1": ((-0.6, 1.0), (-0.7, 0.7), (-0.6, 0.6)),
    "l_knee": ((-0.1, 2.7), (-0.5, 0.5), (-0.35, 0.35)),
    "spine2": ((-0.5, 0.8), (-0.6, 0.6), (-0.5, 0.5)),
    "l_ankle": ((-1.0, 1.0), (-0.7, 0.7), (-0.7, 0.7)),
    "spine3": ((-0.5, 0.8), (-0.6, 0.6), (-0.5, 0.5)),
    "l_foot": ((-0.8, 0.8), (-0.5, 0.5), (-0.5, 0.5)),
    "neck": ((-0.8, 1.0), (-1.0, 1.0), (-0.7, 0.7)),
    "l_collar": ((-0.6, 0.6), (-0.8, 0.8), (-0.7, 0.7)),
    "head": ((-0.8, 0.9), (-1.0, 1.0), (-0.7, 0.7)),
    "l_shoulder": ((-3.0, 3.0), (-3.0, 3.0), (-3.0, 3.0)),
    "l_elbow": ((-1.8, 1.8), (-2.8, 0.15), (-0.5, 0.5)),
    "l_wrist": ((-1.4, 1.4), (-1.3, 1.3), (-1.3, 1.3)),
    "l_hand": ((-0.9, 0.9), (-0.9, 0.9), (-0.9, 0.9)),
}


def _bounds() -> tuple[np.ndarray, np.ndarray]:
    lo = np.full((NUM_JOINTS - 1, 3), -np.pi)
    hi = np.full((NUM_JOINTS - 1, 3), np.pi)
    for j, name in enumerate(SMPL_JOINT_NAMES[1:]):
        if name.startswith("r_"):
            box = np.array(_LEFT_AND_MID["l_" + name[2:]])                     # (3, 2)
            box[1:] = -box[1:, ::-1]                                           # mirror: y, z -> -y, -z
        else:
            box = np.array(_LEFT_AND_MID[name])
        lo[j], hi[j] = box[:, 0], box[:, 1]
    return lo, hi


#: (23, 3) lower / upper bounds of the local axis-angle of joints 1..23.
LIMIT_LO, LIMIT_HI = _bounds()
