"""The live loop: newest frame -> 2D keypoints -> main person -> model step -> pose message on the wire.

One thread, one frame at a time, always the newest one: a live source keeps only its latest frame, and a file
played in real time is skipped ahead when processing falls behind, so the published pose describes the present
(stale frames are counted in ``dropped``, never queued). The loop must outlive everything a live input throws
at it: no person, black or NaN frames, a detector or engine exception, a camera that dies, a subscriber that
stops reading. Each of these is logged, counted in ``stats()`` and turned into a status message (``lost`` /
``init``), never into a crash.

`LiveLoop` only composes parts that each do one job (`LiveLoop._process` is the whole frame):
- `pacing.Pacer`: the loop's clock (capture / media), skipping late frames, heartbeat timing, retry back-off;
- `memory.ResetRule` / `memory.PersonMemory`: model memory follows the person (the reset rule lives there);
- `messages.Messages`: engine outputs -> pose / status messages;
- `sinks`: publisher, recording, VMC, preview behind one `Sink` interface;
- `stats.LoopStats`: counters, stage timings, reprojection errors -> ``stats()``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mocap.camera import CONF_THRESHOLD, default_intrinsics, normalize_keypoints, project
from mocap.fitting import RefineConfig
from mocap.fitting.reprojection import reprojection_error  # the loop's reported figure, one definition
from stream.camera_motion import CameraMotion
from stream.detector.base import Detection, Detector, bbox_of_visible
from stream.loop.memory import EngineLike, PersonMemory, ResetRule
from stream.loop.messages import Messages
from stream.loop.pacing import Clock, Pacer
from stream.loop.sinks import FrameView, PreviewSink, PublisherLike, PublisherSink, Sink, Sinks, WriterSink
from stream.loop.stats import OPTIONAL_STAGES, STAGES, LoopStats, StageStats
from stream.protocol import PoseMessage
from stream.sources.base import Frame, Source
from stream.tracker import Tracker, TrackResult

log = logging.getLogger(__name__)


@dataclass
class FrameReport:
    """What happened to one processed frame (handed to ``LiveLoop.on_frame``; benches and tests read it).

    Times are ``time.monotonic()`` seconds: t_keypoints when the person's keypoints were ready (detector +
    tracker done), t_published right after the message was handed to the publisher.
    """

    seq: int
    status: str
    track: int
    t_capture: float
    t_keypoints: float
    t_published: float
    stages_ms: dict[str, float]
    reset: bool = False
    reproj_err: float | None = None
    message: PoseMessage | None = None


@dataclass(frozen=True)
class ModelStep:
    """One model step of the tracked person, as the background adaptation buffers it (references, no copies).

    x: (D,) input; omega: (6,); kp2d: (21, 3) pixels + confidence; bbox: (3,); K: (3, 3); state_before /
    state_after: the engine state dicts ((1, ...) arrays) fed to and returned by the step; reproj: the frame's
    reprojection error / box height; generation: the weights' generation that made it.
    """

    seq: int
    track: int
    t_capture: float
    x: np.ndarray
    omega: np.ndarray
    kp2d: np.ndarray
    bbox: np.ndarray
    K: np.ndarray
    state_before: Any
    state_after: Any
    reproj: float | None
    generation: int


def motion_source(camera_motion: Any) -> str:
    """``PoseMessage.camera_motion`` for the provider's last update: what actually measured the rotation, or
    "none" when the provider had nothing (a gyro gap, too few visual features) and a static camera was assumed."""
    used = getattr(camera_motion, "source_used", None)
    if isinstance(used, str):
        return used
    if type(camera_motion).__name__ == "StaticCameraMotion":
        return "static"
    return "visual" if camera_motion.status in ("ok", "init") else "none"


def _lap(stages: dict[str, float], stage: str, tic: float) -> float:
    """Record ``stage`` as the ms since ``tic``; the next stage's tic."""
    now = time.perf_counter()
    stages[stage] = (now - tic) * 1e3
    return now


