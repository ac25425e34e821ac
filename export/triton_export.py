"""A Triton model repository for production serving (NGC tritonserver images): configs built on Triton's schema.

Three model folders, one ONNX:

- ``livemocap`` (onnxruntime backend) and ``livemocap_trt`` (tensorrt backend, ``1/model.plan`` built on the
  serving GPU): stateless, dynamic batching; inputs ``x``, ``omega`` and the state, outputs the model outputs
  and ``<state>_out``. The client (``engines.triton_engine``) carries each track's state.
- ``livemocap_seq`` (onnxruntime backend): the sequence batcher with implicit state. Triton keeps each track's
  state between requests of one sequence (correlation id, ``engines.triton_engine.correlation_id``); requests
  carry only ``x`` and ``omega``. The state tensors are already batch-first in the exported graph, so each state
  block is the graph's ``<name>`` input / ``<name>_out`` output with zero initial data.

Every config is a ``ModelConfig`` message of Triton's ``model_config.proto`` (the copy tritonclient ships), written
as protobuf text and parsed back, so a misspelt field or a wrong type cannot be written; on top, the config's
tensors are checked against the ONNX graph. The model's livemocap metadata rides in ``parameters``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.onnxruntime_engine import CPU_PROVIDER, open_session
from engines.triton_engine import METADATA_PARAMETER, TRITON_MODEL

from .metadata import contract

STATELESS_ORT = TRITON_MODEL
STATELESS_TRT = f"{TRITON_MODEL}_trt"
SEQUENCE_ORT = f"{TRITON_MODEL}_seq"


@dataclass(frozen=True)
class RepositoryOptions:
    max_batch: int = 64                  # rows per execution; the TensorRT plan's profile must reach it
    instances: int = 1                   # per GPU (kind gpu) or in all (kind cpu)
    kind: str = "gpu"                    # gpu | cpu
    queue_delay_us: int = 500            # dynamic batcher's wait for more requests
    sequence: bool = True                # also write the sequence-batcher variant
    idle_us: int = 2_000_000             # a sequence silent this long is dropped (its track is gone)
    candidates: int = 1024               # sequences batched together per instance (tracks served at once)


def _pb() -> tuple[Any, Any]:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise RuntimeError(f"writing Triton configs needs tritonclient[grpc] ({exc}); pip install -e '.[serve]'"
                           ) from None
    return model_config_pb2, text_format


def _graph(onnx_path: Path) -> dict[str, Any]:
    """What the configs need from the ONNX: tensor dims, state names and the raw metadata props."""
    import onnx

    loaded = open_session(onnx_path, [CPU_PROVIDER], [{}], 1)  # validates the livemocap contract
    proto = onnx.load(str(onnx_path), load_external_data=False)
    shapes = contract().output_shapes
    state_outputs = loaded.metadata.get("state_outputs") or {n: f"{n}_out" for n in loaded.state_names}
    outputs = {n: shapes[n] if n in shapes else None for n in loaded.output_names}
    unknown = [n for n, s in outputs.items() if s is None]
    if unknown:
        raise ValueError(f"{onnx_path}: outputs {unknown} are not in the step-model contract")
    return {
        "inputs": dict(loaded.input_shapes),
        "states": dict(loaded.state_shapes),
        "state_outputs": dict(state_outputs),
        "outputs": outputs,
        "props": {p.key: p.value for p in proto.metadata_props},
        "graph_inputs": [i.name for i in proto.graph.input],
        "graph_outputs": [o.name for o in proto.graph.output],
    }


def _tensor(container: Any, name: str, dims: tuple[int, ...]) -> None:
    t = container.add()
    t.name, t.data_type = name, _pb()[0].TYPE_FP32
    t.dims.extend(int(d) for d in dims)


def build_configs(graph: dict[str, Any], opts: RepositoryOptions) -> dict[str, Any]:
    """{model name: ModelConfig message} for the stateless ORT / TensorRT models and the sequence variant."""
    pb, _ = _pb()
    if opts.kind not in ("gpu", "cpu"):
        raise ValueError(f"--kind must be gpu or cpu, got {opts.kind!r}")
    if opts.max_batch < 1 or opts.instances < 1 or opts.queue_delay_us < 0:
        raise ValueError("--max-batch and --instances must be >= 1, --queue-delay-us >= 0")
    kind = pb.ModelInstanceGroup.KIND_GPU if opts.kind == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    meta = json.dumps(graph["props"])

    def base(name: str, backend: str, filename: str, stateless: bool) -> Any:
        cfg = pb.ModelConfig(name=name, backend=backend, max_batch_size=opts.max_batch,
                             default_model_filename=filename)
        if backend == "tensorrt":
            cfg.platform = "tensorrt_plan"
        for n, dims in graph["inputs"].items():
            _tensor(cfg.input, n, dims)
        for n, dims in graph["outputs"].items():
            _tensor(cfg.output, n, dims)
        if stateless:
            for n, dims in graph["states"].items():
                _tensor(cfg.input, n, dims)
                _tensor(cfg.output, graph["state_outputs"][n], dims)
        group = cfg.instance_group.add()
        group.count, group.kind = opts.instances, kind
        cfg.parameters[METADATA_PARAMETER].string_value = meta
        cfg.parameters["livemocap_mode"].string_value = "stateless" if stateless else "sequence"
        return cfg

    configs = {}
    for name, backend, filename in ((STATELESS_ORT, "onnxruntime", "model.onnx"),
                                    (STATELESS_TRT, "tensorrt", "model.plan")):
        cfg = base(name, backend, filename, stateless=True)
        cfg.dynamic_batching.max_queue_delay_microseconds = opts.queue_delay_us
        configs[name] = cfg
    if opts.sequence:
        cfg = base(SEQUENCE_ORT, "onnxruntime", "model.onnx", stateless=False)
        seq = cfg.sequence_batching
        seq.max_sequence_idle_microseconds = opts.idle_us
        seq.oldest.max_candidate_sequences = opts.candidates
        seq.oldest.max_queue_delay_microseconds = opts.queue_delay_us
        for n, dims in graph["states"].items():
            state = seq.state.add()
            state.input_name, state.output_name = n, graph["state_outputs"][n]
            state.data_type = pb.TYPE_FP32
            state.dims.extend(dims)  # without the batch dim: Triton batches states along dim 0
            init = state.initial_state.add()
            init.data_type, init.zero_data, init.name = pb.TYPE_FP32, True, f"{n}_zero"
            init.dims.extend(dims)
        configs[SEQUENCE_ORT] = cfg
    return configs


def check_config(cfg: Any, graph: dict[str, Any]) -> None:
    """ValueError unless the config's tensors and states cover the ONNX graph exactly (names and dims)."""
    dims = {**graph["inputs"], **graph["states"], **graph["outputs"],
            **{graph["state_outputs"][n]: d for n, d in graph["states"].items()}}
    config_in = {t.name: tuple(t.dims) for t in cfg.input}
    config_out = {t.name: tuple(t.dims) for t in cfg.output}
    state_in = {s.input_name: tuple(s.dims) for s in cfg.sequence_batching.state}
    state_out = {s.output_name: tuple(s.dims) for s in cfg.sequence_batching.state}
    if set(config_in) | set(state_in) != set(graph["graph_inputs"]) or set(config_in) & set(state_in):
        raise ValueError(f"{cfg.name}: inputs {sorted(config_in)} + states {sorted(state_in)} != the graph's "
                         f"{graph['graph_inputs']}")
    if not (set(config_out) | set(state_out)) <= set(graph["graph_outputs"]):
        raise ValueError(f"{cfg.name}: outputs {sorted(set(config_out) | set(state_out))} not all in the graph")
    for name, got in {**config_in, **config_out, **state_in, **state_out}.items():
        if got != tuple(dims[name]):
            raise ValueError(f"{cfg.name}: {name} dims {got} != the graph's {tuple(dims[name])}")


