"""Engine on onnxruntime: the exported step graph (`python -m export onnx`), CPU by default, CUDA/TensorRT
execution providers when the installed onnxruntime has them.

Session options favour batch-1 latency: one intra-op thread (the graph is hundreds of tiny ops, where thread
hand-offs cost more than they save), sequential execution, every graph optimization.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from export.metadata import check_step_model, parse_metadata

from .base import INPUT_SHAPES, Arrays, Engine, EngineLoadError

_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32"}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise EngineLoadError("onnxruntime is not installed (`pip install onnxruntime`)") from None
    return onnxruntime


def choose_providers(device: str | None = None) -> list[str]:
    """device None/'auto': the best available (TensorRT EP, CUDA EP, CPU); 'cpu'; 'cuda' / 'cuda:N'."""
    available = _ort().get_available_providers()
    if device in (None, "auto"):
        return [p for p in GPU_PROVIDERS if p in available] + [CPU_PROVIDER]
    if device == "cpu":
        return [CPU_PROVIDER]
    if str(device).startswith("cuda"):
        gpu = [p for p in GPU_PROVIDERS if p in available]
        if not gpu:
            raise ValueError(f"device {device!r}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        return gpu + [CPU_PROVIDER]
    raise ValueError(f"unknown device {device!r} (use 'cpu', 'cuda', 'cuda:N' or None)")


def _provider_options(providers: list[str], device: str | None) -> list[dict[str, str]]:
    index = str(device).split(":")[1] if device and ":" in str(device) else "0"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livemocap" / "ort-tensorrt"
    if "TensorrtExecutionProvider" in providers:
        cache.mkdir(parents=True, exist_ok=True)
    options = {
        # Building TensorRT engines takes tens of seconds: keep them across runs.
        "TensorrtExecutionProvider": {"device_id": index, "trt_engine_cache_enable": "True",
                                      "trt_engine_cache_path": str(cache)},
        "CUDAExecutionProvider": {"device_id": index},
    }
    return [options.get(p, {}) for p in providers]


def session_options(threads: int = 1) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: the provider fallback notices are reported by engines.load
    return so


@dataclass(frozen=True)
class _Loaded:
    """Everything a step needs from one session, swapped as one reference."""
    session: Any
    run_names: list[str]                    # graph outputs in the order run() returns them
    output_names: tuple[str, ...]           # the model outputs (first part of run_names)
    state_names: tuple[str, ...]            # state inputs, aligned with the state outputs after output_names
    state_shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, Any]
    input_shapes: dict[str, tuple[int, ...]]

    @property
    def signature(self) -> tuple:
        return (self.output_names, self.state_names, tuple(self.state_shapes.items()),
                tuple(self.input_shapes.items()))


def _describe(source: str | Path | bytes) -> str:
    return f"in-memory ONNX model ({len(source)} bytes)" if isinstance(source, bytes) else str(source)


def open_session(source: str | Path | bytes, providers: list[str], options: list[dict], threads: int) -> _Loaded:
    """Load and validate an exported step graph; any problem is an EngineLoadError naming SOURCE."""
    ort = _ort()
    label = _describe(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise EngineLoadError(f"{label}: ONNX file not found")
        source = str(path)
    try:
        session = ort.InferenceSession(source, session_options(threads), providers=providers,
                                       provider_options=options)
    except Exception as exc:  # onnxruntime raises its own pybind error types (InvalidProtobuf, Fail, ...)
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EngineLoadError(f"{label}: onnxruntime cannot load it as an ONNX model: {reason}") from None
    try:
        meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
    except ValueError as exc:
        raise EngineLoadError(f"{label}: {exc}") from None

    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    missing = [n for n in INPUT_SHAPES if n not in inputs]
    if missing:
        raise EngineLoadError(
            f"{label}: not a livemocap step graph: inputs {sorted(inputs)} lack {missing} (export it with "
            "`python -m export onnx`)"
        )
    state_shapes: dict[str, tuple[int, ...]] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}
    for name, arg in inputs.items():
        dims = list(arg.shape)[1:]
        if arg.type != "tensor(float)" or not all(isinstance(d, int) for d in dims):
            raise EngineLoadError(f"{label}: input {name} is {arg.type} {arg.shape}, expected float32 (batch, ...)")
        if name == "x":
            input_shapes["x"] = tuple(dims)
            if len(dims) != 1:
                raise EngineLoadError(f"{label}: input x is {arg.shape}, expected (batch, width)")
        elif name in INPUT_SHAPES:
            input_shapes[name] = tuple(dims)
            if tuple(dims) != INPUT_SHAPES[name]:
                raise EngineLoadError(f"{label}: input {name} is {arg.shape}, expected (batch, *{INPUT_SHAPES[name]})")
        else:
            state_shapes[name] = tuple(dims)
    state_outputs = meta.get("state_outputs") or {name: f"{name}_out" for name in state_shapes}
    if set(state_outputs) != set(state_shapes) or any(o not in outputs for o in state_outputs.values()):
        raise EngineLoadError(f"{label}: state inputs {sorted(state_shapes)} do not match the graph outputs {outputs}")
    output_names = tuple(o for o in outputs if o not in state_outputs.values())
    described = {o.name: (tuple(o.shape)[1:], _ORT_TYPES.get(o.type, o.type)) for o in session.get_outputs()}
    try:
        check_step_model(meta, input_shapes["x"][0], described)
    except ValueError as exc:
        raise EngineLoadError(f"{label}: not the livemocap step-model contract: {exc}") from None
    state_names = tuple(state_shapes)
    run_names = list(output_names) + [state_outputs[n] for n in state_names]
    return _Loaded(session, run_names, output_names, state_names, state_shapes, meta, input_shapes)


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path | bytes,
        *,
        device: str | None = None,
        providers: list[str] | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self._providers = list(providers) if providers else choose_providers(device)
        self._options = _provider_options(self._providers, device)
        self._threads = threads
        self.path = None if isinstance(path, bytes) else Path(path)
        self._active = open_session(path, self._providers, self._options, threads)

    # ------------------------------------------------------------------ description
    @property
    def model_id(self) -> str:
        return str(self._active.metadata.get("model_id", self.path.stem if self.path else "onnx"))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._active.metadata)

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return self._active.state_shapes

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return self._active.input_shapes

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._active.output_names

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (a GPU provider that failed to start is absent)."""
        return list(self._active.session.get_providers())

    @property
    def device(self) -> str:
        return ",".join(self.providers)

    # ------------------------------------------------------------------ running
    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        active = self._active  # one read: the whole step runs on this session even if a swap lands meanwhile
        _, feed = self._feed(inputs, state)
        results = active.session.run(active.run_names, feed)
        n = len(active.output_names)
        return dict(zip(active.output_names, results[:n])), dict(zip(active.state_names, results[n:]))

    def swap(self, weights: str | Path | bytes) -> None:
        """WEIGHTS: a re-exported ONNX file (or its bytes) of the same graph signature."""
        new = open_session(weights, self._providers, self._options, self._threads)
        with self._swap_lock:
            if new.signature != self._active.signature:
                raise ValueError(
                    f"{_describe(weights)}: its inputs/outputs differ from the running model's; a swap must keep "
                    "the graph signature (outputs, state names and shapes)"
                )
            self._active = new
            self.generation += 1
