"""Background adaptation of the running engine: buffer -> cycle (worker thread or process) -> gate -> swap, with
rollback on a live regression and the generation published in every message's `model` field.

The frame path touches this module only through `on_step` (an O(1) append and one number into the regression
monitor). Everything else runs on the manager thread, which waits on the worker: a cycle never delays a frame,
except for what the CPU itself shares (measured in BENCHMARKS.md, "Background adaptation (issue 11)").
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from concurrent.futures.process import BrokenProcessPool
import logging
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import torch

from mocap.adapt.cycle import full_state_dict, split_for_cycle
from mocap.adapt.rollback import RegressionMonitor, WeightHistory
from mocap.model import CausalMocap

from .buffer import BufferedStep, StepRing, windows
from .profile import ProfileError, ProfileStore
from .runner import (CycleOutcome, CycleRunner, RunnerSpec, init_process, lower_priority, process_cycle,
                     process_export, weights_from_bytes, weights_to_bytes)

log = logging.getLogger(__name__)

Mode = Literal["thread", "process"]
SWAPPABLE = ("torch", "onnxruntime", "tensorrt")


class AdaptationWorker:
    """Adapts ENGINE's weights in the background from the steps handed to `on_step`.

    Args:
        engine: a running `engines.Engine` (torch, onnxruntime or TensorRT: anything with `swap`).
        base: the base model the engine runs (`mocap.model.load_model` of the same checkpoint).
        spec: what the worker builds (checkpoint, AdaptConfig, ...); `export_onnx` is set from the engine.
        mode: "thread" (a low-priority thread of this process) or "process" (a niced child process).
        interval_s: pause between cycles.
        profile / base_sha256: where adapted weights persist, and the base weights' hash they must match.
        rollback_frames / rollback_tolerance: live frames after a swap before the regression verdict, and the
            relative rise of the median reprojection error that counts as a regression.
    """

    def __init__(self, engine: Any, base: CausalMocap, spec: RunnerSpec, *, mode: Mode = "thread",
                 interval_s: float = 3.0, ring: StepRing | None = None, profile: ProfileStore | None = None,
                 base_sha256: str = "", rollback_frames: int = 60, rollback_tolerance: float = 0.15) -> None:
        if getattr(engine, "name", None) not in SWAPPABLE:
            raise ValueError(f"adaptation needs a {'/'.join(SWAPPABLE)} engine, got {getattr(engine, 'name', engine)}")
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.engine, self.mode, self.interval_s = engine, mode, float(interval_s)
        self.spec = dataclasses.replace(spec, export_onnx=engine.name != "torch", model_id=engine.model_id)
        self.config = spec.config
        self.ring = ring or StepRing()
        self.profile, self.base_sha256 = profile, base_sha256
        self._base = base
        self._runner = CycleRunner(self.spec, base) if mode == "thread" else None
        self._history = WeightHistory(self._runner.adapter.initial_weights() if self._runner
                                      else _subset(base, self.spec.config.params))
        self._payloads: dict[int, Any] = {}  # generation -> what engine.swap takes (cached exports)
        self._monitor = RegressionMonitor(rollback_frames, rollback_tolerance)
        self._monitor_lock = threading.Lock()
        self._rollback = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: cf.Executor | None = None
        self.counts = {"cycles": 0, "accepted": 0, "rejected": 0, "rollbacks": 0, "kept": 0, "skipped": 0,
                       "errors": 0}
        self.cycle_s: list[float] = []
        self.last_decision: dict | None = None
        self.events: list[dict] = []       # (time, kind, generation, detail): what happened, for plots and tests

    # ------------------------------------------------------------------ frame path
    def on_step(self, step: BufferedStep) -> None:
        """Called by the live loop after each published pose (never blocks: append + one monitor update)."""
        self.ring.append(step)
        with self._monitor_lock:
            self._monitor.record(step.reproj)
            verdict = self._monitor.verdict()
        if verdict == "regressed":
            self._rollback.set()
            self._wake.set()
        elif verdict == "kept":
            self.counts["kept"] += 1

    @property
    def generation(self) -> int:
        """The generation the engine runs (and every message's `model` label carries)."""
        return int(getattr(self.engine, "generation", self._history.current.number))

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "AdaptationWorker":
        """Load the profile (if any) and start cycling every `interval_s` on the manager thread."""
        if self._thread is not None:
            return self
        self._ensure_executor()
        self._thread = threading.Thread(target=self._run, name="adapt-manager", daemon=True)
        self._thread.start()
        return self

    def run_once(self) -> None:
        """One manager iteration on the calling thread (a pending rollback, else one cycle); for tests and
        benchmarks that want the worker's decisions without its timer."""
        self._ensure_executor()
        if self._rollback.is_set():
            self._do_rollback()
        else:
            self._one_cycle()

    def _ensure_executor(self) -> cf.Executor:
        if self._executor is None:
            if self.mode == "thread":
                self._executor = cf.ThreadPoolExecutor(1, thread_name_prefix="adapt-worker",
                                                       initializer=lower_priority,
                                                       initargs=(self.spec.nice, False))
            else:
                self._executor = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                        initializer=init_process, initargs=(self.spec,))
        return self._executor

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the cycle in flight (its result is dropped) and release the worker (the profile is saved at
        every accepted generation and rollback, so nothing is pending here)."""
        self._stop.set()
        self._wake.set()
        if self._runner is not None:
            self._runner.cancel.set()        # thread mode: the cycle stops after its current optimizer step
        elif self._executor is not None:     # process mode: the child is ended, not waited for
            children = list(getattr(self._executor, "_processes", {}).values())
            self._executor.shutdown(wait=False, cancel_futures=True)
            for child in children:
                child.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "AdaptationWorker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ manager thread
    def _run(self) -> None:
        try:
            self.load_profile()
        except Exception as exc:  # a broken profile must not stop the live loop: start from the base model
            self._error("profile load", exc)
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except BrokenProcessPool as exc:
                if not self._stop.is_set():  # (a closing worker ends its child on purpose)
                    self._error("worker process died; adaptation stops", exc)
                return
            except Exception as exc:  # never let a cycle kill adaptation (or the loop)
                if not self._stop.is_set():
                    self._error("cycle", exc)

    def _one_cycle(self) -> None:
        split = split_for_cycle(windows(self.ring.snapshot()), self.config)
        if split is None:
            self.counts["skipped"] += 1
            return
        train, holdout = split
        current = self._history.current
        outcome: CycleOutcome = self._submit("cycle", weights_to_bytes(current.weights), train, holdout)
        if self._stop.is_set():
            return
        self.counts["cycles"] += 1
        self.cycle_s.append(outcome.seconds)
        self.last_decision = outcome.decision
        if self._rollback.is_set():  # the weights it started from regressed meanwhile: roll back instead
            self._do_rollback()
            return
        if outcome.weights is None:
            self.counts["rejected"] += 1
            self._event("rejected", current.number, outcome.decision["reason"])
            return
        gen = self._go_live(weights_from_bytes(outcome.weights), outcome.onnx)
        self.counts["accepted"] += 1
        self._event("accepted", gen.number, outcome.decision["reason"])
        self._save_profile()

    def _do_rollback(self) -> None:
        self._rollback.clear()
        if not self._history.can_roll_back:
            return
        bad = self._history.current.number
        with self._monitor_lock:
            why = self._monitor.last
        good = self._history.roll_back()
        self._swap_to(good.number, good.weights, None, watch=False)
        self.counts["rollbacks"] += 1
        self._event("rollback", good.number, f"g{bad} regressed: {why}")
        self._save_profile()

    def _go_live(self, weights: dict[str, torch.Tensor], onnx: bytes | None, number: int | None = None) -> Any:
        """Make WEIGHTS the next generation and swap the engine onto it; a failed swap leaves both as they were."""
        gen = self._history.accept(weights, number=number)
        try:
            self._swap_to(gen.number, gen.weights, onnx)
        except BaseException:
            self._history.roll_back()
            raise
        return gen

    def _swap_to(self, number: int, weights: dict[str, torch.Tensor], onnx: bytes | None, watch: bool = True) -> None:
        """Swap the engine onto these weights; the published label follows (`engine.generation`)."""
        payload = self._payload(number, weights, onnx)
        if self.engine.name == "tensorrt":
            with tempfile.TemporaryDirectory(prefix="livemocap-swap-") as tmp:
                path = Path(tmp) / "candidate.onnx"
                path.write_bytes(payload)
                self.engine.swap(path)
        else:
            self.engine.swap(payload)
        self.engine.generation = number
        for old in [g for g in self._payloads if g != number and g not in self._live_numbers()]:
            del self._payloads[old]
        with self._monitor_lock:
            if watch:
                self._monitor.swapped()
            else:
                self._monitor = RegressionMonitor(self._monitor.frames, self._monitor.tolerance)

    def _payload(self, number: int, weights: dict[str, torch.Tensor], onnx: bytes | None) -> Any:
        if self.engine.name == "torch":
            return full_state_dict(self._base, weights)
        if onnx is None:
            onnx = self._payloads.get(number) or self._submit("export", weights_to_bytes(weights))
        self._payloads[number] = onnx
        return onnx

    def _live_numbers(self) -> set[int]:
        return set(self._history.numbers)

    def _submit(self, kind: str, *args: Any) -> Any:
        assert self._executor is not None
        if self.mode == "thread":
            assert self._runner is not None
            fn = self._runner.cycle if kind == "cycle" else self._runner.export
        else:
            fn = process_cycle if kind == "cycle" else process_export
        return self._executor.submit(fn, *args).result()

    # ------------------------------------------------------------------ profile
    def load_profile(self) -> None:
        if self.profile is None:
            return
        current = self._history.current.weights
        try:
            loaded = self.profile.load(self.base_sha256, list(current), {k: tuple(v.shape) for k, v in current.items()})
        except ProfileError as exc:
            log.warning("adaptation: %s; starting from the base model", exc)
            self._event("profile_ignored", 0, str(exc))
            return
        if loaded is None:
            log.info("adaptation: profile %r is new (%s)", self.profile.name, self.profile.root)
            return
        gen = self._go_live(loaded.weights, None, number=loaded.generation)
        self._event("profile_loaded", gen.number, str(self.profile.weights_path))
        log.info("adaptation: profile %r loaded at generation %d", self.profile.name, gen.number)

    def _save_profile(self) -> None:
        if self.profile is None:
            return
        current = self._history.current
        try:
            self.profile.save(current.weights, current.number, self.base_sha256, self.engine.model_id,
                              {"last_decision": self.last_decision, "counts": dict(self.counts)})
        except OSError as exc:
            self._error("profile save", exc)

    # ------------------------------------------------------------------ reporting
    def _event(self, kind: str, generation: int, detail: str) -> None:
        self.events.append({"t": time.monotonic(), "kind": kind, "generation": generation, "detail": detail})
        log.info("adaptation: %s -> g%d (%s)", kind, generation, detail)

    def _error(self, what: str, exc: BaseException) -> None:
        self.counts["errors"] += 1
        log.warning("adaptation %s failed: %s: %s", what, type(exc).__name__, exc)
        self._event("error", self.generation, f"{what}: {exc}")

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "generation": self.generation, **self.counts,
            "buffered": len(self.ring),
            "frames_per_cycle": self.config.holdout + self.config.min_train_frames,
            "cycle_s_median": round(statistics.median(self.cycle_s), 3) if self.cycle_s else None,
            "last_decision": None if self.last_decision is None else self.last_decision.get("reason"),
            "profile": None if self.profile is None else str(self.profile.weights_path),
        }


def _subset(model: CausalMocap, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    from mocap.adapt.cycle import adapted_names

    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in adapted_names(model, prefixes)}


__all__ = ["AdaptationWorker", "Mode", "SWAPPABLE"]
