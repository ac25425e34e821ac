"""Engine on a Triton Inference Server: the step runs on the server, the state stays with the caller.

The served model is the exported step graph itself (inputs ``x``, ``omega`` and the state names; outputs the model
outputs and ``<state>_out``), so one client talks to the PyTriton server of this project (``python -m serve``) and
to a production Triton running the same ONNX on its onnxruntime or TensorRT backend (``python -m export triton``).
The server is stateless: every request carries the state of the tracks it steps and gets the new state back, so a
camera worker keeps its tracks' memory across a server restart, and Triton's dynamic batcher can merge requests
from many cameras into one execution.

The model's livemocap metadata travels in the model configuration's ``parameters`` (key ``METADATA_PARAMETER``,
the ONNX metadata props as a JSON object) and is checked against the live loop's contract on connect.

A step that cannot reach the server (connection refused, model not loaded yet after a restart) is retried with a
fresh connection until ``retry_s`` has passed; the request is idempotent because the state is the caller's. Once a
step has given up, later ones retry only ``DOWN_RETRY_S`` until the server answers again, so a long outage costs
the live loop a short stall per frame (it restarts the tracks' memory), not ``retry_s`` each time.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Mapping
from urllib.parse import urlparse

import numpy as np

from export.metadata import check_step_model, parse_metadata

from .base import INPUT_SHAPES, Arrays, Engine, EngineLoadError

log = logging.getLogger(__name__)

#: The served model's name, in this project's server and in the exported model repository.
TRITON_MODEL = "livemocap"
#: Model-configuration parameter holding the ONNX metadata props (a JSON object of strings).
METADATA_PARAMETER = "livemocap_metadata"
DEFAULT_URL = "http://127.0.0.1:8000"
#: Retry window of a step while the server is known to be down (a previous step gave up after ``retry_s``).
DOWN_RETRY_S = 0.3

#: Error texts of a server that is (re)starting or gone: worth a reconnect and a retry, never a state reset.
_TRANSIENT = ("unknown model", "not ready", "unavailable", "connect", "connection", "reset by peer", "broken pipe",
              "timed out", "timeout", "eof", "socket closed", "stream removed")


class TritonUnavailable(RuntimeError):
    """The server did not answer a step within ``retry_s`` (the caller's state is unchanged)."""


def parse_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT`` | ``grpc://HOST:PORT`` | ``HOST:PORT`` (http) -> (protocol, "HOST:PORT")."""
    text = url.strip()
    parsed = urlparse(text if "://" in text else f"http://{text}")
    if parsed.scheme not in ("http", "grpc") or not parsed.hostname or parsed.port is None:
        raise ValueError(f"--triton-url {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
    if parsed.path not in ("", "/"):
        raise ValueError(f"--triton-url {url!r}: no path expected after HOST:PORT")
    return parsed.scheme, f"{parsed.hostname}:{parsed.port}"


def correlation_id(camera: str, track: int, session: int) -> int:
    """Triton sequence id (uint64, never 0) of one track of one camera worker run, for the sequence-batcher variant.

    The high 40 bits hash (camera, session), the low 24 bits are the track id, so ids differ across cameras and
    across worker restarts (``session``: e.g. ``time.time_ns()`` at worker start), and one worker's tracks never
    collide. A server restart loses the server-side state: the worker then starts new sequences (new session).
    """
    if not 0 <= int(track) < 1 << 24:
        raise ValueError(f"track id must be in [0, 2^24), got {track}")
    digest = hashlib.blake2b(f"{camera}\0{int(session)}".encode(), digest_size=5).digest()
    high = int.from_bytes(digest, "big") or 1
    return (high << 24) | int(track)


def _client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise EngineLoadError(f"the Triton client is not installed ({exc}); pip install -e '.[serve]'") from None
    return module


def _is_transient(exc: BaseException) -> bool:
    from tritonclient.utils import InferenceServerException

    if not isinstance(exc, InferenceServerException):
        return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or type(exc).__module__.startswith(
            ("gevent", "geventhttpclient", "grpc"))
    text = f"{exc.status()} {exc.message()}".lower()
    return any(word in text for word in _TRANSIENT) or str(exc.status()) in ("503", "StatusCode.UNAVAILABLE")


class TritonEngine(Engine):
    """``step`` on a remote Triton model; ``initial_state`` and the state shapes come from its configuration.

    url: http://HOST:PORT (HTTP/REST) or grpc://HOST:PORT; model/version: the served model (version "" = latest);
    connect_s: how long to wait for the server and model to be ready at construction; retry_s: how long one step
    keeps reconnecting before raising TritonUnavailable; timeout_s: one request's network timeout.
    """

    name = "triton"

    def __init__(self, url: str = DEFAULT_URL, *, model: str = TRITON_MODEL, version: str = "",
                 connect_s: float = 30.0, retry_s: float = 10.0, timeout_s: float = 10.0) -> None:
        super().__init__()
        try:
            self.protocol, self.address = parse_url(url)
        except ValueError as exc:
            raise EngineLoadError(str(exc)) from None
        self.url, self.model, self.version = url, model, version
        self.retry_s, self.timeout_s = float(retry_s), float(timeout_s)
        self.requests = 0        # step requests answered
        self.retries = 0         # failed attempts that were retried
        self.reconnects = 0      # fresh clients made after a failure
        self._down = False       # the last step gave up: retry briefly until one succeeds (no 10 s stall per frame)
        self._module = _client_module(self.protocol)
        # One client per thread: the HTTP client lives on its creating thread's gevent hub.
        self._local = threading.local()
        self._wait_ready(connect_s)
        try:
            config = self._model_config()
        except Exception as exc:  # the server went away between ready and config, or refused the request
            raise EngineLoadError(f"Triton at {url}: cannot read the configuration of model {model!r}: "
                                  f"{str(exc).strip()[:200] or type(exc).__name__}") from None
        self._describe(config)

    # ------------------------------------------------------------------ connection
    @property
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _new_client(self) -> Any:
        if self.protocol == "grpc":
            return self._module.InferenceServerClient(self.address)
        return self._module.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                  network_timeout=self.timeout_s)

    def _reconnect(self, count: bool = True) -> None:
        old = getattr(self._local, "client", None)
        self._local.client = None
        if old is not None:
            try:
                old.close()
            except Exception as exc:  # an already broken connection: nothing to close cleanly
                log.debug("triton: closing the old client: %s", exc)
        self.reconnects += int(count)

    def _wait_ready(self, connect_s: float) -> None:
        deadline = time.monotonic() + connect_s
        last = "no answer"
        while True:
            try:
                if self._client.is_model_ready(self.model, self.version):
                    return
                last = f"model {self.model!r} is not ready (loaded?)"
            except Exception as exc:  # refused / reset while the server starts
                last = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                self._reconnect(count=False)
            if time.monotonic() >= deadline:
                raise EngineLoadError(f"Triton at {self.url}: {last} after {connect_s:g} s (is `python -m serve` "
                                      "or tritonserver running there?)")
            time.sleep(0.2)

    def _model_config(self) -> dict[str, Any]:
        if self.protocol == "grpc":
            return self._client.get_model_config(self.model, self.version, as_json=True)["config"]
        return self._client.get_model_config(self.model, self.version)

    # ------------------------------------------------------------------ description
    def _describe(self, config: Mapping[str, Any]) -> None:
        """Shapes and metadata from the model configuration; EngineLoadError unless it is a livemocap step model."""
        label = f"Triton model {self.model!r} at {self.url}"
        raw = (config.get("parameters") or {}).get(METADATA_PARAMETER, {})
        raw = raw.get("string_value") if isinstance(raw, Mapping) else None
        if not raw:
            raise EngineLoadError(f"{label}: its configuration has no {METADATA_PARAMETER!r} parameter (serve it "
                                  "with `python -m serve` or a repository from `python -m export triton`)")
        try:
            meta = parse_metadata(json.loads(raw))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise EngineLoadError(f"{label}: unreadable {METADATA_PARAMETER}: {exc}") from None
        self.max_batch = int(config.get("max_batch_size") or 0)
        if self.max_batch < 1:
            raise EngineLoadError(f"{label}: max_batch_size is {self.max_batch}; a step model is served batch-first")
        dims = {t["name"]: (tuple(int(d) for d in t.get("dims", ())), t.get("data_type"))
                for t in config.get("input", [])}
        out_dims = {t["name"]: (tuple(int(d) for d in t.get("dims", ())), t.get("data_type"))
                    for t in config.get("output", [])}
        if any(dtype != "TYPE_FP32" for _, dtype in list(dims.values()) + list(out_dims.values())):
            raise EngineLoadError(f"{label}: every input and output must be TYPE_FP32")
        missing = [n for n in INPUT_SHAPES if n not in dims]
        if missing:
            raise EngineLoadError(f"{label}: inputs {sorted(dims)} lack {missing}")
        state_shapes = {n: shape for n, (shape, _) in dims.items() if n not in INPUT_SHAPES}
        state_outputs = meta.get("state_outputs") or {n: f"{n}_out" for n in state_shapes}
        if set(state_outputs) != set(state_shapes) or any(o not in out_dims for o in state_outputs.values()):
            raise EngineLoadError(f"{label}: state inputs {sorted(state_shapes)} do not match its outputs "
                                  f"{sorted(out_dims)} (a sequence-batcher model keeps the state itself: serve "
                                  "the stateless variant to this engine)")
        self._input_shapes = {n: dims[n][0] for n in INPUT_SHAPES}
        if len(self._input_shapes["x"]) != 1:
            raise EngineLoadError(f"{label}: input x is {self._input_shapes['x']}, expected (width,)")
        try:
            check_step_model(meta, self._input_shapes["x"][0], {n: (s, "float32") for n, (s, _) in out_dims.items()})
        except ValueError as exc:
            raise EngineLoadError(f"{label}: not the livemocap step-model contract: {exc}") from None
        self._meta = meta
        self._state_shapes = state_shapes
        self._state_outputs = dict(state_outputs)
        self._output_names = tuple(n for n in out_dims if n not in self._state_outputs.values())
        self._run_names = list(self._output_names) + [self._state_outputs[n] for n in self._state_shapes]

    @property
    def model_id(self) -> str:
        return str(self._meta.get("model_id", self.model))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._state_shapes)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def device(self) -> str:
        return f"triton {self.protocol}://{self.address} model {self.model}"

    # ------------------------------------------------------------------ running
    def _infer(self, feed: Arrays) -> list[np.ndarray]:
        """One request with retries; returns the arrays of ``_run_names`` in order."""
        window = min(self.retry_s, DOWN_RETRY_S) if self._down else self.retry_s
        deadline = time.monotonic() + window
        delay = 0.05
        while True:
            inputs = []
            for name, arr in feed.items():
                item = self._module.InferInput(name, list(arr.shape), "FP32")
                item.set_data_from_numpy(arr)
                inputs.append(item)
            outputs = [self._module.InferRequestedOutput(n) for n in self._run_names]
            try:
                if self.protocol == "grpc":
                    result = self._client.infer(self.model, inputs, model_version=self.version, outputs=outputs,
                                                client_timeout=self.timeout_s)
                else:
                    result = self._client.infer(self.model, inputs, model_version=self.version, outputs=outputs)
                self.requests += 1
                self._down = False
                return [result.as_numpy(n) for n in self._run_names]
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    self._down = True
                    raise TritonUnavailable(f"Triton at {self.url} did not answer within {window:g} s: "
                                            f"{str(exc).strip()[:200] or type(exc).__name__}") from None
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                self._reconnect()

    def step(self, inputs: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        """One model step for B tracks (split into requests of at most ``max_batch`` rows)."""
        batch, feed = self._feed(inputs, state)
        parts = []
        for start in range(0, batch, self.max_batch):
            chunk = {k: v[start:start + self.max_batch] for k, v in feed.items()} if batch > self.max_batch else feed
            parts.append(self._infer(chunk))
        arrays = parts[0] if len(parts) == 1 else [np.concatenate(col) for col in zip(*parts)]
        n = len(self._output_names)
        outputs = dict(zip(self._output_names, arrays[:n]))
        return outputs, dict(zip(self._state_shapes, arrays[n:]))

    def swap(self, weights: Any) -> None:
        """Refused: the weights live on the server (roll out a new model version there)."""
        raise ValueError("a Triton engine runs the server's weights: load the new model on the server (a new "
                         "version in its model repository, or restart `python -m serve --model NEW.onnx`)")

    def close(self) -> None:
        """Close this thread's connection (other threads' clients close when they are collected)."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.debug("triton: close: %s", exc)


__all__ = ["DEFAULT_URL", "METADATA_PARAMETER", "TRITON_MODEL", "TritonEngine", "TritonUnavailable",
           "correlation_id", "parse_url"]
