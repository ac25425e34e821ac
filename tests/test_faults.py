"""Fault injection, one test per fault found by trying the product as a new user would (issue 12).

Exposure without encryption, silent data loss in recordings, models that load and then fail (or lie about their
layout), gyros that are silently ignored, stale data for slow readers, code execution from an SMPL pickle, and the
smaller ones (truncated videos, undecodable folders, early subscribers, wrapped ports, double signals, HTTP videos
replayed forever, non-reproducible --fast runs, heartbeats in latency stats, one corrupt recording line).
Fast: the shipped ONNX model, the synthetic source, loopback sockets on free ports, one run_live subprocess.
"""
from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import pickle
import resource
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import zmq

import engines
from stream.__main__ import camera_motion_spec, exit_status, main as run_live_main, run_warnings
from stream.camera_motion import GyroCameraMotion, make_camera_motion
from stream.keys import load_allowed, load_public, load_secret, main as keys_main
from stream.loop import FrameReport, LiveLoop
from stream.protocol import PoseMessage, validate
from stream.publisher import Publisher
from stream.recorder import Recorder, main as recorder_main, read_recording
from stream.sources import ImageFolderSource, OpenCVSource, SyntheticSource
from stream.subscribe import AuthError, LatencyStats, Received, Subscriber
from stream.tracker import Tracker

REPO = Path(__file__).resolve().parents[1]
ANY_PORT = "tcp://127.0.0.1:*"
FPS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = run_live_main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


SYNTH = ["--source", "synthetic", "--fast", "--max-frames", "6"]


class ListPublisher:
    def __init__(self) -> None:
        self.messages: list[PoseMessage] = []

    def publish(self, msg: PoseMessage) -> bool:
        self.messages.append(validate(msg))
        return True


@pytest.fixture(scope="module")
def engine() -> Any:
    return engines.load("default")


# ================================================================================================ 1. exposure
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("server", "friend", "stranger"):
        assert keys_main(["new", name, "--dir", str(folder)]) == 0
    allow = folder / "clients.txt"
    allow.write_text("# who may watch\nfriend.key\n")
    return {"dir": folder, "allow": allow, **{n: folder / f"{n}.key" for n in ("server", "friend", "stranger")},
            **{f"{n}_secret": folder / f"{n}.key_secret" for n in ("server", "friend", "stranger")}}


def test_keys_new_writes_a_private_secret_and_never_overwrites(keys: dict[str, Path]) -> None:
    mode = stat.S_IMODE(keys["server_secret"].stat().st_mode)
    assert mode == 0o600 and stat.S_IMODE(keys["server"].stat().st_mode) & 0o077 != 0o077
    public, secret = load_secret(keys["server_secret"])
    assert load_public(str(keys["server"])) == public == zmq.curve_public(secret)
    assert load_allowed(keys["allow"]) == [load_public(str(keys["friend"]))]
    assert keys_main(["new", "server", "--dir", str(keys["dir"])]) == 2  # refuses to overwrite a key


def test_binding_beyond_loopback_needs_curve_or_an_explicit_insecure_flag(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, keys: dict[str, Path]) -> None:
    public_addr = f"tcp://0.0.0.0:{free_port()}"
    rc, out, err = run_cli([*SYNTH, "--publish", public_addr], capsys)
    assert rc == 2 and "--curve-secret" in err and "--insecure-public" in err and not out
    with caplog.at_level(logging.WARNING):
        rc, out, err = run_cli([*SYNTH, "--publish", public_addr, "--insecure-public"], capsys)
    assert rc == 0 and "WITHOUT encryption" in caplog.text and "6 processed" in out
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc, out, err = run_cli([*SYNTH, "--publish", f"tcp://0.0.0.0:{free_port()}", "--curve-secret",
                                str(keys["server_secret"])], capsys)
    assert rc == 0 and "WITHOUT" not in caplog.text
    os.chmod(keys["stranger_secret"], 0o644)
    try:  # a secret others can read is refused, and so is an allow-list without a secret
        rc, _, err = run_cli([*SYNTH, "--curve-secret", str(keys["stranger_secret"])], capsys)
        assert rc == 2 and "chmod 600" in err
    finally:
        os.chmod(keys["stranger_secret"], 0o600)
    rc, _, err = run_cli([*SYNTH, "--curve-allow", str(keys["allow"])], capsys)
    assert rc == 2 and "needs --curve-secret" in err


