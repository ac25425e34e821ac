"""run_live.py as a user runs it: bad arguments, the synthetic demo with a recording, and the acceptance test
(a real video -> MediaPipe -> the trained default model -> ZeroMQ -> `python -m stream.subscribe` in another
process, with the received poses reprojected onto the detected keypoints)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from stream.__main__ import main
from stream.protocol import PoseMessage, validate
from stream.recorder import read_recording

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEO = DATA / "video" / "sports2d_demo.mp4"
DEFAULT_CHECKPOINT = REPO / "mocap" / "checkpoints" / "default.safetensors"
# COCO keypoints with a firm anatomical counterpart on the body model: shoulders, elbows, wrists, hips, knees, ankles.
BODY_KEYPOINTS = list(range(5, 17))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_live(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from mocap.model import CausalMocap, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(CausalMocap(), tmp_path_factory.mktemp("ckpt") / "model.safetensors",
                           extra={"model_id": "untrained-test"})


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("argv, fragment", [
    (["--source", "/no/such/video.mp4"], "no such file or folder"),
    (["--camera-motion", "gyro"], "needs --gyro"),
    (["--camera-motion", "visual", "--gyro", "tcp://127.0.0.1:5560"], "only used with --camera-motion gyro"),
    (["--gyro", "/no/such/gyro.csv"], "gyro CSV not found"),
    (["--gyro", "udp://nohost"], "udp://HOST:PORT"),
    (["--max-frames", "0"], "--max-frames must be >= 1"),
    (["--checkpoint", "/no/such/model.safetensors"], "--checkpoint"),
    (["--source", str(REPO / "export")], "no .png/.jpg/.jpeg images"),   # a folder of code, no images
])
def test_bad_arguments_give_one_error_line_and_status_2(argv: list[str], fragment: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run_live.py: error: ") and fragment in err[0], err


def test_argparse_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--engine", "cuda-magic"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0]


def test_a_missing_video_fails_without_a_traceback() -> None:
    proc = run_live("--source", "missing.mp4", "--max-frames", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "run_live.py: error: --source 'missing.mp4': no such file or folder (expected " \
                                  "auto, synthetic, a webcam index, a video file, an image folder or a URL)"


# ------------------------------------------------------------------------------------------------ synthetic demo
def test_synthetic_demo_runs_the_model_path_and_records(untrained_checkpoint: Path, tmp_path: Path) -> None:
    record = tmp_path / "run.jsonl"
    proc = run_live("--source", "synthetic", "--fast", "--max-frames", "40", "--checkpoint", str(untrained_checkpoint),
                    "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", str(record), "--json-stats")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["frames"] == 40 and stats["published"] == 40 and stats["recorded"] == 40
    assert stats["engine"] == "torch" and stats["model"] == "untrained-test@g0" and stats["source_kind"] == "synthetic"
    assert {"detect", "track", "model", "publish", "latency"} <= set(stats["stages_ms"])
    assert "frames:    40 processed, 40 published" in proc.stderr  # the human summary goes to stderr with --json
    messages = list(read_recording(record))
    assert [m.seq for m in messages] == list(range(40)) and messages[0].status == "init"
    assert all(validate(m).status in ("init", "tracking") for m in messages)


def test_auto_source_falls_back_to_synthetic_without_a_webcam(untrained_checkpoint: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import stream.__main__ as cli

    assert cli.probe_webcam(99, timeout=0.3) is None  # the real probe: no camera 99, no exception, no noise
    monkeypatch.setattr(cli, "probe_webcam", lambda index=0, timeout=2.0: None)
    assert main(["--max-frames", "3", "--fast", "--checkpoint", str(untrained_checkpoint),
                 "--publish", f"tcp://127.0.0.1:{free_port()}", "--json-stats"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["source_kind"] == "synthetic"
    assert "using the synthetic source" in caplog.text


def test_sigint_stops_a_live_run_with_a_summary(untrained_checkpoint: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--source", "synthetic", "--checkpoint",
                             str(untrained_checkpoint), "--publish", f"tcp://127.0.0.1:{free_port()}", "--json-stats"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while "running:" not in (line := proc.stderr.readline()) and time.monotonic() < deadline:
            assert line, "run_live.py ended before it started running"
        time.sleep(1.0)  # about 30 frames at the synthetic source's real-time pace
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["stop_reason"] == "stopped" and 10 <= stats["frames"] <= 90 and stats["fps"] > 15


# ------------------------------------------------------------------------------------------------ acceptance
def camera_keypoints_from_messages(messages: list[PoseMessage], K: np.ndarray) -> np.ndarray:
    """(F, 21, 3) camera-frame keypoints rebuilt from the wire fields alone: the body from pose_aa (root replaced
    by the camera-frame root orientation the message carries, cam_root_aa) + betas through BuiltinBody, placed at
    cam_trans. Exactly what a subscriber that wants to overlay the pose on the video does."""
    import torch

    from mocap.body import BuiltinBody

    arrays = [m.arrays() for m in messages]
    assert all("cam_root_aa" in a for a in arrays), "every posed message carries cam_root_aa"
    pose = np.stack([a["pose_aa"] for a in arrays]).astype(np.float32)           # (F, 24, 3)
    pose[:, 0] = np.stack([a["cam_root_aa"] for a in arrays])
    with torch.no_grad():
        body = BuiltinBody()(torch.from_numpy(pose), torch.from_numpy(np.stack([a["betas"] for a in arrays])))
    cam_trans = np.stack([a["cam_trans"] for a in arrays]).astype(np.float64)    # (F, 3)
    return body.keypoints.double().numpy() + cam_trans[:, None]


def per_frame_error(cam_kp: np.ndarray, messages: list[PoseMessage], K: np.ndarray) -> np.ndarray:
    """(F,) median distance over the confident body keypoints / their box height."""
    from mocap.camera import project

    errors = []
    for kp3, msg in zip(cam_kp, messages):
        kp2d = msg.arrays()["kp2d"].astype(np.float64)[BODY_KEYPOINTS]
        uv = np.asarray(project(kp3[BODY_KEYPOINTS], K))
        ok = (kp2d[:, 2] >= 0.5) & np.isfinite(uv).all(axis=1)
        if ok.sum() >= 4:
            errors.append(np.median(np.linalg.norm(uv[ok] - kp2d[ok, :2], axis=1)) / np.ptp(kp2d[ok, 1]))
    return np.asarray(errors)


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(),
                    reason=f"the trained default checkpoint is not shipped yet ({DEFAULT_CHECKPOINT} missing)")
@pytest.mark.skipif(not VIDEO.is_file(), reason=f"shared data not found at {VIDEO}")
def test_acceptance_video_to_subscriber_with_reprojection_under_15_percent(tmp_path: Path) -> None:
    pytest.importorskip("mediapipe", reason='needs mediapipe (pip install "livemocap[live]")')
    from mocap.camera import default_intrinsics

    addr = f"tcp://127.0.0.1:{free_port()}"
    received = tmp_path / "subscriber.jsonl"
    with open(received, "w") as out:  # a file, not a pipe: an undrained pipe would stall the subscriber
        subscriber = subprocess.Popen([sys.executable, "-m", "stream.subscribe", addr, "--count", "150", "--json",
                                       "--timeout", "45"], cwd=REPO, stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            proc = run_live("--source", str(VIDEO), "--max-frames", "200", "--fast", "--publish", addr,
                            "--wait-subscribers", "10", "--json-stats", timeout=90)
            _, err = subscriber.communicate(timeout=30)
        finally:
            subscriber.kill()
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["frames"] == 200 and stats["published"] >= 150, stats
    assert subscriber.returncode == 0, err
    lines = received.read_text().strip().splitlines()
    summary: dict[str, Any] = json.loads(lines[-1])["summary"]
    decoder = msgspec.json.Decoder(PoseMessage)
    messages = [validate(decoder.decode(line)) for line in lines[:-1]]  # extra t_receive key is ignored
    assert len(messages) >= 150 and summary["messages"] == len(messages)
    posed = [m for m in messages if m.pose_aa]
    assert len(posed) >= 100, f"only {len(posed)} of {len(messages)} messages carry a pose"

    K = default_intrinsics(1768, 994)
    errors = per_frame_error(camera_keypoints_from_messages(posed, K), posed, K)
    median = float(np.median(errors))
    assert len(errors) >= 100 and median < 0.15, np.percentile(errors, [10, 50, 90])  # the acceptance criterion
    # An untrained network already scores ~0.14 here (a standing mean pose placed by the CLIFF camera), so the
    # criterion alone cannot tell a trained model from noise; a partly trained one scores ~0.06.
    assert median < 0.10, f"median reprojection error {median:.3f} of the box height: no better than untrained"
    # The loop's own check (kp3d_cam, the exact camera-frame output) agrees with what the wire carries.
    assert stats["reproj_err_rel"]["p50"] < 0.10 and abs(stats["reproj_err_rel"]["p50"] - median) < 0.03
