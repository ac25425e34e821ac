"""Python's cyclic garbage collector in the live loops: between frames, never inside one; restored afterwards."""
from __future__ import annotations

import gc
import weakref

import pytest

from stream.loop.garbage import BetweenFrames


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_between_frames_holds_automatic_collection_and_frees_cycles_on_collect() -> None:
    was_enabled = gc.isenabled()
    with BetweenFrames(middle_every=3, full_every_s=1e9) as garbage:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        for _ in range(5000):  # far past CPython's young threshold: nothing runs by itself
            _Cycle()
        assert gone() is not None
        assert [garbage.collect() for _ in range(6)] == [0, 0, 1, 0, 0, 1]
        assert gone() is None
    assert gc.isenabled() == was_enabled and gc.get_freeze_count() == 0


def test_full_pass_on_its_clock_and_nested_runs_leave_the_collector_to_the_outermost() -> None:
    outer = BetweenFrames(full_every_s=0.0)
    with outer:
        with BetweenFrames() as inner:
            assert inner.collect() == 0
        assert not gc.isenabled()  # the inner run ended; the outer one still holds the collector
        assert outer.collect() == 2 and outer.passes == {0: 0, 1: 0, 2: 1}
    assert gc.isenabled()


def _loop(collect: bool, frames: int = 40, multi: bool = False):
    from engines import load
    from stream.camera_motion import make_camera_motion
    from stream.loop import LiveLoop
    from stream.multi_tracker import MultiTracker
    from stream.pipeline_loop import MultiPersonLoop
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    class Publish:
        def publish(self, msg) -> bool:
            return True

    kind, tracker = (MultiPersonLoop, MultiTracker(max_people=2)) if multi else (LiveLoop, Tracker())
    return kind(SyntheticSource(realtime=False, render=False, n_frames=frames), None, tracker,
                make_camera_motion("static"), load("default", prefer=["onnxruntime"]), Publish(), clock="media",
                collect_between_frames=collect)


@pytest.mark.parametrize("multi", [False, True])
def test_the_live_loops_collect_only_between_frames(multi: bool) -> None:
    """A collection recorded while a frame is being processed fails the test; collections between frames must
    happen (the loop does collect), and the collector is back to normal after ``run``."""
    loop = _loop(True, multi=multi)
    in_frame = {"now": False}
    seen: list[bool] = []
    process = loop._process

    def timed_process(frame) -> None:
        in_frame["now"] = True
        try:
            for _ in range(1000):  # a frame's worth of cyclic garbage: CPython alone would collect mid-frame
                _Cycle()
            process(frame)
        finally:
            in_frame["now"] = False

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(in_frame["now"])

    loop._process = timed_process  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)
    try:
        stats = loop.run()
    finally:
        gc.callbacks.remove(on_gc)
    assert stats["frames"] >= 30 and not stats["errors"]
    assert seen and not any(seen), f"{sum(seen)} of {len(seen)} collections ran inside a frame"
    assert loop.garbage is not None and loop.garbage.passes[0] >= 30
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_without_it_the_loop_leaves_the_collector_alone() -> None:
    loop = _loop(False, frames=5)
    loop.run()
    assert loop.garbage is None and gc.isenabled()
