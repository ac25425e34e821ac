"""The live loop: newest frame -> 2D keypoints -> main person -> model step -> pose message on the wire.

One thread, one frame at a time, always the newest one: a live source keeps only its latest frame, and a file
played in real time is skipped ahead when processing falls behind, so the published pose describes the present
(stale frames are counted in ``dropped``, never queued). The loop must outlive everything a live input throws
at it: no person, black or NaN frames, a detector or engine exception, a camera that dies, a subscriber that
stops reading. Each of these is logged, counted in ``stats()`` and turned into a status message (``lost`` /
``init``), never into a crash.

Model memory follows the person: a new track id, or ``lost_reset_frames`` frames without the person, restarts
the engine state (``initial_state``), and the first message of the fresh state has status ``init``.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol

import numpy as np

from mocap.camera import CONF_THRESHOLD, default_intrinsics, normalize_keypoints, project
from mocap.fitting import RefineConfig, TrackState, refine_step
from mocap.fitting.reprojection import reprojection_error  # the loop's reported figure, one definition
from mocap.model.state import X_KEYPOINTS, frame_interval_feature
from stream.camera_motion import CameraMotion
from stream.detector.base import Detection, Detector, bbox_of_visible
from stream.pose_frame import model_label, pose_message, status_message
from stream.protocol import PoseMessage
from stream.sources.base import Frame, Source
from stream.tracker import Tracker, TrackResult

log = logging.getLogger(__name__)

#: Per-frame stages, in pipeline order, timed in ms. "capture" is the frame's age when the loop picks it up
#: (time spent waiting in the source's one-slot buffer); "latency" is capture -> published.
STAGES: tuple[str, ...] = ("read", "capture", "detect", "track", "camera_motion", "model", "publish", "latency")
#: Recorded only when the loop refines (``refine=...``): listed after STAGES in the summaries.
OPTIONAL_STAGES: tuple[str, ...] = ("refine",)

Clock = Literal["capture", "media"]


class EngineLike(Protocol):
    """What the loop needs of an `engines.Engine` (kept structural so tests can pass an adapter)."""

    name: str

    @property
    def model_id(self) -> str: ...

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]: ...   # x's width says whether it takes a frame interval

    def initial_state(self, batch: int) -> dict[str, np.ndarray]: ...

    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]: ...


class PublisherLike(Protocol):
    def publish(self, msg: PoseMessage) -> bool: ...


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
class _Counters:
    frames: int = 0            # processed frames
    skipped: int = 0           # read but skipped (a file played in real time fell behind)
    published: int = 0
    publish_dropped: int = 0   # publisher refused (queue full with nodrop)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    inits: int = 0             # fresh model states (first track, new tracks, after loss or engine errors)
    errors: collections.Counter = field(default_factory=collections.Counter)
    tracks: set = field(default_factory=set)


class LiveLoop:
    """Runs source -> detector -> tracker -> camera motion -> engine -> publisher until stopped.

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
        clock: time given to camera motion: "capture" (t_capture, live sources) or "media" (the frame's time in
            its file: ``meta["video_time"]``, else seq / fps; recorded gyro logs are on this clock).
        skip_late: drop frames that are more than one frame interval behind real time (files played at fps).
        heartbeat_s: while no frame arrives, a ``lost`` message goes out this often (subscribers see the stall).
        max_source_errors: consecutive source exceptions before giving up (None = retry forever).
        refine: test-time refinement of each step's body to the frame's keypoints (`mocap.fitting`, timed as the
            "refine" stage); None = publish the network's output as it is.
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
        clock: Clock = "capture",
        skip_late: bool = False,
        read_timeout: float = 0.1,
        heartbeat_s: float = 0.5,
        max_source_errors: int | None = None,
        stats_window: int = 18000,
        refine: RefineConfig | None = None,
    ) -> None:
        if lost_reset_frames < 1:
            raise ValueError(f"lost_reset_frames must be >= 1, got {lost_reset_frames}")
        if clock not in ("capture", "media"):
            raise ValueError(f"clock must be 'capture' or 'media', got {clock!r}")
        if intrinsics is not None:
            intrinsics = np.asarray(intrinsics, dtype=np.float64)
            if intrinsics.shape != (3, 3) or not intrinsics[0, 0] > 0 or not intrinsics[1, 1] > 0:
                raise ValueError(f"intrinsics must be a (3, 3) K with positive focal lengths, got {intrinsics}")
        self.source, self.detector, self.tracker = source, detector, tracker
        self.camera_motion, self.engine, self.publisher = camera_motion, engine, publisher
        self.recorder, self.preview = recorder, preview
        self.lost_reset_frames, self.clock, self.skip_late = int(lost_reset_frames), clock, skip_late
        self.read_timeout, self.heartbeat_s, self.max_source_errors = read_timeout, heartbeat_s, max_source_errors
        self.on_frame: Callable[[FrameReport], None] | None = None
        #: After each published pose (diagnostics time, after the send): the background adaptation's feed.
        #: Must return at once; its exceptions are counted as errors["adaptation"], never raised.
        self.on_model_step: Callable[[ModelStep], None] | None = None
        self._user_K = intrinsics
        self._K: np.ndarray | None = intrinsics
        self._K_size: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._timings = StageStats(stats_window)
        self.refine = refine  # test-time refinement after each step (mocap/fitting); None = off
        self._refine_track = TrackState()
        self._reproj: collections.deque[float] = collections.deque(maxlen=stats_window)
        self._n = _Counters()
        self.stop_reason: str | None = None
        # model memory
        self._state: dict[str, np.ndarray] | None = None
        self._state_track: int | None = None
        self._fresh = False  # the next pose comes from a fresh state: publish it as "init"
        self._lost_run = 0
        self._last_x: np.ndarray | None = None
        self._fed_x: np.ndarray | None = None       # the last x handed to the engine (with its frame interval)
        self._step_clock: float | None = None       # this frame's time on the loop's clock (s)
        self._last_step_time: float | None = None   # the previous model step's, for the frame-interval input
        self._last_track = 0
        # bookkeeping
        self._first_seq: int | None = None
        self._max_seq: int | None = None
        self._last_seq = 0
        self._consecutive_source_errors = 0
        self._last_heartbeat = -math.inf
        self._anchor: tuple[float, float] | None = None  # (monotonic, media time) of the first frame, skip_late
        self._t_first: float | None = None
        self._t_last: float | None = None
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
        self._max_seq = frame.seq if self._max_seq is None else max(self._max_seq, frame.seq)
        if self._first_seq is None:
            self._first_seq = frame.seq
        if self.skip_late and self._is_late(frame):
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

    def _is_late(self, frame: Frame) -> bool:
        media = self._media_time(frame)
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, media)
            return False
        lateness = (now - self._anchor[0]) - (media - self._anchor[1])
        return lateness > 1.0 / max(self.source.fps, 1e-3)

    def _media_time(self, frame: Frame) -> float:
        video_time = frame.meta.get("video_time") if frame.meta else None
        if video_time is not None:
            return float(video_time)
        return frame.seq / max(self.source.fps, 1e-3)

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
        self._n.frames += 1
        self._t_first = t_start if self._t_first is None else self._t_first
        self._last_seq = frame.seq
        size = self._frame_size(frame)
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"frame {frame.seq} has no size (image {getattr(frame.image, 'shape', None)})")
        return stages, size, self._intrinsics(size)

    def _process(self, frame: Frame) -> None:
        stages, size, K = self._begin_frame(frame)

        tic = time.perf_counter()
        detections = self._detect(frame)
        stages["detect"] = (time.perf_counter() - tic) * 1e3

        tic = time.perf_counter()
        # Media time for files: box smoothing must not depend on how fast this machine ran (--fast reproducible).
        t_track = frame.t_capture if self.clock == "capture" else self._media_time(frame)
        result = self.tracker.update(detections, size, t_track)
        x = self._normalize(result, K) if result.status != "lost" else None
        t_keypoints = time.monotonic()
        stages["track"] = (time.perf_counter() - tic) * 1e3

        tic = time.perf_counter()
        self._step_clock = frame.t_capture if self.clock == "capture" else self._media_time(frame)
        omega = self._omega(frame, result.bbox if x is not None else None)
        stages["camera_motion"] = (time.perf_counter() - tic) * 1e3

        reset = False
        reproj = None
        outputs = None
        tic = time.perf_counter()
        if x is None:
            self._lost_run += 1
            if self._lost_run >= self.lost_reset_frames and self._state is not None:
                self._reset_state()
                reset = True
            elif self._state is not None and self._last_x is not None:
                # A short loss is a dropped detection, as in training: step on an all-masked frame (last box)
                # so the model's clock and trajectory keep running; nothing is published as a pose.
                masked = self._last_x.copy()
                masked[X_KEYPOINTS] = 0.0
                self._step_engine(masked, omega)
        else:
            self._lost_run = 0
            self._last_x = x
            track = int(result.track_id if result.track_id is not None else self._last_track)
            if self._state is None or result.status == "init" or track != self._state_track:
                reset = self._state is not None
                self._new_state(track)
            state_before = self._state
            outputs = self._step_engine(x, omega)
        stages["model"] = (time.perf_counter() - tic) * 1e3
        if outputs is not None and self.refine is not None and result.keypoints is not None:
            tic = time.perf_counter()
            outputs = self._refine_outputs(outputs, state_before, result.keypoints, K)
            stages["refine"] = (time.perf_counter() - tic) * 1e3

        tic = time.perf_counter()
        msg = self._message(frame, result, outputs, lost=x is None)
        msg.camera_motion = self._motion_used
        self._send(msg)
        t_published = time.monotonic()
        stages["publish"] = (time.perf_counter() - tic) * 1e3
        if outputs is not None and "kp3d_cam" in outputs and result.keypoints is not None:
            # Diagnostics after the send: they must not delay the subscribers.
            reproj = reprojection_error(outputs["kp3d_cam"][0], result.keypoints, K)
            if reproj is not None:
                self._reproj.append(reproj)
            if self.on_model_step is not None and x is not None and self._state is not None:
                self._feed_model_step(frame, result, x, omega, K, state_before, msg, reproj)
        stages["latency"] = (t_published - frame.t_capture) * 1e3
        for stage, ms in stages.items():
            self._timings.add(stage, ms)
        self._t_last = t_published

        if self.preview is not None:
            self._show(frame, result, outputs, K, msg)
        if self.on_frame is not None:
            self.on_frame(FrameReport(frame.seq, msg.status, msg.track, frame.t_capture, t_keypoints, t_published,
                                      stages, reset, reproj, msg))

    def _feed_model_step(self, frame: Frame, result: TrackResult, x: np.ndarray, omega: np.ndarray, K: np.ndarray,
                         state_before: Any, msg: PoseMessage, reproj: float | None) -> None:
        try:
            self.on_model_step(ModelStep(  # type: ignore[misc]
                seq=frame.seq, track=msg.track, t_capture=frame.t_capture, x=self._fed_x if self._fed_x is not None
                else x, omega=omega, kp2d=result.keypoints,
                bbox=np.asarray(result.bbox), K=K, state_before=state_before, state_after=self._state,
                reproj=reproj, generation=int(getattr(self.engine, "generation", 0))))
        except Exception as exc:
            self._n.errors["adaptation"] += 1
            self._log_error("adaptation", exc)

    # ------------------------------------------------------------------ stages
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
            self._n.errors["detector"] += 1
            self._log_error("detector", exc)
            return []

    def _normalize(self, result: TrackResult, K: np.ndarray) -> np.ndarray | None:
        """Network input x (66,) float32, or None when the box or keypoints are unusable (treated as lost)."""
        if result.keypoints is None or result.bbox is None or not np.all(np.isfinite(result.bbox)):
            return None
        try:
            x = normalize_keypoints(result.keypoints.astype(np.float64), np.asarray(result.bbox, np.float64),
                                    float(K[0, 0]), K[:2, 2].astype(np.float64))
        except ValueError as exc:
            self._n.errors["normalize"] += 1
            self._log_error("normalize", exc)
            return None
        x = np.asarray(x, dtype=np.float32)
        return x if np.all(np.isfinite(x)) else None

    def _omega(self, frame: Frame, bbox: np.ndarray | None) -> np.ndarray:
        t = frame.t_capture if self.clock == "capture" else self._media_time(frame)
        try:
            omega = np.asarray(self.camera_motion.update(t, frame.image, bbox), dtype=np.float32).reshape(6)
        except Exception as exc:
            self._n.errors["camera_motion"] += 1
            self._log_error("camera_motion", exc)
            self._motion_used = "none"
            return np.zeros(6, np.float32)
        self._motion_used = motion_source(self.camera_motion)
        if not np.all(np.isfinite(omega)):
            self._motion_used = "none"
            return np.zeros(6, np.float32)
        return omega

    def _new_state(self, track: int) -> None:
        self._last_step_time = None
        self._refine_track.reset()
        self._state = self.engine.initial_state(1)
        self._state_track = track
        self._fresh = True
        self._n.inits += 1
        self._n.tracks.add(track)
        self._last_track = track

    def _reset_state(self) -> None:
        self._refine_track.reset()
        self._state = None
        self._state_track = None
        self._last_x = None

    def _with_frame_interval(self, x: np.ndarray) -> np.ndarray:
        """x (66,) -> (67,) with the frame-interval feature when the model takes one (mocap/model/state.py):
        seconds since the previous model step on this clock (capture time live, media time for files), clamped
        to [1/120, 0.2] s so a stall or a long loss does not read as a huge jump."""
        width = int(getattr(self.engine, "input_shapes", {}).get("x", (x.shape[0],))[0])
        now = self._step_clock
        dt = 1.0 / max(self.source.fps or 30.0, 1.0) if self._last_step_time is None or now is None else now - self._last_step_time
        self._last_step_time = now
        if width <= x.shape[0]:
            return x
        feature = np.float32(frame_interval_feature(min(max(dt, 1.0 / 120.0), 0.2)))
        return np.concatenate((x, np.full(width - x.shape[0], feature, np.float32)))

    def _step_engine(self, x: np.ndarray, omega: np.ndarray) -> dict[str, np.ndarray] | None:
        assert self._state is not None
        x = self._with_frame_interval(x)
        self._fed_x = x  # what the engine really saw (the adaptation trains on it)
        try:
            outputs, state = self.engine.step({"x": x[None], "omega": omega[None]}, self._state)
            bad = [k for k in ("pose_rotmat", "cam_trans", "root_trans") if not np.all(np.isfinite(outputs[k]))]
            if bad:
                raise FloatingPointError(f"engine produced non-finite {bad}")
        except Exception as exc:
            self._n.errors["engine"] += 1
            self._log_error("engine", exc)
            self._reset_state()
            return None
        self._state = state
        return outputs

    def _refine_outputs(self, outputs: dict[str, np.ndarray], state_before: Mapping[str, np.ndarray],
                        kp2d: np.ndarray, K: np.ndarray) -> dict[str, np.ndarray]:
        """The step's outputs fitted to the frame's keypoints; the engine state then carries the refined feet
        and root (so the next step integrates the trajectory from the refined body). Errors keep the network's."""
        try:
            fps = getattr(self.source, "fps", None)
            res = refine_step(outputs, state_before, self._state or {}, kp2d, K, self._refine_track, self.refine,
                              dt=1.0 / fps if fps and fps > 0 else None)
        except Exception as exc:
            self._n.errors["refine"] += 1
            self._log_error("refine", exc)
            return outputs
        if res.refined is not None and self._state is not None:
            self._state = res.state
        return res.outputs

    def _message(self, frame: Frame, result: TrackResult, outputs: dict[str, np.ndarray] | None, lost: bool
                 ) -> PoseMessage:
        """The frame's message: the pose, or ``lost`` (no usable person), or ``init`` without a pose (the engine
        failed and restarts)."""
        model = model_label(self.engine.model_id, getattr(self.engine, "generation", 0))
        if outputs is None:
            track = result.track_id if result.track_id is not None else self._last_track
            status = "lost" if lost else "init"
            self._n.statuses[status] += 1
            return status_message(status, seq=frame.seq, track=int(track), t_capture=frame.t_capture, model=model)
        status = "init" if self._fresh else "tracking"
        try:
            msg = pose_message(outputs, seq=frame.seq, track=int(self._state_track or 0), t_capture=frame.t_capture,
                               kp2d=result.keypoints, model=model, status=status)
        except ValueError as exc:  # e.g. NaN betas: never publish a wrong pose
            self._n.errors["engine"] += 1
            self._log_error("engine output", exc)
            self._reset_state()
            self._n.statuses["init"] += 1
            return status_message("init", seq=frame.seq, track=int(self._last_track), t_capture=frame.t_capture,
                                  model=model)
        self._fresh = False
        self._n.statuses[status] += 1
        return msg

    def _send(self, msg: PoseMessage) -> None:
        try:
            if self.publisher.publish(msg):
                self._n.published += 1
            else:
                self._n.publish_dropped += 1
        except Exception as exc:
            self._n.errors["publish"] += 1
            self._log_error("publish", exc)
        if self.recorder is not None:
            self.recorder.write(msg)

    def _show(self, frame: Frame, result: TrackResult, outputs: dict[str, np.ndarray] | None, K: np.ndarray,
              msg: PoseMessage) -> None:
        kp_model = None
        if outputs is not None and "kp3d_cam" in outputs:
            kp_model = np.asarray(project(np.asarray(outputs["kp3d_cam"][0], np.float64), K))
        fps = self._n.frames / max((self._t_last or 0) - (self._t_first or 0), 1e-6)
        text = f"{msg.status} track {msg.track}  seq {msg.seq}  {fps:.1f} fps  {msg.model}"
        try:
            if not self.preview.show(frame.image, result.keypoints, kp_model, text, size=self._frame_size(frame)):
                self.stop_reason = "preview closed"
                self.stop()
        except Exception as exc:
            self._n.errors["preview"] += 1
            self._log_error("preview", exc)

    # ------------------------------------------------------------------ failures without a frame
    def _on_source_error(self, exc: Exception) -> bool:
        self._n.errors["source"] += 1
        self._consecutive_source_errors += 1
        self._log_error("source", exc)
        self._heartbeat(force=True)
        if self.max_source_errors is not None and self._consecutive_source_errors >= self.max_source_errors:
            self.stop_reason = f"source failed {self._consecutive_source_errors} times in a row: {exc}"
            return False
        self._stop.wait(min(0.02 * 2 ** min(self._consecutive_source_errors, 6), 1.0))
        return True

    def _heartbeat(self, force: bool = False) -> None:
        """A ``lost`` message while no frame arrives, at most every ``heartbeat_s`` (the stall is visible)."""
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self.heartbeat_s:
            return
        if force and now - self._last_heartbeat < min(self.heartbeat_s, 0.1):
            return
        self._last_heartbeat = now
        if self._state is not None and now - (self._t_last or now) > self.lost_reset_frames / max(self.source.fps, 1):
            self._reset_state()  # the person cannot be followed across a long stall
        model = model_label(self.engine.model_id, getattr(self.engine, "generation", 0))
        self._n.statuses["lost"] += 1
        beat = status_message("lost", seq=self._last_seq, track=self._last_track, t_capture=now, model=model)
        beat.heartbeat = True  # not a frame: readers leave it out of latency and seq-gap counts
        self._send(beat)

    def _note_source_status(self) -> None:
        status = getattr(self.source, "status", None)
        if status != self._last_source_status:
            self._last_source_status = status
            log.info("source: %s", status)

    def _log_error(self, what: str, exc: Exception) -> None:
        n = self._n.errors[what.split()[0]]
        if n <= 3 or n % 100 == 0:
            log.warning("%s error #%d: %s: %s", what, n, type(exc).__name__, exc)

    # ------------------------------------------------------------------ reporting
    @property
    def dropped(self) -> int:
        """Frames captured but never processed: seq gaps (stale frames a live source replaced) + skipped."""
        if self._first_seq is None or self._max_seq is None:
            return 0
        return max(0, (self._max_seq - self._first_seq + 1) - self._n.frames)

    def stats(self) -> dict[str, Any]:
        """Counters and per-stage timings (ms, p50/p99 over the last ``stats_window`` frames) as a plain dict."""
        n = self._n
        elapsed = (self._t_last - self._t_first) if self._t_first is not None and self._t_last is not None else 0.0
        fps = (n.frames - 1) / elapsed if n.frames > 1 and elapsed > 0 else None
        return {
            "source": repr(self.source),
            "engine": getattr(self.engine, "name", type(self.engine).__name__),
            "model": model_label(self.engine.model_id, getattr(self.engine, "generation", 0)),
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
            "stages_ms": self._timings.summary(),
            "reproj_err_rel": StageStats.summarize(self._reproj),
            "stop_reason": self.stop_reason,
        }


__all__ = ["OPTIONAL_STAGES", "STAGES", "EngineLike", "FrameReport", "LiveLoop", "ModelStep", "StageStats", "reprojection_error"]
