"""Background adaptation (issue 11): ring buffer, gate (a bad candidate never reaches the wire), rollback after a
live regression, profile round trip, and --adapt in the live loop without blocking the frame path.
Tiny untrained models and short buffers: a few seconds each on 2 cores."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mocap.adapt.cycle import AdaptConfig, Adapter, Window, gate, split_for_cycle  # noqa: E402
from mocap.adapt.losses import AdaptWeights, foot_slide_loss, frame_intervals, gate_metrics, smoothness_loss  # noqa: E402
from mocap.adapt.rollback import RegressionMonitor, WeightHistory  # noqa: E402
from mocap.losses import _project_bbox_units  # noqa: E402
from mocap.model import CausalMocap, ModelConfig  # noqa: E402
from stream.adaptation.buffer import StepRing, runs, windows  # noqa: E402
from stream.adaptation.profile import ProfileError, ProfileStore  # noqa: E402
from stream.adaptation.runner import RunnerSpec, lower_priority  # noqa: E402
from stream.adaptation.setup import AdaptSetupError, build_worker  # noqa: E402
from stream.adaptation.worker import AdaptationWorker  # noqa: E402
from stream.loop import ModelStep  # noqa: E402
from stream.pose_frame import model_label  # noqa: E402

TINY = dict(input_dim=66, encoder_hidden=32, decoder_hidden=32, traj_hidden=16)  # the loop's x without a frame interval
FAST = AdaptConfig(steps=2, window=8, batch=2, holdout=10, min_train_frames=10)


@pytest.fixture(scope="module")
def tiny() -> CausalMocap:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return CausalMocap(ModelConfig(**TINY)).eval()


def consistent_clip(model: CausalMocap, t: int = 40, seed: int = 0) -> Window:
    """Inputs whose keypoints are the model's own projections (a fixed point, two passes): the running model
    explains them almost exactly, so any real change of its weights can only raise the reprojection error."""
    rng = np.random.default_rng(seed)
    d = model.config.input_dim
    x = np.zeros((t, d), np.float32)
    x[:, 2:63:3] = 1.0                                                    # every keypoint visible
    x[:, 63:66] = [0.02, -0.01, 0.4] + rng.normal(0, 0.002, (t, 3))       # a box near the image centre
    omega = np.zeros((t, 6), np.float32)
    for _ in range(2):
        with torch.no_grad():
            out, _ = model.forward_sequence(torch.from_numpy(x)[None], torch.from_numpy(omega)[None])
            uv = _project_bbox_units(out["kp3d_cam"], torch.from_numpy(x)[None])[0].numpy()
        x[:, 0:63:3], x[:, 1:63:3] = uv[..., 0], uv[..., 1]
    return Window(x, omega, np.full((t, 21), 0.9, np.float32))


def perturbed(weights: dict[str, torch.Tensor], scale: float = 0.5, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in weights.items()}


def feed(worker: AdaptationWorker, clip: Window, reproj: float | list[float], start_seq: int = 0) -> None:
    """Hand the clip's frames to the worker as consecutive model steps (state dicts chained by identity)."""
    state = {"h": np.zeros((1, 1), np.float32)}
    values = reproj if isinstance(reproj, list) else [reproj] * len(clip)
    for i in range(len(clip)):
        after = {"h": np.zeros((1, 1), np.float32)}
        worker.on_step(ModelStep(seq=start_seq + i, track=1, t_capture=float(i), x=clip.x[i], omega=clip.omega[i],
                                 kp2d=np.concatenate([np.zeros((21, 2)), clip.conf[i][:, None]], 1), bbox=np.ones(3),
                                 K=np.eye(3), state_before=state, state_after=after, reproj=values[i], generation=0))
        state = after


def torch_engine(model: CausalMocap) -> Any:
    from engines.torch_engine import TorchEngine

    return TorchEngine(model, device="cpu")


def step_once(engine: Any, clip: Window) -> dict[str, np.ndarray]:
    out, _ = engine.step({"x": clip.x[:1], "omega": clip.omega[:1]}, engine.initial_state(1))
    return out


