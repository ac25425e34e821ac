"""Joint and keypoint tables shared by every layer (DESIGN.md conventions).

Kept as plain tuples so the ONNX graph, the wire protocol and the training data agree on one order.
"""
from __future__ import annotations

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle",
    "spine3", "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder",
    "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
NUM_JOINTS = 24
NUM_BETAS = 10

COCO17_NAMES: tuple[str, ...] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
FOOT_NAMES: tuple[str, ...] = ("l_heel", "l_toe", "r_heel", "r_toe")
KEYPOINT_NAMES: tuple[str, ...] = COCO17_NAMES + FOOT_NAMES
NUM_KEYPOINTS = 21  # COCO-17 + 4 foot points

#: Index of each foot point inside the 21 keypoints, in contact order (L heel, L toe, R heel, R toe).
FOOT_KEYPOINT_IDS: tuple[int, ...] = (17, 18, 19, 20)

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
