"""VMC bridge: real OSC bundles, decoded by python-osc in another process, carry the pose a Unity avatar needs.

The receiver below is a separate Python process (a UDP server decoding each datagram with python-osc, as a VMC
receiver would); expectations come from geometry (where the turned body faces, where the bent forearm points,
the built-in body's forward kinematics), never from the converter's own code.
"""
from __future__ import annotations

import json
import math
import os
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
from mocap.skeleton import SMPL_JOINT_NAMES
from stream.pose_frame import pose_message, status_message
from stream.publisher import Publisher
from stream.subscribe import Subscriber
from stream.vmc import HUMAN_BONES, parse_address

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video" / "sports2d_demo.mp4"

RECEIVER = r"""
import json, socket, sys, time
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(0.2)
print(sock.getsockname()[1], flush=True)
limit, idle = int(sys.argv[1]), float(sys.argv[2])
got, last = 0, time.monotonic()
while got < limit and time.monotonic() - last < idle:
    try:
        data = sock.recv(65536)
    except socket.timeout:
        continue
    last = time.monotonic()
    if OscBundle.dgram_is_bundle(data):
        msgs = [[m.address, list(m.params)] for m in OscBundle(data) if isinstance(m, OscMessage)]
        print(json.dumps({"bundle": True, "messages": msgs}), flush=True)
    else:
        m = OscMessage(data)
        print(json.dumps({"bundle": False, "messages": [[m.address, list(m.params)]]}), flush=True)
    got += 1
"""

#: Unity's humanoid hierarchy (HumanBodyBones parents), written out here as the receiver side knows it.
UNITY_PARENT = {
    "Hips": None, "Spine": "Hips", "Chest": "Spine", "UpperChest": "Chest", "Neck": "UpperChest", "Head": "Neck",
    **{f"{s}Shoulder": "UpperChest" for s in ("Left", "Right")},
    **{f"{s}UpperArm": f"{s}Shoulder" for s in ("Left", "Right")},
    **{f"{s}LowerArm": f"{s}UpperArm" for s in ("Left", "Right")},
    **{f"{s}Hand": f"{s}LowerArm" for s in ("Left", "Right")},
    **{f"{s}UpperLeg": "Hips" for s in ("Left", "Right")},
    **{f"{s}LowerLeg": f"{s}UpperLeg" for s in ("Left", "Right")},
    **{f"{s}Foot": f"{s}LowerLeg" for s in ("Left", "Right")},
    **{f"{s}Toes": f"{s}Foot" for s in ("Left", "Right")},
}
BONE_JOINT = {bone: SMPL_JOINT_NAMES.index(joint) for joint, bone in HUMAN_BONES.items()}
MIRROR = np.array([-1.0, 1.0, 1.0])  # Unity <-> SMPL world: x -> -x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The OSC receiver process: prints its UDP port, then one JSON line per decoded datagram."""

    def __init__(self, limit: int = 1000, idle_s: float = 20.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(limit), str(idle_s)], cwd=REPO,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.packets: list[dict] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.packets.append(json.loads(line))

    def stop(self) -> list[dict]:
        self.proc.terminate()
        self.proc.wait(10)
        self._thread.join(5)
        return self.packets


def unpack(bundle: dict) -> dict:
    """Decoded bundle -> {"root": (pos, quat), "bones": {name: (pos, quat)}, "T": t, "OK": args, "order": [...]}."""
    out: dict = {"bones": {}, "order": [a for a, _ in bundle["messages"]]}
    for address, args in bundle["messages"]:
        if address == "/VMC/Ext/Root/Pos":
            out["root"] = (np.array(args[1:4]), np.array(args[4:8]))
        elif address == "/VMC/Ext/Bone/Pos":
            out["bones"][args[0]] = (np.array(args[1:4]), np.array(args[4:8]))
        else:
            out[address.rsplit("/", 1)[1]] = args
    return out