# ------------------------------------------------------------------------------------------------ buffer
def test_runs_chain_equal_states_handed_out_as_fresh_views() -> None:
    """The multi-person loop hands each person's state out as new views of its batched arrays every frame:
    equal arrays continue a run, a different state (a reset) starts a new one."""
    batched = [{"h": np.arange(6, dtype=np.float32).reshape(3, 2) + 10 * i} for i in range(5)]
    view = lambda i: {k: v[1:2] for k, v in batched[i].items()}  # noqa: E731  (a fresh dict each call)

    def step(seq: int, before: dict, after: dict) -> ModelStep:
        return ModelStep(seq, 1, 0.0, np.zeros(4, np.float32), np.zeros(6, np.float32), np.full((21, 3), 0.5),
                         np.ones(3), np.eye(3), before, after, 0.01, 0)

    steps = [step(i, view(i), view(i + 1)) for i in range(3)]
    steps.append(step(3, {"h": np.zeros((1, 2), np.float32)}, view(4)))  # a fresh state: a new run
    assert [[s.seq for s in r] for r in runs(steps)] == [[0, 1, 2], [3]]


def test_ring_buffer_keeps_recent_steps_and_cuts_windows_at_state_breaks() -> None:
    ring = StepRing(capacity=5, max_tracks=2)
    state = {"h": np.zeros((1, 2), np.float32)}

    def step(seq: int, track: int, before: dict, after: dict) -> ModelStep:
        return ModelStep(seq, track, float(seq), np.full(4, seq, np.float32), np.zeros(6, np.float32),
                         np.full((21, 3), 0.5), np.ones(3), np.eye(3), before, after, 0.01, 0)

    states = [state] + [{"h": np.full((1, 2), i, np.float32)} for i in range(1, 9)]
    for i in range(4):                                      # steps 0..3 chained
        ring.append(step(i, 1, states[i], states[i + 1]))
    ring.append(step(4, 1, {"h": np.zeros((1, 2))}, states[6]))  # a fresh state: a new run
    ring.append(step(5, 1, states[6], states[7]))
    snap = ring.snapshot()
    assert [s.seq for s in snap[1]] == [1, 2, 3, 4, 5]      # capacity 5: the oldest step fell out
    assert [[s.seq for s in r] for r in runs(snap[1])] == [[1, 2, 3], [4, 5]]
    wins = windows(snap, min_len=2)
    assert [len(w) for w in wins] == [3, 2]
    assert wins[0].x[:, 0].tolist() == [1, 2, 3] and wins[0].state["h"].shape == (3, 2)
    np.testing.assert_array_equal(wins[0].state["h"][0], states[1]["h"][0])  # the state *before* step 1
    for track in (2, 3):                                    # max_tracks 2: track 1 is evicted
        ring.append(step(10 + track, track, state, states[1]))
    assert sorted(ring.snapshot()) == [2, 3] and len(ring) == 2


def test_the_gate_holds_back_the_longest_run_still_going_whoever_was_stepped_last() -> None:
    """Two people in view: the loop appends the walker (id 1) after the athlete (id 0) every frame, but the
    athlete's longer run is the one with enough frames for a held-back window; a run that ended long ago is not."""
    ring = StepRing(capacity=200, max_tracks=4)

    def chain(track: int, seqs: range, fps: float = 30.0) -> list[ModelStep]:
        states = [{"h": np.full((1, 2), track * 1000 + i, np.float32)} for i in range(len(seqs) + 1)]
        return [ModelStep(seq, track, seq / fps, np.full(4, seq, np.float32), np.zeros(6, np.float32),
                          np.full((21, 3), 0.5), np.ones(3), np.eye(3), states[i], states[i + 1], 0.01, 0)
                for i, seq in enumerate(seqs)]

    old, athlete, walker = chain(7, range(0, 150)), chain(0, range(200, 320)), chain(1, range(280, 320))
    for st in old + sorted(athlete + walker, key=lambda s: (s.seq, s.track)):
        ring.append(st)
    wins = windows(ring.snapshot())
    assert sorted(len(w) for w in wins) == [40, 120, 150] and len(wins[-1]) == 120  # the athlete's, not the old 150
    split = split_for_cycle(wins, AdaptConfig(holdout=60, min_train_frames=60))
    assert split is not None and len(split[1]) == 60


