"""The live loop end to end in-process: synthetic person -> real model path (untrained tmp checkpoint through
engines.load) -> ZeroMQ -> subscriber, plus every failure the loop must survive, the message builder, the
recorder and the preview overlay. Fast: no trained model, no network, loopback sockets on free ports."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from mocap.rotations import axis_angle_to_matrix, matrix_to_axis_angle, quaternion_to_matrix
from stream.camera_motion import make_camera_motion
from stream.detector.base import Detection, Detector
from stream.loop import STAGES, FrameReport, LiveLoop, reprojection_error
from stream.pose_frame import model_label, pose_message, status_message
from stream.preview import Preview, draw_overlay
from stream.protocol import PoseMessage, validate
from stream.publisher import Publisher
from stream.recorder import Recorder, main as recorder_main, read_recording
from stream.sources import SyntheticSource
from stream.sources.base import Frame, Source
from stream.subscribe import Subscriber
from stream.tracker import Tracker

ANY_PORT = "tcp://127.0.0.1:*"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An untrained model saved as a checkpoint and loaded through the product path (engines.load)."""
    torch = pytest.importorskip("torch")
    import engines
    from mocap.model import CausalMocap, save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(CausalMocap(), tmp_path_factory.mktemp("ckpt") / "model.safetensors",
                           extra={"model_id": "untrained-test"})
    eng = engines.load(str(path), prefer=["torch"])
    torch.set_num_threads(1)  # batch-1 steps: extra intra-op threads only contend on a shared CI machine
    return eng


@pytest.fixture(scope="module")
def synthetic_frames() -> list[Frame]:
    """120 frames of the synthetic walker (keypoints only, no rendering), generated once."""
    src = SyntheticSource(realtime=False, render=False, n_frames=120)
    return list(src)


class ListSource(Source):
    """Plays prepared items: a Frame, an Exception (raised by read) or None (no frame this time)."""

    def __init__(self, items: list[Frame | Exception | None], fps: float = 30.0, size: tuple[int, int] = (640, 480)):
        super().__init__()
        self.items, self._fps, self._size, self._i = list(items), fps, size, 0
        self.status = "playing list"

    def read(self, timeout: float = 0.1) -> Frame | None:
        if self._i >= len(self.items):
            self.finished = True
            return None
        item = self.items[self._i]
        self._i += 1
        if isinstance(item, Exception):
            raise item
        if item is None:
            time.sleep(min(timeout, 0.01))
            return None
        return Frame(item.image, item.seq, time.monotonic(), item.keypoints, dict(item.meta))


def renumber(frames: list[Frame]) -> list[Frame]:
    return [Frame(f.image, i, f.t_capture, f.keypoints, {}) for i, f in enumerate(frames)]


def no_person(seq: int, kind: str) -> Frame:
    """A frame without a usable person: all-NaN keypoints, or a black image with no keypoints."""
    if kind == "nan":
        return Frame(None, seq, 0.0, np.full((21, 3), np.nan, np.float32))
    return Frame(np.zeros((480, 640, 3), np.uint8), seq, 0.0, None)


