"""The loop's messages: a person's pose from the engine's outputs, or a status without a pose.

Why apart from `stream.pose_frame` (the arrays -> fields conversion): this is the loop's policy around it, shared
by the single- and multi-person loops: the model label of the weights that made the pose, "init" for the first
pose of a fresh memory, never a wrong pose (outputs the conversion rejects, e.g. NaN betas, become an "init"
without a pose, and the caller drops that memory), and every message counted by status.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from stream.loop.stats import LoopStats
from stream.pose_frame import model_label, pose_message, status_message
from stream.protocol import PoseMessage

Arrays = Mapping[str, np.ndarray]


class Messages:
    """Builds (and counts, in ``stats.n.statuses``) the messages of the engine behind ``engine``."""

    def __init__(self, engine: Any, stats: LoopStats) -> None:
        self.engine, self.stats = engine, stats

    def model(self) -> str:
        """The label of the weights now in the engine (it changes when the adaptation swaps them)."""
        return model_label(self.engine.model_id, getattr(self.engine, "generation", 0))

    def status(self, status: str, *, seq: int, track: int, t_capture: float, model: str | None = None,
               heartbeat: bool = False) -> PoseMessage:
        """"lost" (nobody usable, or no frame: a ``heartbeat``) or "init" (the memory restarts), no pose."""
        self.stats.n.statuses[status] += 1
        msg = status_message(status, seq=seq, track=int(track), t_capture=t_capture,
                             model=self.model() if model is None else model)
        if heartbeat:
            msg.heartbeat = True  # not a frame: readers leave it out of latency and seq-gap counts
        return msg

    def pose(self, outputs: Arrays, *, seq: int, track: int, t_capture: float, kp2d: np.ndarray | None,
             fresh: bool, error_track: int, model: str | None = None,
             prepare: Callable[[Arrays], Arrays] | None = None) -> tuple[PoseMessage, bool]:
        """(the pose message, True); or, when the outputs cannot be sent, (an "init" status on ``error_track``,
        False): the caller then drops the memory. ``prepare`` maps the outputs first (e.g. into a shared world
        frame); its ValueErrors count as the outputs'."""
        model = self.model() if model is None else model
        status = "init" if fresh else "tracking"
        try:
            msg = pose_message(prepare(outputs) if prepare is not None else outputs, seq=seq, track=int(track),
                               t_capture=t_capture, kp2d=kp2d, model=model, status=status)
        except ValueError as exc:  # e.g. NaN betas: never publish a wrong pose
            self.stats.fail("engine output", exc)
            return self.status("init", seq=seq, track=error_track, t_capture=t_capture, model=model), False
        self.stats.n.statuses[status] += 1
        return msg, True


__all__ = ["Messages"]
