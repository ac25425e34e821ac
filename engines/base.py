"""The Engine interface every backend implements (docs/architecture.md, "Engine interface").

`step(inputs, state) -> (outputs, state)`: batch-first float32 numpy, batch = number of tracked people.
Inputs are `x (B, W)` (W = one of `export.metadata.contract().x_widths`, the artifact says which) and
`omega (B, 6)`; outputs are the model's OUTPUT_NAMES; state keys are the state names
of `mocap/model/state.py` (the engine maps them to the graph's `<name>_out` outputs itself).
`swap(weights)` replaces the weights between two steps: a step runs wholly on the old or wholly on the new ones.
"""
from __future__ import annotations

import abc
import threading
from concurrent.futures import Future
from typing import Any, Mapping

import numpy as np

from export.metadata import contract

#: Input shapes of a contract model with the narrowest x; an artifact's own widths are in `Engine.input_shapes`.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"x": (contract().x_widths[0],), "omega": (contract().omega_width,)}

Arrays = dict[str, np.ndarray]


class EngineLoadError(RuntimeError):
    """An artifact is missing, unreadable, or not a livemocap step model; the message names the file."""


class Engine(abc.ABC):
    #: backend name: "onnxruntime", "torch" or "tensorrt"
    name: str = ""

    def __init__(self) -> None:
        self._swap_lock = threading.Lock()   # one swap at a time; steps never take it
        self.generation = 0                  # swaps so far (the wire protocol's "adaptation generation")

    # ------------------------------------------------------------------ description
    @property
    @abc.abstractmethod
    def model_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What the artifact says about itself (joint order, keypoint order, fps, normalization, ...)."""

    @property
    @abc.abstractmethod
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """State name -> shape without the batch dim."""

    @property
    @abc.abstractmethod
    def output_names(self) -> tuple[str, ...]: ...

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input name -> shape without the batch dim (x's width is the artifact's: see the module docstring)."""
        return getattr(self, "_input_shapes", INPUT_SHAPES)

    @property
    def device(self) -> str:
        """Where the step runs, in words (e.g. 'cpu', 'cuda:0', the onnxruntime providers)."""
        return "cpu"

    # ------------------------------------------------------------------ running
    def initial_state(self, batch: int) -> Arrays:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return {name: np.zeros((batch,) + shape, np.float32) for name, shape in self.state_shapes.items()}

    @abc.abstractmethod
    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]: ...

    @abc.abstractmethod
    def swap(self, weights: Any) -> None:
        """Load WEIGHTS off the hot path, then switch atomically; a bad artifact raises and keeps the old one."""

    def swap_in_background(self, weights: Any) -> Future:
        """`swap` on a daemon thread (the live loop keeps stepping); the future holds None or the exception."""
        future: Future = Future()

        def run() -> None:
            try:
                self.swap(weights)
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name=f"{self.name}-swap", daemon=True).start()
        return future

    # ------------------------------------------------------------------ helpers for backends
    def _feed(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[int, Arrays]:
        """Validated float32 C-contiguous arrays by graph input name; ValueError names what is wrong."""
        x = inputs.get("x")
        if x is None or np.ndim(x) != 2:
            raise ValueError(f"inputs['x'] must be (B, {self.input_shapes['x'][0]}) batch-first, got "
                             f"{None if x is None else np.shape(x)}")
        batch = int(np.shape(x)[0])
        feed: Arrays = {}
        for group, expected in ((inputs, self.input_shapes), (state, self.state_shapes)):
            for name, shape in expected.items():
                value = group.get(name)
                if value is None:
                    kind = "input" if group is inputs else "state"
                    raise ValueError(f"missing {kind} {name!r} (expected {sorted(expected)})")
                arr = np.ascontiguousarray(value, dtype=np.float32)
                if arr.shape != (batch,) + shape:
                    raise ValueError(f"{name}: expected shape {(batch,) + shape}, got {arr.shape}")
                feed[name] = arr
        return batch, feed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id!r} on {self.device}, generation {self.generation}>"
