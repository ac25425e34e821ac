"""Minimal TensorRT 10 runtime: run a serialized engine on numpy inputs, refit its weights.

Shared by the builder's parity check and `engines.tensorrt_engine`. TensorRT and cuda-python are imported
lazily; where either (or a GPU) is missing, `TensorRTUnavailable` says so in one sentence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np


class TensorRTUnavailable(RuntimeError):
    """TensorRT, cuda-python or a CUDA GPU is missing on this machine."""


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except (ImportError, OSError):
        raise TensorRTUnavailable(
            "TensorRT is not installed: it needs an NVIDIA GPU and `pip install tensorrt>=10` (the `gpu` extra)."
        ) from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is too old: livemocap needs TensorRT 10 or newer.")
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime module, after checking that a CUDA device is visible."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise TensorRTUnavailable(
                "cuda-python is not installed: TensorRT engines need it to reach the GPU (`pip install cuda-python`)."
            ) from None
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        raise TensorRTUnavailable("No CUDA GPU is available: TensorRT engines need an NVIDIA GPU and its driver.")
    return cudart


def require_tensorrt() -> tuple[Any, Any]:
    return import_tensorrt(), import_cudart()


def _check(result: Any) -> Any:
    """cuda-python calls return (err, *values): raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if getattr(err, "value", err) != 0:  # cudaError_t.cudaSuccess == 0
        raise RuntimeError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else tuple(values) or None


class TensorRTRunner:
    """One engine, one execution context, device buffers for the largest batch of the optimization profile.

    Not thread-safe by itself: callers serialize `run` and `refit` on one runner (engines.tensorrt_engine keeps
    two runners so a refit never waits on, or races with, a step).
    """

    def __init__(self, plan: bytes) -> None:
        trt, cudart = require_tensorrt()
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ValueError("not a TensorRT engine for this TensorRT version and GPU (rebuild it here)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        #: shape without the batch dim, per I/O tensor
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n))[1:] for n in names}
        for n in names:
            if trt.nptype(self.engine.get_tensor_dtype(n)) != np.float32:
                raise ValueError(f"engine tensor {n} is not float32")
        self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in self.input_names)
        self._stream = _check(cudart.cudaStreamCreate())
        self._device: dict[str, int] = {}
        for n in names:
            nbytes = self.max_batch * int(np.prod(self.shapes[n], dtype=np.int64)) * 4
            self._device[n] = int(_check(cudart.cudaMalloc(max(nbytes, 4))))
            self.context.set_tensor_address(n, self._device[n])

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """feed: every input, (B, ...) float32 with 1 <= B <= max_batch -> every output (B, ...)."""
        cudart = self._cudart
        batch = int(feed[self.input_names[0]].shape[0])
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch {batch} outside this engine's profile [1, {self.max_batch}]")
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        keep = []  # host arrays must outlive the async copies
        for n in self.input_names:
            arr = np.ascontiguousarray(feed[n], dtype=np.float32)
            if arr.shape != (batch,) + self.shapes[n]:
                raise ValueError(f"input {n}: expected {(batch,) + self.shapes[n]}, got {arr.shape}")
            keep.append(arr)
            if not self.context.set_input_shape(n, arr.shape):
                raise ValueError(f"input {n}: shape {arr.shape} rejected by the engine")
            _check(cudart.cudaMemcpyAsync(self._device[n], arr.ctypes.data, arr.nbytes, h2d, self._stream))
        if not self.context.execute_async_v3(int(self._stream)):
            raise RuntimeError("TensorRT execution failed (see its log)")
        outputs = {}
        for n in self.output_names:
            out = np.empty(tuple(self.context.get_tensor_shape(n)), np.float32)
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._device[n], out.nbytes, d2h, self._stream))
            outputs[n] = out
        _check(cudart.cudaStreamSynchronize(self._stream))
        return outputs

    def refit(self, weights: str | Path | Mapping[str, np.ndarray]) -> None:
        """New weights from an ONNX file of the same graph, or {ONNX initializer name: array}; all or nothing."""
        trt = self._trt
        refitter = trt.Refitter(self.engine, self._logger)
        keep = []
        if isinstance(weights, (str, Path)):
            parser = trt.OnnxParserRefitter(refitter, self._logger)
            if not parser.refit_from_file(str(weights)):
                errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
                raise ValueError(f"{weights}: cannot refit from this ONNX file: {'; '.join(errors) or 'unknown error'}")
        else:
            for name, value in weights.items():
                arr = np.ascontiguousarray(value, dtype=np.float32)
                keep.append(arr)  # TensorRT reads the memory at refit time
                if not refitter.set_named_weights(name, trt.Weights(arr)):
                    raise ValueError(f"weight {name!r} {arr.shape} rejected (unknown name or wrong size)")
        missing = refitter.get_missing_weights()
        if missing:
            raise ValueError(f"refit needs these weights too: {sorted(missing)}")
        if not refitter.refit_cuda_engine():
            raise RuntimeError("TensorRT refit failed (see its log)")

    def close(self) -> None:
        for ptr in self._device.values():
            self._cudart.cudaFree(ptr)
        self._device.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA runtime may already be gone
            pass
