"""The live loop: newest frame -> 2D keypoints -> main person -> model step -> pose message on the wire.

One thread, one frame at a time, always the newest one: a live source keeps only its latest frame, and a file
played in real time is skipped ahead when processing falls behind, so the published pose describes the present
(stale frames are counted in ``dropped``, never queued). The loop must outlive everything a live input throws
at it: no person, black or NaN frames, a detector or engine exception, a camera that dies, a subscriber that
stops reading. Each of these is logged, counted in ``stats()`` and turned into a status message (``lost`` /
``init``), never into a crash.

`LiveLoop` only composes parts that each do one job (`LiveLoop._process` is the whole frame):
- `pacing`: the loop's clock (capture / media), skipping late frames, heartbeats, source retries and back-off;
- `inputs`: frame size and intrinsics, detections, the tracked person's network input;
- `motion`: the camera's omega and what measured it;
- `memory`: model memory follows the person (`ResetRule`: the reset rule, for both loops; `PersonMemory`), its
  refinement and the One-Euro smoothing of what is published (`mocap.smoothing`, never fed back);
- `messages`: engine outputs -> pose / status messages;
- `sinks`: publisher, recording, VMC, preview behind one `Sink` interface;
- `reports`: `FrameReport` (``on_frame``), the reprojection figure, `ModelStep` (``on_model_step``);
- `stats`: counters, stage timings, reprojection errors -> ``stats()``;
- `garbage`: Python's cyclic garbage collector run between frames, never inside one.
`stream.pipeline_loop.MultiPersonLoop` composes the same parts for everyone in view.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from mocap.fitting import RefineConfig
from mocap.fitting.reprojection import reprojection_error  # re-exported: the loop's reported figure
from mocap.smoothing import SmoothingConfig
from stream.camera_motion import CameraMotion
from stream.detector.base import Detection, Detector
from stream.loop.garbage import BetweenFrames
from stream.loop.inputs import FrameGeometry, detections, network_input
from stream.loop.memory import EngineLike, PersonMemory, ResetRule
from stream.loop.messages import Messages
from stream.loop.motion import Motion, motion_source
from stream.loop.pacing import Clock, Pacer, SourceErrors
from stream.loop.reports import FrameReport, ModelStep, feed_model_step, record_reprojection
from stream.loop.sinks import PreviewSink, PublisherLike, PublisherSink, Sink, Sinks, WriterSink, frame_view
from stream.loop.stats import OPTIONAL_STAGES, STAGES, LoopStats, StageStats
from stream.protocol import PoseMessage
from stream.sources.base import Frame, Source
from stream.tracker import Tracker, TrackResult

log = logging.getLogger(__name__)


def _lap(stages: dict[str, float], stage: str, tic: float) -> float:
    """Record ``stage`` as the ms since ``tic``; the next stage's tic."""
    now = time.perf_counter()
    stages[stage] = (now - tic) * 1e3
    return now


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
        smoothing: One-Euro smoothing of the published pose (`mocap.smoothing`); None = off.
        collect_between_frames: during ``run`` Python's cyclic garbage collector runs after each frame's send
            instead of whenever allocations trigger it, mid-frame (`stream.loop.garbage`).
    """

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
        smoothing: SmoothingConfig | None = None,
        collect_between_frames: bool = True,
    ) -> None:
        self.rule = ResetRule(lost_reset_frames)
        self.pacer = Pacer(source, clock, skip_late, heartbeat_s)
        self.geometry = FrameGeometry(source, intrinsics)
        self.source, self.detector, self.tracker = source, detector, tracker
        self.camera_motion, self.engine, self.publisher = camera_motion, engine, publisher
        self.recorder, self.preview = recorder, preview
        self.lost_reset_frames, self.clock, self.skip_late = self.rule.lost_reset_frames, clock, skip_late
        self.read_timeout, self.heartbeat_s, self.max_source_errors = read_timeout, heartbeat_s, max_source_errors
        self.refine = refine  # test-time refinement after each step (mocap/fitting); None = off
        self.smoothing = smoothing  # One-Euro smoothing of what is published (mocap/smoothing); None = off
        #: Python's cyclic GC between frames, not inside them (`garbage.BetweenFrames`); None = CPython's own timing.
        self.garbage: BetweenFrames | None = BetweenFrames() if collect_between_frames else None
        self.on_frame: Callable[[FrameReport], None] | None = None
        #: After each published pose (diagnostics time, after the send): the background adaptation's feed.
        #: Must return at once; its exceptions are counted as errors["adaptation"], never raised.
        self.on_model_step: Callable[[ModelStep], None] | None = None
        self.metrics = LoopStats(stats_window)
        self.source_errors = SourceErrors(source, max_source_errors)
        self.motion = Motion(camera_motion, self.metrics)
        self.memory = PersonMemory(engine, self.rule, self.metrics, lambda: getattr(self.source, "fps", None))
        self.messages = Messages(engine, self.metrics)
        self.sinks = Sinks(PublisherSink(publisher, self.metrics),
                           WriterSink(recorder) if recorder is not None else None, *sinks)
        self.preview_sink = PreviewSink(preview, self.metrics) if preview is not None else None
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.last_seq = 0     # the last processed frame's (heartbeats carry it)

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
        with self._garbage_between_frames() as garbage:
            while not self._stop.is_set():
                if max_frames is not None and self.frames_read >= max_frames:
                    self.stop_reason = "max_frames"
                    break
                if not self.step():
                    break
                if garbage is not None:
                    garbage.collect()
        if self.stop_reason is None:
            self.stop_reason = "stopped"
        return self.stats()

    def _garbage_between_frames(self) -> contextlib.AbstractContextManager[BetweenFrames | None]:
        """The run's garbage collection: `BetweenFrames`, or a no-op when the loop was built without it."""
        return self.garbage if self.garbage is not None else contextlib.nullcontext()

    @property
    def frames_read(self) -> int:
        return self.metrics.n.frames + self.metrics.n.skipped

    # ------------------------------------------------------------------ one iteration
    def step(self) -> bool:
        """Read and process at most one frame; False when the loop should end (source finished / gave up)."""
        t0 = time.perf_counter()
        try:
            frame = self.source.read(self.read_timeout)
        except Exception as exc:  # a source must not kill the loop: report, back off, retry
            return self._on_source_error(exc)
        self.source_errors.ok()
        read_ms = (time.perf_counter() - t0) * 1e3
        if frame is None:
            if self.source.finished:
                self.stop_reason = "source finished"
                return False
            self.source_errors.note_status()
            self._heartbeat()
            return True
        self.metrics.saw(frame.seq)
        if self.pacer.late(frame):
            self.metrics.n.skipped += 1
            return True
        self.metrics.timings.add("read", read_ms)
        try:
            self._process(frame)
        except Exception:  # last line of defence; every known failure is handled inside _process
            self.metrics.n.errors["other"] += 1
            log.exception("frame %d failed; model state reset", frame.seq)
            self._reset_state()
        return True

    def _process(self, frame: Frame) -> None:
        """One frame through the parts: keypoints -> memory + engine -> message -> sinks -> reports -> preview."""
        stages, size, K = self._begin_frame(frame)
        now = self.pacer.time_of(frame)  # media time for files: --fast runs do not depend on this machine's speed
        tic = time.perf_counter()
        people = self._detect(frame)
        tic = _lap(stages, "detect", tic)
        result = self.tracker.update(people, size, now)
        x = network_input(result, K, self.metrics) if result.status != "lost" else None
        t_keypoints = time.monotonic()
        tic = _lap(stages, "track", tic)
        omega = self.motion.update(now, frame.image, result.bbox if x is not None else None)
        tic = _lap(stages, "camera_motion", tic)
        mem = self.memory
        track = int(result.track_id if result.track_id is not None else mem.last_track)
        outputs, reset, state_before = mem.advance(x, track, result.status, omega, now)
        tic = _lap(stages, "model", tic)
        if outputs is not None and self.refine is not None and result.keypoints is not None:
            outputs = mem.refine(outputs, state_before, result.keypoints, K, self.refine)
            tic = _lap(stages, "refine", tic)
        if outputs is not None and self.smoothing is not None:
            outputs = mem.smooth(outputs, now, self.smoothing)
            tic = _lap(stages, "smooth", tic)
        msg = self._message(frame, result, outputs, lost=x is None)
        msg.camera_motion = self.motion.used
        self.sinks.send(msg)
        t_published = time.monotonic()
        _lap(stages, "publish", tic)
        reproj = None  # diagnostics after the send: they must not delay the subscribers
        if outputs is not None and "kp3d_cam" in outputs and result.keypoints is not None:
            reproj = record_reprojection(self.metrics, outputs, result.keypoints, K)
            if x is not None and mem.state is not None:
                feed_model_step(self.on_model_step, self.metrics, self.engine, seq=frame.seq, track=msg.track,
                                t_capture=frame.t_capture, x=mem.fed_x if mem.fed_x is not None else x,
                                omega=omega, kp2d=result.keypoints, bbox=result.bbox, K=K,
                                state_before=state_before, state_after=mem.state, reproj=reproj)
        stages["latency"] = (t_published - frame.t_capture) * 1e3
        self.metrics.finished(stages, t_published)
        self._show(frame, result.keypoints, outputs, K, msg)
        if self.on_frame is not None:
            self.on_frame(FrameReport(frame.seq, msg.status, msg.track, frame.t_capture, t_keypoints, t_published,
                                      stages, reset, reproj, msg))

    # ------------------------------------------------------------------ stages
    def _begin_frame(self, frame: Frame) -> tuple[dict[str, float], tuple[int, int], np.ndarray]:
        """Count the frame and time its wait -> (stages so far, image size (W, H), intrinsics K (3, 3))."""
        t_start = time.monotonic()
        stages: dict[str, float] = {"capture": (t_start - frame.t_capture) * 1e3}
        self.metrics.began(t_start)
        self.last_seq = frame.seq
        size, K = self.geometry.of(frame)
        return stages, size, K

    def _detect(self, frame: Frame) -> list[Detection]:
        """The frame's detections (`inputs.detections`); `MultiPersonLoop` gives its detector the frame's time."""
        return detections(frame, self.detector, self.metrics)

    def _reset_state(self) -> None:
        """Drop the model memory (an unexpected failure, or a long stall)."""
        self.memory.reset()

    def _message(self, frame: Frame, result: TrackResult, outputs: dict[str, np.ndarray] | None, lost: bool
                 ) -> PoseMessage:
        """The frame's message: the pose, or ``lost`` (no usable person), or ``init`` without a pose (the engine
        failed and restarts)."""
        mem = self.memory
        if outputs is None:
            track = result.track_id if result.track_id is not None else mem.last_track
            return self.messages.status("lost" if lost else "init", seq=frame.seq, track=int(track),
                                        t_capture=frame.t_capture)
        person = mem.person
        msg, ok = self.messages.pose(outputs, seq=frame.seq, track=int(mem.track or 0), t_capture=frame.t_capture,
                                     kp2d=result.keypoints, fresh=person is None or person.fresh,
                                     error_track=int(mem.last_track))
        if ok and person is not None:
            person.fresh = False
        elif not ok:
            mem.reset()
        return msg

    def _show(self, frame: Frame, kp2d: np.ndarray | None, outputs: dict[str, np.ndarray] | None, K: np.ndarray,
              msg: PoseMessage) -> None:
        """The frame to the preview sink, after the diagnostics; a closed window stops the loop."""
        if self.preview_sink is None:
            return
        fps = self.metrics.n.frames / max((self.metrics.t_last or 0) - (self.metrics.t_first or 0), 1e-6)
        self.preview_sink.send(msg, frame_view(frame.image, kp2d, outputs, K, self.geometry.size(frame), fps))
        if self.preview_sink.closed:
            self.preview_sink.closed = False
            self.stop_reason = "preview closed"
            self.stop()

    # ------------------------------------------------------------------ failures without a frame
    def _on_source_error(self, exc: Exception) -> bool:
        self.metrics.fail("source", exc)
        gave_up = self.source_errors.failed(exc)
        self._heartbeat(force=True)
        if gave_up is not None:
            self.stop_reason = gave_up
            return False
        self._stop.wait(self.source_errors.backoff_s())
        return True

    def _heartbeat(self, force: bool = False) -> None:
        """A ``lost`` message while no frame arrives, at most every ``heartbeat_s`` (the stall is visible)."""
        now = self.pacer.heartbeat_due(force)
        if now is None:
            return
        if self.memory.state is not None and self.rule.stalled(now - (self.metrics.t_last or now), self.source.fps):
            self._reset_state()  # the person cannot be followed across a long stall
        self.sinks.send(self.messages.status("lost", seq=self.last_seq, track=self.memory.last_track, t_capture=now,
                                             heartbeat=True))

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
           "StageStats", "motion_source", "reprojection_error"]
