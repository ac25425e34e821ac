"""Automatic joint mapping: every common BVH family, written here with its own names, units and axes, imports and
lands on the source (height, feet on the floor, left is left); the topology fallback; errors and exit codes."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mocap.body import BuiltinBody
from mocap.bvh import read_bvh
from mocap.data.__main__ import main as data_main
from mocap.retarget import UNIT_SCALES, check_file, load_source, main as retarget_main, retarget_bvh, smpl_joints
from mocap.retarget_auto import auto_mapping, detect_family, side_and_part
from mocap.skeleton import SMPL_JOINT_NAMES

REPO = Path(__file__).resolve().parents[1]
FRAMES = 16
_REST = BuiltinBody().rest_joints()[0].double().numpy()
_FLOOR = _REST[[10, 11], 1].min() - 0.04  # toes 4 cm above the floor
#: SMPL rest joints standing on the floor (y = 0), metres, Y up, facing +Z, left = +X.
REST = {n: _REST[i] - np.array([0.0, _FLOOR, 0.0]) for i, n in enumerate(SMPL_JOINT_NAMES)}


def at(a: str, b: str | None = None, t: float = 0.0, d: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    """A point between SMPL rest joints a and b (fraction t), plus d metres."""
    p = REST[a] if b is None else (1 - t) * REST[a] + t * REST[b]
    return p + np.asarray(d, dtype=float)


@dataclass
class Family:
    """A skeleton: joints (name, parent or None, world rest position in metres Y-up), End Sites (parent, offset),
    file units (metres per unit), z_up offsets, the family label and mapping the importer must report."""

    joints: list[tuple[str, str | None, np.ndarray]]
    ends: list[tuple[str, tuple[float, float, float]]]
    units: str
    label: str
    expect: dict[str, str]
    z_up: bool = False
    roles: dict[str, str] = field(default_factory=dict)  # SMPL joint -> source joint driven by the test motion


def _legs(names: dict[str, str], side: str, sided) -> list[tuple[str, str | None, np.ndarray]]:
    """Leg joints; names maps role -> left name template; sided turns a left name into this side's."""
    s = "l" if side == "l" else "r"
    out = []
    for role, parent, pos in names["legs"](s):
        out.append((sided(role, side), None if parent is None else sided(parent, side), pos))
    return out


def _side(name: str, side: str) -> str:
    if side == "l":
        return name
    for a, b in (("Left", "Right"), ("_l", "_r"), (".L", ".R"), ("_L_", "_R_"), ("_L", "_R")):
        if a in name:
            return name.replace(a, b)
    if name[0] == "l":
        return "r" + name[1:]
    if name[0] == "L":
        return "R" + name[1:]
    raise AssertionError(name)


def _mirror(p: np.ndarray) -> np.ndarray:
    return p * np.array([-1.0, 1.0, 1.0])


def _family(trunk: list[tuple[str, str | None, np.ndarray]], left: list[tuple[str, str, np.ndarray]],
            ends: list[tuple[str, tuple[float, float, float]]], **kw) -> Family:
    """trunk joints + left limb joints (mirrored to the right) + End Sites (left ones mirrored too)."""
    joints = list(trunk)
    for side in "lr":
        for name, parent, pos in left:
            parent_name = parent if parent in {j[0] for j in trunk} else _side(parent, side)
            joints.append((_side(name, side), parent_name, pos if side == "l" else _mirror(pos)))
    all_ends = []
    trunk_names = {j[0] for j in trunk}
    for parent, off in ends:
        if parent in trunk_names:
            all_ends.append((parent, off))
        else:
            all_ends.append((parent, off))
            all_ends.append((_side(parent, "r"), (-off[0], off[1], off[2])))
    expect = dict(kw.pop("expect"))
    for k, v in list(expect.items()):
        if k.startswith("l_"):
            expect.setdefault("r_" + k[2:], _side(v, "r"))
    return Family(joints, all_ends, expect=expect, **kw)


def _arm(collar: str, shoulder: str, elbow: str, wrist: str, chest: str) -> list[tuple[str, str, np.ndarray]]:
    return [(collar, chest, at("l_collar")), (shoulder, collar, at("l_shoulder")),
            (elbow, shoulder, at("l_elbow")), (wrist, elbow, at("l_wrist"))]


