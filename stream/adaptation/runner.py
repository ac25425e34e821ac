"""The work of one adaptation cycle, where it runs: a worker thread or a child process (one torch thread, low
priority). Weights cross the boundary as safetensors bytes (no pickle of tensors), and for engines that run ONNX
(onnxruntime, TensorRT refit) the runner also exports the candidate, so the live process only swaps.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from mocap.adapt.cycle import AdaptConfig, Adapter, Window, full_state_dict
from mocap.model import CausalMocap, load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSpec:
    """Everything a worker needs to build its runner (picklable: it is sent to a child process)."""

    checkpoint: str                    # the base model ("default" or a .safetensors path)
    config: AdaptConfig = field(default_factory=AdaptConfig)
    export_onnx: bool = False          # also return the candidate as ONNX bytes (onnxruntime / TensorRT engines)
    model_id: str = "adapted"          # written into exported ONNX metadata (the published label keeps it)
    nice: int = 10                     # added niceness of the worker (thread or process)
    idle_class: bool = True            # process mode, Linux: SCHED_IDLE, a core only when the live loop leaves it
                                       # (never a thread: starved while holding the GIL, it would stall the loop)
    rest: float = 0.0                  # seconds of sleep per second of optimizer step (2 = a 1/3 duty cycle)
    seed: int = 0


@dataclass
class CycleOutcome:
    decision: dict
    weights: bytes | None              # accepted candidate's adapted parameters (safetensors bytes)
    onnx: bytes | None                 # ... exported, when the spec asks for it
    seconds: float
    losses: list[float]


def weights_to_bytes(weights: dict[str, torch.Tensor]) -> bytes:
    return save_bytes({k: v.detach().contiguous().cpu() for k, v in weights.items()})


def weights_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return dict(load_bytes(data))


def lower_priority(nice: int, idle_class: bool = False) -> None:
    """Lower the calling thread's priority and use one torch thread (Linux: per thread; elsewhere the process').

    nice: added niceness. idle_class: also move it to SCHED_IDLE, where it runs only on a core no normal thread
    wants; a niced thread still takes a share of a busy core, and a woken engine step waits for that share.
    Threads and processes started afterwards inherit both."""
    torch.set_num_threads(1)
    tid = threading.get_native_id()
    if nice > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run at normal priority
            log.debug("could not lower the adaptation worker's priority: %s", exc)
    if idle_class and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0 = the calling thread
        except OSError as exc:
            log.debug("could not put the adaptation worker in the idle scheduling class: %s", exc)


class CycleRunner:
    """Holds the base model and an `Adapter`; runs cycles and exports, one at a time."""

    def __init__(self, spec: RunnerSpec, model: CausalMocap | None = None) -> None:
        self.spec = spec
        base = model if model is not None else load_model(spec.checkpoint)
        self.adapter = Adapter(base, spec.config, seed=spec.seed)
        self.cancel = threading.Event()  # set by a closing worker (thread mode): the cycle ends after its step
        self.adapter.stop_requested = self.cancel.is_set
        if spec.rest > 0:
            def rest(seconds: float) -> None:  # pause rest x the step's time (a cancel ends the pause)
                self.cancel.wait(spec.rest * seconds)

            self.adapter.after_step = rest

    def cycle(self, current: bytes, segments: Sequence[Window], holdout: Window) -> CycleOutcome:
        result = self.adapter.cycle(weights_from_bytes(current), segments, holdout)
        weights = onnx = None
        if result.weights is not None:
            weights = weights_to_bytes(result.weights)
            onnx = self.export(weights) if self.spec.export_onnx else None
        return CycleOutcome(result.decision.as_dict(), weights, onnx, result.seconds, result.train_loss)

    def export(self, weights: bytes) -> bytes:
        """The step graph with these adapted parameters as ONNX bytes (same signature as the running one)."""
        from export.onnx_export import export_onnx

        model = CausalMocap(self.adapter.pretrained.config)
        model.load_state_dict(full_state_dict(self.adapter.pretrained, weights_from_bytes(weights)), strict=True)
        with tempfile.TemporaryDirectory(prefix="livemocap-adapt-") as tmp:
            path = Path(tmp) / "candidate.onnx"
            export_onnx(model.eval(), path, self.spec.model_id)
            return path.read_bytes()


# ------------------------------------------------------------------ process entry points (module-level: picklable)
_RUNNER: CycleRunner | None = None


def init_process(spec: RunnerSpec) -> None:
    global _RUNNER
    lower_priority(spec.nice, spec.idle_class)  # the child's main thread, before it starts any other
    _RUNNER = CycleRunner(spec)


def process_cycle(current: bytes, segments: Sequence[Window], holdout: Window) -> CycleOutcome:
    assert _RUNNER is not None, "init_process did not run"
    return _RUNNER.cycle(current, segments, holdout)


def process_export(weights: bytes) -> bytes:
    assert _RUNNER is not None, "init_process did not run"
    return _RUNNER.export(weights)


__all__ = ["CycleOutcome", "CycleRunner", "RunnerSpec", "init_process", "lower_priority", "process_cycle",
           "process_export", "weights_from_bytes", "weights_to_bytes"]
