"""Command line: turn a checkpoint into a checked ONNX graph, and an ONNX graph into a TensorRT engine.

    python -m export onnx --checkpoint PATH|default --out FILE.onnx [--steps 300] [--batch 4]
                          [--exporter torchscript|dynamo]      # dynamo: torch.export + onnxscript, opset 18
    python -m export onnx --untrained [--seed 0] --out FILE.onnx   # default config, random weights (saved as
                                                                   # FILE.safetensors beside it)
    python -m export tensorrt --onnx FILE.onnx --out FILE.engine [--fp16] [--max-batch 64]
    python -m export triton --out model_repository/ [--onnx FILE.onnx] [--max-batch 64] [--kind gpu|cpu]
                            [--instances 1] [--queue-delay-us 500] [--no-sequence] [--plan FILE.plan]
                                                                   # Triton configs (docs/scaling.md)

Each prints one JSON line with its figures (parity: max abs difference per output over every step) and exits
1 when parity is outside the tolerance, 2 with a one-sentence reason when it cannot run at all.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


class _Fatal(Exception):
    """A reason to stop, printed as one sentence without a traceback."""


def _load_model(args: argparse.Namespace):
    import torch

    from mocap.model import CausalMocap, CheckpointError, load_model, save_checkpoint
    from mocap.model.checkpoint import resolve_checkpoint

    from .metadata import file_sha256

    if args.untrained:
        # The weights are saved beside the ONNX so the torch backend (and engines.load) can run the same model.
        torch.manual_seed(args.seed)
        model, model_id = CausalMocap().eval(), f"untrained-seed{args.seed}"
        weights = save_checkpoint(model, Path(args.out).with_suffix(".safetensors"), {"model_id": model_id})
        return model, model_id, file_sha256(weights)
    try:
        model = load_model(args.checkpoint)
        sha = file_sha256(resolve_checkpoint(args.checkpoint))
    except CheckpointError as exc:
        raise _Fatal(str(exc)) from None
    return model, str(getattr(model, "model_id", Path(str(args.checkpoint)).stem)), sha


def cmd_onnx(args: argparse.Namespace) -> int:
    import onnx

    from .onnx_export import export_onnx
    from .parity import check_onnx_parity

    model, model_id, sha = _load_model(args)
    t0 = time.perf_counter()
    try:
        proto = export_onnx(model, args.out, model_id, checkpoint_sha256=sha, exporter=args.exporter)
    except ImportError as exc:
        raise _Fatal(str(exc)) from None
    export_s = time.perf_counter() - t0
    report = check_onnx_parity(model, args.out, steps=args.steps, batch=args.batch, seed=args.seed,
                               tolerance=args.tolerance)
    print(json.dumps({
        "artifact": str(args.out), "model_id": model_id, "bytes": Path(args.out).stat().st_size,
        "nodes": len(proto.graph.node), "opset": proto.opset_import[0].version, "onnx": onnx.__version__,
        "exporter": args.exporter, "export_s": round(export_s, 2),
        **json.loads(report.to_json()),
    }))
    return 0 if report.passed else 1


def cmd_tensorrt(args: argparse.Namespace) -> int:
    from .tensorrt_build import build_engine, check_engine_parity

    tolerance = args.tolerance if args.tolerance is not None else (5e-2 if args.fp16 else 1e-4)
    if not Path(args.onnx).is_file():
        raise _Fatal(f"ONNX file not found: {args.onnx}")
    build_engine(args.onnx, args.out, fp16=args.fp16, max_batch=args.max_batch)
    report = check_engine_parity(args.out, args.onnx, steps=args.steps, batch=args.batch, seed=args.seed,
                                 tolerance=tolerance)
    print(json.dumps({
        "artifact": str(args.out), "bytes": Path(args.out).stat().st_size,
        "precision": "fp16" if args.fp16 else "fp32", "max_batch": args.max_batch, **json.loads(report.to_json()),
    }))
    return 0 if report.passed else 1


def cmd_triton(args: argparse.Namespace) -> int:
    from engines.base import EngineLoadError

    from .triton_export import RepositoryOptions, write_repository

    opts = RepositoryOptions(max_batch=args.max_batch, instances=args.instances, kind=args.kind,
                             queue_delay_us=args.queue_delay_us, sequence=args.sequence)
    try:
        report = write_repository(args.onnx, args.out, opts, plan=args.plan, overwrite=args.overwrite)
    except (ValueError, RuntimeError, FileExistsError, EngineLoadError) as exc:
        raise _Fatal(str(exc)) from None
    print(json.dumps(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("onnx", help="checkpoint -> ONNX step graph, checked for parity with torch")
    src = o.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a .safetensors checkpoint (config JSON beside it), or 'default'")
    src.add_argument("--untrained", action="store_true",
                     help="the default config with random weights (also saved beside --out as .safetensors)")
    o.add_argument("--out", type=Path, required=True)
    o.add_argument("--tolerance", type=float, default=1e-4)
    o.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torchscript (default; why: export/onnx_export.py) or the torch.export-based one")
    o.set_defaults(func=cmd_onnx)

    t = sub.add_parser("tensorrt", help="ONNX -> refittable TensorRT engine, checked for parity with onnxruntime")
    t.add_argument("--onnx", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--fp16", action="store_true")
    t.add_argument("--max-batch", type=int, default=64)
    t.add_argument("--tolerance", type=float, default=None, help="default 1e-4 (fp32), 5e-2 (fp16)")
    t.set_defaults(func=cmd_tensorrt)

    from engines import DEFAULT_ONNX

    r = sub.add_parser("triton", help="ONNX -> a Triton model repository (onnxruntime, TensorRT, sequence batcher)")
    r.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="the step graph (default: the shipped model)")
    r.add_argument("--out", type=Path, required=True, help="the model repository folder")
    r.add_argument("--max-batch", type=int, default=64, help="max_batch_size: rows per execution")
    r.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance kind (default: gpu)")
    r.add_argument("--instances", type=int, default=1, help="instances per GPU (gpu) or in all (cpu)")
    r.add_argument("--queue-delay-us", type=int, default=500, help="dynamic batcher's longest wait")
    r.add_argument("--sequence", action=argparse.BooleanOptionalAction, default=True,
                   help="also write livemocap_seq (sequence batcher, implicit state; default: on)")
    r.add_argument("--plan", type=Path, default=None, help="a TensorRT plan for livemocap_trt/1/model.plan")
    r.add_argument("--overwrite", action="store_true", help="replace model folders that exist")
    r.set_defaults(func=cmd_triton, steps=1, batch=1)

    for s in (o, t):
        s.add_argument("--steps", type=int, default=300, help="consecutive steps of the parity check")
        s.add_argument("--batch", type=int, default=4, help="people per step in the parity check")
        s.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        print("error: --steps and --batch must be >= 1.", file=sys.stderr)
        return 2
    from .tensorrt_runtime import TensorRTUnavailable

    try:
        return int(args.func(args))
    except (_Fatal, TensorRTUnavailable, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