def write_repository(onnx_path: str | Path, out: str | Path, opts: RepositoryOptions = RepositoryOptions(),
                     plan: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write OUT/<model>/config.pbtxt and OUT/<model>/1/<file>; returns a JSON-able report of what is where.

    plan: a TensorRT engine built for the serving GPU (``python -m export tensorrt --max-batch N``), copied to
    ``livemocap_trt/1/model.plan``; without it that folder waits for one (the report says so).
    """
    pb, text_format = _pb()
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    if plan is not None and not Path(plan).is_file():
        raise FileNotFoundError(f"TensorRT plan not found: {plan}")
    graph = _graph(onnx_path)
    configs = build_configs(graph, opts)
    existing = [n for n in configs if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out}: {existing} already exist (pass --overwrite to replace them)")
    report: dict[str, Any] = {"repository": str(out), "onnx": str(onnx_path), "model_id": graph["props"].get(
        "model_id"), "x_width": graph["inputs"]["x"][0], "max_batch": opts.max_batch, "models": {}}
    for name, cfg in configs.items():
        check_config(cfg, graph)
        text = text_format.MessageToString(cfg)
        text_format.Parse(text, pb.ModelConfig())  # what was written reads back under the schema
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(text)
        entry: dict[str, Any] = {"config": str(folder / "config.pbtxt"), "backend": cfg.backend,
                                 "mode": cfg.parameters["livemocap_mode"].string_value}
        if cfg.backend == "tensorrt":
            if plan is not None:
                shutil.copyfile(plan, folder / "1" / "model.plan")
            entry["ready"] = plan is not None
            if plan is None:
                entry["needs"] = (f"1/model.plan built on the serving GPU: python -m export tensorrt --onnx "
                                  f"{out / STATELESS_ORT / '1' / 'model.onnx'} --out {folder / '1' / 'model.plan'} "
                                  f"--max-batch {opts.max_batch}")
        else:
            shutil.copyfile(onnx_path, folder / "1" / "model.onnx")
            entry["ready"] = True
        report["models"][name] = entry
    try:
        from importlib.metadata import version

        report["schema"] = f"model_config.proto of tritonclient {version('tritonclient')}"
    except Exception:  # the version is informative only
        report["schema"] = "model_config.proto (tritonclient)"
    return report


__all__ = ["RepositoryOptions", "SEQUENCE_ORT", "STATELESS_ORT", "STATELESS_TRT", "build_configs", "check_config",
           "write_repository"]
