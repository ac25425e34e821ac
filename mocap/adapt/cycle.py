"""One adaptation cycle: a few optimizer steps of self-supervised losses on a copy of the model, then a gate
that accepts the candidate only if it explains held-back frames (not used by those steps) better without
making the motion less plausible.

Only a subset of the parameters moves (by default the motion decoder: the encoder's memory and the trajectory
decoder keep their meaning, so a swapped-in candidate continues a running stream's state). Weights travel as
{parameter name: tensor} of that subset; `full_state_dict` completes them with the pretrained rest.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..model import CausalMocap
from ..rotations import rotation_angle
from .losses import AdaptWeights, anchor_loss, gate_metrics, self_supervised_losses, weighted_total

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Window:
    """Consecutive frames of one tracked person under one model state.

    x: (T, D) normalized inputs (D = the model config's input_dim); omega: (T, 6); conf: (T, 21) detector
    confidences; state: None (fresh state at frame 0) or {state name: (T, ...)} the state *before* each frame.
    """

    x: np.ndarray
    omega: np.ndarray
    conf: np.ndarray
    state: Mapping[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def slice(self, start: int, stop: int) -> "Window":
        state = None if self.state is None else {k: v[start:stop] for k, v in self.state.items()}
        return Window(self.x[start:stop], self.omega[start:stop], self.conf[start:stop], state)


@dataclass(frozen=True)
class AdaptConfig:
    """What one cycle does. The defaults were chosen on the shifted protocol (BENCHMARKS.md, issue 11)."""

    params: tuple[str, ...] = ("motion_decoder.",)   # prefixes of the parameters that adapt
    steps: int = 16
    lr: float = 3e-4
    window: int = 48              # frames per training window
    batch: int = 4                # windows per step
    holdout: int = 60             # most recent frames kept out of the steps, for the gate
    min_train_frames: int = 60    # fewer frames before the held-back window: no cycle
    weights: AdaptWeights = field(default_factory=AdaptWeights)
    min_gain: float = 0.02        # the candidate must cut held-back reprojection error by this fraction
    plausibility_tol: float = 0.10  # ... and may not raise plausibility by more than this fraction
    max_prior_deg: float = 15.0   # ... nor move local joint angles further than this (mean) from the pretrained
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.window < 3 or self.batch < 1 or self.holdout < 3:
            raise ValueError(f"adapt config needs steps >= 1, window >= 3, batch >= 1, holdout >= 3: {self}")


@dataclass
class GateDecision:
    accepted: bool
    reason: str
    current: dict[str, float]
    candidate: dict[str, float]

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "current": self.current, "candidate": self.candidate}


@dataclass
class CycleResult:
    decision: GateDecision
    weights: Weights | None       # the candidate's adapted subset when accepted
    seconds: float
    train_loss: list[float]


def adapted_names(model: CausalMocap, prefixes: Sequence[str]) -> list[str]:
    names = [n for n, _ in model.named_parameters() if any(n.startswith(p) for p in prefixes)]
    if not names:
        raise ValueError(f"no model parameter starts with any of {list(prefixes)}")
    return names


def full_state_dict(pretrained: CausalMocap, weights: Mapping[str, torch.Tensor]) -> Weights:
    """The pretrained state dict with the adapted subset substituted (what `engine.swap` of torch takes)."""
    sd = {k: v.detach().clone() for k, v in pretrained.state_dict().items()}
    for name, value in weights.items():
        if name not in sd or sd[name].shape != value.shape:
            raise ValueError(f"adapted weight {name!r} {tuple(value.shape)} does not fit the model")
        sd[name] = value.detach().to(sd[name].dtype).clone()
    return sd


def apply_weights(model: CausalMocap, weights: Mapping[str, torch.Tensor]) -> None:
    """Copy an adapted subset into MODEL's parameters in place (ValueError for a name or shape it lacks)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            if name not in params or params[name].shape != value.shape:
                raise ValueError(f"adapted weight {name!r} {tuple(value.shape)} does not fit the model")
            params[name].copy_(value)


def gate(current: Mapping[str, float], candidate: Mapping[str, float], config: AdaptConfig) -> GateDecision:
    """Accept only a clear reprojection gain with plausibility kept and the pose prior respected."""
    cur, cand = dict(current), dict(candidate)
    finite = all(np.isfinite(v) for v in cand.values())
    if not finite:
        return GateDecision(False, "candidate output is not finite", cur, cand)
    if not cand["reproj"] < cur["reproj"] * (1.0 - config.min_gain):
        return GateDecision(False, f"held-back reprojection {cand['reproj']:.4f} not below "
                                   f"{cur['reproj']:.4f} x (1 - {config.min_gain:g})", cur, cand)
    if cand["plausibility"] > cur["plausibility"] * (1.0 + config.plausibility_tol) + 1e-6:
        return GateDecision(False, f"plausibility worsens {cur['plausibility']:.4f} -> {cand['plausibility']:.4f}",
                            cur, cand)
    if cand.get("prior_deg", 0.0) > config.max_prior_deg:
        return GateDecision(False, f"pose drifts {cand['prior_deg']:.1f} deg from the pretrained prior", cur, cand)
    return GateDecision(True, f"held-back reprojection {cur['reproj']:.4f} -> {cand['reproj']:.4f}", cur, cand)


class Adapter:
    """Runs cycles against one pretrained model (never modified); thread-confined: one cycle at a time."""

    def __init__(self, pretrained: CausalMocap, config: AdaptConfig | None = None, seed: int = 0) -> None:
        self.config = config or AdaptConfig()
        self.pretrained = copy.deepcopy(pretrained).cpu().eval()
        for p in self.pretrained.parameters():
            p.requires_grad_(False)
        self.names = adapted_names(self.pretrained, self.config.params)
        params = dict(self.pretrained.named_parameters())
        self.anchor: Weights = {n: params[n].detach().clone() for n in self.names}
        self._work = copy.deepcopy(self.pretrained)     # scratch model the steps train
        self._eval = copy.deepcopy(self.pretrained)     # scratch model for scoring current / candidate
        self._rng = np.random.default_rng(seed)
        #: Polled between optimizer steps; True ends the cycle early (a closing worker must not wait for it).
        self.stop_requested: Callable[[], bool] = lambda: False
        #: Called after each optimizer step with its duration (s); a live worker sleeps here to leave the CPU.
        self.after_step: Callable[[float], None] = lambda seconds: None

    # ------------------------------------------------------------------ weights
    def initial_weights(self) -> Weights:
        return {n: v.clone() for n, v in self.anchor.items()}

    def _load(self, model: CausalMocap, weights: Mapping[str, torch.Tensor]) -> None:
        apply_weights(model, {n: weights[n] if n in weights else self.anchor[n] for n in self.names})

    # ------------------------------------------------------------------ data
    def _batch(self, windows: Sequence[Window], device: str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Stack equal-length windows: x (B, T, D), omega (B, T, 6), conf (B, T, 21), state (B, ...)."""
        x = torch.as_tensor(np.stack([w.x for w in windows]), dtype=torch.float32, device=device)
        omega = torch.as_tensor(np.stack([w.omega for w in windows]), dtype=torch.float32, device=device)
        conf = torch.as_tensor(np.stack([w.conf for w in windows]), dtype=torch.float32, device=device)
        state = self.pretrained.initial_state(len(windows), device)
        for i, w in enumerate(windows):
            if w.state is not None:
                for name in state:
                    if name in w.state:
                        state[name][i] = torch.as_tensor(np.asarray(w.state[name][0]).reshape(state[name].shape[1:]))
        return x, omega, conf, state

    def sample_windows(self, segments: Sequence[Window]) -> list[Window]:
        """`batch` random training windows of `window` frames (shorter segments: their whole length, all
        windows of a step cut to the shortest)."""
        usable = [s for s in segments if len(s) >= 3]
        if not usable:
            raise ValueError("no segment has 3 frames to adapt on")
        lengths = np.array([len(s) for s in usable], dtype=np.float64)
        length = int(min(self.config.window, lengths.max()))
        pool = [s for s in usable if len(s) >= length]
        weights = np.array([len(s) - length + 1 for s in pool], dtype=np.float64)
        out = []
        for _ in range(self.config.batch):
            seg = pool[int(self._rng.choice(len(pool), p=weights / weights.sum()))]
            start = int(self._rng.integers(0, len(seg) - length + 1))
            out.append(seg.slice(start, start + length))
        return out

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, weights: Mapping[str, torch.Tensor], window: Window) -> dict[str, float]:
        """Gate metrics of WEIGHTS on one window, plus `prior_deg`: mean local joint angle from the pretrained."""
        self._load(self._eval, weights)
        x, omega, conf, state = self._batch([window])
        out, _ = self._eval.forward_sequence(x, omega, state)
        ref, _ = self.pretrained.forward_sequence(x, omega, state)
        metrics = gate_metrics(out, x, conf, self.pretrained.config.contact_threshold)
        rel = ref["pose_cam_rotmat"][..., 1:, :, :].transpose(-1, -2) @ out["pose_cam_rotmat"][..., 1:, :, :]
        metrics["prior_deg"] = float(torch.rad2deg(rotation_angle(rel)).mean())
        return metrics

    # ------------------------------------------------------------------ one cycle
    def train(self, weights: Mapping[str, torch.Tensor], segments: Sequence[Window]) -> tuple[Weights, list[float]]:
        """`steps` Adam steps from WEIGHTS on windows sampled from SEGMENTS; returns the candidate and losses."""
        cfg = self.config
        self._load(self._work, weights)
        self._work.train(False)  # no dropout/batch-norm in the model; keep eval semantics
        params = dict(self._work.named_parameters())
        trained = {n: params[n] for n in self.names}
        for n, p in params.items():
            p.requires_grad_(n in trained)
        opt = torch.optim.Adam(list(trained.values()), lr=cfg.lr)
        losses: list[float] = []
        for _ in range(cfg.steps):
            if self.stop_requested():
                break
            t_step = time.perf_counter()
            x, omega, conf, state = self._batch(self.sample_windows(segments))
            with torch.no_grad():
                ref, _ = self.pretrained.forward_sequence(x, omega, state)
            out, _ = self._work.forward_sequence(x, omega, state)
            terms = self_supervised_losses(out, x, conf, ref, self.pretrained.config.contact_threshold,
                                           cfg.weights.reproj_sigma)
            loss = weighted_total(terms, cfg.weights) + cfg.weights.anchor * anchor_loss(trained, self.anchor)
            if not torch.isfinite(loss):
                break  # never step on a non-finite loss; what was learnt so far still goes to the gate
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trained.values()), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            self.after_step(time.perf_counter() - t_step)
        for p in params.values():
            p.requires_grad_(False)
        return {n: p.detach().clone() for n, p in trained.items()}, losses

    def cycle(self, current: Mapping[str, torch.Tensor], segments: Sequence[Window], holdout: Window) -> CycleResult:
        """Train a candidate from CURRENT on SEGMENTS and gate it against CURRENT on HOLDOUT."""
        t0 = time.perf_counter()
        candidate, losses = self.train(current, segments)
        if self.stop_requested():
            return CycleResult(GateDecision(False, "cancelled", {}, {}), None, time.perf_counter() - t0, losses)
        return CycleResult(*self.judge(current, candidate, holdout), time.perf_counter() - t0, losses)

    def judge(self, current: Mapping[str, torch.Tensor], candidate: Mapping[str, torch.Tensor], holdout: Window
              ) -> tuple[GateDecision, Weights | None]:
        """The gate's decision on HOLDOUT, and the candidate's weights when it is accepted."""
        decision = gate(self.score(current, holdout), self.score(candidate, holdout), self.config)
        return decision, (dict(candidate) if decision.accepted else None)


def split_for_cycle(segments: Sequence[Window], config: AdaptConfig) -> tuple[list[Window], Window] | None:
    """The newest `holdout` frames of the newest segment for the gate, everything before them for training;
    None when there is not yet enough of either."""
    if not segments or len(segments[-1]) < config.holdout:
        return None
    last = segments[-1]
    cut = len(last) - config.holdout
    train = [s for s in segments[:-1]] + ([last.slice(0, cut)] if cut >= 3 else [])
    if sum(len(s) for s in train) < config.min_train_frames:
        return None
    return train, last.slice(cut, len(last))


__all__ = ["AdaptConfig", "Adapter", "CycleResult", "GateDecision", "Window", "Weights", "adapted_names",
           "apply_weights", "full_state_dict", "gate", "split_for_cycle"]
