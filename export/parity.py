"""Numerical parity between two implementations of the streaming step, over many consecutive steps.

Each implementation carries its own recurrent state through the whole rollout (no teacher forcing), so drift
that accumulates in the GRUs or the integrated trajectory shows up, not just one-step rounding.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

#: feed {graph input name: (B, ...) float32} -> {graph output name: (B, ...)} (state outputs are `<name>_out`).
StepFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class StateSpec:
    shapes: dict[str, tuple[int, ...]]      # state input name -> shape without batch
    outputs: dict[str, str]                 # state input name -> graph output name

    def zeros(self, batch: int) -> dict[str, np.ndarray]:
        return {name: np.zeros((batch,) + shape, np.float32) for name, shape in self.shapes.items()}


@dataclass(frozen=True)
class ParityReport:
    reference: str
    candidate: str
    steps: int
    batch: int
    inputs: str
    tolerance: float
    max_abs: dict[str, float]               # per graph output, over all steps and people

    @property
    def worst(self) -> tuple[str, float]:
        name = max(self.max_abs, key=self.max_abs.__getitem__)
        return name, self.max_abs[name]

    @property
    def passed(self) -> bool:
        return all(np.isfinite(v) and v <= self.tolerance for v in self.max_abs.values())

    def to_json(self) -> str:
        worst_name, worst = self.worst
        return json.dumps({**asdict(self), "worst_output": worst_name, "worst_max_abs": worst, "passed": self.passed})


def rollout(step_fn: StepFn, x: np.ndarray, omega: np.ndarray, spec: StateSpec) -> dict[str, np.ndarray]:
    """x (T, B, W), omega (T, B, 6) -> {output name: (T, B, ...)} for every graph output, state fed back."""
    if x.ndim != 3 or omega.shape[:2] != x.shape[:2]:
        raise ValueError(f"x must be (T, B, W) and omega (T, B, 6), got {x.shape} and {omega.shape}")
    state = spec.zeros(x.shape[1])
    frames: dict[str, list[np.ndarray]] = {}
    for t in range(x.shape[0]):
        out = step_fn({"x": x[t], "omega": omega[t], **state})
        missing = [o for o in spec.outputs.values() if o not in out]
        if missing:
            raise ValueError(f"step function returned no state outputs {missing}")
        state = {name: np.asarray(out[o], np.float32) for name, o in spec.outputs.items()}
        for name, value in out.items():
            frames.setdefault(name, []).append(np.array(value, np.float32, copy=True))
    return {name: np.stack(values) for name, values in frames.items()}


def compare(
    reference: StepFn,
    candidate: StepFn,
    spec: StateSpec,
    x: np.ndarray,
    omega: np.ndarray,
    *,
    tolerance: float,
    labels: tuple[str, str],
    inputs: str,
) -> ParityReport:
    ref = rollout(reference, x, omega, spec)
    cand = rollout(candidate, x, omega, spec)
    if set(ref) != set(cand):
        raise ValueError(f"{labels[1]} outputs {sorted(cand)} differ from {labels[0]} outputs {sorted(ref)}")
    max_abs = {}
    for name in ref:
        if ref[name].shape != cand[name].shape:
            raise ValueError(f"output {name}: shape {cand[name].shape} != reference {ref[name].shape}")
        # NaN anywhere in either must fail the check, so it is kept (max propagates NaN).
        max_abs[name] = float(np.max(np.abs(ref[name].astype(np.float64) - cand[name])))
    return ParityReport(labels[0], labels[1], x.shape[0], x.shape[1], inputs, tolerance, max_abs)


# ------------------------------------------------------------------------------------------- implementations
def onnxruntime_step_fn(session) -> StepFn:  # session: onnxruntime.InferenceSession
    names = [o.name for o in session.get_outputs()]

    def step(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feed)))

    return step


def onnx_state_spec(session) -> StateSpec:
    """The state of an exported graph: inputs other than x/omega, outputs from metadata (default `<name>_out`)."""
    from .metadata import parse_metadata

    meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
    states = [i for i in session.get_inputs() if i.name not in ("x", "omega")]
    outputs = meta.get("state_outputs") or {i.name: f"{i.name}_out" for i in states}
    return StateSpec({i.name: tuple(int(d) for d in i.shape[1:]) for i in states}, dict(outputs))


def torch_step_fn(model) -> StepFn:  # model: mocap.model.CausalMocap
    import torch

    from .step_module import StepModule

    module = StepModule(model.eval()).eval()
    in_names, out_names = module.input_names, module.output_names

    def step(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in in_names))
        return {name: value.numpy() for name, value in zip(out_names, result)}

    return step


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count is process-wide: set it for a block and put it back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_state_spec(model) -> StateSpec:
    from mocap.model import state_shapes

    from .step_module import StepModule

    return StateSpec(dict(state_shapes(model.config)), StepModule(model).state_outputs)


def check_onnx_parity(
    model,
    onnx_path: str | Path,
    *,
    steps: int = 300,
    batch: int = 4,
    seed: int = 0,
    tolerance: float = 1e-4,
    inputs: tuple[np.ndarray, np.ndarray, str] | None = None,
) -> ParityReport:
    """Torch `step` vs onnxruntime (CPU) on the exported graph, `steps` consecutive frames of `batch` people."""
    import onnxruntime as ort

    from .inputs import realistic_inputs

    x, omega, source = inputs if inputs is not None else realistic_inputs(batch, steps, seed,
                                                                          width=model.config.input_dim)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    spec = torch_state_spec(model)
    onnx_spec = onnx_state_spec(session)
    if onnx_spec != spec:
        raise ValueError(f"{onnx_path}: graph state {onnx_spec} does not match the model's {spec}")
    with torch_threads(1):  # batch-sized steps: one thread is several times faster than two on a busy machine
        return compare(
            torch_step_fn(model), onnxruntime_step_fn(session), spec, x, omega,
            tolerance=tolerance, labels=("torch", "onnxruntime"), inputs=source,
        )