class _Alias:
    """A part's field under the loop's older private name (`MultiPersonLoop` and benches read and set them)."""

    def __init__(self, part: str, name: str) -> None:
        self.part, self.name = part, name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return getattr(getattr(obj, self.part), self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class LiveLoop:
    """Runs source -> detector -> tracker -> camera motion -> engine -> sinks until stopped.

    Args:
        source: frames; a frame carrying ``keypoints`` (the synthetic source) bypasses the detector.
        detector: 2D detector (None = only keypoint-carrying frames can be tracked).
        tracker: main-person tracker; with ``max_lost = lost_reset_frames - 1`` it gives up the id on the frame
            the model memory is dropped.
        camera_motion: angular velocity provider, updated on every processed frame.
        engine: an ``engines.Engine`` (``initial_state``, ``step``, ``model_id``, ``generation``).
        publisher: ``publish(msg) -> bool``; its exceptions are counted, never raised.
        intrinsics: (3, 3) K in pixels of the frames; None = default from each frame's size.
        lost_reset_frames: consecutive frames without the person after which the model memory is dropped.
        recorder / preview: optional ``write(msg)`` sink and ``show(...)`` window.
        sinks: more `Sink`s, sent every message after the publisher and the recorder.
        clock: time given to camera motion: "capture" (t_capture, live sources) or "media" (the frame's time in
            its file: ``meta["video_time"]``, else seq / fps; recorded gyro logs are on this clock).
        skip_late: drop frames that are more than one frame interval behind real time (files played at fps).
        heartbeat_s: while no frame arrives, a ``lost`` message goes out this often (subscribers see the stall).
        max_source_errors: consecutive source exceptions before giving up (None = retry forever).
        refine: test-time refinement of each step's body to the frame's keypoints (`mocap.fitting`, timed as the
            "refine" stage); None = publish the network's output as it is.
    """

    # the parts' fields under their older names
    _n = _Alias("metrics", "n")
    _timings = _Alias("metrics", "timings")
    _reproj = _Alias("metrics", "reproj")
    _t_first = _Alias("metrics", "t_first")
    _t_last = _Alias("metrics", "t_last")
    _first_seq = _Alias("metrics", "first_seq")
    _max_seq = _Alias("metrics", "max_seq")
    _last_step_time = _Alias("memory", "last_step_time")
    _last_track = _Alias("memory", "last_track")

    def __init__(
        self,
        source: Source,
        detector: Detector | None,
        tracker: Tracker,
        camera_motion: CameraMotion,
        engine: EngineLike,
        publisher: PublisherLike,
        *,
        intrinsics: np.ndarray | None = None,
        lost_reset_frames: int = 15,
        recorder: Any = None,
        preview: Any = None,
        sinks: Sequence[Sink] = (),
        clock: Clock = "capture",
        skip_late: bool = False,
        read_timeout: float = 0.1,
        heartbeat_s: float = 0.5,
        max_source_errors: int | None = None,
        stats_window: int = 18000,
        refine: RefineConfig | None = None,
    ) -> None:
        self.rule = ResetRule(lost_reset_frames)
        self.pacer = Pacer(source, clock, skip_late, heartbeat_s)
        if intrinsics is not None:
            intrinsics = np.asarray(intrinsics, dtype=np.float64)
            if intrinsics.shape != (3, 3) or not intrinsics[0, 0] > 0 or not intrinsics[1, 1] > 0:
                raise ValueError(f"intrinsics must be a (3, 3) K with positive focal lengths, got {intrinsics}")
        self.source, self.detector, self.tracker = source, detector, tracker
        self.camera_motion, self.engine, self.publisher = camera_motion, engine, publisher
        self.recorder, self.preview = recorder, preview
        self.lost_reset_frames, self.clock, self.skip_late = self.rule.lost_reset_frames, clock, skip_late
        self.read_timeout, self.heartbeat_s, self.max_source_errors = read_timeout, heartbeat_s, max_source_errors
        self.refine = refine  # test-time refinement after each step (mocap/fitting); None = off
        self.on_frame: Callable[[FrameReport], None] | None = None
        #: After each published pose (diagnostics time, after the send): the background adaptation's feed.
        #: Must return at once; its exceptions are counted as errors["adaptation"], never raised.
        self.on_model_step: Callable[[ModelStep], None] | None = None
        self.metrics = LoopStats(stats_window)
        self.memory = PersonMemory(engine, self.rule, self.metrics, lambda: getattr(self.source, "fps", None))
        self.messages = Messages(engine, self.metrics)
        self.sinks = Sinks(PublisherSink(publisher, self.metrics),
                           WriterSink(recorder) if recorder is not None else None, *sinks)
        self._preview_sink = PreviewSink(preview, self.metrics) if preview is not None else None
        self._user_K = intrinsics
        self._K: np.ndarray | None = intrinsics
        self._K_size: tuple[int, int] | None = None
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self._step_clock: float | None = None       # this frame's time on the loop's clock (s)
        self._last_seq = 0
        self._consecutive_source_errors = 0
        self._last_source_status: str | None = None
        self._motion_used = ""

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask the loop to finish after the current frame (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self, max_frames: int | None = None) -> dict[str, Any]:
        """Loop until ``max_frames`` frames were read (processed or skipped), the source finished, or ``stop()``.

        Returns ``stats()``.
        """
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        while not self._stop.is_set():
            if max_frames is not None and self.frames_read >= max_frames:
                self.stop_reason = "max_frames"
                break
            if not self.step():
                break
        if self.stop_reason is None:
            self.stop_reason = "stopped"
        return self.stats()

    @property
    def frames_read(self) -> int:
        return self._n.frames + self._n.skipped

    # ------------------------------------------------------------------ one iteration
    def step(self) -> bool:
        """Read and process at most one frame; False when the loop should end (source finished / gave up)."""
        t0 = time.perf_counter()
        try:
            frame = self.source.read(self.read_timeout)
        except Exception as exc:  # a source must not kill the loop: report, back off, retry
            return self._on_source_error(exc)
        self._consecutive_source_errors = 0
        read_ms = (time.perf_counter() - t0) * 1e3
        if frame is None:
            if self.source.finished:
                self.stop_reason = "source finished"
                return False
            self._note_source_status()
            self._heartbeat()
            return True
        self.metrics.saw(frame.seq)
        if self.pacer.late(frame):
            self._n.skipped += 1
            return True
        self._timings.add("read", read_ms)
        try:
            self._process(frame)
        except Exception:  # last line of defence; every known failure is handled inside _process
            self._n.errors["other"] += 1
            log.exception("frame %d failed; model state reset", frame.seq)
            self._reset_state()
        return True

    def _process(self, frame: Frame) -> None:
        """One frame through the parts: keypoints -> memory + engine -> message -> sinks -> stats -> preview."""
        stages, size, K = self._begin_frame(frame)
        tic = time.perf_counter()
        detections = self._detect(frame)
        tic = _lap(stages, "detect", tic)
        # Media time for files: box smoothing must not depend on how fast this machine ran (--fast reproducible).
        result = self.tracker.update(detections, size, self.pacer.time_of(frame))
        x = self._normalize(result, K) if result.status != "lost" else None
        t_keypoints = time.monotonic()
        tic = _lap(stages, "track", tic)
        self._step_clock = self.pacer.time_of(frame)
        omega = self._omega(frame, result.bbox if x is not None else None)
        tic = _lap(stages, "camera_motion", tic)
        track = int(result.track_id if result.track_id is not None else self.memory.last_track)
        outputs, reset, state_before = self.memory.advance(x, track, result.status, omega, self._step_clock)
        tic = _lap(stages, "model", tic)
        if outputs is not None and self.refine is not None and result.keypoints is not None:
            outputs = self.memory.refine(outputs, state_before, result.keypoints, K, self.refine)
            tic = _lap(stages, "refine", tic)
        msg = self._message(frame, result, outputs, lost=x is None)
        msg.camera_motion = self._motion_used
        self._send(msg)
        t_published = time.monotonic()
        _lap(stages, "publish", tic)
        reproj = self._diagnose(frame, result, x, omega, K, outputs, state_before, msg)
        stages["latency"] = (t_published - frame.t_capture) * 1e3
        self.metrics.finished(stages, t_published)
        if self.preview is not None:
            self._show(frame, result, outputs, K, msg)
        if self.on_frame is not None:
            self.on_frame(FrameReport(frame.seq, msg.status, msg.track, frame.t_capture, t_keypoints, t_published,
                                      stages, reset, reproj, msg))

    # ------------------------------------------------------------------ stages
    def _media_time(self, frame: Frame) -> float:
        return self.pacer.media_time(frame)

    def _frame_size(self, frame: Frame) -> tuple[int, int]:
        if frame.image is not None and getattr(frame.image, "ndim", 0) >= 2:
            return int(frame.image.shape[1]), int(frame.image.shape[0])
        return tuple(self.source.size)  # type: ignore[return-value]

    def _intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        if self._user_K is not None:
            return self._user_K
        if self._K is None or self._K_size != size:
            self._K, self._K_size = default_intrinsics(*size), size
        return self._K

    def _begin_frame(self, frame: Frame) -> tuple[dict[str, float], tuple[int, int], np.ndarray]:
        """Count the frame and time its wait -> (stages so far, image size (W, H), intrinsics K (3, 3))."""
        t_start = time.monotonic()
        stages: dict[str, float] = {"capture": (t_start - frame.t_capture) * 1e3}
        self.metrics.began(t_start)
        self._last_seq = frame.seq
        size = self._frame_size(frame)
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"frame {frame.seq} has no size (image {getattr(frame.image, 'shape', None)})")
        return stages, size, self._intrinsics(size)

    def _detect(self, frame: Frame) -> list[Detection]:
        """Detections of the frame: its own keypoints when it carries them, else the detector's (errors -> [])."""
        if frame.keypoints is not None:
            kp = np.asarray(frame.keypoints, dtype=np.float32)
            if kp.shape != (21, 3):
                self._n.errors["detector"] += 1
                log.warning("frame %d carries keypoints of shape %s, expected (21, 3)", frame.seq, kp.shape)
                return []
            conf = kp[:, 2][np.isfinite(kp[:, 2])]
            return [Detection(kp, bbox_of_visible(kp, CONF_THRESHOLD), float(conf.mean()) if conf.size else 0.0)]
        if self.detector is None or frame.image is None:
            return []
        try:
            return list(self.detector.detect(frame.image))
        except Exception as exc:
            self.metrics.fail("detector", exc)
            return []

    def _normalize(self, result: TrackResult, K: np.ndarray) -> np.ndarray | None:
        """Network input x (66,) float32, or None when the box or keypoints are unusable (treated as lost)."""
        if result.keypoints is None or result.bbox is None or not np.all(np.isfinite(result.bbox)):
            return None
        try:
            x = normalize_keypoints(result.keypoints.astype(np.float64), np.asarray(result.bbox, np.float64),
                                    float(K[0, 0]), K[:2, 2].astype(np.float64))
        except ValueError as exc:
            self.metrics.fail("normalize", exc)
            return None
        x = np.asarray(x, dtype=np.float32)
        return x if np.all(np.isfinite(x)) else None

    def _omega(self, frame: Frame, bbox: np.ndarray | None) -> np.ndarray:
        t = self.pacer.time_of(frame)
        try:
            omega = np.asarray(self.camera_motion.update(t, frame.image, bbox), dtype=np.float32).reshape(6)
        except Exception as exc:
            self.metrics.fail("camera_motion", exc)
            self._motion_used = "none"
            return np.zeros(6, np.float32)
        self._motion_used = motion_source(self.camera_motion)
        if not np.all(np.isfinite(omega)):
            self._motion_used = "none"
            return np.zeros(6, np.float32)
        return omega

    def _reset_state(self) -> None:
        """Drop the model memory (an unexpected failure, or a long stall)."""
        self.memory.reset()

    def _with_frame_interval(self, x: np.ndarray) -> np.ndarray:
        """x with the frame-interval feature on this frame's clock (`PersonMemory.with_interval`)."""
        return self.memory.with_interval(x, self._step_clock)

    def _message(self, frame: Frame, result: TrackResult, outputs: dict[str, np.ndarray] | None, lost: bool
                 ) -> PoseMessage:
        """The frame's message: the pose, or ``lost`` (no usable person), or ``init`` without a pose (the engine
        failed and restarts)."""
        mem = self.memory
        if outputs is None:
            track = result.track_id if result.track_id is not None else mem.last_track
            return self.messages.status("lost" if lost else "init", seq=frame.seq, track=int(track),
                                        t_capture=frame.t_capture)
        msg, ok = self.messages.pose(outputs, seq=frame.seq, track=int(mem.track or 0), t_capture=frame.t_capture,
                                     kp2d=result.keypoints, fresh=mem.fresh, error_track=int(mem.last_track))
        if ok:
            mem.fresh = False
        else:
            mem.reset()
        return msg

    def _send(self, msg: PoseMessage) -> None:
        self.sinks.send(msg)

    def _diagnose(self, frame: Frame, result: TrackResult, x: np.ndarray | None, omega: np.ndarray, K: np.ndarray,
                  outputs: dict[str, np.ndarray] | None, state_before: Any, msg: PoseMessage) -> float | None:
        """After the send (they must not delay the subscribers): the reprojection error and the adaptation feed."""
        if outputs is None or "kp3d_cam" not in outputs or result.keypoints is None:
            return None
        reproj = reprojection_error(outputs["kp3d_cam"][0], result.keypoints, K)
        if reproj is not None:
            self._reproj.append(reproj)
        mem = self.memory
        if self.on_model_step is not None and x is not None and mem.state is not None:
            try:
                self.on_model_step(ModelStep(
                    seq=frame.seq, track=msg.track, t_capture=frame.t_capture,
                    x=mem.fed_x if mem.fed_x is not None else x, omega=omega, kp2d=result.keypoints,
                    bbox=np.asarray(result.bbox), K=K, state_before=state_before, state_after=mem.state,
                    reproj=reproj, generation=int(getattr(self.engine, "generation", 0))))
            except Exception as exc:
                self.metrics.fail("adaptation", exc)
        return reproj

    def _show(self, frame: Frame, result: Any, outputs: dict[str, np.ndarray] | None, K: np.ndarray,
              msg: PoseMessage) -> None:
        """The frame to the preview sink, after the diagnostics; a closed window stops the loop."""
        if self._preview_sink is None:
            return
        kp_model = None
        if outputs is not None and "kp3d_cam" in outputs:
            kp_model = np.asarray(project(np.asarray(outputs["kp3d_cam"][0], np.float64), K))
        fps = self._n.frames / max((self._t_last or 0) - (self._t_first or 0), 1e-6)
        self._preview_sink.send(msg, FrameView(frame.image, result.keypoints, kp_model, self._frame_size(frame), fps))
        if self._preview_sink.closed:
            self._preview_sink.closed = False
            self.stop_reason = "preview closed"
            self.stop()

    # ------------------------------------------------------------------ failures without a frame
    def _on_source_error(self, exc: Exception) -> bool:
        self._consecutive_source_errors += 1
        self.metrics.fail("source", exc)
        self._heartbeat(force=True)
        if self.max_source_errors is not None and self._consecutive_source_errors >= self.max_source_errors:
            self.stop_reason = f"source failed {self._consecutive_source_errors} times in a row: {exc}"
            return False
        self._stop.wait(self.pacer.backoff_s(self._consecutive_source_errors))
        return True

    def _heartbeat(self, force: bool = False) -> None:
        """A ``lost`` message while no frame arrives, at most every ``heartbeat_s`` (the stall is visible)."""
        now = self.pacer.heartbeat_due(force)
        if now is None:
            return
        if self.memory.state is not None and self.rule.stalled(now - (self._t_last or now), self.source.fps):
            self._reset_state()  # the person cannot be followed across a long stall
        self._send(self.messages.status("lost", seq=self._last_seq, track=self._last_track, t_capture=now,
                                        heartbeat=True))

    def _note_source_status(self) -> None:
        status = getattr(self.source, "status", None)
        if status != self._last_source_status:
            self._last_source_status = status
            log.info("source: %s", status)

    def _log_error(self, what: str, exc: Exception) -> None:
        self.metrics.log_error(what, exc)

    # ------------------------------------------------------------------ reporting
    @property
    def dropped(self) -> int:
        """Frames captured but never processed: seq gaps (stale frames a live source replaced) + skipped."""
        return self.metrics.dropped

    def stats(self) -> dict[str, Any]:
        """Counters and per-stage timings (ms, p50/p99 over the last ``stats_window`` frames) as a plain dict."""
        return self.metrics.summary(source=repr(self.source),
                                    engine=getattr(self.engine, "name", type(self.engine).__name__),
                                    model=self.messages.model(), stop_reason=self.stop_reason)


__all__ = ["OPTIONAL_STAGES", "STAGES", "EngineLike", "FrameReport", "LiveLoop", "ModelStep", "PublisherLike",
           "StageStats", "reprojection_error"]
