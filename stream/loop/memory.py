"""Model memory follows the person: the reset rule, and the followed person's engine state.

`ResetRule` is THE place the rule lives, for the single- and the multi-person loop alike:
- a new track id, or the tracker re-initialising the person, starts a fresh state (``initial_state``);
- ``lost_reset_frames`` frames in a row without the person drop it (a shorter loss steps the model on an
  all-masked input, as training's dropped detections do, so its clock and trajectory keep running);
- a stall (no frame at all) longer than those frames drops it too;
- any failure of the step or of its outputs drops it (the next frame starts fresh; never a wrong pose).
The first message of a fresh state has status ``init``. `Person` applies the loss part of it per frame (both
loops keep one per followed person); what a drop clears is `PersonMemory.reset` here and
`MultiPersonLoop._forget` (`stream/pipeline_loop.py`) for everyone in view. The engine's inputs, the outputs
checked before a step counts (`CHECKED_OUTPUTS`) and the frame-interval feature are defined here for both loops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol

import numpy as np

from mocap.fitting import RefineConfig, TrackState, refine_step
from mocap.smoothing import OutputSmoother, SmoothingConfig
from mocap.model.state import OMEGA_DIM, X_KEYPOINTS, frame_interval_feature
from stream.loop.stats import LoopStats

Arrays = dict[str, np.ndarray]
#: Outputs that must be finite for a person's step to count (the message builder checks the rest); both loops'.
CHECKED_OUTPUTS: tuple[str, ...] = ("pose_rotmat", "cam_trans", "root_trans")


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


@dataclass(frozen=True)
class ResetRule:
    """When a person's model memory is started afresh or dropped (see the module doc)."""

    lost_reset_frames: int = 15

    def __post_init__(self) -> None:
        if self.lost_reset_frames < 1:
            raise ValueError(f"lost_reset_frames must be >= 1, got {self.lost_reset_frames}")
        object.__setattr__(self, "lost_reset_frames", int(self.lost_reset_frames))

    def fresh_needed(self, has_memory: bool, tracker_status: str, same_track: bool = True) -> bool:
        """A seen person: start a fresh state? (none yet, the tracker re-initialised them, or another id)."""
        return not has_memory or tracker_status == "init" or not same_track

    def drop_after_loss(self, lost_run: int) -> bool:
        """``lost_run`` frames in a row without the person: drop their memory?"""
        return lost_run >= self.lost_reset_frames

    def stalled(self, seconds: float, fps: float) -> bool:
        """No frame for ``seconds``: is that longer than the loss the memory survives?"""
        return seconds > self.lost_reset_frames / max(fps, 1)


def engine_inputs(x: np.ndarray, omega: np.ndarray) -> dict[str, np.ndarray]:
    """The engine's inputs for B people: x (B, D) and one camera's omega (OMEGA_DIM,) or (B, OMEGA_DIM), float32."""
    x = np.asarray(x, np.float32)
    om = np.asarray(omega, np.float32).reshape(-1, OMEGA_DIM)
    return {"x": x, "omega": om if om.shape[0] == x.shape[0] else np.repeat(om, x.shape[0], axis=0)}


def finite_rows(outputs: Mapping[str, np.ndarray], batch: int) -> np.ndarray:
    """(B,) bool: which people's CHECKED_OUTPUTS are all finite (a missing one is a KeyError: not an engine)."""
    ok = np.ones(batch, bool)
    for k in CHECKED_OUTPUTS:
        ok &= np.isfinite(np.asarray(outputs[k]).reshape(batch, -1)).all(axis=1)
    return ok


def masked_input(last_x: np.ndarray) -> np.ndarray:
    """The input of a briefly lost person: their last box, every keypoint masked (a dropped detection)."""
    masked = last_x.copy()
    masked[X_KEYPOINTS] = 0.0
    return masked


def with_frame_interval(x: np.ndarray, width: int, dt: float) -> np.ndarray:
    """x (66,) -> (width,) with the frame-interval feature when the model takes one (mocap/model/state.py),
    ``dt`` clamped to [1/120, 0.2] s so a stall or a long loss does not read as a huge jump."""
    if width <= x.shape[0]:
        return x
    feature = np.float32(frame_interval_feature(min(max(dt, 1.0 / 120.0), 0.2)))
    return np.concatenate((x, np.full(width - x.shape[0], feature, np.float32)))


def interval_input(engine: Any, x: np.ndarray, last: float | None, now: float | None, fps: float | None
                   ) -> np.ndarray:
    """x with the frame-interval feature the engine takes (if it does): ``now - last`` seconds on the loop's
    clock since that person's previous step, or one source frame (1 / fps, 30 fps unknown) for a first step."""
    width = int(getattr(engine, "input_shapes", {}).get("x", (x.shape[0],))[0])
    dt = 1.0 / max(fps or 30.0, 1.0) if last is None or now is None else now - last
    return with_frame_interval(x, width, dt)


