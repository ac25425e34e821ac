"""BVH and NPZ recordings: `run_live.py --record out.bvh|out.npz` on the shared video, re-read by our BVH reader
(+ the retargeter's source preparation), by an independent BVH parser (bvhio) and by numpy."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mocap.body import BuiltinBody
from mocap.bvh import read_bvh
from mocap.kinematics import forward_kinematics_offsets
from mocap.retarget import retarget, source_from_bvh
from mocap.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from stream.pose_frame import pose_message, status_message
from stream.protocol import ARRAY_SHAPES, PoseMessage
from stream.recorder import Recorder
from stream.subscribe import Subscriber

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video" / "sports2d_demo.mp4"
IDENTITY = {name: name for name in SMPL_JOINT_NAMES}  # our BVH names its joints as SMPL does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bvh_joints(path: Path) -> tuple[np.ndarray, object]:
    """(F, 24, 3) world joints in SMPL order, metres, Y up, through mocap/bvh.py and the retargeter's loader."""
    bvh = read_bvh(path)
    src = source_from_bvh(bvh, IDENTITY)
    assert src.scale == 1.0  # detected as metres
    return src.positions[:, [bvh.index(n) for n in SMPL_JOINT_NAMES]], bvh


def message(pose_aa: np.ndarray, betas: np.ndarray, trans: np.ndarray, seq: int, track: int = 0) -> PoseMessage:
    """A tracking message whose joints are the built-in body's FK of (pose, betas, trans)."""
    with torch.no_grad():
        joints = BuiltinBody()(torch.from_numpy(pose_aa)[None], torch.from_numpy(betas)[None],
                               torch.from_numpy(trans)[None]).joints[0].numpy()
    outputs = {"pose_rotmat": Rotation.from_rotvec(pose_aa).as_matrix()[None], "betas": betas[None],
               "root_trans": trans[None], "joints": joints[None], "contact": np.full((1, 4), 0.5),
               "cam_trans": np.zeros((1, 3))}
    return pose_message(outputs, seq=seq, track=track, t_capture=10.0 + seq / 30, kp2d=None, model="test@g0")


def record(path: Path, messages: list[PoseMessage], fps: float | None = 30.0, **kwargs) -> Recorder:
    recorder = Recorder(path, **kwargs)
    recorder.set_fps(fps)
    for msg in messages:
        assert recorder.write(msg)
    recorder.close()
    return recorder


def live_run(tmp: Path, out_name: str, frames: int = 40) -> tuple[subprocess.CompletedProcess, list[PoseMessage]]:
    """run_live.py on the shared video recording to tmp/out_name, with the test reading the same stream."""
    if os.environ.get("CI") == "true":
        assert VIDEO.is_file(), f"CI needs {VIDEO}"
    if not VIDEO.is_file():
        pytest.skip(f"needs {VIDEO}")
    addr = f"tcp://127.0.0.1:{free_port()}"
    messages: list[PoseMessage] = []
    stop = threading.Event()

    def collect() -> None:
        with Subscriber(addr) as sub:
            while not stop.is_set():
                got = sub.recv(0.2)
                if got is not None:
                    messages.append(got.msg)

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        proc = subprocess.run([sys.executable, "run_live.py", "--source", str(VIDEO), "--fast", "--max-frames",
                               str(frames), "--publish", addr, "--wait-subscribers", "10", "--record",
                               str(tmp / out_name)], cwd=REPO, capture_output=True, text=True, timeout=420)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(5)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, [m for m in messages if not m.heartbeat]


# ------------------------------------------------------------------------------------------------------ BVH
@pytest.fixture(scope="module")
def live_bvh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PoseMessage]]:
    tmp = tmp_path_factory.mktemp("bvh")
    _, messages = live_run(tmp, "take.bvh")
    return tmp / "take.bvh", messages


