"""What the loop tells its callers about each frame, after the send: `FrameReport` (``on_frame``), the
reprojection figure and `ModelStep` (``on_model_step``, the background adaptation's feed).

Why apart: both loops report the same records the same way, and none of it may delay the subscribers or stop
the loop (a failing callback is counted as "adaptation", never raised).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mocap.fitting.reprojection import reprojection_error  # the loop's reported figure, one definition
from stream.loop.stats import LoopStats
from stream.protocol import PoseMessage


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
    """One model step of a tracked person, as the background adaptation buffers it (references, no copies).

    x: (D,) input as the engine saw it; omega: (6,); kp2d: (21, 3) pixels + confidence; bbox: (3,); K: (3, 3);
    state_before / state_after: the engine state dicts ((1, ...) arrays) fed to and returned by the step;
    reproj: the frame's reprojection error / box height; generation: the weights' generation that made it.
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


def record_reprojection(stats: LoopStats, outputs: dict[str, np.ndarray], kp2d: np.ndarray | None,
                        K: np.ndarray) -> float | None:
    """The step's reprojection error / box height (`mocap.fitting.reprojection`), kept for ``stats()``; None
    without model keypoints or detections."""
    if "kp3d_cam" not in outputs or kp2d is None:
        return None
    reproj = reprojection_error(outputs["kp3d_cam"][0], kp2d, K)
    if reproj is not None:
        stats.reproj.append(reproj)
    return reproj


def feed_model_step(callback: Callable[[ModelStep], None] | None, stats: LoopStats, engine: Any, *, seq: int,
                    track: int, t_capture: float, x: np.ndarray, omega: np.ndarray, kp2d: np.ndarray,
                    bbox: Any, K: np.ndarray, state_before: Any, state_after: Any, reproj: float | None) -> None:
    """Hand the step to ``callback`` (``on_model_step``) as a `ModelStep` tagged with the engine's weights
    generation; its exceptions are counted as errors["adaptation"]."""
    if callback is None:
        return
    try:
        callback(ModelStep(seq=seq, track=track, t_capture=t_capture, x=x, omega=omega, kp2d=kp2d,
                           bbox=np.asarray(bbox), K=K, state_before=state_before, state_after=state_after,
                           reproj=reproj, generation=int(getattr(engine, "generation", 0))))
    except Exception as exc:
        stats.fail("adaptation", exc)


__all__ = ["FrameReport", "ModelStep", "feed_model_step", "record_reprojection"]
