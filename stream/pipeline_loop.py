"""The live loop for everyone in view: multi-person tracks, one batched model step, optional stage threads.

`MultiPersonLoop` is a `LiveLoop` whose frame is split in two stages:
- keypoints: detector (all people) -> `MultiTracker` -> per-track network inputs;
- model + publish: camera motion (once: one camera), one `PeopleModel.step` for every followed person,
  test-time refinement per person (each with their own `TrackState`), one message per person
  (`pose/<track>`), diagnostics and the adaptation feed per person.
Run in one thread (`pipelined=False`) the stages follow each other as in `LiveLoop`; with `pipelined=True`
capture, keypoints and model + publish each get a thread, joined by `stream.pipeline.Latest` slots
(latest frame wins; `lossless=True` for --fast file runs). Per person the rules of `LiveLoop` hold: a new
track id or `lost_reset_frames` frames without the person restart that person's memory (first message
"init"), short losses step the model on an all-masked input, and people entering or leaving never touch
another person's state.

World frame: all people share one camera and its ground plane; `stream.pipeline_world.SharedWorld` maps each
person's world outputs (root_trans, joints, root rotation) into the frame of the first person followed, through
the camera pose both see, so the published trajectories are consistent with each other (the first person's
are unchanged). Model states stay in each person's own frame.
"""
from __future__ import annotations

import collections
import inspect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mocap.fitting import refine_step
from stream.detector.base import Detection
from stream.loop import FrameReport, LiveLoop, StageStats
from stream.loop.inputs import detections, network_input
from stream.loop.memory import Person, masked_input
from stream.loop.reports import feed_model_step, record_reprojection
from stream.pipeline import Latest, StageThread, wait_all
from stream.pipeline_people import PeopleModel
from stream.pipeline_world import SharedWorld
from stream.protocol import PoseMessage
from stream.sources.base import Frame
from stream.stage_clock import StageClock

if TYPE_CHECKING:
    from stream.multi_tracker import MultiTracker

log = logging.getLogger(__name__)


@dataclass
class KeypointPacket:
    """Stage 1's result for one frame: every confirmed track (`PersonResult`) and its network input."""

    frame: Frame
    size: tuple[int, int]
    K: np.ndarray
    results: list[Any]
    xs: dict[int, np.ndarray]
    ended: list[int]
    stages: dict[str, float]
    t_keypoints: float
    cpu: dict[str, float] = field(default_factory=dict)   # thread-CPU ms per stage (wall ms are in `stages`)


