"""Stage threads with latest-frame-wins hand-off: capture, detection and model + publish run side by side.

Why: run one after another, the loop's speed is the *sum* of its stages (detector ~ 30 ms, model + refine +
publish a few ms); in their own threads it is set by the slowest stage. Between two stages sits a `Latest`
slot, not a queue: a new item replaces one the next stage has not taken yet (counted as dropped), so a slow
stage drops frames instead of delaying everything behind it, memory never grows, and the detector always
works on the newest frame. Frames keep the timestamp they were captured with, so latency stays exact.
`lossless=True` (a file processed with --fast) makes each slot wait instead, so every frame is processed.

The detector (LiteRT / MediaPipe), OpenCV and onnxruntime release the GIL while they compute, so on two cores
the stages really overlap.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Latest(Generic[T]):
    """A one-item hand-off slot: `put` replaces what is waiting (latest wins) or, lossless, waits for room."""

    def __init__(self, lossless: bool = False) -> None:
        self.lossless = lossless
        self._item: T | None = None
        self._has = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0   # items replaced before anyone took them
        self.passed = 0    # items taken

    def put(self, item: T, stop: threading.Event | None = None) -> bool:
        """Offer an item; False if the slot is closed (or `stop` was set while waiting for room)."""
        with self._cond:
            while self.lossless and self._has and not self._closed and not (stop is not None and stop.is_set()):
                self._cond.wait(0.05)
            if self._closed or (stop is not None and stop.is_set() and self._has):
                return False
            if self._has:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> tuple[bool, T | None]:
        """(True, item) when one is waiting within `timeout`; (False, None) on timeout or once closed and empty."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return False, None
            item, self._item, self._has = self._item, None, False
            self.passed += 1
            self._cond.notify_all()
            return True, item

    def close(self) -> None:
        """No more items will come; what is waiting can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed_and_empty(self) -> bool:
        with self._cond:
            return self._closed and not self._has


class StageThread(threading.Thread):
    """Runs `work(item)` on every item of `inbox`, hands each result to `outbox` (None results are skipped),
    closes the outbox when the inbox is exhausted. A work exception is reported via `on_error`, never fatal."""

    def __init__(self, name: str, inbox: Latest, outbox: Latest | None, work: Callable[[Any], Any],
                 stop: threading.Event, on_error: Callable[[str, Exception], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.inbox, self.outbox, self.work, self.stop, self.on_error = inbox, outbox, work, stop, on_error

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                got, item = self.inbox.get(0.05)
                if not got:
                    if self.inbox.closed_and_empty:
                        break
                    continue
                try:
                    out = self.work(item)
                except Exception as exc:  # one bad frame must not end the stage
                    self.on_error(self.name, exc)
                    continue
                if out is not None and self.outbox is not None:
                    self.outbox.put(out, self.stop)
        finally:
            if self.outbox is not None:
                self.outbox.close()


def wait_all(threads: list[threading.Thread], timeout: float = 5.0) -> list[str]:
    """Join threads; the names of those still alive after `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


__all__ = ["Latest", "StageThread", "wait_all"]