def test_curve_end_to_end_and_two_quick_signals_keep_summary_and_recording(keys: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """run_live with --curve-secret/--curve-allow: an unkeyed subscriber gets nothing, an allowed one (the CLI,
    with key files) gets the stream, a keyed but unlisted one is refused. Then two quick SIGINTs: the run still
    ends with its summary and a complete, renamed recording."""
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    record = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    live = subprocess.Popen(
        # --fast: on a starved CI machine the real-time pace can skip nearly every frame (frames late on arrival)
        [sys.executable, str(REPO / "run_live.py"), "--source", "synthetic", "--fast", "--publish", addr, "--record",
         str(record), "--curve-secret", str(keys["server_secret"]), "--curve-allow", str(keys["allow"])],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        friend = subprocess.run(
            [sys.executable, "-m", "stream.subscribe", addr, "--curve-server-key", str(keys["server"]),
             "--curve-client", str(keys["friend_secret"]), "--count", "5", "--timeout", "30", "--json"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert friend.returncode == 0, friend.stderr
        lines = [json.loads(line) for line in friend.stdout.splitlines()]
        assert len(lines) == 6 and lines[-1]["summary"]["messages"] == 5 and lines[0]["status"] in ("init",
                                                                                                  "tracking")
        with Subscriber(addr) as plain:  # no CURVE at all: the handshake never completes, nothing arrives
            assert plain.recv(timeout=1.0) is None
        stranger = (load_public(str(keys["server"])), *load_secret(keys["stranger_secret"]))
        with Subscriber(addr, curve=stranger) as sub, pytest.raises(AuthError, match="allow-list"):
            for _ in range(50):
                assert sub.recv(timeout=0.1) is None
        live.send_signal(signal.SIGINT)
        time.sleep(0.01)  # the second lands while the loop is stopping (the old code then died mid-way)
        live.send_signal(signal.SIGINT)
        out, err = live.communicate(timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0, err
    assert "frames:" in out and "stop: stopped" in out
    assert record.is_file() and not (tmp_path / "run.jsonl.partial").exists()
    messages = list(read_recording(record, strict=True))
    assert len(messages) >= 5 and f"recorded {len(messages)} message(s)" in out  # the friend saw 5


# ============================================================================================== 2. recordings
def _existing(tmp_path: Path, name: str = "keep.jsonl") -> tuple[Path, bytes]:
    path = tmp_path / name
    data = b'{"v": 1, "seq": 0, "track": 0, "t_capture": 1.0, "status": "lost"}\n' * 100
    path.write_bytes(data)
    return path, data


def test_failed_start_never_touches_an_existing_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    path, data = _existing(tmp_path)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model at all")
    for extra in (["--checkpoint", str(bad), "--overwrite"], []):  # a bad model; an existing file
        rc, _, err = run_cli([*SYNTH, "--record", str(path), "--publish", ANY_PORT, *extra], capsys)
        assert rc == 2 and err.count("\n") == 1 and path.read_bytes() == data
        assert not (tmp_path / "keep.jsonl.partial").exists()
    rc, out, _ = run_cli([*SYNTH, "--record", str(path), "--publish", ANY_PORT, "--overwrite"], capsys)
    assert rc == 0 and len(list(read_recording(path, strict=True))) == 6 and "recorded 6 message(s)" in out


def test_record_to_a_device_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli([*SYNTH, "--record", "/dev/full", "--publish", ANY_PORT], capsys)
    assert rc == 2 and "not a regular file" in err


def test_write_errors_are_logged_counted_and_fail_the_run(tmp_path: Path) -> None:
    """A disk that fills mid-run (RLIMIT_FSIZE makes writes past 20 kB fail with EFBIG, as ENOSPC would)."""
    path = tmp_path / "full.jsonl"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([sys.executable, str(REPO / "run_live.py"), *SYNTH[:-1], "40", "--record", str(path),
                           "--publish", ANY_PORT], cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert "write failed" in proc.stderr and "RECORDING FAILED" in proc.stdout
    assert not path.exists() and (tmp_path / "full.jsonl.partial").exists()  # what was written is kept


def test_recorder_cli_skips_a_corrupt_middle_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.jsonl"
    with Recorder(path) as rec:
        for seq in range(5):
            rec.write(PoseMessage(seq=seq, track=0, t_capture=float(seq), status="lost"))
    lines = path.read_bytes().splitlines()
    lines[2] = b'{"v": 1, "seq": 2, "tra\x00garbage'
    path.write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING):
        assert [m.seq for m in read_recording(path)] == [0, 1, 3, 4]
    assert ":3:" in caplog.text
    assert recorder_main([str(path)]) == 0
    assert "4 messages" in capsys.readouterr().out


# ================================================================================================== 3. models
def _variant(tmp_path: Path, name: str, meta: Any = None, rename_output: str | None = None) -> Path:
    model = onnx.load(str(engines.DEFAULT_ONNX))
    props = {p.key: p.value for p in model.metadata_props}
    if meta is not None:
        props = meta(props)
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    if rename_output:
        for node in model.graph.node:
            node.output[:] = [o + "_wrong" if o == rename_output else o for o in node.output]
        for out in model.graph.output:
            if out.name == rename_output:
                out.name += "_wrong"
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _edit(key: str, fn: Any) -> Any:
    return lambda props: {**props, key: fn(props[key])}


@pytest.mark.parametrize("name, meta, rename, match", [
    ("wrong_outputs", None, "pose_rotmat", "output 'pose_rotmat' missing"),
    ("no_metadata", lambda props: {}, None, "no livemocap metadata"),
    ("reversed_keypoints", _edit("keypoint_names", lambda v: json.dumps(json.loads(v)[::-1])), None,
     "keypoint_names differ"),
    ("fps_60", _edit("fps", lambda v: "60.0"), None, "fps is 60"),
    ("bogus_joints", _edit("joint_names", lambda v: json.dumps([f"j{i}" for i in range(24)])), None,
     "joint_names differ"),
    ("other_normalization", _edit("input_normalization", lambda v: v.replace("conf < 0.3", "conf < 0.5")), None,
     "conf 0.5"),
])
def test_models_breaking_the_contract_are_refused_at_load(tmp_path: Path, name: str, meta: Any, rename: str | None,
                                                          match: str) -> None:
    with pytest.raises(engines.EngineLoadError, match=match):
        engines.load(_variant(tmp_path, name, meta, rename))


def test_a_contract_breaking_model_is_one_error_line_and_exit_2(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = _variant(tmp_path, "wrong", rename_output="cam_trans")
    rc, out, err = run_cli([*SYNTH, "--checkpoint", str(bad), "--publish", ANY_PORT], capsys)
    assert rc == 2 and not out and err.count("\n") == 1 and "cam_trans" in err and "contract" in err


def test_the_contract_is_read_from_the_model_state_module() -> None:
    import mocap.model.state as state
    from export.metadata import contract

    c = contract()
    assert c.output_shapes == dict(state.OUTPUT_SHAPES) and c.input_names == tuple(state.INPUT_NAMES)
    assert getattr(state, "INPUT_DIM", 66) in c.x_widths and c.fps == getattr(state, "REFERENCE_FPS", 30.0)


# ==================================================================================================== 4. gyro
def _csv(path: Path, ts: np.ndarray, w: np.ndarray, header: bool = True) -> Path:
    rows = ["t,wx,wy,wz"] if header else []
    rows += [f"{t!r},{a!r},{b!r},{c!r}" for t, (a, b, c) in zip(ts, w)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _run_frames(cam: GyroCameraMotion, seconds: float, t0: float = 0.0) -> np.ndarray:
    out = [cam.update(t0 + i / FPS) for i in range(int(seconds * FPS))]
    return np.asarray(out)


def test_header_only_gyro_csv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("t,wx,wy,wz\n")
    with pytest.raises(ValueError, match="no samples"):
        make_camera_motion(f"gyro:csv:{tmp_path / 'h.csv'}")


@pytest.mark.parametrize("kind", ["unix_seconds", "milliseconds", "deg_per_s"])
def test_gyro_clock_and_unit_mismatches_are_detected_and_said(tmp_path: Path, kind: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    ts = np.arange(0.0, 2.0, 0.005)
    w = np.tile([0.0, 0.4, 0.0], (len(ts), 1))  # a steady pan, rad/s
    reference = _run_frames(GyroCameraMotion.from_csv(_csv(tmp_path / "ref.csv", ts, w)), 1.5)
    raw_t = {"unix_seconds": ts + 1.7e9, "milliseconds": ts * 1e3, "deg_per_s": ts}[kind]
    raw_w = np.degrees(w) if kind == "deg_per_s" else w
    with caplog.at_level(logging.WARNING):
        cam = GyroCameraMotion.from_csv(_csv(tmp_path / f"{kind}.csv", raw_t, raw_w))
        got = _run_frames(cam, 1.5)
    np.testing.assert_allclose(got, reference, atol=2e-3)
    assert cam.coverage == pytest.approx(100.0)
    word = {"unix_seconds": "Unix time", "milliseconds": "milliseconds", "deg_per_s": "deg/s"}[kind]
    assert word in caplog.text and any(word in a for a in cam.report()["assumed"])


@pytest.mark.parametrize("transport", ["udp", "zmq"])
def test_a_silent_gyro_stream_is_warned_about_and_has_zero_coverage(transport: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    spec = f"gyro:udp:127.0.0.1:{free_port()}" if transport == "udp" else f"gyro:zmq:tcp://127.0.0.1:{free_port()}"
    cam = make_camera_motion(spec)
    try:
        with caplog.at_level(logging.WARNING):
            _run_frames(cam, 3.0)
        assert "without gyro samples" in caplog.text and "no sample received" in caplog.text
        assert cam.coverage == 0.0 and cam.source_used == "none"
    finally:
        cam.close()
    stats = {"frames": 90, "camera_motion_report": cam.report()}
    warnings = run_warnings(stats, object())
    assert any("covered only 0 %" in w for w in warnings) and exit_status({**stats, "warnings": warnings}) == 1


def test_bad_gyro_addresses_are_one_line_errors() -> None:
    from stream.__main__ import UsageError

    for bad in ("udp://127.0.0.1:99999", "tcp://127.0.0.1:70000", "udp://127.0.0.1:x"):
        with pytest.raises(UsageError, match="1..65535|HOST:PORT"):
            camera_motion_spec("gyro", bad)
    with pytest.raises(ValueError, match="port must be"):
        GyroCameraMotion.from_udp("127.0.0.1", 99999)
    with pytest.raises(ValueError, match="cannot listen"):
        GyroCameraMotion.from_udp("203.0.113.7", 5000)  # not an address of this host


def test_messages_say_which_camera_motion_was_used(engine: Any) -> None:
    results = {}
    for spec in ("static", f"gyro:udp:127.0.0.1:{free_port()}"):
        pub = ListPublisher()
        motion = make_camera_motion(spec)
        loop = LiveLoop(SyntheticSource(realtime=False, render=False, n_frames=8), None, Tracker(max_lost=4),
                        motion, engine, pub, clock="media")
        loop.run()
        motion.close()
        results[spec.split(":")[0]] = {m.camera_motion for m in pub.messages[1:]}
    assert results == {"static": {"static"}, "gyro": {"none"}}


# ============================================================================================ 5. slow readers
def _publish_at(pub: Publisher, rate: float, stop: threading.Event, last: list[int]) -> None:
    seq = 0
    t0 = time.monotonic()
    while not stop.is_set():
        pub.publish(PoseMessage(seq=seq, track=0, t_capture=time.monotonic(), status="lost"))
        last[0] = seq
        seq += 1
        time.sleep(max(0.0, t0 + seq / rate - time.monotonic()))


def test_latest_mode_gives_a_slow_reader_the_present() -> None:
    """Staleness in frames: how many newer messages had been published when the reader got one (counted
    from the publisher's own sequence, so a starved thread on a busy CI machine cannot fake or hide it)."""
    lag: dict[bool, list[int]] = {}
    with Publisher(ANY_PORT) as pub:
        for latest in (False, True):
            with Subscriber(pub.endpoint, latest=latest) as sub:
                stop, last = threading.Event(), [0]
                feeder = threading.Thread(target=_publish_at, args=(pub, FPS, stop, last), daemon=True)
                feeder.start()
                try:
                    got = sub.recv(timeout=5.0)
                    lag[latest] = []
                    for _ in range(6):
                        time.sleep(0.25)  # a reader 7.5x slower than the stream
                        got = sub.recv(timeout=2.0)
                        lag[latest].append(last[0] - got.msg.seq)
                finally:
                    stop.set()
                    feeder.join()
    assert max(lag[True]) <= 2, lag[True]  # at most 2 frame intervals behind the publisher
    assert got.superseded > 0
    assert lag[False][-1] > 10 and lag[False][-1] > lag[False][0]  # queued: further behind with every read


# ============================================================================================ 6. SMPL pickles
class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.target), "w")


def test_a_malicious_smpl_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    from mocap.body import load_body

    created = tmp_path / "pwned.txt"
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Evil(created)}, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to load (io|builtins)\.open"):
        load_body(path)
    assert not created.exists()
    os_system = tmp_path / "os.pkl"
    os_system.write_bytes(b"cos\nsystem\n(S'touch " + str(created).encode() + b"'\ntR.")  # protocol 0 classic
    with pytest.raises(ValueError, match="refusing to load os.system"):
        load_body(os_system)
    assert not created.exists()


def test_smpl_layout_files_still_load(tmp_path: Path) -> None:
    from mocap.body import _read_smpl_file
    from tests.smpl_fixture import write_fake_smpl

    for name, chumpy in (("chumpy.pkl", True), ("dense.npz", False)):  # the pickle and the no-pickle path
        arrays = _read_smpl_file(write_fake_smpl(tmp_path / name, chumpy=chumpy))
        assert arrays["v_template"].shape == (6890, 3) and arrays["J_regressor"].shape == (24, 6890)


# ============================================================================================ 7. smaller ones
def _tiny_video(path: Path, frames: int = 40) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), (i * 6) % 255, np.uint8))
    writer.release()
    return path


def test_a_truncated_video_says_how_far_it_got_and_fails_the_run(tmp_path: Path) -> None:
    full = _tiny_video(tmp_path / "full.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full[: len(full) // 2])
    src = OpenCVSource(cut, realtime=False)
    n = sum(1 for _ in src)
    assert 0 < n < 40 and src.incomplete == f"cut.avi ended after {n} of 40 frames (truncated or corrupt file)"
    warnings = run_warnings({"frames": n}, src)
    assert warnings == [src.incomplete] and exit_status({"warnings": warnings}) == 1
    whole = OpenCVSource(tmp_path / "full.avi", realtime=False)
    assert sum(1 for _ in whole) == 40 and whole.incomplete is None


def test_a_folder_of_undecodable_images_fails_the_run(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"f{i}.png").write_bytes(b"\x89PNG broken")
    src = ImageFolderSource(tmp_path, realtime=False)
    assert list(src) == [] and src.incomplete == "3 of 3 images could not be decoded"
    warnings = run_warnings({"frames": 0}, src)
    assert any("no frame was processed" in w for w in warnings) and exit_status({"warnings": warnings}) == 1


def test_wait_subscribers_sees_a_subscriber_that_connected_first() -> None:
    with Publisher(ANY_PORT, watch_subscribers=True) as pub:
        with Subscriber(pub.endpoint):
            time.sleep(0.5)  # connected long before anyone waits (model loading, in run_live)
            t0 = time.monotonic()
            assert pub.wait_for_subscriber(3.0) and time.monotonic() - t0 < 1.0


def test_an_out_of_range_port_is_an_error_not_another_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="1..65535"):
        Publisher("tcp://127.0.0.1:99999")
    rc, _, err = run_cli([*SYNTH, "--publish", "tcp://127.0.0.1:99999"], capsys)
    assert rc == 2 and "port must be" in err


def test_an_http_video_file_plays_once_at_its_fps(tmp_path: Path) -> None:
    _tiny_video(tmp_path / "clip.avi", frames=24)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = OpenCVSource(f"http://127.0.0.1:{server.server_address[1]}/clip.avi")
        t0 = time.monotonic()
        frames = [f for f in iter(lambda: src.read(), None)] if src.kind == "video" else []
        elapsed = time.monotonic() - t0
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    assert src.kind == "video" and len(frames) == 24 and src.finished  # once, then the end
    assert elapsed >= 23 / FPS * 0.9  # paced at the file's fps, not decoded flat out


def test_fast_runs_are_bit_reproducible_whatever_the_machine_speed(engine: Any) -> None:
    """The same file twice, once with capture stamps as a fast machine makes them and once with jittery slow
    ones: on the media clock the published poses must be identical to the bit."""
    frames = list(SyntheticSource(realtime=False, render=False, n_frames=20, noise_px=2.0))
    runs = []
    for jitter in (0.0, 0.37):
        rng = np.random.default_rng(1)
        t = 100.0
        replay = []
        for f in frames:
            t += 0.002 + jitter * rng.uniform()
            replay.append(type(f)(f.image, f.seq, t, keypoints=f.keypoints, meta=dict(f.meta)))

        class Replay(SyntheticSource.__mro__[1]):  # a plain Source over the prepared frames
            def __init__(self) -> None:
                super().__init__()
                self._fps, self._size, self._items = FPS, (640, 480), iter(replay)

            def read(self, timeout: float = 0.1) -> Any:
                item = next(self._items, None)
                self.finished = item is None
                return item

        pub = ListPublisher()
        LiveLoop(Replay(), None, Tracker(max_lost=4, fps=FPS), make_camera_motion("static"), engine, pub,
                 clock="media").run()
        runs.append([(m.pose_aa, m.root_trans, m.cam_trans) for m in pub.messages])
    assert len(runs[0]) == 20 and runs[0] == runs[1]


def test_heartbeats_are_flagged_and_left_out_of_latency_stats(engine: Any) -> None:
    class Stalled(SyntheticSource.__mro__[1]):
        def __init__(self) -> None:
            super().__init__()
            self._fps, self._size, self.calls = FPS, (640, 480), 0

        def read(self, timeout: float = 0.1) -> Any:
            self.calls += 1
            self.finished = self.calls > 6
            return None

    pub = ListPublisher()
    LiveLoop(Stalled(), None, Tracker(), make_camera_motion("static"), engine, pub, heartbeat_s=0.0,
             read_timeout=0.0).run()
    assert pub.messages and all(m.heartbeat and m.status == "lost" for m in pub.messages)
    stats = LatencyStats()
    now = time.monotonic()
    stats.add(Received(PoseMessage(seq=5, track=0, t_capture=now - 0.05, status="tracking"), b"pose/0", now))
    for beat in pub.messages:
        stats.add(Received(beat, b"pose/0", now))
    stats.add(Received(PoseMessage(seq=6, track=0, t_capture=now - 0.05, status="tracking"), b"pose/0", now))
    s = stats.summary()
    assert s["messages"] == 2 and s["heartbeats"] == len(pub.messages) and s["seq_gaps"] == 0
    assert s["latency_capture_ms"]["p50"] == pytest.approx(50.0, abs=1.0)


# =================================================================================================== 8. soak
def test_soak_verdict_separates_late_frames_from_unexplained_drops() -> None:
    from stream.soak import verdict

    def window(rss: float, p99: float, gaps: int, late: int) -> dict[str, Any]:
        lat = {"p50": p99 / 2, "p99": p99, "max": p99}
        return {"rss_mb": rss, "loop_latency_ms": lat, "receive_latency_ms": lat, "seq_gaps": gaps,
                "publish_dropped": 0, "skipped_late": late, "errors": 0}

    v = verdict([window(300, 9, 0, 0), window(310, 10, 3, 3), window(311, 12, 5, 4)], warmup_windows=1)
    assert v["rss_growth_mb"] == 1 and v["loop_p99_drift_pct"] == pytest.approx(20.0)
    assert v["skipped_late"] == 7 and v["seq_gaps"] == 8 and v["unexplained_drops"] == 1
    assert verdict([window(300, 9, 0, 0), window(310, 10, 3, 0)], 1, lost_in_transport=0)["unexplained_drops"] == 0


def test_soak_counts_messages_lost_between_publisher_and_subscriber_exactly() -> None:
    from stream.soak import Soak

    soak = Soak()
    for seq in (1, 2, 4, 5):                      # frame 3 was skipped by the loop: never sent, not a loss
        soak.on_frame(FrameReport(seq, "tracking", 0, 0.0, 0.0, 0.001, {}))
    for seq, last in ((1, None), (2, 1), (5, 2)):  # message 4 was sent but never arrived
        soak.on_receive(seq, 1.0, last)
    assert soak.lost_in_transport() == 1
