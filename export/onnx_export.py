"""Checkpoint -> ONNX graph of one streaming step, with metadata, checked by `onnx.checker`.

The legacy TorchScript exporter (`dynamo=False`) is used: it maps `nn.GRU` to the ONNX GRU op and keeps the
dynamic batch axis, which the torch.export path does not do reliably for this model.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from mocap.camera import CONF_THRESHOLD, NORMALIZED_DIM
from mocap.model.state import INPUT_DIM
from mocap.model import CausalMocap

from .metadata import build_metadata
from .step_module import StepModule

OPSET = 17
#: Batch of the tracing example; any batch works at run time (dynamic axis), 2 keeps batch-dependent
#: reshapes from being folded to a constant 1.
_TRACE_BATCH = 2


def export_onnx(
    model: CausalMocap, out: str | Path, model_id: str, checkpoint_sha256: str | None = None
) -> onnx.ModelProto:
    """Writes OUT (ONNX, opset 17, dynamic batch on every input/output) and returns the checked model proto."""
    if model.config.input_dim not in (NORMALIZED_DIM, INPUT_DIM):
        raise ValueError(f"model input_dim {model.config.input_dim} is neither {NORMALIZED_DIM} (keypoints + box) "
                         f"nor {INPUT_DIM} (+ frame interval)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = StepModule(model.eval()).eval()
    names = module.input_names + module.output_names
    with warnings.catch_warnings(), torch.no_grad():
        # Known and harmless here: the legacy-exporter deprecation notice, and the GRU batch-size warning
        # (it concerns packed variable-length sequences; the parity check covers batch > 1).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*GRU.*")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            module.example_inputs(_TRACE_BATCH),
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=module.input_names,
            output_names=module.output_names,
            dynamic_axes={name: {0: "batch"} for name in names},
            do_constant_folding=True,
        )
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
