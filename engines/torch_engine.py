"""Engine on PyTorch: `CausalMocap.step` straight from a checkpoint (the only engines module importing torch).

The reference backend and the fallback when no exported ONNX exists. On CUDA it can replay a captured CUDA
graph per batch size (one launch instead of hundreds of small kernels); on CPU it runs eagerly.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from export.metadata import build_metadata, check_step_model, parse_metadata
from mocap.camera import CONF_THRESHOLD
from mocap.model import INPUT_NAMES, OUTPUT_NAMES, OUTPUT_SHAPES, CausalMocap, CheckpointError, load_model, state_shapes
from mocap.model.checkpoint import resolve_checkpoint
from mocap.model.state import OMEGA_DIM, state_output_name

from .base import Arrays, Engine, EngineLoadError

log = logging.getLogger(__name__)


def set_threads(n: int) -> None:
    """torch's intra-op threads, process-wide; 1 gives the lowest batch-1 latency on a busy CPU."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)


@dataclass
class _Graph:
    """A captured step for one batch size: copy into `inputs`, replay, read `outputs` / `state`."""
    graph: Any  # torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]


class TorchEngine(Engine):
    name = "torch"

    def __init__(
        self,
        checkpoint: str | Path | CausalMocap = "default",
        *,
        device: str | torch.device | None = None,
        cuda_graphs: bool | None = None,
        threads: int | None = None,
    ) -> None:
        """checkpoint: a path, 'default', or a model instance; cuda_graphs: None = on for CUDA, off for CPU;
        threads: torch's intra-op threads (process-wide!); 1 gives the lowest batch-1 latency on a busy CPU."""
        super().__init__()
        if threads is not None:
            set_threads(threads)
        self._device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise EngineLoadError(f"device {self._device} requested but torch sees no CUDA GPU")
        self._model = self._load(checkpoint)
        try:
            check_step_model(self.metadata, self._model.config.input_dim,
                             {n: (tuple(OUTPUT_SHAPES[n]), "float32") for n in OUTPUT_NAMES})
        except ValueError as exc:
            raise EngineLoadError(f"{checkpoint}: not the livemocap step-model contract: {exc}") from None
        self._use_graphs = self._device.type == "cuda" and cuda_graphs is not False
        self._graphs: dict[int, _Graph] = {}
        self._lock = threading.Lock()  # a step and the in-place part of a swap never overlap

    def _load(self, checkpoint: str | Path | CausalMocap) -> CausalMocap:
        if isinstance(checkpoint, CausalMocap):
            model = checkpoint.to(self._device).eval()
            if not hasattr(model, "model_id"):
                model.model_id = "in-memory"  # type: ignore[assignment]  # nn.Module attrs: tensors/modules
            return model
        try:
            resolve_checkpoint(checkpoint)
            return load_model(checkpoint, device=self._device)
        except CheckpointError as exc:
            raise EngineLoadError(str(exc)) from None

    # ------------------------------------------------------------------ description
    @property
    def model_id(self) -> str:
        return str(getattr(self._model, "model_id", "torch"))

    @property
    def metadata(self) -> dict[str, Any]:
        names = tuple(state_shapes(self._model.config))
        return parse_metadata(build_metadata(
            model_id=self.model_id, fps=self._model.config.fps, input_names=INPUT_NAMES + names,
            state_outputs={n: state_output_name(n) for n in names},
            output_names=OUTPUT_NAMES + tuple(state_output_name(n) for n in names),
            normalized_dim=self._model.config.input_dim, conf_threshold=CONF_THRESHOLD,
        ))

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"x": (self._model.config.input_dim,), "omega": (OMEGA_DIM,)}

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return state_shapes(self._model.config)

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES

    @property
    def device(self) -> str:
        return str(self._device) + (" (CUDA graphs)" if self._use_graphs else "")

    # ------------------------------------------------------------------ running
    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        batch, feed = self._feed(inputs, state)
        with self._lock, torch.inference_mode():
            g = self._graph_for(batch) if self._use_graphs else None
            if g is not None:
                for name, arr in feed.items():
                    g.inputs[name].copy_(torch.from_numpy(arr))
                g.graph.replay()
                out, new_state = g.outputs, g.state
            else:
                t = {name: torch.from_numpy(arr).to(self._device) for name, arr in feed.items()}
                out, new_state = self._model.step(t.pop("x"), t.pop("omega"), t)
            # .cpu() copies off the GPU (and off the graph's static buffers); on CPU numpy() shares fresh tensors.
            return (
                {name: out[name].cpu().numpy() for name in OUTPUT_NAMES},
                {name: new_state[name].cpu().numpy() for name in self.state_shapes},
            )

    def _graph_for(self, batch: int) -> _Graph | None:
        """The captured graph for this batch size; None (and eager from now on) if the model cannot be captured,
        e.g. when a forward op copies host data to the GPU, which CUDA graph capture forbids."""
        if batch not in self._graphs:
            try:
                self._capture(batch)
            except RuntimeError as exc:
                log.warning("torch engine: CUDA graph capture failed, running eagerly: %s", str(exc).splitlines()[0])
                self._use_graphs = False
                return None
        return self._graphs[batch]

    def _capture(self, batch: int) -> _Graph:
        """Record one step at this batch size (called under the lock, inside inference_mode)."""
        static = {"x": torch.zeros(batch, self._model.config.input_dim, device=self._device),
                  "omega": torch.zeros(batch, OMEGA_DIM, device=self._device),
                  **self._model.initial_state(batch, self._device)}
        split = lambda s: (s["x"], s["omega"], {k: v for k, v in s.items() if k not in INPUT_NAMES})  # noqa: E731
        side = torch.cuda.Stream(self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as CUDA graph capture requires
            for _ in range(3):
                self._model.step(*split(static))
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, new_state = self._model.step(*split(static))
        self._graphs[batch] = _Graph(graph, static, out, new_state)
        return self._graphs[batch]

    def swap(self, weights: str | Path | Mapping[str, Any]) -> None:
        """WEIGHTS: a checkpoint path, or a state dict (tensors or arrays) for the same config."""
        new = self._prepare(weights)  # off the hot path: loading, validation, host->device copies
        with self._swap_lock, self._lock:
            if self._use_graphs:
                # Captured graphs point at the current parameter storage: update it in place.
                with torch.no_grad():
                    current = self._model.state_dict()
                    for name, value in new.state_dict().items():
                        current[name].copy_(value)
                self._model.model_id = getattr(new, "model_id", self.model_id)  # type: ignore[arg-type]
            else:
                self._model = new
            self.generation += 1

    def _prepare(self, weights: str | Path | Mapping[str, Any]) -> CausalMocap:
        config = self._model.config
        if isinstance(weights, (str, Path)):
            try:
                new = load_model(weights, device=self._device)
            except CheckpointError as exc:
                raise EngineLoadError(str(exc)) from None
            if new.config != config:
                raise ValueError(f"{weights}: model config {new.config} differs from the running {config}")
            return new
        if not isinstance(weights, Mapping):
            raise TypeError(f"swap takes a checkpoint path or a state dict, got {type(weights).__name__}")
        new = CausalMocap(config)
        try:
            new.load_state_dict({k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v)
                                 for k, v in weights.items()}, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"state dict does not fit the running model: {str(exc).splitlines()[0]}") from None
        new.model_id = self.model_id  # type: ignore[assignment]
        return new.to(self._device).eval()
