"""When a frame counts and what time it is: the loop's clock, skipping late frames, heartbeats, retry back-off.

Why apart: the loop must publish the present, not a queue. A file played in real time is skipped ahead when
processing falls behind (``skip_late``); ``--fast`` plays every frame as fast as it can, and then anything that
depends on time (box smoothing, camera motion, the model's frame interval) must run on the file's own clock
("media") so a run is reproducible whatever the machine's speed. When no frame comes, a heartbeat makes the
stall visible to subscribers.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Literal

from stream.sources.base import Frame

log = logging.getLogger(__name__)

Clock = Literal["capture", "media"]


class Pacer:
    """The loop's clock and pacing decisions for one source.

    clock: "capture" (the frame's t_capture: live sources) or "media" (its time in the file:
        ``meta["video_time"]``, else seq / fps; recorded gyro logs are on this clock).
    skip_late: frames more than one frame interval behind real time are skipped (files played at fps).
    heartbeat_s: while no frame arrives, a ``lost`` message is due this often.
    """

    def __init__(self, source: Any, clock: Clock = "capture", skip_late: bool = False,
                 heartbeat_s: float = 0.5) -> None:
        if clock not in ("capture", "media"):
            raise ValueError(f"clock must be 'capture' or 'media', got {clock!r}")
        self.source, self.clock, self.skip_late, self.heartbeat_s = source, clock, skip_late, heartbeat_s
        self._anchor: tuple[float, float] | None = None  # (monotonic, media time) of the first frame
        self._last_heartbeat = -math.inf

    def media_time(self, frame: Frame) -> float:
        video_time = frame.meta.get("video_time") if frame.meta else None
        if video_time is not None:
            return float(video_time)
        return frame.seq / max(self.source.fps, 1e-3)

    def time_of(self, frame: Frame) -> float:
        """The frame's time on the loop's clock (s)."""
        return frame.t_capture if self.clock == "capture" else self.media_time(frame)

    def late(self, frame: Frame) -> bool:
        """Skip this frame? (only with ``skip_late``: more than one frame interval behind real time)."""
        if not self.skip_late:
            return False
        media = self.media_time(frame)
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, media)
            return False
        lateness = (now - self._anchor[0]) - (media - self._anchor[1])
        return lateness > 1.0 / max(self.source.fps, 1e-3)

    def heartbeat_due(self, force: bool = False) -> float | None:
        """The monotonic time now if a heartbeat should go out (at most every ``heartbeat_s``; forced ones, on
        source errors, at most every 0.1 s), else None."""
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self.heartbeat_s:
            return None
        if force and now - self._last_heartbeat < min(self.heartbeat_s, 0.1):
            return None
        self._last_heartbeat = now
        return now

    @staticmethod
    def backoff_s(consecutive_errors: int) -> float:
        """Wait after the n-th source error in a row: doubling from 40 ms, at most 1 s."""
        return min(0.02 * 2 ** min(consecutive_errors, 6), 1.0)


class SourceErrors:
    """A source's exceptions in a row: when to retry (back-off) and when to give up (``max_errors``, None =
    never); and its status line, logged when it changes (a camera reconnecting, a file ending)."""

    def __init__(self, source: Any, max_errors: int | None = None) -> None:
        self.source, self.max_errors = source, max_errors
        self.in_a_row = 0
        self._last_status: str | None = None

    def ok(self) -> None:
        self.in_a_row = 0

    def failed(self, exc: Exception) -> str | None:
        """Count one more; the stop reason once they are too many, else None (retry after `backoff_s`)."""
        self.in_a_row += 1
        if self.max_errors is not None and self.in_a_row >= self.max_errors:
            return f"source failed {self.in_a_row} times in a row: {exc}"
        return None

    def backoff_s(self) -> float:
        return Pacer.backoff_s(self.in_a_row)

    def note_status(self) -> None:
        status = getattr(self.source, "status", None)
        if status != self._last_status:
            self._last_status = status
            log.info("source: %s", status)


__all__ = ["Clock", "Pacer", "SourceErrors"]