def _leg(hip: str, knee: str, ankle: str, toe: str | None, parent: str) -> list[tuple[str, str, np.ndarray]]:
    out = [(hip, parent, at("l_hip")), (knee, hip, at("l_knee")), (ankle, knee, at("l_ankle"))]
    if toe:
        out.append((toe, ankle, at("l_foot")))
    return out


_HAND_END = [(0.08, 0.0, 0.0)]
_TOE_END = (0.0, 0.0, 0.05)


def _families() -> dict[str, Family]:
    fams: dict[str, Family] = {}
    # CMU original, ASF-derived names, CMU's own length unit (1/0.45 inch).
    fams["cmu-asf"] = _family(
        [("root", None, at("pelvis")), ("lowerback", "root", at("pelvis")), ("upperback", "lowerback", at("spine2")),
         ("thorax", "upperback", at("spine3")), ("lowerneck", "thorax", at("neck")),
         ("upperneck", "lowerneck", at("neck", "head", 0.5)), ("head", "upperneck", at("head"))],
        [("lhipjoint", "root", at("pelvis")), *_leg("lfemur", "ltibia", "lfoot", "ltoes", "lhipjoint"),
         *_arm("lclavicle", "lhumerus", "lradius", "lwrist", "thorax"), ("lhand", "lwrist", at("l_hand"))],
        [("head", (0, 0.1, 0)), ("ltoes", _TOE_END), ("lhand", (0.05, 0, 0))],
        units="cmu", label="cmu-asf",
        expect={"pelvis": "root", "l_hip": "lfemur", "l_knee": "ltibia", "l_ankle": "lfoot", "l_foot": "ltoes",
                "spine3": "thorax", "spine2": "upperback", "neck": "lowerneck", "head": "head",
                "l_collar": "lclavicle", "l_shoulder": "lhumerus", "l_elbow": "lradius", "l_wrist": "lwrist"})
    # CMU 3dsMax-friendly conversion: LeftShoulder is the upper arm here (LeftCollar is the collar).
    fams["cmu-3dsmax"] = _family(
        [("Hips", None, at("pelvis")), ("lowerback", "Hips", at("pelvis")), ("Chest", "lowerback", at("spine1")),
         ("Chest2", "Chest", at("spine3")), ("lowerneck", "Chest2", at("neck")),
         ("Neck", "lowerneck", at("neck", "head", 0.5)), ("Head", "Neck", at("head"))],
        [("LHipJoint", "Hips", at("pelvis")), *_leg("LeftHip", "LeftKnee", "LeftAnkle", "LeftToe", "LHipJoint"),
         *_arm("LeftCollar", "LeftShoulder", "LeftElbow", "LeftWrist", "Chest2")],
        [("Head", (0, 0.1, 0)), ("LeftToe", _TOE_END), ("LeftWrist", _HAND_END[0])],
        units="cmu", label="cmu-3dsmax",
        expect={"pelvis": "Hips", "l_hip": "LeftHip", "l_knee": "LeftKnee", "l_ankle": "LeftAnkle",
                "l_foot": "LeftToe", "spine3": "Chest2", "spine1": "Chest", "neck": "lowerneck", "head": "Head",
                "l_collar": "LeftCollar", "l_shoulder": "LeftShoulder", "l_elbow": "LeftElbow",
                "l_wrist": "LeftWrist"})
    # CMU MotionBuilder-friendly conversion (cgspeed), inches.
    fams["cmu-motionbuilder"] = _family(
        [("Hips", None, at("pelvis")), ("LowerBack", "Hips", at("pelvis")), ("Spine", "LowerBack", at("spine1")),
         ("Spine1", "Spine", at("spine3")), ("Neck", "Spine1", at("neck")),
         ("Neck1", "Neck", at("neck", "head", 0.5)), ("Head", "Neck1", at("head"))],
        [("LHipJoint", "Hips", at("pelvis")), *_leg("LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "LHipJoint"),
         *_arm("LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "Spine1"),
         ("LeftFingerBase", "LeftHand", at("l_hand")), ("LThumb", "LeftHand", at("l_wrist", d=(0.02, 0, 0.03)))],
        [("Head", (0, 0.1, 0)), ("LeftToeBase", _TOE_END), ("LeftFingerBase", (0.05, 0, 0)),
         ("LThumb", (0.02, 0, 0.02))],
        units="inch", label="cmu-motionbuilder",
        expect={"pelvis": "Hips", "l_hip": "LeftUpLeg", "l_knee": "LeftLeg", "l_ankle": "LeftFoot",
                "l_foot": "LeftToeBase", "spine3": "Spine1", "neck": "Neck", "head": "Head",
                "l_collar": "LeftShoulder", "l_shoulder": "LeftArm", "l_elbow": "LeftForeArm",
                "l_wrist": "LeftHand"})
    # Mixamo, with its namespace, centimetres.
    mx = "mixamorig:"
    fams["mixamo"] = _family(
        [(mx + "Hips", None, at("pelvis")), (mx + "Spine", mx + "Hips", at("spine1")),
         (mx + "Spine1", mx + "Spine", at("spine2")), (mx + "Spine2", mx + "Spine1", at("spine3")),
         (mx + "Neck", mx + "Spine2", at("neck")), (mx + "Head", mx + "Neck", at("head"))],
        [*_leg(mx + "LeftUpLeg", mx + "LeftLeg", mx + "LeftFoot", mx + "LeftToeBase", mx + "Hips"),
         *_arm(mx + "LeftShoulder", mx + "LeftArm", mx + "LeftForeArm", mx + "LeftHand", mx + "Spine2")],
        [(mx + "Head", (0, 0.1, 0)), (mx + "LeftToeBase", _TOE_END), (mx + "LeftHand", _HAND_END[0])],
        units="cm", label="mixamo",
        expect={"pelvis": mx + "Hips", "spine1": mx + "Spine", "spine2": mx + "Spine1", "spine3": mx + "Spine2",
                "l_collar": mx + "LeftShoulder", "l_shoulder": mx + "LeftArm", "l_knee": mx + "LeftLeg"})
    # Poser / DAZ: lower-case l/r prefixes, buttock joints, no head joint, inches.
    fams["poser-daz"] = _family(
        [("hip", None, at("pelvis")), ("abdomen", "hip", at("spine1")), ("chest", "abdomen", at("spine3")),
         ("neck", "chest", at("neck"))],
        [("lbuttock", "hip", at("pelvis", "l_hip", 0.5)), *_leg("lthigh", "lshin", "lfoot", None, "lbuttock"),
         *_arm("lcollar", "lshldr", "lforearm", "lhand", "chest")],
        [("neck", tuple(at("head", d=(0, 0.1, 0)) - at("neck"))), ("lfoot", tuple(at("l_foot") - at("l_ankle"))),
         ("lhand", _HAND_END[0])],
        units="inch", label="poser-daz",
        expect={"pelvis": "hip", "l_hip": "lthigh", "l_knee": "lshin", "l_ankle": "lfoot", "spine3": "chest",
                "l_collar": "lcollar", "l_shoulder": "lshldr", "l_elbow": "lforearm", "l_wrist": "lhand",
                "neck": "neck", "head": "neck_end_head", "l_foot": "lfoot_end_l_foot",
                "r_foot": "rfoot_end_r_foot"})
    # Rokoko Studio: Thigh/Shin, four spine joints, centimetres.
    fams["rokoko"] = _family(
        [("Hips", None, at("pelvis")), ("Spine1", "Hips", at("pelvis", "spine3", 0.25)),
         ("Spine2", "Spine1", at("pelvis", "spine3", 0.5)), ("Spine3", "Spine2", at("pelvis", "spine3", 0.8)),
         ("Spine4", "Spine3", at("spine3")), ("Neck", "Spine4", at("neck")), ("Head", "Neck", at("head"))],
        [*_leg("LeftThigh", "LeftShin", "LeftFoot", "LeftToe", "Hips"),
         *_arm("LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "Spine4")],
        [("Head", (0, 0.1, 0)), ("LeftToe", _TOE_END), ("LeftHand", _HAND_END[0])],
        units="cm", label="rokoko",
        expect={"spine3": "Spine4", "spine1": "Spine1", "spine2": "Spine3", "l_hip": "LeftThigh",
                "l_knee": "LeftShin", "l_foot": "LeftToe", "l_collar": "LeftShoulder"})
    # Unreal mannequin: a root on the floor, *_l / *_r, twist helpers, Z up, centimetres.
    fams["unreal"] = _family(
        [("root", None, np.array([0.0, 0.0, 0.0])), ("pelvis", "root", at("pelvis")),
         ("spine_01", "pelvis", at("spine1")), ("spine_02", "spine_01", at("spine2")),
         ("spine_03", "spine_02", at("spine3")), ("neck_01", "spine_03", at("neck")), ("head", "neck_01", at("head"))],
        [*_leg("thigh_l", "calf_l", "foot_l", "ball_l", "pelvis"),
         ("thigh_twist_01_l", "thigh_l", at("l_hip", "l_knee", 0.5)),
         *_arm("clavicle_l", "upperarm_l", "lowerarm_l", "hand_l", "spine_03"),
         ("upperarm_twist_01_l", "upperarm_l", at("l_shoulder", "l_elbow", 0.5))],
        [("head", (0, 0.1, 0)), ("ball_l", _TOE_END), ("hand_l", _HAND_END[0]), ("thigh_twist_01_l", (0, -0.05, 0)),
         ("upperarm_twist_01_l", (0.05, 0, 0))],
        units="cm", label="unreal", z_up=True,
        expect={"pelvis": "pelvis", "l_hip": "thigh_l", "l_knee": "calf_l", "l_ankle": "foot_l", "l_foot": "ball_l",
                "spine3": "spine_03", "spine1": "spine_01", "neck": "neck_01", "head": "head",
                "l_collar": "clavicle_l", "l_shoulder": "upperarm_l", "l_elbow": "lowerarm_l", "l_wrist": "hand_l"})
    # Blender Rigify metarig: .L/.R, spine.00N (no neck/head words), metres, Z up.
    fams["blender-rigify"] = _family(
        [("spine", None, at("pelvis")), ("spine.001", "spine", at("spine1")), ("spine.002", "spine.001", at("spine2")),
         ("spine.003", "spine.002", at("spine3")), ("spine.004", "spine.003", at("neck")),
         ("spine.005", "spine.004", at("neck", "head", 0.5)), ("spine.006", "spine.005", at("head"))],
        [*_leg("thigh.L", "shin.L", "foot.L", "toe.L", "spine"),
         *_arm("shoulder.L", "upper_arm.L", "forearm.L", "hand.L", "spine.003")],
        [("spine.006", (0, 0.1, 0)), ("toe.L", _TOE_END), ("hand.L", _HAND_END[0])],
        units="m", label="blender-rigify", z_up=True,
        expect={"pelvis": "spine", "spine1": "spine.001", "spine2": "spine.002", "spine3": "spine.003",
                "neck": "spine.004", "head": "spine.006", "l_hip": "thigh.L", "l_knee": "shin.L",
                "l_ankle": "foot.L", "l_foot": "toe.L", "l_collar": "shoulder.L", "l_shoulder": "upper_arm.L",
                "l_elbow": "forearm.L", "l_wrist": "hand.L"})
    # Bandai-Namco-Research-Motiondataset naming (its preset), centimetres.
    fams["bandai"] = _family(
        [("Hips", None, at("pelvis")), ("Spine", "Hips", at("spine1")), ("Chest", "Spine", at("spine3")),
         ("Neck", "Chest", at("neck")), ("Head", "Neck", at("head"))],
        [*_leg("UpperLeg_L", "LowerLeg_L", "Foot_L", "Toes_L", "Hips"),
         *_arm("Shoulder_L", "UpperArm_L", "LowerArm_L", "Hand_L", "Chest")],
        [("Head", (0, 0.1, 0)), ("Toes_L", _TOE_END), ("Hand_L", _HAND_END[0])],
        units="cm", label="bandai",
        expect={"pelvis": "Hips", "spine3": "Chest", "l_hip": "UpperLeg_L", "l_collar": "Shoulder_L"})
    # Reallusion Character Creator (iClone exports): CC_Base_ prefix, a floor root, share/twist helpers.
    fams["reallusion-cc"] = _family(
        [("RL_BoneRoot", None, np.zeros(3)), ("CC_Base_Hip", "RL_BoneRoot", at("pelvis")),
         ("CC_Base_Pelvis", "CC_Base_Hip", at("pelvis")), ("CC_Base_Waist", "CC_Base_Hip", at("spine1")),
         ("CC_Base_Spine01", "CC_Base_Waist", at("spine2")), ("CC_Base_Spine02", "CC_Base_Spine01", at("spine3")),
         ("CC_Base_NeckTwist01", "CC_Base_Spine02", at("neck")), ("CC_Base_Head", "CC_Base_NeckTwist01", at("head"))],
        [*_leg("CC_Base_L_Thigh", "CC_Base_L_Calf", "CC_Base_L_Foot", "CC_Base_L_ToeBase", "CC_Base_Pelvis"),
         ("CC_Base_L_KneeShareBone", "CC_Base_L_Calf", at("l_knee")),
         *_arm("CC_Base_L_Clavicle", "CC_Base_L_Upperarm", "CC_Base_L_Forearm", "CC_Base_L_Hand", "CC_Base_Spine02")],
        [("CC_Base_Head", (0, 0.1, 0)), ("CC_Base_L_ToeBase", _TOE_END), ("CC_Base_L_Hand", _HAND_END[0]),
         ("CC_Base_L_KneeShareBone", (0, 0, 0.02))],
        units="cm", label="reallusion-cc",
        expect={"pelvis": "CC_Base_Hip", "l_hip": "CC_Base_L_Thigh", "l_knee": "CC_Base_L_Calf",
                "neck": "CC_Base_NeckTwist01", "spine3": "CC_Base_Spine02"})
    return fams


FAMILIES = _families()

#: Test motion: per SMPL joint, (axis in Y-up coordinates, degrees at the last frame): the left knee bends, the
#: left hip flexes, the left arm swings forward, the trunk leans. Single-axis rotations keep Z-up files exact.
MOTION = {"l_knee": ("X", 70.0), "l_hip": ("X", -40.0), "l_shoulder": ("Y", -60.0), "spine3": ("X", 10.0)}
_AXIS_Z_UP = {"X": ("X", 1.0), "Y": ("Z", 1.0), "Z": ("Y", -1.0)}


def _to_file(v: np.ndarray, fam: Family) -> np.ndarray:
    """Y-up metres -> the family's axes and units."""
    v = np.asarray(v, dtype=float)
    if fam.z_up:
        v = np.array([v[0], -v[2], v[1]])
    return v / UNIT_SCALES[fam.units]


def write_family(path: Path, fam: Family, frames: int = FRAMES, fps: float = 30.0, rename=None,
                 shuffle: int | None = None) -> Path:
    """Write the family's skeleton and the test motion as BVH (rename: name -> written name; shuffle: seed for
    the order siblings are written in). Root walks 0.4 m forward (+Z in Y-up) over the clip."""
    rename = rename or (lambda n: n)
    pos = {n: p for n, _, p in fam.joints}
    kids: dict[str | None, list[str]] = {}
    for n, parent, _ in fam.joints:
        kids.setdefault(parent, []).append(n)
    if shuffle is not None:
        rng = random.Random(shuffle)
        for v in kids.values():
            rng.shuffle(v)
    ends: dict[str, list] = {}
    for parent, off in fam.ends:
        ends.setdefault(parent, []).append(off)
    driven = {name_at(fam, smpl): spec for smpl, spec in MOTION.items()}
    lines, order = ["HIERARCHY"], []

    def emit(n: str, depth: int) -> None:
        pad = "  " * depth
        parent = next(p for m, p, _ in fam.joints if m == n)
        off = _to_file(pos[n] - (pos[parent] if parent else 0.0), fam)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {rename(n)}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if parent is None else \
            "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {chans}")
        order.append(n)
        for k in kids.get(n, []):
            emit(k, depth + 1)
        for e in ends.get(n, []):
            eo = _to_file(np.asarray(e, dtype=float), fam)
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {eo[0]:.6f} {eo[1]:.6f} {eo[2]:.6f}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(kids[None][0], 0)
    s = np.linspace(0.0, 1.0, frames)
    cols = []
    for n in order:
        if n == kids[None][0]:
            root = pos[n][None] + np.stack((0 * s, 0 * s, 0.4 * s), -1)
            cols.append(np.stack([_to_file(r, fam) for r in root]))
        ang = np.zeros((frames, 3))  # Z, X, Y columns
        if n in driven:
            axis, deg = driven[n]
            if fam.z_up:
                axis, sign = _AXIS_Z_UP[axis]
                deg = deg * sign
            ang[:, "ZXY".index(axis)] = deg * s
        cols.append(ang)
    motion = np.concatenate(cols, -1)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.7f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    path.write_text("\n".join(lines) + "\n")
    return path


def name_at(fam: Family, smpl: str) -> str:
    """The first source joint placed at SMPL joint `smpl`'s rest position (the one the test motion drives)."""
    target = REST[smpl] if not smpl.startswith("r_") else _mirror(REST["l_" + smpl[2:]])
    return next(n for n, _, p in fam.joints if np.allclose(p, target))


def _truth(fam: Family, tmp_path: Path) -> dict[str, np.ndarray]:
    """World positions (T, 3), metres Y-up, of the source joints, from the same skeleton written Y-up in metres."""
    ref = Family(fam.joints, fam.ends, "m", fam.label, fam.expect)
    bvh = read_bvh(write_family(tmp_path / "truth.bvh", ref))
    pos, _ = bvh.fk()
    return {n: pos[:, i] for i, n in enumerate(bvh.names)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_maps_and_lands_on_source(family: str, tmp_path: Path) -> None:
    fam = FAMILIES[family]
    path = write_family(tmp_path / f"{family}.bvh", fam)
    info = check_file(path)
    assert info["family"] == fam.label, info
    assert info["units"] == fam.units, info
    assert 1.45 < info["height_m"] < 2.0, info
    for smpl, name in fam.expect.items():
        assert info["mapping"].get(smpl) == name, (smpl, info["mapping"])
    res = retarget_bvh(path)
    assert abs(res.scale - UNIT_SCALES[fam.units]) < 1e-12
    joints = smpl_joints(res)  # (T, 24, 3)
    truth = _truth(fam, tmp_path)
    for smpl in ("l_ankle", "r_ankle", "l_knee", "l_wrist", "r_wrist", "l_elbow"):
        j = SMPL_JOINT_NAMES.index(smpl)
        err = np.linalg.norm(joints[:, j] - truth[name_at(fam, smpl)], axis=-1).max()
        assert err < 0.04, (smpl, err)
    # Standing height: SMPL's head joint about where the source's head is; feet near the floor (y = 0).
    head = SMPL_JOINT_NAMES.index("head")
    assert abs(joints[0, head, 1] - REST["head"][1]) < 0.08, joints[0, head]
    assert -0.03 < joints[0, [10, 11], 1].min() < 0.12
    # Left is left: the subject faces +Z, so its left side is +X; the bent knee is the left one.
    la, ra = SMPL_JOINT_NAMES.index("l_ankle"), SMPL_JOINT_NAMES.index("r_ankle")
    assert joints[0, la, 0] > joints[0, ra, 0] + 0.1
    assert joints[-1, la, 1] > joints[-1, ra, 1] + 0.15  # left foot lifted by the knee bend + hip flexion


def test_missing_head_and_toes_without_end_sites_still_import(tmp_path: Path) -> None:
    """Nothing to derive the head or toes from: they stay unmapped (SMPL's follow their parents), not rejected."""
    fam = FAMILIES["poser-daz"]
    bare = Family(fam.joints, [e for e in fam.ends if e[0] not in ("neck", "lfoot", "rfoot")], fam.units, fam.label,
                  {k: v for k, v in fam.expect.items() if k not in ("head", "l_foot", "r_foot")})
    path = write_family(tmp_path / "bare.bvh", bare)
    info = check_file(path)
    assert "head" not in info["mapping"] and "l_foot" not in info["mapping"] and info["units"] == "inch"
    res = retarget_bvh(path)
    joints = smpl_joints(res)
    assert res.mean_error < 0.04
    assert joints[0, SMPL_JOINT_NAMES.index("head"), 1] > joints[0, SMPL_JOINT_NAMES.index("neck"), 1]


def test_root_channels_relative_to_offset_stand_on_the_floor(tmp_path: Path) -> None:
    """iClone-style files: root OFFSET at hip height and position channels relative to it."""
    absolute = retarget_bvh(write_family(tmp_path / "abs.bvh", FAMILIES["mixamo"]))
    lines = (tmp_path / "abs.bvh").read_text().splitlines()
    off = np.array([float(v) for v in lines[3].split()[1:]])  # the root OFFSET: the pelvis rest position
    np.testing.assert_allclose(off, REST["pelvis"] / 0.01, atol=1e-5)
    start = lines.index("MOTION") + 3
    for i in range(start, len(lines)):
        vals = [float(v) for v in lines[i].split()]
        vals[:3] = list(np.array(vals[:3]) - off)
        lines[i] = " ".join(f"{v:.6f}" for v in vals)
    relative = retarget_bvh(_write(tmp_path / "rel.bvh", "\n".join(lines) + "\n"))
    np.testing.assert_allclose(relative.trans, absolute.trans, atol=1e-4)
    assert 0.8 < np.median(relative.trans[:, 1]) < 1.1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cmu_120fps_resamples_to_30(tmp_path: Path) -> None:
    from mocap.retarget import resample
    path = write_family(tmp_path / "cmu120.bvh", FAMILIES["cmu-asf"], frames=121, fps=120.0)
    res = resample(retarget_bvh(path), 30.0)
    assert res.num_frames == 31 and res.fps == 30.0
    np.testing.assert_allclose(res.trans[-1, 2] - res.trans[0, 2], 0.4, atol=0.01)


def test_topology_fallback_with_random_names(tmp_path: Path) -> None:
    """Names that say nothing: legs, arms, head, spine and sides come from the tree and the first frame."""
    fam = FAMILIES["mixamo"]
    rng = random.Random(7)
    fresh = {n: "".join(rng.choice("qwxzvkjp") for _ in range(6)) + str(i) for i, (n, _, _) in enumerate(fam.joints)}
    path = write_family(tmp_path / "random.bvh", fam, rename=lambda n: fresh[n], shuffle=3)
    auto = auto_mapping(read_bvh(path))
    assert auto.method == "topology" and auto.family == "topology"
    for smpl in ("l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "l_foot", "spine3", "l_collar",
                 "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "neck", "head"):
        assert auto.mapping[smpl] == fresh[name_at(fam, smpl)], smpl
    assert auto.mapping["pelvis"] == fresh["mixamorig:Hips"]
    res = retarget_bvh(path)
    assert res.mean_error < 0.02
    joints = smpl_joints(res)
    la, ra = SMPL_JOINT_NAMES.index("l_ankle"), SMPL_JOINT_NAMES.index("r_ankle")
    assert joints[-1, la, 1] > joints[-1, ra, 1] + 0.15


BANDAI_WALK = REPO.parent / "shared" / "data" / "mocap" / "bandai" / "dataset-2_walk_normal_001.bvh.xz"


@pytest.mark.skipif(not BANDAI_WALK.is_file(), reason="shared Bandai data absent")
def test_topology_fallback_agrees_with_names_on_real_mocap() -> None:
    """A real capture with its names scrambled: the topology finds the same limbs, neck and head as the preset."""
    bvh = read_bvh(BANDAI_WALK)
    by_names = auto_mapping(bvh).mapping
    fresh = {n: f"j{i:03d}" for i, n in enumerate(bvh.names)}
    bvh.names = [fresh[n] for n in bvh.names]
    topo = auto_mapping(bvh)
    assert topo.method == "topology"
    for smpl, name in by_names.items():
        assert topo.mapping[smpl] == fresh[name], smpl


def test_topology_fallback_z_up_floor_root(tmp_path: Path) -> None:
    fam = FAMILIES["unreal"]
    path = write_family(tmp_path / "anon.bvh", fam, rename=lambda n: f"b{abs(hash(n)) % 10**6}")
    info = check_file(path)
    assert info["method"] == "topology" and info["units"] == "cm"
    res = retarget_bvh(path)
    joints = smpl_joints(res)
    assert joints[0, SMPL_JOINT_NAMES.index("l_ankle"), 0] > 0.05 > -0.05 > joints[0, SMPL_JOINT_NAMES.index("r_ankle"), 0]


@pytest.mark.parametrize("name, expected", [
    ("mixamorig:LeftUpLeg", ("l", "upleg")), ("thigh.R", ("r", "thigh")), ("lShldrBend", ("l", "shldrbend")),
    ("spine_01", ("", "spine01")), ("calf_r", ("r", "calf")), ("CC_Base_L_Thigh", ("l", "thigh")),
    ("LHipJoint", ("l", "hipjoint")), ("rbuttock", ("r", "buttock")), ("lowerback", ("", "lowerback")),
    ("HandLeft", ("l", "hand")), ("Hips", ("", "hips")), ("root", ("", "root")),
    ("Character1_LeftUpLeg", ("l", "upleg")), ("Bip01 R Toe0", ("r", "toe0")), ("upperarm_twist_01_l", ("l", "upperarmtwist01")),
])
def test_side_and_part(name: str, expected: tuple[str, str]) -> None:
    assert side_and_part(name) == expected


def test_limb_parts_skip_helpers() -> None:
    from mocap.retarget_auto import limb_part
    assert limb_part("Bip01 R Toe0") == ("r", "toe")
    assert limb_part("upperarm_twist_01_l") == ("l", "")
    assert limb_part("CC_Base_L_BigToe1") == ("l", "")
    assert limb_part("mixamorig:LeftHandIndex1") == ("l", "")
    assert limb_part("LeftShoulder") == ("l", "shoulder") and limb_part("lShldrBend") == ("l", "arm")


def test_family_names() -> None:
    assert detect_family(["Hips", "LHipJoint", "LeftUpLeg"]) == "cmu-motionbuilder"
    assert detect_family(["root", "lfemur"]) == "cmu-asf"
    assert detect_family(["pelvis", "thigh_l"]) == "unreal"
    assert detect_family(["a", "b"]) == ""


def _write_unmappable(path: Path) -> Path:
    path.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n JOINT b\n {\n"
                    "  OFFSET 0 10 0\n  CHANNELS 3 Zrotation Xrotation Yrotation\n  End Site\n  {\n   OFFSET 0 10 0\n"
                    "  }\n }\n}\nMOTION\nFrames: 2\nFrame Time: 0.033333\n0 0 0 0 0 0\n0 0 0 0 0 0\n")
    return path


def test_unmappable_skeleton_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot map this skeleton.*a humanoid has 5"):
        auto_mapping(read_bvh(_write_unmappable(tmp_path / "stick.bvh")))


def test_check_cli_prints_mapping_and_fails_on_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write_family(tmp_path / "poser.bvh", FAMILIES["poser-daz"])
    assert retarget_main(["--check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "family poser-daz" in out and "units inch" in out and "head        <- neck_end_head" in out
    bad = _write_unmappable(tmp_path / "stick.bvh")
    assert retarget_main(["--check", str(good), str(bad), "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["family"] == "poser-daz" and "stick.bvh" in rows[1]["file"] and "error" in rows[1]
    assert retarget_main(["--check", str(tmp_path), "--json"]) == 1  # a folder: every BVH under it
    assert len(capsys.readouterr().out.splitlines()) == 2
    (tmp_path / "empty").mkdir()
    assert retarget_main(["--check", str(tmp_path / "empty")]) == 1
    assert "no .bvh files" in capsys.readouterr().out


def test_build_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """0 only when every file imports; skipped files and empty builds are failures, named with the reason."""
    good = tmp_path / "good"
    good.mkdir()
    for fam in ("cmu-3dsmax", "poser-daz"):
        write_family(good / f"{fam}.bvh", FAMILIES[fam])
    assert data_main(["build", "--bvh", str(good), "--out", str(tmp_path / "c1"), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 0
    _write_unmappable(good / "stick.bvh")
    assert data_main(["build", "--bvh", str(good), "--out", str(tmp_path / "c2"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "stick.bvh" in err and "cannot map" in err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    _write_unmappable(only_bad / "stick.bvh")
    assert data_main(["build", "--bvh", str(only_bad), "--out", str(tmp_path / "c3"), "--no-progress"]) == 1
    not_bvh = tmp_path / "txt"
    not_bvh.mkdir()
    (not_bvh / "notes.txt").write_text("hello")
    (not_bvh / "clip.fbx").write_bytes(b"\0\1")
    assert data_main(["build", "--bvh", str(not_bvh), "--out", str(tmp_path / "c4"), "--no-progress"]) == 2
    assert "no .bvh" in capsys.readouterr().err


def test_build_cli_subprocess_exit_code(tmp_path: Path) -> None:
    """The real command line exits non-zero on a folder without BVH files (one line, no traceback)."""
    (tmp_path / "a.txt").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "mocap.data", "build", "--bvh", str(tmp_path), "--out",
                           str(tmp_path / "out"), "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no .bvh" in proc.stderr


def test_load_source_reports_family(tmp_path: Path) -> None:
    src, mapping, label = load_source(write_family(tmp_path / "r.bvh", FAMILIES["blender-rigify"]))
    assert label == "blender-rigify" and mapping["head"] == "spine.006" and src.scale == 1.0
