"""What the BVH and NPZ formats share: writing on close, and the stream's frame rate.

Both need the whole recording before their first byte (a BVH header states its frame count and one skeleton; an
.npz is a zip of whole arrays), so they keep the messages in memory (~1.3 KB each: about 140 MB per hour at
30 fps) and write on ``close``. They are `stream.recorder` formats: the `Recorder` gives them the
``FILE.partial`` path, renames it when the run ends and counts their errors; JSON Lines is the crash-proof log.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from stream.protocol import PoseMessage


def estimate_fps(seq: Sequence[int], t_capture: Sequence[float]) -> float | None:
    """Frames per second from the capture clock: 1 / median of (t[i+1] - t[i]) / (seq[i+1] - seq[i]); None if unknown.

    Right when frames were captured in real time (webcam, realtime playback); the source's own fps
    (``set_fps``) is used when given, since ``--fast`` reads a file faster than its frame rate.
    """
    seq_a, t_a = np.asarray(seq, dtype=np.float64), np.asarray(t_capture, dtype=np.float64)
    dseq, dt = np.diff(seq_a), np.diff(t_a)
    ok = (dseq > 0) & (dt > 0)
    if not ok.any():
        return None
    per_frame = float(np.median(dt[ok] / dseq[ok]))
    return 1.0 / per_frame if per_frame > 0 else None


class WriteOnClose:
    """Base of the buffered formats: the `stream.recorder.FormatWriter` interface around ``_keep`` / ``_finish``.

    The output file is created (exclusively) at once, so an unwritable place fails before the first frame.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fps: float | None = None
        self._file: io.BufferedWriter | None = open(self.path, "xb")  # noqa: SIM115 - closed by close()

    def set_fps(self, fps: float | None) -> None:
        """The source's frame rate; without it, it is estimated from the capture clock."""
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else None

    def write(self, msg: PoseMessage) -> None:
        """Keep one message; ValueError for one that cannot be recorded (the Recorder counts it)."""
        self._keep(msg)

    def flush(self) -> None:
        """Nothing to flush before the end: the file is written by ``close``."""

    def close(self) -> None:
        """Write the file; idempotent. OSError / ValueError (e.g. nothing to record) reach the Recorder."""
        if self._file is None:
            return
        fh, self._file = self._file, None
        try:
            self._finish(fh)
        finally:
            fh.close()

    def _keep(self, msg: PoseMessage) -> None:
        raise NotImplementedError

    def _finish(self, fh: io.BufferedWriter) -> None:
        raise NotImplementedError
