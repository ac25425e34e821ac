"""Engine on the native TensorRT runtime: a refittable `.engine` built by `python -m export tensorrt`.

`swap` refits weights with `trt.Refitter`. Refitting an engine while it runs is unsafe, so the engine is
deserialized twice: the standby copy is refitted off the hot path, becomes the active one in one reference
swap, and the old copy is then refitted too (after any step still running on it finishes).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from export.metadata import check_step_model, parse_metadata
from export.tensorrt_build import metadata_path
from export.tensorrt_runtime import TensorRTRunner, TensorRTUnavailable

from .base import INPUT_SHAPES, Arrays, Engine, EngineLoadError


class _Slot:
    """One deserialized engine and the lock that keeps its steps and refits apart."""

    def __init__(self, plan: bytes) -> None:
        self.runner = TensorRTRunner(plan)
        self.lock = threading.Lock()


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise EngineLoadError(f"{self.path}: TensorRT engine file not found")
        plan = self.path.read_bytes()
        try:
            self._active, self._standby = _Slot(plan), _Slot(plan)
        except TensorRTUnavailable as exc:
            raise EngineLoadError(f"{self.path}: {exc}") from None
        except (ValueError, RuntimeError) as exc:
            raise EngineLoadError(f"{self.path}: {exc}") from None
        runner = self._active.runner
        if not runner.engine.refittable:
            raise EngineLoadError(f"{self.path}: built without REFIT, so it cannot swap weights; rebuild it with "
                                  "`python -m export tensorrt`")
        self._meta = self._read_metadata()
        self._state_outputs: dict[str, str] = self._meta.get("state_outputs") or {
            n: f"{n}_out" for n in runner.input_names if n not in INPUT_SHAPES
        }
        missing = [n for n in INPUT_SHAPES if n not in runner.input_names]
        if missing or any(o not in runner.output_names for o in self._state_outputs.values()):
            raise EngineLoadError(f"{self.path}: not a livemocap step engine (inputs {runner.input_names})")
        self._state_shapes = {n: runner.shapes[n] for n in self._state_outputs}
        self._output_names = tuple(o for o in runner.output_names if o not in self._state_outputs.values())
        self._input_shapes = {n: runner.shapes[n] for n in INPUT_SHAPES}
        try:  # TensorRTRunner already refused any binding that is not float32
            check_step_model(self._meta, runner.shapes["x"][0] if len(runner.shapes["x"]) == 1 else -1,
                             {n: (runner.shapes[n], "float32") for n in self._output_names})
        except ValueError as exc:
            raise EngineLoadError(f"{self.path}: not the livemocap step-model contract: {exc}") from None

    def _read_metadata(self) -> dict[str, Any]:
        path = metadata_path(self.path)
        if not path.is_file():
            return {}
        try:
            return parse_metadata(json.loads(path.read_text()))
        except (ValueError, OSError) as exc:
            raise EngineLoadError(f"{path}: unreadable engine metadata: {exc}") from None

    # ------------------------------------------------------------------ description
    @property
    def model_id(self) -> str:
        return str(self._meta.get("model_id", self.path.stem))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return self._state_shapes

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def device(self) -> str:
        return "cuda (TensorRT)"

    # ------------------------------------------------------------------ running
    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        _, feed = self._feed(inputs, state)
        slot = self._active
        with slot.lock:
            result = slot.runner.run(feed)
        return (
            {n: result[n] for n in self._output_names},
            {n: result[o] for n, o in self._state_outputs.items()},
        )

    def swap(self, weights: str | Path | Mapping[str, np.ndarray]) -> None:
        """WEIGHTS: an ONNX file of the same graph with new weights, or {ONNX initializer name: array}."""
        with self._swap_lock:
            standby = self._standby
            with standby.lock:
                standby.runner.refit(weights)
            old, self._active, self._standby = self._active, standby, self._active
            self.generation += 1
            with old.lock:  # waits for a step that started on the old weights; then both copies agree
                old.runner.refit(weights)