class MultiPersonLoop(LiveLoop):
    """`LiveLoop` for up to `tracker.max_people` people (see the module doc); extra args as `LiveLoop`'s.

    pipelined: capture / keypoints / model + publish threads with latest-frame-wins slots.
    lossless: the slots wait instead of replacing (every frame processed; for files run with --fast).
    """

    def __init__(self, source: Any, detector: Any, tracker: Any, camera_motion: Any, engine: Any, publisher: Any,
                 *, pipelined: bool = False, lossless: bool = False, **kwargs: Any) -> None:
        super().__init__(source, detector, tracker, camera_motion, engine, publisher, **kwargs)
        self.people_tracker: MultiTracker = tracker  # `self.tracker` too, typed for this loop
        self.people = PeopleModel(engine)
        self.world = SharedWorld()
        self._persons: dict[int, Person] = {}
        self.pipelined, self.lossless = pipelined, lossless
        self._people_per_frame: collections.Counter = collections.Counter()
        self._slots: dict[str, Latest] = {}
        self._detector_takes_t = self._takes_t(detector)
        self._last_read: float | None = None  # monotonic time of the capture thread's last frame
        self._cpu_timings = StageStats(kwargs.get("stats_window", 18000))  # thread-CPU ms per stage

    @staticmethod
    def _takes_t(detector: Any) -> bool:
        try:
            return detector is not None and "t" in inspect.signature(detector.detect).parameters
        except (TypeError, ValueError):
            return False

    # ------------------------------------------------------------------ one frame, two stages
    def _process(self, frame: Frame) -> None:
        self._model_stage(self._keypoint_stage(frame))

    def _clock_of(self, frame: Frame) -> float:
        return self.pacer.time_of(frame)

    def _detect(self, frame: Frame) -> list[Detection]:
        """As `LiveLoop._detect`, giving a detector that smooths over time the frame's own time."""
        if frame.keypoints is not None or not self._detector_takes_t or frame.image is None:
            return super()._detect(frame)
        return detections(frame, self.detector, self.metrics, t=self._clock_of(frame))

    def _keypoint_stage(self, frame: Frame) -> KeypointPacket:
        stages, size, K = self._begin_frame(frame)
        clock = StageClock(stages)
        found = self._detect(frame)
        clock.stop("detect")
        if frame.keypoints is None:  # the detector ran: its own split of the CPU time
            for part, ms in (getattr(self.detector, "last_info", None) or {}).get("cpu_ms", {}).items():
                clock.cpu[f"detect.{part}"] = ms
        clock.start()
        results = self.people_tracker.update(found, size, self._clock_of(frame))
        ended = list(getattr(self.people_tracker, "ended", []))
        xs: dict[int, np.ndarray] = {}
        for r in results:
            if r.status != "lost":
                x = network_input(r, K, self.metrics)
                if x is not None:
                    xs[int(r.track_id)] = x
        clock.stop("track")
        return KeypointPacket(frame, size, K, results, xs, ended, stages, time.monotonic(), clock.cpu)

    def _start_person(self, track: int) -> Person:
        self.people.start(track)
        self.world.drop(track)  # a fresh state integrates in a fresh frame: align it again
        person = self._persons[track] = Person()
        self.metrics.new_memory(track)
        return person

    def _forget(self, track: int) -> None:
        self.people.drop(track)
        self.world.drop(track)
        self._persons.pop(track, None)

    def _reset_state(self) -> None:
        """Drop every person's memory (an unexpected failure, or a long stall)."""
        self.people.clear()
        self._persons.clear()
        self.world.reset()
        super()._reset_state()

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        last = max(self.metrics.t_last or now, self._last_read or 0.0)
        if len(self.people) and self.rule.stalled(now - last, self.source.fps):
            self._reset_state()  # nobody can be followed across a long stall
        super()._heartbeat(force)

    def _interval(self, person: Person, x: np.ndarray, now: float) -> np.ndarray:
        """x with the frame-interval feature when the model takes one, on this person's own step clock."""
        return person.interval(self.engine, x, now, getattr(self.source, "fps", None))

    def _model_stage(self, p: KeypointPacket) -> None:
        frame, stages, K = p.frame, p.stages, p.K
        seen = [r for r in p.results if int(r.track_id) in p.xs]
        main = max(seen, key=lambda r: float(r.bbox[2])) if seen else None
        clock = StageClock(stages, p.cpu)
        now = self._clock_of(frame)
        omega = self.motion.update(now, frame.image, main.bbox if main is not None else None)
        clock.stop("camera_motion")

        reset = False
        for track in p.ended:
            self._forget(track)
        fed: dict[int, np.ndarray] = {}
        posed: list[Any] = []
        for r in p.results:
            track = int(r.track_id)
            x = p.xs.get(track)
            person = self._persons.get(track)
            if x is None:
                if person is None:
                    continue
                verdict = person.unseen(self.rule)
                if verdict == "drop":
                    self._forget(track)
                    reset = True
                elif verdict == "masked" and track in self.people and person.last_x is not None:
                    fed[track] = self._interval(person, masked_input(person.last_x), now)  # a short loss: no pose
                continue
            if person is None or self.rule.fresh_needed(track in self.people, r.status):
                reset = reset or person is not None
                person = self._start_person(track)
            person.seen(x)
            fed[track] = self._interval(person, x, now)
            posed.append(r)

        clock.start()
        outputs: dict[int, dict[str, np.ndarray]] = {}
        before: dict[int, dict[str, np.ndarray]] = {}
        try:
            outputs, before, failed = self.people.step(fed, omega)
            if failed:
                self.metrics.n.errors["engine"] += len(failed)
                self.metrics.log_error("engine", FloatingPointError(f"engine produced non-finite outputs for {failed}"))
        except Exception as exc:
            self.metrics.fail("engine", exc)
            failed = list(fed)
        for track in failed:
            self._forget(track)
        clock.stop("model")
        if self.refine is not None and outputs:
            clock.start()
            self._refine_all(posed, outputs, before, K)
            clock.stop("refine")
        if self.smoothing is not None and outputs:
            clock.start()
            self._smooth_all(posed, outputs, now)
            clock.stop("smooth")

        clock.start()
        model = self.messages.model()
        motion = self.motion.used
        messages: dict[int, PoseMessage] = {}
        for r in p.results:
            track = int(r.track_id)
            msg = self._person_message(frame, r, outputs.get(track) if track in p.xs else None, model)
            if msg is None:
                continue
            msg.camera_motion = motion
            messages[track] = msg
            self.sinks.send(msg)
        if not messages:  # nobody in view: one "lost" message, as the single-person loop sends
            msg = self.messages.status("lost", seq=frame.seq, track=int(self.memory.last_track),
                                       t_capture=frame.t_capture, model=model)
            msg.camera_motion = motion
            messages[-1] = msg
            self.sinks.send(msg)
        t_published = time.monotonic()
        clock.stop("publish")
        self._people_per_frame[sum(int(r.track_id) in outputs for r in posed)] += 1

        main_track = int(main.track_id) if main is not None else None
        reproj_main = None
        for r in posed:  # diagnostics after the sends: they must not delay the subscribers
            track = int(r.track_id)
            if track not in outputs or "kp3d_cam" not in outputs[track]:
                continue
            reproj = record_reprojection(self.metrics, outputs[track], r.keypoints, K)
            if track == main_track:
                reproj_main = reproj
            if self.on_model_step is not None and track in self.people:
                feed_model_step(self.on_model_step, self.metrics, self.engine, seq=frame.seq,
                                track=messages[track].track, t_capture=frame.t_capture, x=fed[track], omega=omega,
                                kp2d=r.keypoints, bbox=r.bbox, K=K, state_before=before[track],
                                state_after=self.people.state_of(track), reproj=reproj)
        stages["latency"] = (t_published - frame.t_capture) * 1e3
        self.metrics.finished(stages, t_published)
        for stage, ms in clock.cpu.items():
            self._cpu_timings.add(stage, ms)
        if main_track is not None:
            self.memory.last_track = main_track
        report_msg = messages[main_track] if main_track in messages else next(iter(messages.values()))
        shown = main if main is not None else p.results[0] if p.results else None
        self._show(frame, shown.keypoints if shown is not None else None,
                   outputs.get(main_track) if main_track is not None else None, K, report_msg)
        if self.on_frame is not None:
            self.on_frame(FrameReport(frame.seq, report_msg.status, report_msg.track, frame.t_capture,
                                      p.t_keypoints, t_published, stages, reset, reproj_main, report_msg))

    def _smooth_all(self, posed: list[Any], outputs: dict[int, dict[str, np.ndarray]], now: float) -> None:
        """Each seen person's outputs as published, One-Euro smoothed on their own clock (`Person.smooth`)."""
        assert self.smoothing is not None
        for r in posed:
            track = int(r.track_id)
            if track not in outputs:
                continue
            try:
                outputs[track] = self._persons[track].smooth(outputs[track], now, self.smoothing)
            except Exception as exc:
                self.metrics.fail("smooth", exc)

    def _refine_all(self, posed: list[Any], outputs: dict[int, dict[str, np.ndarray]],
                    before: dict[int, dict[str, np.ndarray]], K: np.ndarray) -> None:
        """Each seen person's step fitted to their keypoints; refined feet / root go back into their state."""
        new_states = {}
        fps = getattr(self.source, "fps", None)  # as LiveLoop._refine_outputs: temporal terms per source frame
        dt = 1.0 / fps if fps and fps > 0 else None
        for r in posed:
            track = int(r.track_id)
            if track not in outputs:
                continue
            try:
                res = refine_step(outputs[track], before[track], self.people.state_of(track), r.keypoints, K,
                                  self._persons[track].refine, self.refine, dt=dt)
            except Exception as exc:
                self.metrics.fail("refine", exc)
                continue
            outputs[track] = res.outputs
            if res.refined is not None:
                new_states[track] = res.state
        self.people.set_states(new_states)

    def _person_message(self, frame: Frame, r: Any, outputs: dict[str, np.ndarray] | None, model: str
                        ) -> PoseMessage | None:
        """The person's message: their pose, "lost" while they are briefly unseen, or "init" when their step
        failed; None for a person the loop never stepped (nothing to tell)."""
        track = int(r.track_id)
        person = self._persons.get(track)
        if outputs is None:
            if r.status == "lost" and person is None:
                return None
            return self.messages.status("lost" if r.status == "lost" else "init", seq=frame.seq, track=track,
                                        t_capture=frame.t_capture, model=model)
        assert person is not None
        msg, ok = self.messages.pose(outputs, seq=frame.seq, track=track, t_capture=frame.t_capture,
                                     kp2d=r.keypoints, fresh=person.fresh, error_track=track, model=model,
                                     prepare=lambda out: self.world.to_shared(track, out))
        if ok:
            person.fresh = False
        else:
            self._forget(track)
        return msg

    # ------------------------------------------------------------------ threads
    def run(self, max_frames: int | None = None) -> dict[str, Any]:
        """As `LiveLoop.run`; with `pipelined` the stages run in their own threads (see the module doc)."""
        if not self.pipelined:
            return super().run(max_frames)
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        frames: Latest[Frame] = Latest(self.lossless)
        packets: Latest[KeypointPacket] = Latest(self.lossless)
        self._slots = {"keypoints": frames, "model": packets}
        capture = threading.Thread(target=self._capture, args=(frames, max_frames), name="capture", daemon=True)
        keypoints = StageThread("keypoints", frames, packets, self._keypoint_stage, self._stop, self._stage_error)
        capture.start()
        keypoints.start()
        try:
            with self._garbage_between_frames() as garbage:  # collected by this thread, after each send
                while not self._stop.is_set():
                    got, packet = packets.get(min(self.heartbeat_s, 0.05))
                    if got:
                        assert packet is not None  # a slot hands out what was put: packets
                        try:
                            self._model_stage(packet)
                        except Exception as exc:
                            self._stage_error("model", exc)
                            self._reset_state()
                        if garbage is not None:
                            garbage.collect()
                    elif packets.closed_and_empty:
                        break
                    elif time.monotonic() - (self._last_read or 0.0) > self.heartbeat_s:
                        self._heartbeat()  # no frame is coming (a slow detector is not a stall: frames still arrive)
        finally:
            self._stop.set()
            stuck = wait_all([capture, keypoints])
            if stuck:
                log.warning("pipeline threads still running at exit: %s", stuck)
        if self.stop_reason is None:
            self.stop_reason = "stopped"
        return self.stats()

    def _capture(self, out: Latest, max_frames: int | None) -> None:
        """Capture thread: read frames as they come and offer each to the keypoint stage (latest wins)."""
        read = 0
        try:
            while not self._stop.is_set():
                if max_frames is not None and read >= max_frames:
                    self.stop_reason = self.stop_reason or "max_frames"
                    break
                clock = StageClock()
                try:
                    frame = self.source.read(self.read_timeout)
                except Exception as exc:
                    self.metrics.fail("source", exc)
                    gave_up = self.source_errors.failed(exc)
                    if gave_up is not None:
                        self.stop_reason = gave_up
                        break
                    self._stop.wait(self.source_errors.backoff_s())
                    continue
                self.source_errors.ok()
                if frame is None:
                    if self.source.finished:
                        self.stop_reason = self.stop_reason or "source finished"
                        break
                    self.source_errors.note_status()
                    continue
                read += 1
                self._last_read = time.monotonic()
                clock.stop("read")
                self.metrics.timings.add("read", clock.wall["read"])
                self._cpu_timings.add("read", clock.cpu["read"])
                self.metrics.saw(frame.seq)
                out.put(frame, self._stop)
        finally:
            out.close()

    def _stage_error(self, stage: str, exc: Exception) -> None:
        self.metrics.n.errors["other"] += 1
        log.warning("%s stage failed: %s: %s", stage, type(exc).__name__, exc)

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        """`LiveLoop.stats()` plus people per frame and, when pipelined, what each slot dropped."""
        out = super().stats()
        counts = self._people_per_frame
        total = sum(counts.values())
        out["people"] = {
            "per_frame": {str(k): v for k, v in sorted(counts.items())},
            "max": max(counts) if counts else 0,
            "mean": (sum(k * v for k, v in counts.items()) / total) if total else 0.0,
            "max_people": getattr(self.people_tracker, "max_people", 1),
        }
        out["pipelined"] = self.pipelined
        out["stages_cpu_ms"] = self._cpu_timings.summary()
        if self._slots:
            out["slot_dropped"] = {name: slot.dropped for name, slot in self._slots.items()}
        return out


__all__ = ["KeypointPacket", "MultiPersonLoop"]
