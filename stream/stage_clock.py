"""Wall and CPU time of a frame's stages, measured together.

Why both: on a shared machine wall-clock stage times mostly measure the other processes (a stage waiting for a
core reads as slow), while the calling thread's CPU time (`time.thread_time`) is what the stage itself costs and
what a change to it moves. Thread CPU leaves out helper threads (OpenCV's parallel resize, the decoder's), so
benches report the whole process's CPU per frame beside it (`stream.bench_loop`).
"""
from __future__ import annotations

import time


class StageClock:
    """`start()` then `stop(stage)` records that stage's wall ms in `wall` and thread-CPU ms in `cpu`."""

    def __init__(self, wall: dict[str, float] | None = None, cpu: dict[str, float] | None = None) -> None:
        self.wall: dict[str, float] = {} if wall is None else wall
        self.cpu: dict[str, float] = {} if cpu is None else cpu
        self._wall0 = time.perf_counter()
        self._cpu0 = time.thread_time()

    def start(self) -> None:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.thread_time()

    def stop(self, stage: str) -> None:
        self.cpu[stage] = (time.thread_time() - self._cpu0) * 1e3
        self.wall[stage] = (time.perf_counter() - self._wall0) * 1e3


__all__ = ["StageClock"]