# ------------------------------------------------------------------------------------------------ gate
def test_gate_rejects_a_perturbed_candidate_and_the_published_output_is_unchanged(tiny: CausalMocap,
                                                                                 monkeypatch: Any) -> None:
    clip = consistent_clip(tiny)
    adapter = Adapter(tiny, FAST)
    good = adapter.initial_weights()
    bad = perturbed(good)
    assert adapter.score(bad, clip)["reproj"] > 2 * adapter.score(good, clip)["reproj"]
    decision = gate(adapter.score(good, clip), adapter.score(bad, clip), FAST)
    assert not decision.accepted and "reprojection" in decision.reason

    engine = torch_engine(tiny)
    before = step_once(engine, clip)
    worker = AdaptationWorker(engine, tiny, RunnerSpec("in-memory", FAST), mode="thread")
    monkeypatch.setattr(Adapter, "train", lambda self, weights, segments: (perturbed(dict(weights)), [0.0]))
    feed(worker, clip, 0.01)
    try:
        worker.run_once()
    finally:
        worker.close()
    assert worker.counts["cycles"] == 1 and worker.counts["rejected"] == 1 and worker.counts["accepted"] == 0
    assert engine.generation == 0 and model_label(engine.model_id, engine.generation).endswith("@g0")
    after = step_once(engine, clip)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_gate_accepts_a_candidate_that_explains_held_back_frames_better(tiny: CausalMocap) -> None:
    clip = consistent_clip(tiny)
    adapter = Adapter(tiny, FAST)
    good = adapter.initial_weights()
    off = perturbed(good, 0.2, seed=3)
    decision = gate(adapter.score(off, clip), adapter.score(good, clip), FAST)  # "current" is off, candidate good
    assert decision.accepted, decision.reason


def test_a_cycle_lowers_reprojection_on_its_own_data(tiny: CausalMocap) -> None:
    """The self-supervised steps pull a perturbed model back towards evidence it cannot explain."""
    clip = consistent_clip(tiny)
    cfg = AdaptConfig(steps=6, lr=3e-3, window=12, batch=2, holdout=10, min_train_frames=10,
                      weights=AdaptWeights(anchor=0.0, prior=0.0))
    adapter = Adapter(tiny, cfg)
    start = perturbed(adapter.initial_weights(), 0.05, seed=5)
    trained, losses = adapter.train(start, [clip])
    assert losses[-1] < losses[0]
    assert adapter.score(trained, clip)["reproj"] < adapter.score(start, clip)["reproj"]


# ------------------------------------------------------------------------------------------------ rollback
def test_motion_terms_count_per_30_fps_frame_at_any_rate() -> None:
    """The same jittery motion filmed at 30 and at 60 fps must cost the same per second of jitter: the 60-fps
    per-frame second differences are a quarter of the 30-fps ones, and the terms undo that from x's interval."""
    rng = np.random.default_rng(0)
    t30 = np.arange(40) / 30.0
    t60 = np.arange(80) / 60.0

    def outputs(times: np.ndarray) -> dict[str, torch.Tensor]:
        wobble = 0.02 * np.sin(2 * np.pi * 3.0 * times)                       # a 3-Hz shake of every joint
        joints = torch.as_tensor(rng.normal(0, 0.2, (24, 3))[None] + wobble[:, None, None], dtype=torch.float32)
        feet = torch.zeros(len(times), 24, 3)
        feet[:, :, 0] = torch.as_tensor(0.3 * times, dtype=torch.float32)[:, None]  # sliding at 0.3 m/s
        return {"joints_cam_rel": joints[None], "cam_trans": torch.zeros(1, len(times), 3),
                "joints": feet[None], "contact": torch.ones(1, len(times), 4)}

    def x_at(fps: float, n: int) -> torch.Tensor:
        x = torch.zeros(1, n, 67)
        x[..., 66] = 30.0 / fps - 1.0                                          # `frame_interval_feature`
        return x

    out30, out60 = outputs(t30), outputs(t60)
    i30, i60 = frame_intervals(x_at(30, 40)), frame_intervals(x_at(60, 80))
    assert i60 is not None and torch.allclose(i60, torch.full((1, 80), 0.5))
    assert frame_intervals(torch.zeros(1, 5, 66)) is None                       # no interval feature: per frame
    assert smoothness_loss(out60, i60).item() == pytest.approx(smoothness_loss(out30, i30).item(), rel=0.05)
    assert smoothness_loss(out60).item() < 0.3 * smoothness_loss(out30).item()   # what it was: blind at 60 fps
    assert foot_slide_loss(out60, interval=i60).item() == pytest.approx(0.3 / 30, rel=1e-3)
    assert foot_slide_loss(out30, interval=i30).item() == pytest.approx(0.3 / 30, rel=1e-3)
    # the gate reads the interval itself from x
    kp = {"kp3d_cam": torch.zeros(1, 80, 21, 3) + torch.tensor([0.0, 0.0, 3.0]), **out60,
          "pose_cam_rotmat": torch.eye(3).expand(1, 80, 24, 3, 3)}
    assert gate_metrics(kp, x_at(60, 80), torch.ones(1, 80, 21))["accel"] == pytest.approx(
        smoothness_loss(out60, i60).item(), rel=1e-6)


