"""The single-person loop's output smoothing: smoother published joints, the model's own steps unchanged."""
from __future__ import annotations

import numpy as np

from mocap.smoothing import SmoothingConfig


class _Recording:
    """An engine wrapper keeping every raw step output (what the network said, before refinement and smoothing)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.generation, self.raw = inner, inner.name, 0, []

    model_id = property(lambda self: self.inner.model_id)
    input_shapes = property(lambda self: self.inner.input_shapes)

    def initial_state(self, batch: int):
        return self.inner.initial_state(batch)

    def step(self, inputs, state):
        outputs, new_state = self.inner.step(inputs, state)
        self.raw.append({k: np.array(v) for k, v in outputs.items()})
        return outputs, new_state


def _run(engine, smoothing: SmoothingConfig | None) -> tuple[list, dict]:
    from stream.camera_motion import make_camera_motion
    from stream.loop import LiveLoop
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    class Collect:
        messages: list = []

        def publish(self, msg) -> bool:
            self.messages.append(msg)
            return True

    pub = Collect()
    pub.messages = []
    loop = LiveLoop(SyntheticSource(realtime=False, render=False, n_frames=60), None, Tracker(),
                    make_camera_motion("static"), engine, pub, smoothing=smoothing,
                    clock="media")  # media time: the frame interval the engine sees does not depend on this machine
    stats = loop.run()
    return [m for m in pub.messages if m.status in ("init", "tracking")], stats


def _jitter(messages: list) -> float:
    joints = np.array([m.joints for m in messages])
    return float(np.abs(joints[2:] - 2 * joints[1:-1] + joints[:-2]).mean())


def test_smoothing_lowers_jitter_and_leaves_the_network_steps_alone() -> None:
    import engines

    inner = engines.load("default", prefer=["onnxruntime"])
    plain_engine, smooth_engine = _Recording(inner), _Recording(inner)
    plain, plain_stats = _run(plain_engine, None)
    smooth, stats = _run(smooth_engine, SmoothingConfig())
    assert len(smooth) == len(plain) >= 50 and not stats["errors"]
    assert stats["stages_ms"]["smooth"]["n"] == len(smooth) and "smooth" not in plain_stats["stages_ms"]
    assert _jitter(smooth) < 0.95 * _jitter(plain)  # a clean synthetic walk: little to remove
    for a, b in zip(plain_engine.raw, smooth_engine.raw):   # smoothing never reaches the engine's state
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-6)
    np.testing.assert_allclose(smooth[0].joints, plain[0].joints, atol=1e-6)
    assert all(np.isfinite(m.pose_aa).all() and np.isfinite(m.root_trans).all() for m in smooth)


def test_run_live_smoothing_flags() -> None:
    """--no-smooth turns it off, --smooth-min-cutoff sets the cutoff at rest, a cutoff <= 0 is a usage error."""
    from stream.__main__ import _smoothing, build_parser, main

    parse = build_parser().parse_args
    assert _smoothing(parse(["--no-smooth"])) is None
    assert _smoothing(parse([])) == SmoothingConfig()
    assert _smoothing(parse(["--smooth-min-cutoff", "2.5"])).min_cutoff_hz == 2.5
    assert main(["--source", "synthetic", "--max-frames", "3", "--smooth-min-cutoff", "0"]) == 2