def unity_fk(frame: dict) -> tuple[dict, dict]:
    """World positions and rotation matrices of every received bone, composed down Unity's hierarchy."""
    root_pos, root_quat = frame["root"]
    pos, rot = {}, {}
    for bone in UNITY_PARENT:  # parents come first in the table
        if bone not in frame["bones"]:
            continue
        parent = UNITY_PARENT[bone]
        while parent is not None and parent not in frame["bones"]:
            parent = UNITY_PARENT[parent]
        p_pos, p_rot = (root_pos, Rotation.from_quat(root_quat).as_matrix()) if parent is None else \
            (pos[parent], rot[parent])
        local_pos, local_quat = frame["bones"][bone]
        pos[bone] = p_pos + p_rot @ local_pos
        rot[bone] = p_rot @ Rotation.from_quat(local_quat).as_matrix()
    return pos, rot


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def known_pose() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body turned 45 deg to its left about +Y (facing between +Z and +X), left elbow bent 90 deg (the forearm
    swings forward), pelvis at (0.3, 0.95, -1.2): (pose_aa (24, 3), joints (24, 3), trans (3,))."""
    pose = np.zeros((24, 3))
    pose[0] = (0.0, math.pi / 4, 0.0)
    pose[SMPL_JOINT_NAMES.index("l_elbow")] = (0.0, -math.pi / 2, 0.0)
    trans = np.array([0.3, 0.95, -1.2])
    with torch.no_grad():
        joints = BuiltinBody()(torch.from_numpy(pose)[None], None, torch.from_numpy(trans)[None]).joints[0].numpy()
    return pose, joints, trans


def known_message(seq: int):
    pose, joints, trans = known_pose()
    rotmat = Rotation.from_rotvec(pose).as_matrix()
    outputs = {"pose_rotmat": rotmat[None], "betas": np.zeros((1, 10)), "root_trans": trans[None],
               "joints": joints[None], "contact": np.array([[1.0, 1.0, 0.0, 0.0]]), "cam_trans": np.zeros((1, 3))}
    return pose_message(outputs, seq=seq, track=0, t_capture=100.0 + seq / 30, kp2d=None, model="test@g0")


@pytest.mark.parametrize("text, expected", [("127.0.0.1:39539", ("127.0.0.1", 39539)), ("39540", ("127.0.0.1", 39540)),
                                            (":9000", ("127.0.0.1", 9000)), ("[::1]:9000", ("::1", 9000))])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:70000", "host:port", ""])
def test_parse_address_refuses_bad_ports(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


def test_bad_receiver_address_is_one_line_and_status_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "stream.vmc", "--to", "127.0.0.1:99999"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "port in 1..65535" in proc.stderr


def test_known_pose_arrives_as_expected_quaternions_and_positions() -> None:
    """stream -> `python -m stream.vmc` -> UDP -> an OSC receiver process; left elbow 90 deg, body turned 45 deg."""
    receiver = Receiver(limit=1000, idle_s=600)  # stopped by the test
    addr = f"tcp://127.0.0.1:{free_port()}"
    publisher = Publisher(addr)
    bridge = subprocess.Popen([sys.executable, "-m", "stream.vmc", "--sub", addr, "--to",
                               f"127.0.0.1:{receiver.port}", "--timeout", "3", "--json"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seq, deadline = 0, time.monotonic() + 120  # the bridge's start-up, on a busy machine
        while not any(p["bundle"] and len(p["messages"]) > 2 for p in receiver.packets):  # slow joiner
            assert time.monotonic() < deadline and bridge.poll() is None, "no VMC bundle arrived"
            publisher.publish(known_message(seq))
            seq += 1
            time.sleep(0.05)
        publisher.publish(status_message("lost", seq=seq, track=0, t_capture=100.0 + seq / 30))
        deadline = time.monotonic() + 10
        while not any(len(p["messages"]) == 2 for p in receiver.packets) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.close()
        out, err = bridge.communicate(timeout=30)
        packets = receiver.stop()
    summary = json.loads(out.strip().splitlines()[-1])
    assert bridge.returncode == 0 and summary["poses"] >= 1 and summary["errors"] == 0, (out, err)
    assert all(p["bundle"] for p in packets), "every datagram must be one OSC bundle"
    frames = [unpack(p) for p in packets]
    posed = [f for f in frames if f["bones"]]
    frame = posed[0]
    # One bundle per frame: the root, every mapped bone, then time and status.
    assert frame["order"][0] == "/VMC/Ext/Root/Pos" and frame["order"][-2:] == ["/VMC/Ext/T", "/VMC/Ext/OK"]
    assert set(frame["bones"]) == set(UNITY_PARENT), sorted(set(UNITY_PARENT) ^ set(frame["bones"]))
    assert frame["OK"] == [1, 3, 0, 1]

    # Root trajectory: floor projection of the pelvis, mirrored x; Hips carries the height.
    root_pos, root_quat = frame["root"]
    np.testing.assert_allclose(root_pos, [-0.3, 0.0, -1.2], atol=1e-6)
    np.testing.assert_allclose(root_quat, [0, 0, 0, 1], atol=1e-6)
    hips_pos, hips_quat = frame["bones"]["Hips"]
    np.testing.assert_allclose(hips_pos, [0.0, 0.95, 0.0], atol=1e-6)
    # Turned 45 deg towards SMPL +X = towards Unity -X: Unity's rotation about Y by -45 deg.
    s, c = math.sin(math.radians(22.5)), math.cos(math.radians(22.5))
    np.testing.assert_allclose(hips_quat, [0.0, -s, 0.0, c], atol=1e-6)
    facing = Rotation.from_quat(hips_quat).apply([0.0, 0.0, 1.0])
    np.testing.assert_allclose(facing, [-math.sqrt(0.5), 0.0, math.sqrt(0.5)], atol=1e-6)
    # The trunk is in its rest pose and has no rest correction: identity local rotations.
    for bone in ("Spine", "Chest", "UpperChest", "Neck", "Head", "LeftShoulder", "RightShoulder"):
        np.testing.assert_allclose(Rotation.from_quat(frame["bones"][bone][1]).magnitude(), 0.0, atol=1e-6, err_msg=bone)

    # Left elbow: the forearm, composed down Unity's chain from its T-pose direction (-X for the left arm), points
    # where the body model's forearm points, 90 deg from the upper arm and along the body's facing direction.
    _, joints, _ = known_pose()
    pos, rot = unity_fk(frame)
    t_left = np.array([-1.0, 0.0, 0.0])
    forearm, upper = rot["LeftLowerArm"] @ t_left, rot["LeftUpperArm"] @ t_left
    j = {n: SMPL_JOINT_NAMES.index(n) for n in ("l_shoulder", "l_elbow", "l_wrist")}
    assert angle_deg(forearm, MIRROR * (joints[j["l_wrist"]] - joints[j["l_elbow"]])) < 0.01
    assert angle_deg(upper, MIRROR * (joints[j["l_elbow"]] - joints[j["l_shoulder"]])) < 0.01
    # Bent 90 deg from SMPL's rest, whose forearm already kinks ~3 deg from the upper arm's line.
    assert abs(angle_deg(forearm, upper) - 90.0) < 3.0
    assert angle_deg(forearm, facing) < 5.0  # the SMPL forearm itself deviates ~3 deg from straight
    # Limbs at rest point where the body's do (SMPL's rest is not an exact T-pose: the thighs splay ~6 deg).
    for bone, tpose, a, b in (("RightUpperArm", [1, 0, 0], "r_shoulder", "r_elbow"),
                              ("LeftUpperLeg", [0, -1, 0], "l_hip", "l_knee"),
                              ("RightLowerLeg", [0, -1, 0], "r_knee", "r_ankle")):
        bone_dir = MIRROR * (joints[SMPL_JOINT_NAMES.index(b)] - joints[SMPL_JOINT_NAMES.index(a)])
        assert angle_deg(rot[bone] @ np.array(tpose, float), bone_dir) < 0.01, bone
    # Bone positions compose to the body's world joints (mirrored).
    for bone, p in pos.items():
        np.testing.assert_allclose(MIRROR * p, joints[BONE_JOINT[bone]], atol=2e-6, err_msg=bone)
    # A frame without a pose: time and "not tracking" only, so the avatar holds its pose.
    lost = [f for f in frames if not f["bones"]]
    assert lost and lost[-1]["order"] == ["/VMC/Ext/T", "/VMC/Ext/OK"] and lost[-1]["OK"] == [1, 3, 0, 0]


@pytest.mark.skipif(not VIDEO.is_file(), reason="needs ../shared/data/video/sports2d_demo.mp4")
def test_live_run_drives_vmc_in_process_and_through_the_bridge() -> None:
    """run_live.py --vmc on the shared video, and `python -m stream.vmc` on its stream: the decoded bundles
    rebuild the streamed world skeleton, with every limb along its T-pose axis."""
    if os.environ.get("CI") == "true":
        assert VIDEO.is_file()
    in_process, bridged = Receiver(idle_s=600), Receiver(idle_s=600)  # stopped by the test; busy CI is slow
    addr = f"tcp://127.0.0.1:{free_port()}"
    bridge = subprocess.Popen([sys.executable, "-m", "stream.vmc", "--sub", addr, "--to",
                               f"127.0.0.1:{bridged.port}", "--timeout", "400", "--json"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages = []
    stop = threading.Event()

    def collect() -> None:
        with Subscriber(addr) as sub:
            while not stop.is_set():
                got = sub.recv(0.2)
                if got is not None:
                    messages.append(got.msg)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    time.sleep(1.0)  # let the bridge start and connect before frames flow
    try:
        live = subprocess.run([sys.executable, "run_live.py", "--source", str(VIDEO), "--fast", "--max-frames", "40",
                               "--publish", addr, "--wait-subscribers", "10", "--vmc", f"127.0.0.1:{in_process.port}",
                               "--json-stats"], cwd=REPO, capture_output=True, text=True, timeout=420)
        assert live.returncode == 0, live.stderr[-2000:]
        time.sleep(1.0)
    finally:
        stop.set()
        collector.join(5)
        bridge.terminate()
        out, err = bridge.communicate(timeout=30)
        packets = {"in-process": in_process.stop(), "bridge": bridged.stop()}
    stats = json.loads(live.stdout.strip().splitlines()[-1])
    posed_msgs = [m for m in messages if len(m.joints) == 72]
    assert len(posed_msgs) >= 20, f"only {len(posed_msgs)} poses streamed: {stats}"
    stream_joints = np.array([np.reshape(m.joints, (24, 3)) for m in posed_msgs])
    for name, got in packets.items():
        frames = [unpack(p) for p in got if p["bundle"]]
        posed = [f for f in frames if f["bones"]]
        assert len(posed) >= 0.8 * len(posed_msgs), f"{name}: {len(posed)} posed bundles for {len(posed_msgs)} poses"
        for frame in posed:
            assert set(frame["bones"]) == set(UNITY_PARENT)
            quats = np.array([q for _, q in frame["bones"].values()])
            np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-5)
            pos, _ = unity_fk(frame)
            world = np.array([MIRROR * pos[b] for b in UNITY_PARENT])
            ids = [BONE_JOINT[b] for b in UNITY_PARENT]
            err = np.abs(stream_joints[:, ids] - world).max(axis=(1, 2)).min()
            assert err < 1e-3, f"{name}: a bundle matches no streamed skeleton (closest {err * 1e3:.2f} mm)"
            for bone, axis in (("LeftLowerArm", [-1, 0, 0]), ("RightLowerArm", [1, 0, 0]),
                               ("LeftHand", [-1, 0, 0]), ("LeftLowerLeg", [0, -1, 0]), ("RightFoot", [0, -1, 0])):
                assert angle_deg(frame["bones"][bone][0], np.array(axis, float)) < 0.1, bone
        t = [f["T"][0] for f in frames]
        assert t == sorted(t) and t[0] >= 0.0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["poses"] >= 20 and summary["errors"] == 0, (summary, err[-1000:])
