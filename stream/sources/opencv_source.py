"""Webcam, video file and RTSP/HTTP stream input through OpenCV's VideoCapture.

Live sources (a webcam index or a URL) are read by a background thread that keeps only the newest frame:
the pose model must see the present, not a queue of the past, so stale frames are dropped and counted.
A dead camera never raises out of `read()`; the thread reports it in `.status` and reconnects with backoff.
Video files are read on the caller's thread, paced at the file's fps (or as fast as possible), and so is a
video *file* behind an http(s) URL (it reports a frame count; a live HTTP stream does not): it plays once, at its
fps, instead of being decoded flat out and replayed from the start on every reconnect. A file that ends before
its container's frame count (truncated or corrupt) says so in ``incomplete``.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from stream.sources.base import Frame, Pacer, Source

log = logging.getLogger(__name__)
_FALLBACK_FPS = 30.0
#: Frames a file may fall short of its container's count before it counts as incomplete (estimates are rough).
_COUNT_SLACK = 1
#: Consecutive failed reads inside a file's frame count tried before giving up (a corrupt frame mid-file).
_CORRUPT_RETRIES = 5


def _is_url(spec: str) -> bool:
    return "://" in spec


class OpenCVSource(Source):
    """`src`: webcam index (int or digit string), video file path, or stream URL (rtsp://, http://, ...).

    realtime: video files only; True plays at the file's fps, False returns frames as fast as they decode.
    width/height/fps: requested capture settings for webcams (the driver may ignore them).
    retry_delay/max_retry_delay: reconnect backoff (seconds) for live sources; doubles after each failure.
    open_timeout: seconds a URL may take to open or to deliver a frame before it counts as failed.
    """

    def __init__(
        self,
        src: int | str | Path,
        *,
        realtime: bool = True,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        retry_delay: float = 1.0,
        max_retry_delay: float = 8.0,
        max_read_failures: int = 5,
        open_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if retry_delay <= 0 or max_retry_delay < retry_delay:
            raise ValueError(f"need 0 < retry_delay <= max_retry_delay, got {retry_delay}, {max_retry_delay}")
        self._requested = (width, height, fps)
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._max_read_failures = max(1, int(max_read_failures))
        self._open_timeout_ms = int(open_timeout * 1000)
        self._target: int | str  # a camera index, a URL or a video file's path
        if isinstance(src, (int, np.integer)) or (isinstance(src, str) and src.strip().isdigit()):
            self.kind, self._target, self.name = "webcam", int(src), f"camera {int(src)}"
        elif isinstance(src, str) and _is_url(src):
            self.kind, self._target, self.name = "url", src, f"stream {src}"
        else:
            path = Path(src).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"video file not found: {path}")
            self.kind, self._target, self.name = "video", str(path), path.name
        self._fps = float(fps) if fps else _FALLBACK_FPS
        self.incomplete: str | None = None
        if self.kind == "url" and str(src).lower().startswith(("http://", "https://")):
            cap = self._open_url()
            if cap is not None and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:  # a file served over HTTP
                self.kind = "video"
                self._init_video(realtime, cap)
                return
            if cap is not None:
                cap.release()
        if self.kind == "video":
            self._init_video(realtime)
        else:
            self._init_live()

    # ------------------------------------------------------------------ video files (caller's thread)
    def _open_url(self) -> cv2.VideoCapture | None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_timeout_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._open_timeout_ms]
        cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _init_video(self, realtime: bool, cap: cv2.VideoCapture | None = None) -> None:
        cap = cap if cap is not None else cv2.VideoCapture(self._target)
        if not cap.isOpened():
            raise ValueError(f"OpenCV cannot decode video file {self._target}")
        self._cap: cv2.VideoCapture | None = cap
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(file_fps) if file_fps and file_fps > 0 else _FALLBACK_FPS
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # container's estimate; decoding decides
        self._pacer = Pacer(self._fps, enabled=realtime)
        self._index = 0
        self.status = f"playing {self.name}"

    def _read_video(self) -> Frame | None:
        if self.finished or self._cap is None:
            return None
        ok, image = self._cap.read()
        retries = 0
        while (not ok or image is None) and self._index + retries < self.frame_count and retries < _CORRUPT_RETRIES:
            retries += 1  # a corrupt frame inside the file: try the next ones before calling it the end
            ok, image = self._cap.read()
        if not ok or image is None:
            self.finished = True
            self.status = f"finished {self.name} ({self._index} frames)"
            if self.frame_count > 0 and self._index < self.frame_count - _COUNT_SLACK:
                self.incomplete = (f"{self.name} ended after {self._index} of {self.frame_count} frames "
                                   "(truncated or corrupt file)")
                log.warning("%s", self.incomplete)
            self._cap.release()
            self._cap = None
            return None
        if retries:
            self._index += retries  # keep video_time on the file's timeline
            log.warning("%s: skipped %d undecodable frame(s) before frame %d", self.name, retries, self._index)
        self._pacer.wait(self._index)  # after decoding, so decode time is hidden inside the frame interval
        t = time.monotonic()
        frame = Frame(image, self._index, t, meta={"frame_index": self._index, "video_time": self._index / self._fps})
        self._index += 1
        return frame

    # ------------------------------------------------------------------ live sources (background thread)
    def _init_live(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._seq = 0
        self.status = f"opening {self.name}"
        self._thread = threading.Thread(target=self._run, name=f"OpenCVSource[{self.name}]", daemon=True)
        self._thread.start()

    def _open_live(self) -> cv2.VideoCapture | None:
        if self.kind == "url":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._open_timeout_ms]
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(self._target)
        if not cap.isOpened():
            cap.release()
            return None
        width, height, fps = self._requested
        if self.kind == "webcam":
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer frames queued in the driver = less latency
        reported = cap.get(cv2.CAP_PROP_FPS)
        if reported and 0 < reported < 1000:
            self._fps = float(reported)
        return cap

    def _run(self) -> None:
        """Capture loop: open, read into the one-slot buffer, and on any failure release and retry with backoff."""
        delay = self._retry_delay
        cap: cv2.VideoCapture | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                if cap is None:
                    cap = self._open_live()
                    if cap is None:
                        self.status = f"{self.name} unavailable, retrying in {delay:.1f} s"
                        self._stop.wait(delay)
                        delay = min(delay * 2, self._max_retry_delay)
                        continue
                    failures = 0
                ok, image = cap.read()
                if not ok or image is None:
                    failures += 1
                    if failures >= self._max_read_failures:
                        cap.release()
                        cap = None
                        self.status = f"{self.name} read failed, reconnecting in {delay:.1f} s"
                        self._stop.wait(delay)
                        delay = min(delay * 2, self._max_retry_delay)
                    continue
                t = time.monotonic()
                failures, delay = 0, self._retry_delay
                self._size = (image.shape[1], image.shape[0])
                self._publish(Frame(image, self._seq, t, meta={"source": self.name}))
                self._seq += 1
                self.status = f"streaming {self.name} ({self._size[0]}x{self._size[1]} @ {self._fps:.3g} fps)"
        except Exception as exc:  # noqa: BLE001 - the thread must report, not die silently
            self.status = f"{self.name} capture thread stopped: {exc!r}"
        finally:
            if cap is not None:
                cap.release()

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # the consumer never saw the previous frame: latest wins
            self._latest = frame
            self._cond.notify_all()

    def _read_live(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._latest is None and timeout > 0 and not self._stop.is_set():
                self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set(), timeout)
            frame, self._latest = self._latest, None
        return frame

    # ------------------------------------------------------------------ Source API
    def read(self, timeout: float = 0.1) -> Frame | None:
        """Video: the next frame (after pacing) or None at the end. Live: the newest frame or None within timeout."""
        if self.kind == "video":
            return self._read_video()
        return self._read_live(timeout)

    def close(self) -> None:
        if self.kind == "video":
            if self._cap is not None:
                self._cap.release()
                self._cap = None
        else:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            if self._thread.is_alive() and self._thread is not threading.current_thread():
                # A URL read can block up to open_timeout; the daemon thread releases its capture itself.
                self._thread.join(timeout=self._open_timeout_ms / 1000 + 1.0)
        super().close()
