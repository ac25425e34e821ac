"""ONNX -> refittable TensorRT engine (dynamic batch 1..max_batch), plus its metadata beside it as JSON.

A serialized engine has no room for ONNX's metadata_props, so they are copied to `<engine>.json` where
`engines.tensorrt_engine` reads them.
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from .tensorrt_runtime import import_cudart, import_tensorrt

#: Batch (number of tracked people) the engine is tuned for; the profile admits 1..max_batch.
OPT_BATCH = 1


def metadata_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_engine(onnx_path: str | Path, out: str | Path, *, fp16: bool = False, max_batch: int = 64) -> Path:
    """Parse ONNX_PATH, build with REFIT (+FP16), write OUT and OUT.json; raises TensorRTUnavailable first."""
    trt = import_tensorrt()
    import_cudart()  # building needs a GPU too: fail with the one-sentence reason before any work
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    if max_batch < OPT_BATCH:
        raise ValueError(f"max_batch must be >= {OPT_BATCH}, got {max_batch}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"{onnx_path}: TensorRT cannot parse this ONNX graph: {'; '.join(errors) or 'unknown error'}")

    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.REFIT)  # online adaptation swaps weights without a rebuild
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 matmuls would break 1e-4 parity with onnxruntime
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1,) + rest, (OPT_BATCH,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (its log above says why)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(plan))
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    meta.update(
        tensorrt_version=str(trt.__version__), precision="fp16" if fp16 else "fp32",
        max_batch=str(max_batch), source_onnx=onnx_path.name,
    )
    metadata_path(out).write_text(json.dumps(meta, indent=2))
    return out


def check_engine_parity(
    engine_path: str | Path, onnx_path: str | Path, *, steps: int, batch: int, seed: int, tolerance: float
):
    """TensorRT engine vs onnxruntime (CPU) on the same realistic inputs -> export.parity.ParityReport."""
    import onnxruntime as ort

    from .inputs import realistic_inputs
    from .parity import compare, onnx_state_spec, onnxruntime_step_fn
    from .tensorrt_runtime import TensorRTRunner

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runner = TensorRTRunner(Path(engine_path).read_bytes())
    try:
        width = next(i.shape[1] for i in session.get_inputs() if i.name == "x")
        x, omega, source = realistic_inputs(batch, steps, seed, width=int(width))
        return compare(
            onnxruntime_step_fn(session), runner.run, onnx_state_spec(session), x, omega,
            tolerance=tolerance, labels=("onnxruntime", "tensorrt"), inputs=source,
        )
    finally:
        runner.close()
