"""Joint and keypoint tables shared by every layer (docs/design.md conventions).

`Joint` and `Keypoint` (IntEnum, as MediaPipe names its landmarks) give each index a name, `Keypoint.L_HEEL`
rather than 17; the name tuples and counts derive from them, so the order is stated once. Plain tuples of ints
everywhere else, so the ONNX graph, the wire protocol and the training data agree on one order. Torch-free.
"""
from __future__ import annotations

from enum import IntEnum


class Joint(IntEnum):
    """The 24 SMPL joints, in SMPL's order."""

    PELVIS = 0
    L_HIP = 1
    R_HIP = 2
    SPINE1 = 3
    L_KNEE = 4
    R_KNEE = 5
    SPINE2 = 6
    L_ANKLE = 7
    R_ANKLE = 8
    SPINE3 = 9
    L_FOOT = 10
    R_FOOT = 11
    NECK = 12
    L_COLLAR = 13
    R_COLLAR = 14
    HEAD = 15
    L_SHOULDER = 16
    R_SHOULDER = 17
    L_ELBOW = 18
    R_ELBOW = 19
    L_WRIST = 20
    R_WRIST = 21
    L_HAND = 22
    R_HAND = 23


class Keypoint(IntEnum):
    """The 21 keypoints the model reads: COCO-17, then the 4 foot points (in contact order)."""

    NOSE = 0
    L_EYE = 1
    R_EYE = 2
    L_EAR = 3
    R_EAR = 4
    L_SHOULDER = 5
    R_SHOULDER = 6
    L_ELBOW = 7
    R_ELBOW = 8
    L_WRIST = 9
    R_WRIST = 10
    L_HIP = 11
    R_HIP = 12
    L_KNEE = 13
    R_KNEE = 14
    L_ANKLE = 15
    R_ANKLE = 16
    L_HEEL = 17
    L_TOE = 18
    R_HEEL = 19
    R_TOE = 20


SMPL_JOINT_NAMES: tuple[str, ...] = tuple(j.name.lower() for j in Joint)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
NUM_JOINTS = len(Joint)
NUM_BETAS = 10

#: Index of each foot point inside the 21 keypoints, in contact order (L heel, L toe, R heel, R toe).
FOOT_KEYPOINT_IDS: tuple[int, ...] = tuple(int(k) for k in (Keypoint.L_HEEL, Keypoint.L_TOE, Keypoint.R_HEEL,
                                                            Keypoint.R_TOE))
KEYPOINT_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in Keypoint)
COCO17_NAMES: tuple[str, ...] = KEYPOINT_NAMES[:FOOT_KEYPOINT_IDS[0]]
FOOT_NAMES: tuple[str, ...] = tuple(KEYPOINT_NAMES[i] for i in FOOT_KEYPOINT_IDS)
NUM_KEYPOINTS = len(Keypoint)  # COCO-17 + 4 foot points

#: Left/right swap of the 21 keypoints (for flip augmentation and mirrored sources).
KEYPOINT_FLIP: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 19, 20, 17, 18)

#: Left/right swap of the 24 SMPL joints (mirror augmentation).
SMPL_JOINT_FLIP: tuple[int, ...] = (
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
)

#: Keypoint "tree" used to propagate occlusion masks (a hidden elbow usually hides the wrist).
KEYPOINT_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 1, 2, -1, -1, 5, 6, 7, 8, -1, -1, 11, 12, 13, 14, 15, 15, 16, 16,
)

#: Bones drawn by previews and plots, as keypoint index pairs.
KEYPOINT_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (15, 17), (15, 18), (17, 18), (16, 19), (16, 20), (19, 20),
)
