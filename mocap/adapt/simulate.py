"""The live adaptation, replayed causally on one clip (what `python -m mocap.eval --adapt` measures).

Frame by frame, one `step` as in the live loop; every `every` frames a cycle runs on the frames seen so far
(a bounded buffer, the newest `holdout` frames kept for the gate), and an accepted candidate serves the frames
that follow (in the live product the cycle runs in the background, so its result lands a little later: the
replay is the optimistic bound on latency, not on accuracy, since the gate sees only past frames either way).
A regression of the per-frame reprojection error after a swap rolls back to the previous generation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..fitting import RefineConfig, TrackState
from ..model import CausalMocap
from ..replay import frame_dt, replay_step, sample_intrinsics
from .cycle import AdaptConfig, Adapter, Window, apply_weights, split_for_cycle
from .losses import keypoint_targets, reprojection_residual
from .rollback import RegressionMonitor, WeightHistory


@dataclass(frozen=True)
class ReplayConfig:
    every: int = 90            # frames between cycles (3 s at 30 fps)
    buffer: int = 600          # frames kept (the live ring buffer's size)
    rollback_frames: int = 45  # frames after a swap before the regression verdict
    rollback_tolerance: float = 0.15


def frame_reprojection(out: dict[str, torch.Tensor], x: torch.Tensor, conf: torch.Tensor) -> float | None:
    """Median 2D error (bbox half-size units) of one frame's confident keypoints; None with fewer than 4."""
    res = reprojection_residual(out, x)[0]
    _, w = keypoint_targets(x, conf)
    ok = w[0] > 0
    return float(res[ok].median()) if int(ok.sum()) >= 4 else None


def run_adaptive(model: CausalMocap, sample: dict[str, torch.Tensor], adapter: Adapter,
                 config: ReplayConfig | None = None, refine: "RefineConfig | None" = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """sample: one clip's (T, ...) tensors (x, omega, kp2d; focal, principal with `refine`). Returns
    run_model_causally-like (T, ...) outputs and a log (cycles, accepted, rollbacks, generation per frame, seconds
    spent adapting). With `refine`, each step's output is refined to the frame's keypoints as in the live loop
    (mocap/fitting; its state fed back); the adaptation itself always learns from the network's raw output.
    MODEL is not modified."""
    cfg = config or ReplayConfig()
    live = copy.deepcopy(model).eval()
    history = WeightHistory(adapter.initial_weights())
    monitor = RegressionMonitor(cfg.rollback_frames, cfg.rollback_tolerance)
    x_all = sample["x"][:, : model.config.input_dim].float()  # a model without the frame-interval column: 66
    omega_all = sample["omega"].float()
    conf_all = sample["kp2d"][..., 2].float()
    n = x_all.shape[0]
    state = live.initial_state(1)
    track = TrackState()
    K = None if refine is None else sample_intrinsics(sample)
    frames: list[dict[str, np.ndarray]] = []
    outs: list[dict[str, torch.Tensor]] = []
    log: dict[str, Any] = {"cycles": 0, "accepted": 0, "rollbacks": 0, "adapt_s": 0.0, "generation": np.zeros(n, np.int32),
           "decisions": []}
    for t in range(n):
        x, omega = x_all[t:t + 1], omega_all[t:t + 1]
        frames.append({"x": x[0].numpy(), "omega": omega[0].numpy(), "conf": conf_all[t].numpy(),
                       **{f"state:{k}": v[0].numpy().copy() for k, v in state.items()}})
        out, state = replay_step(live, x, omega, state, refine, sample["kp2d"][t].numpy(), K, track, frame_dt(sample, t))
        outs.append(out)
        log["generation"][t] = history.current.number
        monitor.record(frame_reprojection({"kp3d_cam": out["kp3d_cam"][:, None]}, x[:, None], conf_all[t:t + 1, None]))
        if monitor.verdict() == "regressed" and history.can_roll_back:
            apply_weights(live, history.roll_back().weights)
            log["rollbacks"] += 1
        if (t + 1) % cfg.every == 0:
            recent = frames[-cfg.buffer:]
            window = Window(np.stack([f["x"] for f in recent]), np.stack([f["omega"] for f in recent]),
                            np.stack([f["conf"] for f in recent]),
                            {k[6:]: np.stack([f[k] for f in recent]) for k in recent[0] if k.startswith("state:")})
            split = split_for_cycle([window], adapter.config)
            if split is None:
                continue
            result = adapter.cycle(history.current.weights, *split)
            log["cycles"] += 1
            log["adapt_s"] += result.seconds
            log["decisions"].append(result.decision.as_dict())
            if result.weights is not None:
                apply_weights(live, history.accept(result.weights).weights)
                log["accepted"] += 1
                monitor.swapped()
    outputs = {k: torch.cat([o[k] for o in outs]).numpy() for k in outs[0]}
    return outputs, log


class EvalAdaptation:
    """`mocap.eval --adapt`: each clip replayed with adaptation from the pretrained weights (a fresh session per
    clip, no profile carried over); the logs add up to the report's `adapt` entry."""

    def __init__(self, config: AdaptConfig | None = None, replay: ReplayConfig | None = None, seed: int = 0) -> None:
        self.config, self.replay, self.seed = config or AdaptConfig(), replay or ReplayConfig(), seed
        self.logs: list[dict] = []

    def run(self, model: CausalMocap, sample: dict[str, torch.Tensor],
            refine: "RefineConfig | None" = None) -> dict[str, np.ndarray]:
        outputs, log = run_adaptive(model, sample, Adapter(model, self.config, seed=self.seed + len(self.logs)),
                                    self.replay, refine)
        self.logs.append(log)
        return outputs

    def summary(self) -> dict:
        frames = sum(len(log["generation"]) for log in self.logs)
        adapted = sum(int((log["generation"] > 0).sum()) for log in self.logs)
        return {
            "cycles": sum(log["cycles"] for log in self.logs),
            "accepted": sum(log["accepted"] for log in self.logs),
            "rollbacks": sum(log["rollbacks"] for log in self.logs),
            "adapted_frame_share": round(adapted / max(frames, 1), 3),
            "adapt_s": round(sum(log["adapt_s"] for log in self.logs), 1),
            "every": self.replay.every, "steps": self.config.steps, "params": list(self.config.params),
        }


__all__ = ["EvalAdaptation", "ReplayConfig", "frame_reprojection", "run_adaptive"]