def test_weight_history_and_regression_monitor() -> None:
    hist = WeightHistory({"w": torch.zeros(1)})
    assert hist.accept({"w": torch.ones(1)}).number == 1 and hist.accept({"w": torch.ones(1)}, number=7).number == 7
    assert hist.roll_back().number == 1 and hist.roll_back().number == 0 and not hist.can_roll_back
    with pytest.raises(ValueError):
        hist.roll_back()
    mon = RegressionMonitor(frames=10, tolerance=0.1, min_baseline=5)
    for _ in range(10):
        mon.record(0.02)
    mon.swapped()
    for _ in range(9):
        mon.record(0.021)
        assert mon.verdict() is None
    mon.record(0.021)
    assert mon.verdict() == "kept"
    mon.swapped()
    for _ in range(10):
        mon.record(0.05)
    assert mon.verdict() == "regressed" and mon.last["after"] == pytest.approx(0.05)


def test_rollback_after_a_live_regression_restores_the_previous_weights(tiny: CausalMocap, monkeypatch: Any) -> None:
    clip = consistent_clip(tiny)
    engine = torch_engine(tiny)
    before = step_once(engine, clip)
    worker = AdaptationWorker(engine, tiny, RunnerSpec("in-memory", FAST), mode="thread", rollback_frames=20,
                              rollback_tolerance=0.15)
    # The gate is fooled (it only sees the past): a slightly changed candidate goes live as g1 ...
    monkeypatch.setattr(Adapter, "train", lambda self, weights, segments: (perturbed(dict(weights), 0.01), [0.0]))
    monkeypatch.setattr(Adapter, "judge", lambda self, cur, cand, hold: (
        gate({"reproj": 1.0, "plausibility": 1.0}, {"reproj": 0.5, "plausibility": 1.0}, FAST), dict(cand)))
    try:
        feed(worker, clip, 0.02)
        worker.run_once()
        assert worker.counts["accepted"] == 1 and engine.generation == 1 and worker.generation == 1
        assert not np.array_equal(step_once(engine, clip)["kp3d_cam"], before["kp3d_cam"])
        # ... and the live error then rises by 50 %: the monitor calls for a rollback after 20 frames.
        feed(worker, clip.slice(0, 20), 0.03, start_seq=100)
        worker.run_once()
    finally:
        worker.close()
    assert worker.counts["rollbacks"] == 1 and engine.generation == 0 and worker.generation == 0
    assert [e["kind"] for e in worker.events] == ["accepted", "rollback"]
    after = step_once(engine, clip)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ profiles
def test_profile_round_trip_and_load_at_start(tiny: CausalMocap, tmp_path: Path) -> None:
    adapter = Adapter(tiny, FAST)
    weights = perturbed(adapter.initial_weights(), 0.01)
    store = ProfileStore(tmp_path, "alice")
    assert store.load("sha", list(weights), {k: tuple(v.shape) for k, v in weights.items()}) is None
    store.save(weights, 3, "sha", "tiny")
    assert store.weights_path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle: safetensors header
    loaded = store.load("sha", list(weights), {k: tuple(v.shape) for k, v in weights.items()})
    assert loaded is not None and loaded.generation == 3 and loaded.meta["model_id"] == "tiny"
    for k, v in weights.items():
        torch.testing.assert_close(loaded.weights[k], v, rtol=0, atol=0)
    with pytest.raises(ProfileError, match="other base weights"):
        store.load("other", list(weights), {k: tuple(v.shape) for k, v in weights.items()})
    with pytest.raises(ProfileError, match="profile name"):
        ProfileStore(tmp_path, "../escape")

    engine = torch_engine(tiny)
    worker = AdaptationWorker(engine, tiny, RunnerSpec("in-memory", FAST), mode="thread", profile=store,
                              base_sha256="sha")
    worker.load_profile()
    assert engine.generation == 3 and worker.generation == 3
    ref = CausalMocap(tiny.config)
    ref.load_state_dict(tiny.state_dict())
    params = dict(ref.named_parameters())
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v)
    clip = consistent_clip(tiny, t=4)
    np.testing.assert_allclose(step_once(engine, clip)["kp3d_cam"], step_once(torch_engine(ref), clip)["kp3d_cam"],
                               atol=1e-6)


