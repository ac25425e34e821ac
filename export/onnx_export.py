"""Checkpoint -> ONNX graph of one streaming step, with metadata, checked by `onnx.checker`.

Two exporters, one graph signature. The default is the TorchScript exporter (`dynamo=False`, deprecated in
torch 2.x), kept on measurement (BENCHMARKS.md, "ONNX exporters"): the `torch.export`-based one (`dynamo=True`,
needs onnxscript) holds parity as well (max abs 9.1e-6 vs 8.1e-6 over 300 steps of the shipped model) and keeps the
GRU ops and the dynamic batch, but on torch 2.13 / onnxscript 0.7 its graph steps ~1.4x slower in onnxruntime at
batch 1 (likely its indexing: 64 Transpose + 36 GatherND where TorchScript emits Gathers), it exports ~15x
slower (the adaptation worker exports every accepted candidate on the live machine), and it cannot emit opset 17.
Re-measure with `python -m export onnx --exporter dynamo` when torch or onnxscript move.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import onnx
import torch

from mocap.camera import CONF_THRESHOLD
from mocap.model.state import INPUT_DIM, INPUT_DIM_NO_INTERVAL
from mocap.model import CausalMocap

from .metadata import build_metadata
from .step_module import StepModule

OPSET = 17
#: The dynamo exporter's lowest opset: onnxscript's torchlib starts at 18 and its down-conversion fails here.
OPSET_DYNAMO = 18
EXPORTERS = ("torchscript", "dynamo")
#: Batch of the tracing example; any batch works at run time (dynamic axis), 2 keeps batch-dependent
#: reshapes from being folded to a constant 1.
_TRACE_BATCH = 2


def _export_torchscript(module: StepModule, args: tuple[torch.Tensor, ...], out: Path) -> None:
    names = module.input_names + module.output_names
    with warnings.catch_warnings(), torch.no_grad():
        # Known and harmless here: the legacy-exporter deprecation notice, and the GRU batch-size warning
        # (it concerns packed variable-length sequences; the parity check covers batch > 1).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*GRU.*")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=module.input_names,
            output_names=module.output_names,
            dynamic_axes={name: {0: "batch"} for name in names},
            do_constant_folding=True,
        )


def _export_dynamo(module: StepModule, args: tuple[torch.Tensor, ...], out: Path) -> None:
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError("the dynamo ONNX exporter needs onnxscript (pip install onnxscript)")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.export's own chatter: pytree / size-guard deprecations, the batch Dim's name being replaced by
        # its constraint, and the GRU's flat weights read as attributes (they are exported as initializers).
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        warnings.filterwarnings("ignore", message=".*tensor attributes.*")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            verbose=False,
            opset_version=OPSET_DYNAMO,
            input_names=module.input_names,
            output_names=module.output_names,
            # forward(x, omega, *state): the varargs are one entry of the signature, a tuple of their own.
            dynamic_shapes=({0: batch}, {0: batch}, tuple({0: batch} for _ in args[2:])),
            optimize=True,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
    program.save(str(out), external_data=False)


def export_onnx(
    model: CausalMocap, out: str | Path, model_id: str, checkpoint_sha256: str | None = None,
    exporter: str = "torchscript",
) -> onnx.ModelProto:
    """Writes OUT (ONNX, opset 17, or 18 with `exporter='dynamo'`; dynamic batch on every input/output) and
    returns the checked model proto."""
    if model.config.input_dim not in (INPUT_DIM_NO_INTERVAL, INPUT_DIM):
        raise ValueError(f"model input_dim {model.config.input_dim} is neither {INPUT_DIM_NO_INTERVAL} (keypoints + box) "
                         f"nor {INPUT_DIM} (+ frame interval)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = StepModule(model.eval()).eval()
    args = module.example_inputs(_TRACE_BATCH)
    if exporter == "dynamo":
        _export_dynamo(module, args, out)
    elif exporter == "torchscript":
        _export_torchscript(module, args, out)
    else:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    proto = onnx.load(str(out))
    meta = build_metadata(
        model_id=model_id,
        fps=model.config.fps,
        input_names=module.input_names,
        state_outputs=module.state_outputs,
        output_names=module.output_names,
        normalized_dim=model.config.input_dim,
        conf_threshold=CONF_THRESHOLD,
        checkpoint_sha256=checkpoint_sha256,
    )
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"livemocap streaming step ({model_id})"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    return proto
