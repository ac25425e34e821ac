"""Retargeting to SMPL-24: a real Bandai clip, a synthetic CMU-style BVH with known answers, presets, resampling."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mocap.body import BuiltinBody
from mocap.bvh import read_bvh
from mocap.retarget import load_source, resample, retarget_bvh
from mocap.retarget_presets import PRESETS, detect_preset, get_mapping, resolve_preset
from mocap.rotations import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, rotation_angle
from mocap.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

BANDAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "bandai"
WALK = BANDAI / "dataset-2_walk_normal_001.bvh.xz"
needs_data = pytest.mark.skipif(not WALK.is_file(), reason="shared Bandai data not present")

#: CMU/Mixamo-style names for SMPL joints (hands have no source joint).
CMU_NAMES = {
    "pelvis": "Hips", "l_hip": "LeftUpLeg", "r_hip": "RightUpLeg", "spine1": "Spine", "l_knee": "LeftLeg",
    "r_knee": "RightLeg", "spine2": "Spine1", "l_ankle": "LeftFoot", "r_ankle": "RightFoot", "spine3": "Spine2",
    "l_foot": "LeftToeBase", "r_foot": "RightToeBase", "neck": "Neck", "l_collar": "LeftShoulder",
    "r_collar": "RightShoulder", "head": "Head", "l_shoulder": "LeftArm", "r_shoulder": "RightArm",
    "l_elbow": "LeftForeArm", "r_elbow": "RightForeArm", "l_wrist": "LeftHand", "r_wrist": "RightHand",
}
FRAMES = 40


def _cmu_local_angles(frames: int) -> dict[str, np.ndarray]:
    """Per source joint (frames, 3) ZXY Euler degrees: knee/elbow flexion, arms down, a spine bend, a head turn."""
    t = np.linspace(0, 2 * np.pi, frames)
    z = np.zeros(frames)
    return {
        "Hips": np.stack((z, 5 * np.sin(t), 30 * np.sin(t)), -1),
        "LeftLeg": np.stack((z, 40 * (1 - np.cos(t)), z), -1),
        "RightUpLeg": np.stack((z, -25 * np.sin(t), z), -1),
        "Spine1": np.stack((z, 10 * np.sin(t), z), -1),
        "LeftArm": np.stack((-70 + 0 * t, z, 10 * np.sin(t)), -1),
        "RightArm": np.stack((70 + 0 * t, z, z), -1),
        "LeftForeArm": np.stack((z, z, 50 * (1 - np.cos(t))), -1),
        "Head": np.stack((z, z, 20 * np.sin(t)), -1),
    }


def _cmu_bvh_text(frames: int = FRAMES, frame_time: float = 1 / 60, z_up: bool = False) -> str:
    """A CMU-named skeleton whose rest pose is BuiltinBody's T-pose (in cm), walking along +Z.

    z_up: wrap it in a 'World' root rotated +90 deg about X, which turns the whole clip Z-up."""
    rest = BuiltinBody().rest_joints()[0].double().numpy() * 100.0
    used = [j for j, n in enumerate(SMPL_JOINT_NAMES) if n in CMU_NAMES]
    lines = ["HIERARCHY"]
    order: list[str] = []

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        p = SMPL_PARENTS[j]
        off = rest[j] - (rest[p] if p >= 0 else 0) + (np.array([0, 93.0, 0]) if p < 0 else 0)
        name = CMU_NAMES[SMPL_JOINT_NAMES[j]]
        order.append(name)
        lines.append(f"{pad}{'ROOT' if p < 0 and not z_up else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        chans = "6 Xposition Yposition Zposition" if p < 0 else "3"
        lines.append(f"{pad}  CHANNELS {chans} Zrotation Xrotation Yrotation")
        kids = [k for k in used if SMPL_PARENTS[k] == j]
        for k in kids:
            emit(k, depth + 1)
        if not kids:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 5 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    if z_up:
        lines += ["ROOT World", "{", "  OFFSET 0 0 0", "  CHANNELS 3 Zrotation Xrotation Yrotation"]
    emit(0, 1 if z_up else 0)
    if z_up:
        lines.append("}")
    angles = _cmu_local_angles(frames)
    cols = [np.tile([0.0, 90.0, 0.0], (frames, 1))] if z_up else []
    for name in order:
        if name == "Hips":
            cols.append(np.stack((np.zeros(frames), np.full(frames, 93.0), np.linspace(0, 80, frames)), -1))
        cols.append(angles.get(name, np.zeros((frames, 3))))
    motion = np.concatenate(cols, -1)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time:.7f}"]
    lines += [" ".join(f"{v:.5f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cmu_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cmu") / "synthetic_cmu.bvh"
    path.write_text(_cmu_bvh_text())
    return path


@needs_data
def test_bandai_clip_error_bound_and_upright_walk() -> None:
    res = retarget_bvh(WALK)
    assert res.preset == "bandai" and res.scale == 0.01 and abs(res.fps - 30) < 1e-3
    assert res.pose_aa.shape == (res.num_frames, 24, 3) and res.pose_aa.dtype == np.float32
    assert res.trans.shape == (res.num_frames, 3) and res.betas.shape == (10,)
    mapped = ~np.isnan(res.joint_error)
    assert mapped.sum() == 20 and res.mean_error < 0.03, res.joint_error
    out = BuiltinBody()(torch.from_numpy(res.pose_aa), torch.from_numpy(res.betas)[None].expand(res.num_frames, -1),
                        torch.from_numpy(res.trans))
    joints, glob = out.joints.numpy(), out.global_rotmats.numpy()
    # Upright: head well above the pelvis, feet near the floor (y = 0).
    assert (joints[:, 15, 1] - joints[:, 0, 1] > 0.35).all()
    assert 0.0 < joints[:, [10, 11], 1].min() < 0.1
    # Walking forward: the body faces where it goes (+Z in these clips), and so does the face.
    travel = res.trans[-1] - res.trans[0]
    facing = glob[:, 0, :, 2].mean(0)
    assert travel[2] > 5 and facing[2] > 0.9
    assert glob[:, 15, :, 2].mean(0)[2] > 0.9


def test_cmu_preset_detection_and_units(cmu_file: Path) -> None:
    bvh = read_bvh(cmu_file)
    name, mapping = detect_preset(bvh.names)
    assert name == "cmu" and mapping == CMU_NAMES
    src, _, _ = load_source(cmu_file)
    assert src.scale == 0.01
    assert abs(src.positions[0, src.index("Hips"), 1] - 0.93) < 1e-6


def test_cmu_synthetic_recovers_known_local_rotations(cmu_file: Path) -> None:
    """The source rest pose is SMPL's T-pose: joints must land on the source's and local rotations must equal the
    BVH's own, exactly where bones fix them (pelvis, spine: several branches) and up to the twist convention about
    a single bone elsewhere (mean local twist zero, up to ~12 degrees off the BVH's zero for bones not exactly on an
    axis)."""
    res = retarget_bvh(cmu_file)
    assert res.mean_error < 0.001, res.joint_error  # same skeleton: sub-millimetre
    assert np.abs(res.betas).max() < 0.01
    angles = _cmu_local_angles(FRAMES)
    for smpl, name in CMU_NAMES.items():
        j = SMPL_JOINT_NAMES.index(smpl)
        expected = euler_to_matrix(angles.get(name, np.zeros((FRAMES, 3))), "ZXY")
        got = axis_angle_to_matrix(res.pose_aa[:, j].astype(np.float64))
        err = np.degrees(rotation_angle(np.swapaxes(expected, -1, -2) @ got)).max()
        assert err < (0.5 if smpl in ("pelvis", "spine1", "spine2", "spine3") else 15.0), (smpl, err)
    np.testing.assert_allclose(res.trans[:, 2], np.linspace(0, 0.8, FRAMES), atol=1e-3)


def test_resample_halves_60fps(cmu_file: Path) -> None:
    res = retarget_bvh(cmu_file)
    assert abs(res.fps - 60) < 0.01
    half = resample(res, 30.0)
    assert half.num_frames == (FRAMES + 1) // 2 and half.fps == 30.0
    np.testing.assert_allclose(half.pose_aa, res.pose_aa[::2], atol=1e-4)
    np.testing.assert_allclose(half.trans, res.trans[::2], atol=1e-5)


def test_z_up_source_is_turned_to_y_up(tmp_path: Path) -> None:
    """The same clip under a parent joint turning it Z-up: auto-detection must undo that exactly."""
    y_up = retarget_bvh(_write(tmp_path / "y.bvh", _cmu_bvh_text()))
    z_up = retarget_bvh(_write(tmp_path / "z.bvh", _cmu_bvh_text(z_up=True)))
    assert abs(y_up.mean_error - z_up.mean_error) < 1e-4
    np.testing.assert_allclose(z_up.trans, y_up.trans, atol=1e-4)
    np.testing.assert_allclose(z_up.pose_aa, y_up.pose_aa, atol=1e-3)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_mapping_file_and_bad_mappings(tmp_path: Path, cmu_file: Path) -> None:
    bvh = read_bvh(cmu_file)
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"pelvis": "Hips", "l_hip": "LeftUpLeg", "l_knee": "LeftLeg", "l_ankle": "LeftFoot",
                                "head": "Head"}))
    label, mapping = get_mapping(bvh.names, mapping_file=good)
    assert label == str(good) and mapping["l_knee"] == "LeftLeg"
    res = retarget_bvh(cmu_file, mapping_file=good)
    assert np.isnan(res.joint_error[SMPL_JOINT_NAMES.index("r_knee")]) and res.mean_error < 0.02
    for bad, msg in [({"pelvis": "Nope"}, "not in the skeleton"),
                     ({"knee": "LeftLeg", "pelvis": "Hips"}, "unknown SMPL"),
                     ({"l_knee": "LeftLeg"}, "'pelvis' must be mapped"),
                     ({"pelvis": "Hips", "l_hip": "Hips"}, "more than one")]:
        good.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            get_mapping(bvh.names, mapping_file=good)
    with pytest.raises(ValueError, match="no retarget preset fits"):
        detect_preset(["root", "thing"])


def test_poser_and_mixamo_names_resolve() -> None:
    poser = ["hip", "abdomen", "chest", "neck", "head", "lThigh", "lShin", "lFoot", "lToe", "rThigh", "rShin", "rFoot",
             "rToe", "lCollar", "lShldr", "lForeArm", "lHand", "rCollar", "rShldr", "rForeArm", "rHand"]
    name, mapping = detect_preset(poser)
    assert name == "poser" and mapping["r_shoulder"] == "rShldr" and mapping["spine3"] == "chest"
    mixamo = ["mixamorig:" + n for n in CMU_NAMES.values()]
    name, mapping = detect_preset(mixamo)
    assert name == "cmu" and mapping["spine3"] == "mixamorig:Spine2" and mapping["spine2"] == "mixamorig:Spine1"
    cgspeed = [n for n in CMU_NAMES.values() if n != "Spine2"] + ["LowerBack"]
    assert resolve_preset(PRESETS["cmu"], cgspeed)["spine3"] == "Spine1"


def test_matrix_axis_angle_roundtrip_sanity() -> None:
    """Guard for the conversions the retarget relies on (numpy in, numpy out, float64 kept)."""
    m = euler_to_matrix(np.array([[30.0, -20.0, 45.0]]), "ZXY")
    assert matrix_to_axis_angle(m).dtype == np.float64
    np.testing.assert_allclose(axis_angle_to_matrix(matrix_to_axis_angle(m)), m, atol=1e-10)