def test_build_worker_errors_are_one_line(tiny: CausalMocap, monkeypatch: Any, tmp_path: Path) -> None:
    import importlib.util

    engine = torch_engine(tiny)
    with pytest.raises(AdaptSetupError, match="not model.onnx"):
        build_worker(engine, "model.onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(AdaptSetupError, match="needs torch"):
        build_worker(engine, "default")


# ------------------------------------------------------------------------------------------------ live loop
def test_adapt_in_the_live_loop_runs_and_never_blocks_the_frame_path(tiny: CausalMocap) -> None:
    from stream.camera_motion import make_camera_motion
    from stream.loop import LiveLoop
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    class Sink:
        def publish(self, msg: Any) -> bool:
            labels.append(msg.model)
            return True

    labels: list[str] = []
    engine = torch_engine(tiny)
    worker = AdaptationWorker(engine, tiny, RunnerSpec("in-memory", FAST), mode="thread", interval_s=0.05)
    hook_s: list[float] = []

    def timed(step: ModelStep) -> None:
        t0 = time.perf_counter()
        worker.on_step(step)
        hook_s.append(time.perf_counter() - t0)

    loop = LiveLoop(SyntheticSource(realtime=False, render=False, n_frames=20000), None, Tracker(max_lost=4),
                    make_camera_motion("static"), engine, Sink(), lost_reset_frames=5, clock="media")
    loop.on_model_step = timed
    worker.start()
    try:
        deadline = time.monotonic() + 120
        stats = loop.run(max_frames=120)
        while worker.counts["cycles"] < 1 and time.monotonic() < deadline:  # a cycle while the loop still steps
            stats = loop.run(max_frames=loop.frames_read + 30)
            time.sleep(0.02)  # a camera's frame interval: the low-priority worker gets the CPU in between
    finally:
        worker.close()
    assert stats["errors"] == {} and stats["frames"] >= 120
    assert len(worker.ring) > 0 and worker.counts["cycles"] >= 1 and worker.counts["errors"] == 0
    # The hook only appends: microseconds typically, and never as long as a cycle (what waiting for one would cost;
    # a single slow call is the scheduler on a loaded machine).
    assert len(hook_s) >= 100 and float(np.median(hook_s)) < 1e-3 and max(hook_s) < min(worker.cycle_s) / 2
    assert all(label.startswith(f"{engine.model_id}@g") for label in labels)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_a_process_worker_runs_in_the_idle_class_and_a_thread_worker_only_niced() -> None:
    """The child process leaves the engine's core alone; a thread never goes idle-class (GIL inversion)."""
    seen: dict[str, tuple[int, int]] = {}

    def probe(name: str, idle: bool) -> None:
        lower_priority(5, idle_class=idle)
        tid = threading.get_native_id()
        seen[name] = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid))

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for name, idle in (("idle", True), ("niced", False)):
        th = threading.Thread(target=probe, args=(name, idle))
        th.start()
        th.join()
    assert seen["idle"][0] == os.SCHED_IDLE and seen["niced"][0] == os.SCHED_OTHER
    assert seen["niced"][1] == min(19, base + 5)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's own thread is untouched
    assert RunnerSpec("default").idle_class


def test_the_summary_says_why_no_cycle_ran() -> None:
    """A short clip gives the worker nothing to adapt on: the end-of-run line says what a cycle needs."""
    from stream.__main__ import _adapt_line

    stats = {"mode": "process", "generation": 0, "cycles": 0, "accepted": 0, "rejected": 0, "rollbacks": 0,
             "errors": 0, "skipped": 4, "cycle_s_median": None, "profile": "p", "frames_per_cycle": 120}
    assert "needs 120 frames of one person" in _adapt_line(stats)
    assert "needs" not in _adapt_line({**stats, "cycles": 2, "accepted": 1})
    assert AdaptConfig().holdout + AdaptConfig().min_train_frames == 120
