"""Frame sources: synthetic demo (determinism, projection, camera motion), video, live thread, image folder."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mocap.camera import project
from mocap.rotations import rot6d_to_matrix, rotation_angle
from stream.sources import Frame, ImageFolderSource, OpenCVSource, open_source
from stream.sources.synthetic import SyntheticSource

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEO = DATA / "video" / "sports2d_demo.mp4"
needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"shared data not found at {VIDEO}")


@pytest.fixture(scope="module")
def synthetic() -> SyntheticSource:
    return SyntheticSource(realtime=False, seed=3)


# ----------------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_by_seed(synthetic: SyntheticSource) -> None:
    again = SyntheticSource(realtime=False, seed=3, n_frames=3)
    other = SyntheticSource(realtime=False, seed=4, n_frames=3)
    for i in range(3):
        a, b, c = synthetic.frame_data(i)[0], again.read(), other.read()
        np.testing.assert_array_equal(a, b.keypoints)
        assert not np.allclose(a, c.keypoints)
        assert b.seq == i and b.image.shape == (480, 640, 3) and b.image.dtype == np.uint8
    assert again.read() is None and again.finished
    np.testing.assert_array_equal(SyntheticSource(realtime=False, seed=3, n_frames=1).read().image,
                                  SyntheticSource(realtime=False, seed=3, n_frames=1).read().image)


def test_synthetic_projection_inside_image_and_upright(synthetic: SyntheticSource) -> None:
    n = synthetic.motion.num_frames
    kp = np.stack([synthetic.frame_data(i)[0] for i in range(0, n, 3)])  # (F, 21, 3) over the whole cycle
    w, h = synthetic.size
    assert (kp[..., 0] > 0).all() and (kp[..., 0] < w).all() and (kp[..., 1] > 0).all() and (kp[..., 1] < h).all()
    assert ((kp[..., 2] > 0.5) & (kp[..., 2] <= 1.0)).all()
    nose_y, feet_y, hip_y = kp[:, 0, 1], kp[:, 17:, 1], kp[:, 11:13, 1].mean(-1)
    assert (nose_y[:, None] < feet_y).all() and (nose_y < hip_y).all() and (hip_y[:, None] < feet_y).all()


def test_synthetic_keypoints_are_exact_projection_plus_noise() -> None:
    src = SyntheticSource(realtime=False, noise_px=0.0, render=False, n_frames=2)
    frame = src.read()
    assert frame.image is None
    m = frame.meta
    pts_cam = (m["keypoints_world"].astype(np.float64) - m["cam_position"]) @ m["R_world_to_cam"].T
    assert (pts_cam[:, 2] > 3.0).all()  # the person is in front of the camera, a few metres away
    np.testing.assert_allclose(frame.keypoints[:, :2], project(pts_cam, m["K"]), atol=1e-3)
    assert m["K"][0, 0] == pytest.approx(np.hypot(640, 480))
    # Feet rest on the floor (world Y up, floor y = 0).
    assert m["keypoints_world"][17:, 1].min() == pytest.approx(0.0, abs=1e-4)


def test_synthetic_camera_omega_matches_pan() -> None:
    static = SyntheticSource(realtime=False, render=False)
    np.testing.assert_allclose(static.omega(5), 0.0, atol=1e-9)
    pan = SyntheticSource(realtime=False, render=False, pan_deg=10.0, pan_period_s=4.0)
    fps = pan.fps
    for i in (1, 17, 45):
        omega = pan.omega(i)
        rel = rot6d_to_matrix(omega / fps + np.array([1.0, 0, 0, 0, 1, 0]))
        np.testing.assert_allclose(rel, pan.rotation(i) @ pan.rotation(i - 1).T, atol=1e-9)
        alpha = lambda k: np.radians(10.0) * np.sin(2 * np.pi * k / (fps * 4.0))  # noqa: E731
        assert float(rotation_angle(rel)) == pytest.approx(abs(alpha(i) - alpha(i - 1)), rel=1e-6)
    frame = pan.read()
    np.testing.assert_array_equal(pan.true_omega, frame.meta["omega"])
    kp = np.stack([pan.frame_data(i)[0] for i in range(0, pan.motion.num_frames, 2)])
    assert (kp[..., 0] > 0).all() and (kp[..., 0] < 640).all()  # a 10 degree pan keeps the person in frame


# ----------------------------------------------------------------------------------------------- OpenCV
@needs_video
def test_video_file_all_frames_fast_mode() -> None:
    with OpenCVSource(VIDEO, realtime=False) as src:
        assert src.size == (1768, 994) and src.fps == pytest.approx(30.0)
        frames = [(f.seq, f.t_capture, f.image.shape) for f in src]
        assert src.finished and "finished" in src.status
        assert src.read() is None
    assert len(frames) == 230
    seqs, times, shapes = zip(*frames)
    assert list(seqs) == list(range(230))
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert set(shapes) == {(994, 1768, 3)}


@needs_video
def test_video_file_realtime_pacing() -> None:
    with OpenCVSource(VIDEO, realtime=True) as src:
        t0 = time.monotonic()
        stamps = [src.read().t_capture for _ in range(4)]
    # Frame n is released no earlier than n / fps after frame 0.
    assert stamps[-1] - stamps[0] >= 3 / 30 - 1e-3
    assert time.monotonic() - t0 < 2.0


def test_missing_video_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        OpenCVSource(missing)


def test_missing_webcam_reports_status_and_never_raises() -> None:
    src = OpenCVSource(99, retry_delay=0.2, max_retry_delay=0.4)
    try:
        deadline = time.monotonic() + 5.0
        while "unavailable" not in src.status and time.monotonic() < deadline:
            assert src.read(timeout=0.05) is None
        assert "camera 99 unavailable, retrying in" in src.status
        assert src.read(timeout=0.1) is None and not src.finished
    finally:
        src.close()
    assert src.status == "closed" and src.finished and not src._thread.is_alive()


@needs_video
def test_live_stream_keeps_only_latest_frame() -> None:
    """A URL source is read by the background thread; a slow consumer gets the newest frame, stale ones dropped."""
    src = OpenCVSource(VIDEO.resolve().as_uri())
    try:
        frames: list[Frame] = []
        deadline = time.monotonic() + 10.0
        while len(frames) < 4 and time.monotonic() < deadline:
            frame = src.read(timeout=1.0)
            if frame is not None:
                frames.append(frame)
                time.sleep(0.1)  # slower than the decoder
        assert len(frames) == 4, src.status
        seqs = [f.seq for f in frames]
        assert all(b > a for a, b in zip(seqs, seqs[1:])) and seqs[-1] - seqs[0] > 3  # gaps = dropped frames
        assert all(b.t_capture > a.t_capture for a, b in zip(frames, frames[1:]))
        assert src.dropped > 0 and src.size == (1768, 994) and "streaming" in src.status
    finally:
        src.close()


# ----------------------------------------------------------------------------------------------- image folder
def test_image_folder_natural_order_and_errors(tmp_path: Path) -> None:
    for i, name in enumerate(["f10.png", "f2.jpg", "f1.png"]):
        cv2.imwrite(str(tmp_path / name), np.full((12, 16, 3), 10 * (i + 1), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "f3.png").write_bytes(b"corrupt")
    with ImageFolderSource(tmp_path, fps=25, realtime=False) as src:
        assert src.size == (16, 12) and src.fps == 25
        frames = list(src)
    assert [Path(f.meta["path"]).name for f in frames] == ["f1.png", "f2.jpg", "f10.png"]
    assert [f.seq for f in frames] == [0, 1, 2] and [Path(p).name for p in src.skipped] == ["f3.png"]
    assert int(frames[0].image[0, 0, 0]) == 30 and src.finished
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .png"):
        ImageFolderSource(empty)
    with pytest.raises(FileNotFoundError):
        ImageFolderSource(tmp_path / "missing")


def test_image_folder_realtime_pacing(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((4, 4, 3), np.uint8))
    src = ImageFolderSource(tmp_path, fps=20.0)
    stamps = [f.t_capture for f in src]
    assert len(stamps) == 4 and stamps[-1] - stamps[0] >= 3 / 20 - 1e-3


def test_open_source_dispatch(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    assert isinstance(open_source(tmp_path, realtime=False), ImageFolderSource)
    assert isinstance(open_source("synthetic", realtime=False, render=False, n_frames=1), SyntheticSource)
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "missing.mp4"))
