"""The `Source` interface every frame producer of the live loop implements, and the `Frame` it yields.

A frame is stamped once, at capture, with a monotonic time and a sequence number: latency is measured from
that stamp to publish, and a gap in `seq` tells the consumer that frames were dropped on the way.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np


@dataclass
class Frame:
    """One captured frame.

    image: (H, W, 3) BGR uint8, or None for sources that only carry keypoints.
    seq: sequence number of the capture (increasing; gaps = frames dropped before the consumer saw them).
    t_capture: `time.monotonic()` seconds when the frame was captured (read from the device / file).
    keypoints: (21, 3) pixels + confidence for sources that know them (synthetic), else None.
    meta: source-specific extras (frame index in a file, ground truth, ...).
    """

    image: np.ndarray | None
    seq: int
    t_capture: float
    keypoints: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Source(ABC):
    """A producer of frames. `read()` never blocks longer than its timeout and returns None when no frame is ready.

    Subclasses set `_fps`, `_size`, `status`, `finished` and count `dropped` stale frames.
    """

    def __init__(self) -> None:
        self.status: str = "created"
        self.finished: bool = False
        self.dropped: int = 0
        self._fps: float = 30.0
        self._size: tuple[int, int] = (0, 0)

    @property
    def fps(self) -> float:
        """Nominal frame rate (frames per second)."""
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """Frame size (W, H) in pixels; (0, 0) while a live source has not delivered a frame yet."""
        return self._size

    @abstractmethod
    def read(self, timeout: float = 0.1) -> Frame | None:
        """The next frame, or None if none is available within `timeout` seconds (or the source finished)."""

    def close(self) -> None:
        """Release the device/file; idempotent."""
        self.finished = True
        self.status = "closed"

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the source finishes (forever for a live camera)."""
        while not self.finished:
            frame = self.read()
            if frame is not None:
                yield frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, fps={self.fps:.3g}, size={self.size})"


class Pacer:
    """Releases frame n no earlier than t0 + n / fps, so a file plays back like a camera; disabled = no waiting.

    Call it once the frame is decoded, right before stamping it, so decode time hides inside the interval.
    The clock starts at the first call, so construction time (model loading, ...) does not eat frames.
    """

    def __init__(self, fps: float, enabled: bool = True) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.enabled = enabled
        self._t0: float | None = None
        self._n0 = 0

    def wait(self, n: int) -> None:
        """Sleep until frame `n` is due (no-op when disabled or already late)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._n0 = now, n
            return
        due = self._t0 + (n - self._n0) / self.fps
        if due > now:
            time.sleep(due - now)