@dataclass
class Person:
    """What a loop keeps per followed person besides the engine state, and the reset rule's per-frame verdict;
    the single-person `PersonMemory` and the multi-person loop both keep one per person. A fresh state gets a
    new `Person`."""

    refine: TrackState = field(default_factory=TrackState)   # test-time refinement's per-track memory
    fresh: bool = True                      # the next pose comes from a fresh state: publish it as "init"
    lost_run: int = 0                       # frames in a row without the person
    last_x: np.ndarray | None = None        # their last input (66,), the box a short loss keeps
    last_step_time: float | None = None     # their previous step's time on the loop's clock
    smoother: OutputSmoother | None = None  # One-Euro smoothing of what is published (made on first use)
    last_smoothed_time: float | None = None  # when their last smoothed pose was taken, on the loop's clock

    def seen(self, x: np.ndarray) -> None:
        self.lost_run, self.last_x = 0, x

    def unseen(self, rule: ResetRule) -> Literal["drop", "masked", "wait"]:
        """One more frame without them: drop the memory, step it on a masked input, or (no input yet) wait."""
        self.lost_run += 1
        if rule.drop_after_loss(self.lost_run):
            return "drop"
        return "masked" if self.last_x is not None else "wait"

    def smooth(self, outputs: Arrays, now: float, config: SmoothingConfig) -> Arrays:
        """Their outputs as published: One-Euro smoothed over the time since their last published pose
        (`mocap.smoothing`; never fed back into the engine or refinement state)."""
        if self.smoother is None:
            self.smoother = OutputSmoother(config)
        dt = None if self.last_smoothed_time is None else now - self.last_smoothed_time
        self.last_smoothed_time = now
        return self.smoother(outputs, dt)

    def interval(self, engine: Any, x: np.ndarray, now: float | None, fps: float | None) -> np.ndarray:
        """x with the frame-interval feature since this person's previous step (`interval_input`)."""
        x = interval_input(engine, x, self.last_step_time, now, fps)
        self.last_step_time = now
        return x


class PersonMemory:
    """The followed person's engine state (batch 1) and what the next step needs; applies `ResetRule`.

    fps: the source's frame rate (callable: read when needed), the frame interval of a first step.
    """

    def __init__(self, engine: EngineLike, rule: ResetRule, stats: LoopStats,
                 fps: Callable[[], float | None]) -> None:
        self.engine, self.rule, self.stats, self.fps = engine, rule, stats, fps
        self.state: Arrays | None = None
        self.track: int | None = None       # whose state it is
        self.person: Person | None = None   # their bookkeeping (None while nobody is followed)
        self.fed_x: np.ndarray | None = None            # the last x handed to the engine (with its interval)
        self.last_track = 0                             # the id messages carry while nobody is followed

    def start(self, track: int) -> None:
        self.state = self.engine.initial_state(1)
        self.track = track
        self.person = Person()
        self.stats.new_memory(track)
        self.last_track = track

    def reset(self) -> None:
        self.state = None
        self.track = None
        self.person = None

    def advance(self, x: np.ndarray | None, track: int, tracker_status: str, omega: np.ndarray, now: float | None
                ) -> tuple[Arrays | None, bool, Arrays | None]:
        """One frame: x (66,) of the seen person, or None (not seen / unusable) -> (outputs or None, whether a
        memory was dropped or replaced, the state the step started from)."""
        if x is None:
            if self.state is None or self.person is None:
                return None, False, None
            verdict = self.person.unseen(self.rule)
            if verdict == "drop":
                self.reset()
                return None, True, None
            if verdict == "masked" and self.person.last_x is not None:
                self.step(masked_input(self.person.last_x), omega, now)  # publishes nothing as a pose
            return None, False, None
        reset = False
        if self.rule.fresh_needed(self.state is not None, tracker_status, track == self.track):
            reset = self.state is not None
            self.start(track)
        assert self.person is not None
        self.person.seen(x)
        before = self.state
        return self.step(x, omega, now), reset, before

    def step(self, x: np.ndarray, omega: np.ndarray, now: float | None) -> Arrays | None:
        """The engine step on the current state; a failure (raised, or non-finite outputs) drops the memory."""
        assert self.state is not None and self.person is not None
        x = self.person.interval(self.engine, x, now, self.fps())
        self.fed_x = x  # what the engine really saw (the adaptation trains on it)
        try:
            outputs, state = self.engine.step(engine_inputs(x[None], omega), self.state)
            if not finite_rows(outputs, 1)[0]:
                raise FloatingPointError(f"engine produced non-finite {list(CHECKED_OUTPUTS)}")
        except Exception as exc:
            self.stats.fail("engine", exc)
            self.reset()
            return None
        self.state = state
        return outputs

    def smooth(self, outputs: Arrays, now: float, config: SmoothingConfig) -> Arrays:
        """The followed person's outputs as published (`Person.smooth`); errors publish them unsmoothed."""
        assert self.person is not None  # outputs come from a followed person's step
        try:
            return self.person.smooth(outputs, now, config)
        except Exception as exc:
            self.stats.fail("smooth", exc)
            return outputs

    def refine(self, outputs: Arrays, state_before: Any, kp2d: np.ndarray, K: np.ndarray,
               config: RefineConfig) -> Arrays:
        """The step's outputs fitted to the frame's keypoints; the engine state then carries the refined feet
        and root (so the next step integrates the trajectory from the refined body). Errors keep the network's."""
        try:
            fps = self.fps()
            assert self.person is not None  # outputs come from a followed person's step
            res = refine_step(outputs, state_before, self.state or {}, kp2d, K, self.person.refine, config,
                              dt=1.0 / fps if fps and fps > 0 else None)
        except Exception as exc:
            self.stats.fail("refine", exc)
            return outputs
        if res.refined is not None and self.state is not None:
            self.state = res.state
        return res.outputs


__all__ = ["CHECKED_OUTPUTS", "EngineLike", "Person", "PersonMemory", "ResetRule", "engine_inputs", "finite_rows",
           "interval_input", "masked_input", "with_frame_interval"]
