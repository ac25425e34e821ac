"""What the live loop counts and times, and the ``stats()`` summary built from it.

Why one place: the summary's keys are a contract (``run_live.py --json-stats``, benches, the soak test read
them), and the single- and multi-person loops must count the same events the same way. Errors are counted per
part ("detector", "engine", ...) and logged only sparsely (the first three, then every hundredth), so a
failing camera cannot flood the log.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Per-frame stages, in pipeline order, timed in ms. "capture" is the frame's age when the loop picks it up
#: (time spent waiting in the source's one-slot buffer); "latency" is capture -> published.
STAGES: tuple[str, ...] = ("read", "capture", "detect", "track", "camera_motion", "model", "publish", "latency")
#: Recorded only when the loop refines (``refine=...``): listed after STAGES in the summaries.
OPTIONAL_STAGES: tuple[str, ...] = ("refine",)


class StageStats:
    """Rolling per-stage timings (the last ``window`` frames) with percentiles for the summary."""

    def __init__(self, window: int = 18000) -> None:
        self.window = window
        self._values: dict[str, collections.deque[float]] = {}

    def add(self, stage: str, ms: float) -> None:
        self._values.setdefault(stage, collections.deque(maxlen=self.window)).append(ms)

    @staticmethod
    def summarize(values: Any) -> dict[str, float | int | None]:
        arr = np.fromiter(values, dtype=np.float64)
        if arr.size == 0:
            return {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
        return {"n": int(arr.size), "p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
                "mean": float(arr.mean()), "max": float(arr.max())}

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        model = STAGES.index("model") + 1
        known = STAGES[:model] + OPTIONAL_STAGES + STAGES[model:]   # refine right after the model step
        order = [s for s in known if s in self._values] + sorted(set(self._values) - set(known))
        return {stage: self.summarize(self._values[stage]) for stage in order}


@dataclass
class Counters:
    frames: int = 0            # processed frames
    skipped: int = 0           # read but skipped (a file played in real time fell behind)
    published: int = 0
    publish_dropped: int = 0   # publisher refused (queue full with nodrop)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    inits: int = 0             # fresh model states (first track, new tracks, after loss or engine errors)
    errors: collections.Counter = field(default_factory=collections.Counter)
    tracks: set = field(default_factory=set)


class LoopStats:
    """Counters, stage timings, reprojection errors and the frame bookkeeping (seq range, first/last time)."""

    def __init__(self, window: int = 18000) -> None:
        self.n = Counters()
        self.timings = StageStats(window)
        self.reproj: collections.deque[float] = collections.deque(maxlen=window)
        self.first_seq: int | None = None
        self.max_seq: int | None = None
        self.t_first: float | None = None   # monotonic time the first frame was picked up
        self.t_last: float | None = None    # ... and the last one published

    def saw(self, seq: int) -> None:
        """A frame was read (processed or not): the seq range behind ``dropped``."""
        self.max_seq = seq if self.max_seq is None else max(self.max_seq, seq)
        if self.first_seq is None:
            self.first_seq = seq

    def began(self, t: float) -> None:
        """A frame is processed (picked up at monotonic time ``t``)."""
        self.n.frames += 1
        self.t_first = t if self.t_first is None else self.t_first

    def finished(self, stages: dict[str, float], t_published: float) -> None:
        for stage, ms in stages.items():
            self.timings.add(stage, ms)
        self.t_last = t_published

    def new_memory(self, track: int) -> None:
        self.n.inits += 1
        self.n.tracks.add(track)

    def fail(self, what: str, exc: Exception) -> None:
        """Count a failure of the part named by ``what``'s first word, and log it (sparsely)."""
        self.n.errors[what.split()[0]] += 1
        self.log_error(what, exc)

    def log_error(self, what: str, exc: Exception) -> None:
        n = self.n.errors[what.split()[0]]
        if n <= 3 or n % 100 == 0:
            log.warning("%s error #%d: %s: %s", what, n, type(exc).__name__, exc)

    @property
    def dropped(self) -> int:
        """Frames captured but never processed: seq gaps (stale frames a live source replaced) + skipped."""
        if self.first_seq is None or self.max_seq is None:
            return 0
        return max(0, (self.max_seq - self.first_seq + 1) - self.n.frames)

    @property
    def elapsed(self) -> float:
        return (self.t_last - self.t_first) if self.t_first is not None and self.t_last is not None else 0.0

    def summary(self, *, source: str, engine: str, model: str, stop_reason: str | None) -> dict[str, Any]:
        """The ``stats()`` dict (its keys are what ``--json-stats`` prints)."""
        n = self.n
        elapsed = self.elapsed
        fps = (n.frames - 1) / elapsed if n.frames > 1 and elapsed > 0 else None
        return {
            "source": source,
            "engine": engine,
            "model": model,
            "frames": n.frames,
            "skipped_late": n.skipped,
            "dropped": self.dropped,
            "published": n.published,
            "publish_dropped": n.publish_dropped,
            "statuses": {s: n.statuses.get(s, 0) for s in ("init", "tracking", "lost")},
            "lost": n.statuses.get("lost", 0),
            "tracks": len(n.tracks),
            "model_inits": n.inits,
            "errors": dict(n.errors),
            "elapsed_s": elapsed,
            "fps": fps,
            "stages_ms": self.timings.summary(),
            "reproj_err_rel": StageStats.summarize(self.reproj),
            "stop_reason": stop_reason,
        }


__all__ = ["OPTIONAL_STAGES", "STAGES", "Counters", "LoopStats", "StageStats"]
