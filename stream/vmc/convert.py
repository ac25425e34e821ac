"""One SMPL pose from the wire -> Unity humanoid bone transforms, as the VMC protocol carries them.

Conventions
-----------
SMPL side (the wire, docs/protocol.md): right-handed, Y up, metres; ``pose_quat`` holds each joint's rotation
relative to its parent (x, y, z, w), joint 0 being the pelvis in the world. Every SMPL joint's rest frame is
aligned with the world, and the rest pose (all rotations identity) is SMPL's template pose: nearly a T-pose,
facing +Z, the person's left at +X.

Unity side (HumanBodyBones, what VMC receivers apply to a normalized VRM avatar): left-handed, Y up, metres,
the avatar faces +Z with its left at -X; every bone's rest frame is aligned with the world too, and the rest
pose is the humanoid T-pose (arms straight out along +-X, legs straight down).

Handedness. The two frames differ by the mirror M = diag(-1, 1, 1) (x -> -x): it keeps Y up and keeps the
person's left hand the avatar's left hand. A position p becomes M p = (-x, y, z); a rotation R becomes M R M,
whose quaternion is (x, -y, -z, w) when R's is (x, y, z, w). (Mirroring z instead would also flip the
handedness, but would turn a person facing the camera away from it.)

Rest pose. SMPL's template is not an exact T-pose: its upper arms droop ~5 degrees, its thighs splay ~5, its
shins lean back ~6. On the limbs, where the humanoid T-pose fixes each bone's direction, a constant rest
correction C_j (the shortest rotation taking the T-pose direction onto SMPL's rest bone direction, from the
built-in body's rest joints) defines the avatar frame of SMPL joint j: G'_j = G_j C_j, with G_j its world
rotation. Then each avatar bone points exactly where the person's bone points, and the local rotation sent is
L'_j = G'_parent^T G'_j = C_parent^T L_j C_j. Trunk, neck, head, clavicles and feet keep C = I: an avatar's own
rest there follows its mesh (a curved spine, raised clavicles), just as SMPL's does, so there is no fixed
direction to correct to.

Positions. A bone's local position is its offset from the parent in the parent's avatar frame,
G'_parent^T (p_j - p_parent), from the message's own world joints; on corrected limbs it lies exactly along
the T-pose axis (e.g. the left forearm's is (-length, 0, 0) in Unity). The root trajectory is split so
receivers can take either part: ``/VMC/Ext/Root/Pos`` is the pelvis projected on the floor (y = 0, no
rotation), the Hips bone's local position is (0, pelvis height, 0) and its rotation is the whole body
orientation. Root position + Hips position = the pelvis position in the world (mirrored).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from mocap.builtin_body import REST_JOINTS
from mocap.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

#: SMPL joint -> Unity HumanBodyBones name, for every joint a humanoid avatar has (SMPL's l_hand / r_hand are
#: the finger bases: humanoids model fingers as separate bones, which SMPL's body does not estimate).
HUMAN_BONES: dict[str, str] = {
    "pelvis": "Hips",
    "l_hip": "LeftUpperLeg", "r_hip": "RightUpperLeg",
    "spine1": "Spine",
    "l_knee": "LeftLowerLeg", "r_knee": "RightLowerLeg",
    "spine2": "Chest",
    "l_ankle": "LeftFoot", "r_ankle": "RightFoot",
    "spine3": "UpperChest",
    "l_foot": "LeftToes", "r_foot": "RightToes",
    "neck": "Neck",
    "l_collar": "LeftShoulder", "r_collar": "RightShoulder",
    "head": "Head",
    "l_shoulder": "LeftUpperArm", "r_shoulder": "RightUpperArm",
    "l_elbow": "LeftLowerArm", "r_elbow": "RightLowerArm",
    "l_wrist": "LeftHand", "r_wrist": "RightHand",
}

#: Limb joints whose bone direction the humanoid T-pose fixes: joint -> (child joint that ends the bone,
#: T-pose direction in SMPL coordinates).
TPOSE_LIMBS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "l_shoulder": ("l_elbow", (1.0, 0.0, 0.0)), "l_elbow": ("l_wrist", (1.0, 0.0, 0.0)),
    "l_wrist": ("l_hand", (1.0, 0.0, 0.0)),
    "r_shoulder": ("r_elbow", (-1.0, 0.0, 0.0)), "r_elbow": ("r_wrist", (-1.0, 0.0, 0.0)),
    "r_wrist": ("r_hand", (-1.0, 0.0, 0.0)),
    "l_hip": ("l_knee", (0.0, -1.0, 0.0)), "l_knee": ("l_ankle", (0.0, -1.0, 0.0)),
    "r_hip": ("r_knee", (0.0, -1.0, 0.0)), "r_knee": ("r_ankle", (0.0, -1.0, 0.0)),
}

_MIRROR = np.diag([-1.0, 1.0, 1.0])
_INDEX = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def _shortest_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) shortest rotation taking the direction a onto the direction b (no twist about either)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        raise ValueError("opposite directions: the shortest rotation is not unique")
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def rest_corrections(rest_joints: np.ndarray = REST_JOINTS) -> np.ndarray:
    """(24, 3, 3) C_j taking each T-pose limb direction onto the SMPL rest bone (identity off the limbs).

    rest_joints: (24, 3) SMPL rest-pose joint positions (the built-in body's by default; bone *directions*
    do not depend on its shape coefficients, which scale each bone).
    """
    out = np.broadcast_to(np.eye(3), (NUM_JOINTS, 3, 3)).copy()
    for joint, (child, tpose_dir) in TPOSE_LIMBS.items():
        j, k = _INDEX[joint], _INDEX[child]
        out[j] = _shortest_rotation(np.asarray(tpose_dir), rest_joints[k] - rest_joints[j])
    return out


@dataclass(frozen=True)
class UnityPose:
    """One frame in Unity humanoid terms (left-handed, Y up, metres), ready for ``/VMC/Ext/*`` messages.

    root_pos (3,) and root_quat (4,) x y z w: the avatar root (``/VMC/Ext/Root/Pos``).
    bones: HumanBodyBones names in send order (parents first); bone_pos (B, 3) local positions, bone_quat (B, 4)
    local rotations x y z w (``/VMC/Ext/Bone/Pos``), each relative to the previous bone up its chain.
    """

    root_pos: np.ndarray
    root_quat: np.ndarray
    bones: tuple[str, ...]
    bone_pos: np.ndarray
    bone_quat: np.ndarray


class HumanoidConverter:
    """SMPL local rotations + world joints -> `UnityPose` (see the module docstring for the derivation).

    upper_chest: send SMPL's spine3 as UpperChest (default). Many VRM avatars have no UpperChest, and a receiver
    drops rotations for bones the avatar lacks; with False, spine3's rotation is folded into Chest (and Neck /
    shoulders are sent relative to Chest), so such an avatar still bends its whole spine.
    """

    def __init__(self, upper_chest: bool = True, rest_joints: np.ndarray = REST_JOINTS) -> None:
        sent = [name for name in SMPL_JOINT_NAMES if name in HUMAN_BONES and (upper_chest or name != "spine3")]
        self.joints = np.array([_INDEX[n] for n in sent])  # SMPL ids in SMPL order = parents first
        self.bones = tuple(HUMAN_BONES[n] for n in sent)
        parents = []
        for j in self.joints:  # nearest *sent* ancestor: skipping spine3 re-parents neck and collars to spine2
            p = SMPL_PARENTS[j]
            while p >= 0 and p not in self.joints:
                p = SMPL_PARENTS[p]
            parents.append(p)
        self.parents = np.array(parents)
        self.corrections = rest_corrections(rest_joints)

    def convert(self, pose_quat: np.ndarray, joints: np.ndarray) -> UnityPose:
        """pose_quat (24, 4) SMPL local rotations x y z w, joints (24, 3) SMPL world joints -> UnityPose."""
        pose_quat = np.asarray(pose_quat, dtype=np.float64).reshape(NUM_JOINTS, 4)
        joints = np.asarray(joints, dtype=np.float64).reshape(NUM_JOINTS, 3)
        local = Rotation.from_quat(pose_quat).as_matrix()  # (24, 3, 3), normalizes the float32 quaternions
        world = np.empty_like(local)
        for j, p in enumerate(SMPL_PARENTS):
            world[j] = local[j] if p < 0 else world[p] @ local[j]
        avatar = world @ self.corrections  # G'_j = G_j C_j
        rot = np.empty((len(self.joints), 3, 3))
        pos = np.empty((len(self.joints), 3))
        for b, (j, p) in enumerate(zip(self.joints, self.parents)):
            if p < 0:  # Hips: whole-body orientation, height above the floor-projected root
                rot[b], pos[b] = avatar[j], (0.0, joints[j, 1], 0.0)
            else:
                rot[b] = avatar[p].T @ avatar[j]
                pos[b] = avatar[p].T @ (joints[j] - joints[p])
        unity_rot = _MIRROR @ rot @ _MIRROR
        quat = Rotation.from_matrix(unity_rot).as_quat()
        quat *= np.where(quat[:, 3:4] < 0, -1.0, 1.0)  # one sign (w >= 0) so streams compare equal
        pelvis = joints[0]
        return UnityPose(
            root_pos=_MIRROR @ np.array([pelvis[0], 0.0, pelvis[2]]),
            root_quat=np.array([0.0, 0.0, 0.0, 1.0]),
            bones=self.bones,
            bone_pos=pos @ _MIRROR.T,
            bone_quat=quat,
        )


__all__ = ["HUMAN_BONES", "TPOSE_LIMBS", "HumanoidConverter", "UnityPose", "rest_corrections"]
