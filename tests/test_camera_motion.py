"""Camera-motion providers against rotations known in closed form (gyro) or by construction (warped images)."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
import zmq

from mocap.rotations import axis_angle_to_matrix, axis_rotation, matrix_to_rot6d, rotation_angle
from stream.camera_motion import (
    GyroCameraMotion,
    StaticCameraMotion,
    VisualCameraMotion,
    make_camera_motion,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE = DATA / "images" / "sports2d_demo_middle_f0115.png"
FPS = 30.0


def expected_omega(q: np.ndarray, rate: float = FPS) -> np.ndarray:
    """The convention as docs/design.md states it, written out independently of `mocap.camera.camera_omega`."""
    return (matrix_to_rot6d(q) - matrix_to_rot6d(np.eye(3))) * rate


def rot_x(a: float) -> np.ndarray:
    return axis_rotation(np.asarray(a, dtype=np.float64), "X")


def rot_y(a: float) -> np.ndarray:
    return axis_rotation(np.asarray(a, dtype=np.float64), "Y")


def write_csv(path: Path, ts: np.ndarray, ws: np.ndarray, header: bool = True) -> Path:
    lines = (["t,wx,wy,wz"] if header else []) + [f"{t:.6f},{w[0]:.9f},{w[1]:.9f},{w[2]:.9f}" for t, w in zip(ts, ws)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------- static / base


def test_static_is_zeros_and_validates_time() -> None:
    cam = StaticCameraMotion()
    assert np.all(cam.update(0.0) == 0) and cam.status == "init"
    out = cam.update(1 / FPS, None, np.array([10.0, 20.0, 30.0]))
    assert out.shape == (6,) and out.dtype == np.float32 and np.all(out == 0) and cam.status == "ok"
    assert np.all(cam.update(1 / FPS) == 0) and cam.status == "time not increasing"
    with pytest.raises(ValueError, match="finite"):
        cam.update(float("nan"))
    with pytest.raises(ValueError, match="person_bbox"):
        cam.update(1.0, None, np.zeros(4))


def test_make_camera_motion_specs(tmp_path: Path) -> None:
    assert isinstance(make_camera_motion("static"), StaticCameraMotion)
    assert isinstance(make_camera_motion("visual"), VisualCameraMotion)
    csv_path = write_csv(tmp_path / "g.csv", np.array([0.0, 0.1]), np.zeros((2, 3)))
    assert isinstance(make_camera_motion(f"gyro:csv:{csv_path}"), GyroCameraMotion)
    with pytest.raises(ValueError, match="unknown camera motion spec"):
        make_camera_motion("gyro:serial:/dev/ttyUSB0")


# ----------------------------------------------------------------------------------------------------- gyro


def test_gyro_csv_constant_rate_matches_closed_form(tmp_path: Path) -> None:
    w = np.array([0.2, -0.3, 0.1])  # rad/s, camera body frame
    ts = np.arange(0.0, 1.0, 0.005)
    cam = GyroCameraMotion.from_csv(write_csv(tmp_path / "gyro.csv", ts, np.tile(w, (len(ts), 1))))
    q_true = axis_angle_to_matrix(-w / FPS)  # Q = R_t R_{t-1}^T = exp(-[w] dt) for a body rate w
    cam.update(0.1)
    for k in range(1, 10):
        out = cam.update(0.1 + k / FPS)
        assert cam.status == "ok"
        np.testing.assert_allclose(cam.rotation_delta, q_true, atol=1e-9)
        np.testing.assert_allclose(out, expected_omega(q_true), atol=1e-5)


def test_gyro_sign_panning_right_moves_scene_left() -> None:
    cam = GyroCameraMotion()
    for t in np.arange(0.0, 0.5, 0.01):
        cam.push(t, (0.0, 0.5, 0.0))  # about +Y (down): the optical axis swings toward +X (right)
    cam.update(0.1)
    cam.update(0.2)
    ahead = cam.rotation_delta @ np.array([0.0, 0.0, 1.0])
    assert ahead[0] < -0.04 and abs(ahead[1]) < 1e-9  # a point straight ahead now lies to the left


def test_gyro_matches_a_known_non_commuting_trajectory() -> None:
    """Camera->world C(t) = C0 Ry(a t) Rx(phi(t)); body rate w = Rx(phi)^T (0, a, 0) + (phi', 0, 0)."""
    a, c0 = 0.8, rot_x(0.3) @ rot_y(-1.0)

    def phi(t: float) -> float:
        return 0.5 * np.sin(3.0 * t)

    def world_to_cam(t: float) -> np.ndarray:
        return (c0 @ rot_y(a * t) @ rot_x(phi(t))).T

    cam = GyroCameraMotion()
    for t in np.arange(0.0, 1.0, 0.001):
        cam.push(t, rot_x(phi(t)).T @ np.array([0.0, a, 0.0]) + np.array([1.5 * np.cos(3.0 * t), 0.0, 0.0]))
    times = 0.05 + np.arange(8) / FPS
    cam.update(times[0])
    for t0, t1 in zip(times[:-1], times[1:]):
        cam.update(t1)
        q_true = world_to_cam(t1) @ world_to_cam(t0).T
        assert rotation_angle(q_true) > 0.02
        assert rotation_angle(cam.rotation_delta @ q_true.T) < 1e-5
        # The inverse convention (body increment itself) would be off by twice the step.
        assert rotation_angle(cam.rotation_delta.T @ q_true.T) > 0.03


def test_gyro_imu_frame_and_time_offset() -> None:
    w_cam = np.array([0.1, 0.4, -0.2])
    imu_to_cam = rot_x(0.7) @ rot_y(2.0)
    cam = GyroCameraMotion(imu_to_camera=imu_to_cam, time_offset=100.0)
    for t in np.arange(-100.0, -99.0, 0.01):  # IMU clock runs 100 s behind the capture clock
        cam.push(t, imu_to_cam.T @ w_cam)
    cam.update(0.2)
    cam.update(0.2 + 1 / FPS)
    assert cam.status == "ok"
    np.testing.assert_allclose(cam.rotation_delta, axis_angle_to_matrix(-w_cam / FPS), atol=1e-9)
    with pytest.raises(ValueError, match="imu_to_camera"):
        GyroCameraMotion(imu_to_camera=np.diag([1.0, 1.0, -1.0]))


def test_gyro_out_of_order_and_duplicate_samples() -> None:
    ts = np.arange(0.0, 0.6, 0.004)
    ws = np.stack([np.sin(5 * ts), np.cos(3 * ts), 0.3 * ts], axis=1)
    ordered, shuffled = GyroCameraMotion(), GyroCameraMotion()
    for t, w in zip(ts, ws):
        ordered.push(t, w)
    perm = np.random.default_rng(1).permutation(len(ts))
    for i in np.concatenate([perm, perm[:40]]):  # shuffled, plus 40 retransmits
        shuffled.push(ts[i], ws[i])
    shuffled.push(0.3, (np.nan, 0.0, 0.0))
    assert len(shuffled.buffer) == len(ts) and shuffled.buffer.duplicates == 40 and shuffled.rejected == 1
    for t in (0.1, 0.1 + 1 / FPS, 0.1 + 2 / FPS):
        a, b = ordered.update(t), shuffled.update(t)
        np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 0.1


def test_gyro_gap_holds_then_zeros_without_raising() -> None:
    w = np.array([0.0, 0.0, 0.6])
    cam = GyroCameraMotion(max_gap=0.1)
    assert np.all(cam.update(0.0) == 0)
    assert np.all(cam.update(1 / FPS) == 0) and cam.status == "gyro gap"  # no data at all yet
    for t in np.arange(0.0, 1.0, 0.005):  # samples stop at 0.995 s
        cam.push(t, w)
    cam.reset()
    cam.update(0.98)
    out = cam.update(0.98 + 1 / FPS)  # reaches past the last sample by < max_gap: hold the last rate
    assert cam.status == "gyro hold"
    np.testing.assert_allclose(out, expected_omega(axis_angle_to_matrix(-w / FPS)), atol=1e-5)
    cam.update(1.5)
    out = cam.update(1.5 + 1 / FPS)  # half a second after the stream died: nothing known
    assert cam.status == "gyro gap" and np.all(out == 0)
    for t in np.arange(1.6, 2.0, 0.005):  # the stream comes back
        cam.push(t, w)
    cam.update(1.7)
    cam.update(1.7 + 1 / FPS)
    assert cam.status == "ok"


def test_gyro_csv_without_header_and_bad_rows(tmp_path: Path) -> None:
    ts = np.arange(0.0, 0.5, 0.01)
    cam = GyroCameraMotion.from_csv(write_csv(tmp_path / "a.csv", ts, np.tile([0.0, 0.3, 0.0], (50, 1)), False))
    assert len(cam.buffer) == 50
    (tmp_path / "bad.csv").write_text("t,wx,wy,wz\n0.0,0,0,0\n0.1,zero,0,0\n")
    with pytest.raises(ValueError, match="row 2"):
        GyroCameraMotion.from_csv(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        GyroCameraMotion.from_csv(tmp_path / "missing.csv")


def _wait_for(cond, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_gyro_udp_json_and_zmq_msgpack_streams() -> None:
    w = [0.0, 0.25, 0.0]
    udp_cam = GyroCameraMotion.from_udp("127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        dest = ("127.0.0.1", udp_cam.source.port)
        tx.sendto(b"not a packet", dest)
        for t in np.arange(0.0, 0.5, 0.01):
            tx.sendto(json.dumps({"t": float(t), "w": w}).encode(), dest)
        assert _wait_for(lambda: udp_cam.samples == 50)  # pending until the first frame fixes the clock
    assert udp_cam.source.bad_packets == 1
    udp_cam.update(0.1)
    np.testing.assert_allclose(udp_cam.update(0.2), expected_omega(axis_angle_to_matrix(-np.array(w) * 0.1), 10))
    udp_cam.close()

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    zmq_cam = GyroCameraMotion.from_zmq(f"tcp://127.0.0.1:{port}")
    try:
        batch = [{"t": float(t), "w": w} for t in np.arange(0.0, 0.5, 0.01)]
        assert _wait_for(lambda: pub.send_multipart([b"imu", msgspec.msgpack.encode(batch)]) or zmq_cam.samples)
        assert zmq_cam.samples % 50 == 0  # the batch may have been sent more than once before it arrived
        zmq_cam.update(0.1)
        assert len(zmq_cam.buffer) == 50  # retransmits replace, never duplicate
        np.testing.assert_allclose(zmq_cam.update(0.2), udp_cam.update(0.3), atol=1e-6)
    finally:
        zmq_cam.close()
        pub.close()


# --------------------------------------------------------------------------------------------------- visual


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real image downscaled to 640 wide, its default K, and a person box over the walking woman."""
    if not IMAGE.is_file():
        pytest.skip(f"shared data missing: {IMAGE}")
    img = cv2.imread(str(IMAGE))
    h, w = img.shape[:2]
    img = cv2.resize(img, (640, round(h * 640 / w)), interpolation=cv2.INTER_AREA)
    hh, ww = img.shape[:2]
    f = np.hypot(ww, hh)
    k = np.array([[f, 0, ww / 2], [0, f, hh / 2], [0, 0, 1.0]])
    return img, k, np.array([0.52 * ww, 0.72 * hh, 0.5 * hh])


def render(img: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The view after the camera rotated by r (world->camera, relative to the reference view)."""
    return cv2.warpPerspective(img, k @ r @ np.linalg.inv(k), (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR)


def test_visual_recovers_known_rotation_and_agrees_with_gyro(scene) -> None:
    img, k, bbox = scene
    w_body = np.array([0.15, 0.26, 0.0])  # 0.3 rad/s of pitch + yaw
    q = axis_angle_to_matrix(-w_body / FPS)
    visual, gyro = VisualCameraMotion(), GyroCameraMotion()
    for t in np.arange(0.0, 1.0, 0.005):
        gyro.push(t, w_body)
    r = np.eye(3)
    for i in range(8):
        t = 0.1 + i / FPS
        frame = render(img, k, r)
        moving = frame.copy()  # the person region moves on its own: masking (and RANSAC) must ignore it
        x0, y0 = int(bbox[0] - bbox[2] / 2), int(bbox[1] - bbox[2] / 2)
        moving[y0 : y0 + int(bbox[2]), x0 : x0 + int(bbox[2])] = np.roll(
            frame[y0 : y0 + int(bbox[2]), x0 : x0 + int(bbox[2])], 9 * i, axis=1
        )
        out_v, out_g = visual.update(t, moving, bbox), gyro.update(t)
        if i:
            assert visual.status == "ok" and visual.inliers >= 50
            err = rotation_angle(visual.rotation_delta @ q.T)
            assert err < 0.1 * rotation_angle(q)
            assert np.linalg.norm(out_v - out_g) < 0.1 * np.linalg.norm(out_g)
        r = q @ r


def test_visual_static_frames_give_zeros(scene) -> None:
    img, _, bbox = scene
    cam = VisualCameraMotion()
    noise = np.random.default_rng(0)
    for i in range(4):
        frame = np.clip(img.astype(np.int16) + noise.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)
        out = cam.update(i / FPS, frame, bbox)
    assert cam.status == "ok" and np.abs(out).max() < 0.02  # < 0.04 deg per frame


def test_visual_degrades_to_zeros_with_a_status(scene) -> None:
    img, _, _ = scene
    cam = VisualCameraMotion()
    flat = np.full((360, 640, 3), 128, np.uint8)
    cam.update(0.0, flat)
    assert np.all(cam.update(1 / FPS, flat) == 0) and cam.status == "few features"
    assert np.all(cam.update(2 / FPS, None) == 0) and cam.status == "no frame"
    cam.update(3 / FPS, img)
    shuffled = img.copy()  # 4x4 tiles, each shifted its own way: plenty of tracks, no common rotation
    th, tw = img.shape[0] // 4, img.shape[1] // 4
    shifts = np.random.default_rng(0).integers(-8, 9, size=(4, 4, 2))
    for i in range(4):
        for j in range(4):
            tile = shuffled[i * th : (i + 1) * th, j * tw : (j + 1) * tw]
            tile[:] = np.roll(tile, tuple(shifts[i, j]), axis=(0, 1))
    assert np.all(cam.update(4 / FPS, shuffled) == 0) and cam.status == "no consensus"
    with pytest.raises(ValueError, match="uint8"):
        cam.update(5 / FPS, img.astype(np.float32))
