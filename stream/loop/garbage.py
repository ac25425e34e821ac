"""Python's cyclic garbage collector, run between frames instead of inside them.

Left to itself the collector starts whenever enough container objects have been allocated, which in a live loop
means in the middle of a frame, between the keypoints and the send. A frame allocates on the order of a thousand
of them (dicts, tuples, messages) and the imports (torch, onnxruntime, mediapipe) leave ~190,000 long-lived ones,
so measured on the multi-person path a middle-generation pass (1.5 ms median, up to 9 ms on a busy core) fell
inside about one frame in eight: a share of the keypoints->subscriber p99 (BENCHMARKS.md, issue 13).

`BetweenFrames` turns the automatic collector off for the length of a loop's ``run`` and collects at the one
moment no subscriber is waiting: after a frame's message has been sent, before the next frame is read. The
objects alive at the start (imports, models) are frozen (`gc.freeze`), so a full pass scans only what the run
itself created. Reference counting frees everything that is not a cycle at once as before; cycles wait at most
until the end of the frame. Other threads' garbage (decoder, subscriber, a thread-mode adaptation worker) is
collected by the same calls.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class BetweenFrames:
    """``with BetweenFrames() as garbage: ... garbage.collect()`` after each frame.

    The generations and their cadence follow CPython's own thresholds (a young pass per ~700 allocations, a
    middle one per 10 young ones), scaled to the frame: a young pass after every frame (~0.1 ms), a middle one
    every ``middle_every`` frames, a full one (objects since the freeze) every ``full_every_s`` seconds.
    Re-entrant across loops in one process: only the outermost ``with`` turns the collector off and back on.
    """

    middle_every: int = 10          # frames between middle-generation passes (CPython: every 10 young passes)
    full_every_s: float = 30.0      # seconds between full passes: rare enough never to reach a latency p99
    calls: int = field(default=0, init=False)
    passes: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0}, init=False)
    _last_full: float = field(default=0.0, init=False)
    _owner: bool = field(default=False, init=False)

    _depth = 0  # class-wide: how many runs in this process hold the collector off

    def __enter__(self) -> BetweenFrames:
        if BetweenFrames._depth == 0 and gc.isenabled():
            gc.collect(1)   # young garbage is not frozen with the survivors (a full pass here would cost ~50 ms)
            gc.freeze()
            gc.disable()
            self._owner = True
        BetweenFrames._depth += 1
        self._last_full = time.monotonic()
        return self

    def collect(self) -> int:
        """One pass between frames (young, middle or full by the cadence above); -> the generation collected."""
        self.calls += 1
        generation = 0
        now = time.monotonic()
        if now - self._last_full >= self.full_every_s:
            generation, self._last_full = 2, now
        elif self.calls % self.middle_every == 0:
            generation = 1
        gc.collect(generation)
        self.passes[generation] += 1
        return generation

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        BetweenFrames._depth -= 1
        if self._owner:
            gc.unfreeze()
            gc.enable()
            self._owner = False


__all__ = ["BetweenFrames"]