def test_live_bvh_reimports_to_the_streamed_pose_and_parses_with_bvhio(live_bvh) -> None:
    path, messages = live_bvh
    posed = [m for m in messages if len(m.joints) == 72]
    assert len(posed) >= 20 and {m.track for m in posed} == {posed[0].track}
    assert not path.with_name(path.name + ".partial").exists()
    joints, bvh = bvh_joints(path)
    seq = np.array([m.seq for m in posed])
    assert bvh.num_frames == seq.max() - seq.min() + 1  # one frame per source frame
    assert abs(bvh.frame_time - 1 / 30) < 1e-7  # the video's fps, although --fast ran faster than that
    rows = seq - seq.min()
    # Same rotations and root translation as the stream, on the recording's skeleton: <= 1 mm.
    quat = np.array([np.reshape(m.pose_quat, (24, 4)) for m in posed])
    local = torch.from_numpy(Rotation.from_quat(quat.reshape(-1, 4)).as_matrix().reshape(-1, 24, 3, 3))
    ids = [bvh.index(n) for n in SMPL_JOINT_NAMES]
    offsets = torch.from_numpy(bvh.offsets[ids])[None].expand(len(posed), -1, -1).contiguous()
    trans = torch.tensor([m.root_trans for m in posed], dtype=torch.float64)
    expected, _ = forward_kinematics_offsets(local, offsets, SMPL_PARENTS, trans)
    err = np.abs(joints[rows] - expected.numpy()).max()
    assert err < 1e-3, f"{err * 1e3:.3f} mm"
    np.testing.assert_allclose(joints[rows, 0], trans.numpy(), atol=1e-6)  # the pelvis is root_trans exactly
    # The model re-estimates the body shape every frame, a BVH has one skeleton: the streamed joints differ by
    # that shape jitter only (median a centimetre on this clip), not by any pose error.
    streamed = np.array([np.reshape(m.joints, (24, 3)) for m in posed])
    assert np.median(np.linalg.norm(joints[rows] - streamed, axis=-1)) < 0.03
    # An independent parser reads the same skeleton and motion.
    bvhio = pytest.importorskip("bvhio")
    root = bvhio.readAsHierarchy(str(path))
    layout = root.layout()
    assert [j[0].Name for j in layout] == bvh.names
    pos, _ = bvh.fk()
    for frame in (0, bvh.num_frames // 2, bvh.num_frames - 1):
        root.loadPose(frame)
        theirs = np.array([list(j[0].PositionWorld) for j in layout])
        assert np.abs(theirs - pos[frame]).max() < 1e-3


def test_bvh_of_a_constant_shape_reimports_to_the_streamed_joints(live_bvh, tmp_path: Path) -> None:
    """Real poses from the live run on one body shape: the BVH's joints are the stream's joints (<= 1 mm),
    and the retargeter maps the file back onto SMPL within a few millimetres."""
    _, live = live_bvh
    posed = [m for m in live if len(m.joints) == 72]
    betas = np.median([m.betas for m in posed], axis=0)
    messages = [message(np.reshape(m.pose_aa, (24, 3)).astype(np.float64), betas, np.asarray(m.root_trans, float),
                        seq=m.seq) for m in posed]
    record(tmp_path / "const.bvh", messages)
    joints, _ = bvh_joints(tmp_path / "const.bvh")
    rows = np.array([m.seq for m in messages]) - messages[0].seq
    streamed = np.array([np.reshape(m.joints, (24, 3)) for m in messages])
    err = np.abs(joints[rows] - streamed).max()
    assert err < 1e-3, f"{err * 1e3:.3f} mm"
    bvh = read_bvh(tmp_path / "const.bvh")
    result = retarget(source_from_bvh(bvh, IDENTITY), IDENTITY)
    assert result.mean_error < 5e-3, result.joint_error


def test_bvh_axes_upright_left_at_plus_x_facing_plus_z(tmp_path: Path) -> None:
    """The documented axes: Y up, the person's left at +X, facing +Z (towards the camera), metres."""
    rest = message(np.zeros((24, 3)), np.zeros(10), np.array([0.0, 0.95, 0.0]), seq=0)
    record(tmp_path / "rest.bvh", [rest])
    joints, bvh = bvh_joints(tmp_path / "rest.bvh")
    j = {n: joints[0, i] for i, n in enumerate(SMPL_JOINT_NAMES)}
    assert j["head"][1] > j["pelvis"][1] + 0.4 and j["l_ankle"][1] < 0.2  # upright, feet near the floor
    assert j["l_wrist"][0] > 0.5 and j["r_wrist"][0] < -0.5  # left hand at +X
    assert j["l_foot"][2] > j["l_ankle"][2] + 0.05  # toes point +Z: facing the camera
    assert bvh.channels[0] == ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")


BLENDER_SCRIPT = r"""
import bpy, builtins, json, sys
_open = builtins.open  # Blender 3.4's BVH importer opens with mode "rU", which Python 3.11 refuses
builtins.open = lambda f, mode="r", *a, **k: _open(f, mode.replace("U", ""), *a, **k)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_anim.bvh(filepath=sys.argv[-1])  # the importer's defaults: scale 1, forward -Z, up Y
arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
bpy.context.scene.frame_set(1)
print("RESULT", json.dumps({b.name: list(arm.matrix_world @ b.head) for b in arm.pose.bones}))
"""


@pytest.mark.skipif(shutil.which("blender") is None, reason="optional: needs Blender (apt-get install blender)")
def test_blender_imports_the_bvh_upright_facing_its_front_view(tmp_path: Path) -> None:
    """Blender's own importer, default settings: Z up, metres, a person who faced the camera faces -Y."""
    record(tmp_path / "rest.bvh", [message(np.zeros((24, 3)), np.zeros(10), np.array([0.5, 0.95, -1.0]), seq=0)])
    (tmp_path / "check.py").write_text(BLENDER_SCRIPT)
    proc = subprocess.run(["blender", "-b", "--factory-startup", "--python", str(tmp_path / "check.py"), "--",
                           str(tmp_path / "rest.bvh")], capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    j = {k: np.array(v) for k, v in json.loads(line[len("RESULT "):]).items()}
    np.testing.assert_allclose(j["pelvis"], [0.5, 1.0, 0.95], atol=1e-4)  # BVH (x, y, z) -> Blender (x, -z, y)
    assert j["head"][2] > j["pelvis"][2] + 0.4 and j["l_ankle"][2] < 0.2  # upright on the floor
    assert j["l_foot"][1] < j["l_ankle"][1] - 0.05  # toes towards -Y: facing the front view
    assert j["l_wrist"][0] > j["pelvis"][0] + 0.5  # the left hand at +X: the viewer's right, as it should be


def test_bvh_holds_poses_through_gaps_and_splits_tracks(tmp_path: Path) -> None:
    pose = np.zeros((24, 3))
    a = [message(pose, np.zeros(10), np.array([0.1 * s, 0.9, 0.0]), seq=s) for s in (10, 11, 14)]
    b = [message(pose, np.zeros(10), np.array([0.0, 0.9, 1.0]), seq=s, track=3) for s in (12, 13)]
    lost = status_message("lost", seq=12, track=0, t_capture=11.0)
    rec = record(tmp_path / "two.bvh", [a[0], a[1], lost, b[0], b[1], a[2]])
    assert rec.errors == 0 and rec.final_path == tmp_path / "two.bvh"
    joints, bvh = bvh_joints(tmp_path / "two.bvh")
    np.testing.assert_allclose(joints[:, 0, 0], [1.0, 1.1, 1.1, 1.1, 1.4], atol=1e-6)  # seq 12, 13 hold seq 11
    other, _ = bvh_joints(tmp_path / "two.track3.bvh")
    assert other.shape[0] == 2 and np.allclose(other[:, 0, 2], 1.0)
    # A further track's file is never replaced silently: without --overwrite the take stays in FILE.partial.
    (tmp_path / "two.bvh").unlink()
    again = record(tmp_path / "two.bvh", [a[0], b[0]])
    assert again.errors == 1 and "two.track3.bvh exists" in again.last_error
    assert (tmp_path / "two.bvh.partial").exists() and not (tmp_path / "two.bvh").exists()
    (tmp_path / "two.bvh.partial").unlink()
    replaced = record(tmp_path / "two.bvh", [a[0], b[0]], overwrite=True)
    assert replaced.errors == 0 and bvh_joints(tmp_path / "two.track3.bvh")[0].shape[0] == 1


def test_bvh_refuses_what_it_cannot_record(tmp_path: Path) -> None:
    nothing = record(tmp_path / "empty.bvh", [status_message("lost", seq=0, track=0, t_capture=0.0)])
    assert nothing.errors == 1 and "no pose" in nothing.last_error and not (tmp_path / "empty.bvh").exists()
    (tmp_path / "take.bvh").write_text("keep me")
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "take.bvh")
    assert (tmp_path / "take.bvh").read_text() == "keep me"


def test_bvh_converter_command(tmp_path: Path) -> None:
    pose = np.zeros((24, 3))
    jsonl = tmp_path / "take.jsonl"
    record(jsonl, [message(pose, np.zeros(10), np.array([0.0, 0.9, 0.0]), seq=s) for s in range(5)])
    proc = subprocess.run([sys.executable, "-m", "stream.recording", str(jsonl), str(tmp_path / "take.bvh"),
                           "--fps", "25"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert read_bvh(tmp_path / "take.bvh").num_frames == 5 and abs(read_bvh(tmp_path / "take.bvh").fps - 25) < 1e-4
    again = subprocess.run([sys.executable, "-m", "stream.recording", str(jsonl), str(tmp_path / "take.bvh")],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


# ------------------------------------------------------------------------------------------------------ NPZ
def test_live_npz_holds_every_message_field(tmp_path: Path) -> None:
    _, messages = live_run(tmp_path, "take.npz", frames=30)
    data = np.load(tmp_path / "take.npz")  # no pickle
    assert len(messages) >= 25 and len(data["seq"]) == len(messages)
    for field in PoseMessage.__struct_fields__:
        assert field in data.files, field
    assert float(data["fps"]) == 30.0
    assert list(data["joint_names"]) == list(SMPL_JOINT_NAMES)
    for i, msg in enumerate(messages):
        assert data["seq"][i] == msg.seq and data["track"][i] == msg.track and data["status"][i] == msg.status
        assert data["t_capture"][i] == msg.t_capture and data["model"][i] == msg.model
        for key, shape in ARRAY_SHAPES.items():
            values = getattr(msg, key)
            if values:
                np.testing.assert_array_equal(data[key][i], np.reshape(values, shape).astype(np.float32), err_msg=key)
            else:
                assert np.isnan(data[key][i]).all(), key
    assert data["pose_aa"].dtype == np.float32 and data["pose_aa"].shape == (len(messages), 24, 3)
    assert (data["status"] == "tracking").sum() >= 15