class NoPeopleDetector(Detector):
    """Finds nobody (what a detector reports on a black frame); counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return []


class CountingEngine:
    """Wraps an engine: counts fresh states and can fail chosen steps."""

    def __init__(self, inner: Any, fail_steps: tuple[int, ...] = ()) -> None:
        self.inner, self.fail_steps = inner, set(fail_steps)
        self.name, self.generation = inner.name, 0
        self.initial_states = 0
        self.steps = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.inner.input_shapes

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        self.initial_states += 1
        return self.inner.initial_state(batch)

    def step(self, inputs: Any, state: Any) -> Any:
        self.steps += 1
        if self.steps in self.fail_steps:
            raise RuntimeError(f"injected engine failure at step {self.steps}")
        return self.inner.step(inputs, state)


class ListPublisher:
    """Collects messages (validated, as the wire would require)."""

    def __init__(self) -> None:
        self.messages: list[PoseMessage] = []

    def publish(self, msg: PoseMessage) -> bool:
        self.messages.append(validate(msg))
        return True


def make_loop(source: Source, engine: Any, publisher: Any, detector: Detector | None = None, **kwargs: Any
              ) -> LiveLoop:
    lost = kwargs.pop("lost_reset_frames", 5)
    motion = kwargs.pop("camera_motion", None) or make_camera_motion("static")
    return LiveLoop(source, detector, Tracker(max_lost=max(lost - 1, 0)), motion, engine, publisher,
                    lost_reset_frames=lost, clock="media", **kwargs)


def wait_joined(pub: Publisher, sub: Subscriber) -> None:
    """Publish warm-up messages until the subscriber sees one (ZeroMQ subscriptions propagate asynchronously)."""
    for _ in range(300):
        pub.publish(PoseMessage(seq=0, track=0, t_capture=time.monotonic(), status="lost"))
        if sub.recv(timeout=0.01) is not None:
            while sub.recv(timeout=0.05) is not None:
                pass
            return
    raise AssertionError("subscriber never joined")


def drain(sub: Subscriber, timeout: float = 0.5) -> Iterator[PoseMessage]:
    while (got := sub.recv(timeout)) is not None:
        yield got.msg


# ------------------------------------------------------------------------------------------------ the happy path
def test_synthetic_person_reaches_a_subscriber_as_valid_pose_messages(engine: Any,
                                                                      synthetic_frames: list[Frame]) -> None:
    frames = synthetic_frames[:60]
    with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint, rcvhwm=1000, rcvbuf=-1) as sub:
        wait_joined(pub, sub)
        reports: list[FrameReport] = []
        loop = make_loop(ListSource(frames), engine, pub)
        loop.on_frame = reports.append
        stats = loop.run()
        got = list(drain(sub))
    assert stats["frames"] == 60 and stats["published"] == 60 and stats["stop_reason"] == "source finished"
    assert [m.seq for m in got] == list(range(60))
    assert [m.status for m in got[:2]] == ["init", "tracking"] and {m.status for m in got[1:]} == {"tracking"}
    for msg, frame in zip(got, frames):
        validate(msg)
        arrays = msg.arrays()
        assert set(arrays) == {"pose_aa", "pose_quat", "betas", "root_trans", "joints", "contact", "cam_trans",
                               "kp2d", "cam_root_aa"}
        np.testing.assert_allclose(arrays["kp2d"], frame.keypoints, atol=1e-4)  # detected keypoints travel as-is
        assert msg.model == model_label("untrained-test", 0) == "untrained-test@g0"
        assert msg.track == 0 and msg.t_publish >= msg.t_capture
    # The world root orientation (pose_aa joint 0) and the quaternions describe the same rotations.
    last = got[-1].arrays()
    np.testing.assert_allclose(quaternion_to_matrix(last["pose_quat"].astype(np.float64)),
                               axis_angle_to_matrix(last["pose_aa"].astype(np.float64)), atol=1e-4)
    assert all(r.stages_ms["latency"] >= r.stages_ms["model"] for r in reports)


def test_stats_report_every_stage_with_percentiles(engine: Any, synthetic_frames: list[Frame]) -> None:
    stats = make_loop(ListSource(synthetic_frames[:30]), engine, ListPublisher()).run()
    assert set(STAGES) <= set(stats["stages_ms"])
    for stage in STAGES:
        s = stats["stages_ms"][stage]
        assert s["n"] == 30 and 0 <= s["p50"] <= s["p99"] <= s["max"]
    assert stats["stages_ms"]["model"]["p50"] > 0 and stats["fps"] > 0
    assert stats["frames"] == 30 and stats["dropped"] == 0 and stats["lost"] == 0 and stats["errors"] == {}
    assert stats["reproj_err_rel"]["n"] == 30 and stats["engine"] == "torch"


def test_max_frames_stops_the_loop(engine: Any, synthetic_frames: list[Frame]) -> None:
    stats = make_loop(ListSource(synthetic_frames[:40]), engine, ListPublisher()).run(max_frames=12)
    assert stats["frames"] == 12 and stats["stop_reason"] == "max_frames"
    with pytest.raises(ValueError, match="max_frames"):
        make_loop(ListSource([]), engine, ListPublisher()).run(max_frames=0)


# ------------------------------------------------------------------------------------------------ no person
def test_no_person_black_frames_and_nan_keypoints_publish_lost_without_crashing(
        engine: Any, synthetic_frames: list[Frame]) -> None:
    good = synthetic_frames[:10]
    half_nan = good[9].keypoints.copy()
    half_nan[:5] = np.nan  # a few broken points: still a person, the bad points are masked
    items = good + [no_person(0, "nan"), no_person(0, "black"), no_person(0, "nan")]
    items += [Frame(None, 0, 0.0, half_nan)]
    pub, detector = ListPublisher(), NoPeopleDetector()
    stats = make_loop(ListSource(renumber(items)), engine, pub, detector=detector, lost_reset_frames=10).run()
    statuses = [m.status for m in pub.messages]
    assert statuses[10:13] == ["lost", "lost", "lost"] and statuses[13] == "tracking"
    assert detector.calls == 1  # only the black frame had no keypoints of its own
    assert all(not m.pose_aa and not m.kp2d for m in pub.messages[10:13])
    last = pub.messages[13].arrays()["kp2d"]
    assert np.all(np.isfinite(last)) and np.all(last[:5, 2] == 0)  # NaN points travel masked (conf 0)
    assert stats["lost"] == 3 and stats["errors"] == {} and stats["frames"] == 14


def test_black_frames_through_mediapipe_are_lost(engine: Any) -> None:
    pytest.importorskip("mediapipe")
    from stream.detector import MediaPipePoseDetector

    with MediaPipePoseDetector() as detector:
        pub = ListPublisher()
        stats = make_loop(ListSource(renumber([no_person(0, "black")] * 3)), engine, pub, detector=detector).run()
    assert [m.status for m in pub.messages] == ["lost"] * 3 and stats["errors"] == {}


def test_model_state_resets_after_the_person_is_lost_for_n_frames(engine: Any,
                                                                  synthetic_frames: list[Frame]) -> None:
    counting = CountingEngine(engine)
    walk = synthetic_frames
    short_gap = walk[:8] + [no_person(0, "nan")] * 2 + walk[10:18]           # 2 < N lost frames: memory kept
    long_gap = [no_person(0, "nan")] * 4 + walk[22:30]                        # 4 >= N: memory dropped
    pub = ListPublisher()
    reports: list[FrameReport] = []
    loop = make_loop(ListSource(renumber(short_gap + long_gap)), counting, pub, lost_reset_frames=4)
    loop.on_frame = reports.append
    stats = loop.run()
    statuses = [m.status for m in pub.messages]
    assert statuses[:8] == ["init"] + ["tracking"] * 7
    assert statuses[8:10] == ["lost", "lost"] and statuses[10] == "tracking"  # same person, same memory
    assert statuses[18:22] == ["lost"] * 4 and statuses[22] == "init"         # fresh memory, announced
    assert counting.initial_states == 2 and stats["model_inits"] == 2
    # During the short gap the model kept stepping (masked frames, as in training) so its clock did not stop;
    # during the long one it stepped until its memory was dropped (N - 1 = 3 frames).
    tracked = sum(1 for s in statuses if s in ("init", "tracking"))
    assert counting.steps == tracked + 2 + 3
    assert [r.seq for r in reports if r.reset] == [21]  # dropped on the N-th lost frame
    assert pub.messages[22].track != pub.messages[0].track  # the tracker gave up the id too (max_lost = N-1)


# ------------------------------------------------------------------------------------------------ failures
def test_engine_and_detector_exceptions_are_counted_and_the_loop_recovers(
        engine: Any, synthetic_frames: list[Frame], caplog: pytest.LogCaptureFixture) -> None:
    class ExplodingDetector(Detector):
        def detect(self, image: np.ndarray) -> list[Detection]:
            raise RuntimeError("detector crashed")

    black = Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0, None)
    counting = CountingEngine(engine, fail_steps=(5,))
    pub = ListPublisher()
    with caplog.at_level(logging.WARNING, logger="stream.loop"):
        stats = make_loop(ListSource(renumber(synthetic_frames[:10] + [black, black])), counting, pub,
                          detector=ExplodingDetector()).run()
    statuses = [m.status for m in pub.messages]
    assert statuses[4] == "init" and not pub.messages[4].pose_aa  # the failed step: restart announced, no pose
    assert statuses[5] == "init" and pub.messages[5].pose_aa      # fresh memory, pose again
    assert statuses[6:10] == ["tracking"] * 4 and statuses[10:] == ["lost", "lost"]
    assert stats["errors"] == {"engine": 1, "detector": 2} and counting.initial_states == 2
    assert "injected engine failure" in caplog.text and "detector crashed" in caplog.text


def test_a_failing_source_yields_status_messages_and_the_loop_keeps_going(engine: Any,
                                                                          synthetic_frames: list[Frame]) -> None:
    frames = renumber(synthetic_frames[:6])
    items: list[Any] = frames[:3] + [OSError("camera unplugged")] * 3 + [None] * 5 + frames[3:]
    pub = ListPublisher()
    stats = make_loop(ListSource(items), engine, pub, heartbeat_s=0.0).run()
    poses = [m for m in pub.messages if m.pose_aa]
    assert [m.seq for m in poses] == list(range(6)) and stats["frames"] == 6
    assert stats["errors"] == {"source": 3} and stats["stop_reason"] == "source finished"
    stall = [m for m in pub.messages if m.status == "lost"]
    assert len(stall) >= 3 and all(m.seq == 2 for m in stall)  # heartbeats repeat the last frame's seq
    # Giving up is opt-in.
    stats = make_loop(ListSource([OSError("gone")] * 10), engine, ListPublisher(), max_source_errors=3).run()
    assert stats["errors"] == {"source": 3} and "3 times in a row" in stats["stop_reason"]


def test_publisher_errors_are_counted_not_raised(engine: Any, synthetic_frames: list[Frame]) -> None:
    class BrokenPublisher:
        def publish(self, msg: PoseMessage) -> bool:
            raise OSError("socket closed")

    stats = make_loop(ListSource(synthetic_frames[:5]), engine, BrokenPublisher()).run()
    assert stats["frames"] == 5 and stats["published"] == 0 and stats["errors"] == {"publish": 5}


def test_a_slow_subscriber_does_not_slow_the_loop(engine: Any, synthetic_frames: list[Frame]) -> None:
    frames = renumber(synthetic_frames * 2)  # 240 frames, ~0.7 MB of messages
    with Publisher(ANY_PORT) as pub, Subscriber(pub.endpoint, rcvhwm=1, rcvbuf=4096) as stuck:
        wait_joined(pub, stuck)
        stats = make_loop(ListSource(frames), engine, pub).run()  # the subscriber never reads again
        late = list(drain(stuck, timeout=0.3))
    assert stats["frames"] == len(frames) and stats["published"] + stats["publish_dropped"] == len(frames)
    publish = stats["stages_ms"]["publish"]
    assert publish["p99"] < 25.0, publish  # never blocked on the full queue (a block would be the whole run)
    assert 0 < len(late) < len(frames) // 2 and late[0].seq < 40  # it got the start; the rest was dropped for it


def test_gyro_csv_with_a_gap_keeps_the_loop_running(engine: Any, synthetic_frames: list[Frame],
                                                    tmp_path: Path) -> None:
    t = np.r_[np.arange(0.0, 1.0, 0.005), np.arange(2.0, 4.0, 0.005)]  # 1 s without samples in the middle
    w = np.tile([0.0, 0.2, 0.0], (len(t), 1))
    csv = tmp_path / "gyro.csv"
    csv.write_text("t,wx,wy,wz\n" + "\n".join(f"{a:.4f},{b},{c},{d}" for a, (b, c, d) in zip(t, w)))
    motion = make_camera_motion(f"gyro:csv:{csv}")
    pub = ListPublisher()
    seen: list[str] = []
    loop = make_loop(ListSource(renumber(synthetic_frames[:100])), engine, pub, camera_motion=motion)
    loop.on_frame = lambda r: seen.append(motion.status)
    stats = loop.run()
    assert stats["frames"] == 100 and stats["errors"] == {} and stats["lost"] == 0
    assert "gyro gap" in seen and seen[-1] == "ok"  # media clock: frame n at n / 30 s, gap 1..2 s
    assert seen[35] == "gyro gap" and seen[70] == "ok"


def test_files_played_in_real_time_skip_ahead_when_processing_is_slow(engine: Any,
                                                                      synthetic_frames: list[Frame]) -> None:
    class SlowDetector(Detector):
        def detect(self, image: np.ndarray) -> list[Detection]:
            time.sleep(0.07)  # ~2 frame intervals at 30 fps
            return []

    frames = [Frame(np.zeros((48, 64, 3), np.uint8), i, 0.0, None, {"video_time": i / 30}) for i in range(30)]
    stats = make_loop(ListSource(frames), engine, ListPublisher(), detector=SlowDetector(), skip_late=True).run()
    assert stats["skipped_late"] > 10 and stats["frames"] + stats["skipped_late"] == 30
    assert stats["dropped"] >= stats["skipped_late"] - 1  # skipped frames are the dropped ones (but a trailing one)


def test_loop_rejects_bad_configuration(engine: Any) -> None:
    with pytest.raises(ValueError, match="lost_reset_frames"):
        make_loop(ListSource([]), engine, ListPublisher(), lost_reset_frames=0)
    with pytest.raises(ValueError, match="intrinsics"):
        make_loop(ListSource([]), engine, ListPublisher(), intrinsics=np.eye(2))


# ------------------------------------------------------------------------------------------------ pose_frame
def _fake_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "pose_rotmat": axis_angle_to_matrix(rng.normal(0, 0.5, (1, 24, 3))),
        "betas": rng.normal(size=(1, 10)), "root_trans": rng.normal(size=(1, 3)),
        "joints": rng.normal(size=(1, 24, 3)), "contact": rng.uniform(size=(1, 4)),
        "cam_trans": rng.normal(size=(1, 3)), "kp3d_cam": rng.normal(size=(1, 21, 3)),
    }


def test_pose_message_converts_rotations_and_refuses_bad_outputs() -> None:
    rng = np.random.default_rng(0)
    out = _fake_outputs(rng)
    kp = np.c_[rng.uniform(0, 600, (21, 2)), rng.uniform(size=21)]
    msg = validate(pose_message(out, seq=4, track=2, t_capture=1.0, kp2d=kp, model="m@g1", status="init"))
    arrays = msg.arrays()
    np.testing.assert_allclose(arrays["pose_aa"], matrix_to_axis_angle(out["pose_rotmat"][0]), atol=1e-5)
    np.testing.assert_allclose(quaternion_to_matrix(arrays["pose_quat"].astype(np.float64)), out["pose_rotmat"][0],
                               atol=1e-5)
    assert msg.status == "init" and msg.seq == 4 and msg.track == 2 and msg.model == "m@g1"
    bad = dict(out, betas=np.full((1, 10), np.nan))
    with pytest.raises(ValueError, match="betas.*non-finite"):
        pose_message(bad, seq=0, track=0, t_capture=0.0, kp2d=None, model="m")
    with pytest.raises(ValueError, match="joints"):
        pose_message(dict(out, joints=np.zeros((1, 21, 3))), seq=0, track=0, t_capture=0.0, kp2d=None, model="m")
    with pytest.raises(ValueError, match="status"):
        pose_message(out, seq=0, track=0, t_capture=0.0, kp2d=None, model="m", status="lost")
    lost = validate(status_message("lost", seq=3, track=1, t_capture=2.0, model="m@g0"))
    assert lost.arrays() == {} and lost.status == "lost"
    with pytest.raises(ValueError, match="needs a pose"):
        status_message("tracking", seq=0, track=0, t_capture=0.0)


def test_reprojection_error_is_zero_for_consistent_points() -> None:
    K = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])
    pts = np.c_[np.random.default_rng(1).uniform(-0.5, 0.5, (21, 2)), np.full(21, 4.0)]
    uv = pts[:, :2] / 4.0 * 800 + [320, 240]
    kp = np.c_[uv, np.ones(21)]
    assert reprojection_error(pts, kp, K) == pytest.approx(0.0, abs=1e-9)
    shifted = kp + [0.0, 0.1 * np.ptp(uv[:, 1]), 0.0]
    assert reprojection_error(pts, shifted, K) == pytest.approx(0.1, rel=1e-6)
    kp[:18, 2] = 0.0  # 3 confident points are too few to judge
    assert reprojection_error(pts, kp, K) is None


# ------------------------------------------------------------------------------------------------ recorder
def test_recorder_round_trip_through_the_loop(engine: Any, synthetic_frames: list[Frame], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    pub = ListPublisher()
    with Recorder(path) as recorder:
        items = synthetic_frames[:5] + [no_person(0, "nan")]
        make_loop(ListSource(renumber(items)), engine, pub, recorder=recorder).run()
    back = list(read_recording(path))
    assert back == pub.messages and [m.status for m in back] == ["init"] + ["tracking"] * 4 + ["lost"]
    with open(path, "ab") as f:
        f.write(b'{"v": 1, "seq": 9')  # a crash mid-line loses only that line
    assert len(list(read_recording(path))) == 6
    with pytest.raises(ValueError, match=":7:"):
        list(read_recording(path, strict=True))
    assert recorder_main([str(path)]) == 0
    assert "6 messages" in capsys.readouterr().out
    assert recorder_main([str(tmp_path / "missing.jsonl")]) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Recorder(tmp_path / "no" / "dir" / "x.jsonl")


# ------------------------------------------------------------------------------------------------ preview
def test_overlay_draws_both_skeletons_and_headless_preview_disables_itself(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, synthetic_frames: list[Frame]) -> None:
    kp = synthetic_frames[0].keypoints
    image = np.zeros((480, 640, 3), np.uint8)
    detected = draw_overlay(image, kp2d=kp)
    both = draw_overlay(image, kp2d=kp, kp_model=kp[:, :2] + 30.0, text="tracking")
    assert detected.any() and (both != detected).any() and not image.any()  # drawn on a copy
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    preview = Preview()
    with caplog.at_level(logging.WARNING, logger="stream.preview"):
        assert preview.show(image, kp) and preview.show(None, kp, size=(64, 48))
    assert not preview.enabled and caplog.text.count("preview disabled") == 1
