"""Where an ONNX step graph spends its time: onnxruntime's profiler, grouped by op type and by model module.

    python -m engines.profile --artifact FILE.onnx [--batch 1] [--steps 300] [--json]

For a graph of hundreds of tiny ops the per-node cost dominates, so node counts are reported beside times.
Profiled times include the profiler's own per-node overhead: read them as shares, and take absolute latency
from `engines.bench`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def _module_of(node_name: str) -> str:
    """'/body/MatMul_3' -> 'body'; top-level nodes of the step ('/Concat_4', fused 'BiasGelu') -> '(step)'."""
    parts = node_name.split("/")
    named_module = len(parts) > 2 and parts[1][:1].islower()  # torch attribute names; ops are CamelCase
    return parts[1] if named_module else "(step)"


def profile(artifact: str | Path, batch: int = 1, steps: int = 300, warmup: int = 50) -> dict:
    import onnxruntime as ort

    from .onnxruntime_engine import open_session, session_options

    open_session(artifact, ["CPUExecutionProvider"], [{}], 1)  # validates the artifact, clear error if bad
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(1)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(artifact), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {i.name: np.zeros([batch] + list(i.shape[1:]), np.float32) for i in session.get_inputs()}
        feed["x"] = rng.standard_normal(feed["x"].shape).astype(np.float32)
        for _ in range(warmup + steps):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        import onnx

        optimized_nodes = len(onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node)

    runs = [e["dur"] for e in events if e.get("name") == "model_run"][warmup:]
    by_op: dict[str, float] = defaultdict(float)
    by_module: dict[str, float] = defaultdict(float)
    op_nodes: dict[str, set] = defaultdict(set)
    module_nodes: dict[str, set] = defaultdict(set)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        op, module = e["args"]["op_name"], _module_of(node)
        by_op[op] += e["dur"]
        by_module[module] += e["dur"]
        op_nodes[op].add(node)
        module_nodes[module].add(node)
    total = sum(by_op.values()) or 1.0
    runs_count = warmup + steps

    def table(times: dict[str, float], nodes: dict[str, set]) -> list[dict]:
        return [
            {"name": k, "nodes": len(nodes[k]), "us_per_step": round(v / runs_count, 1), "share": round(v / total, 3)}
            for k, v in sorted(times.items(), key=lambda kv: -kv[1])
        ]

    return {
        "artifact": str(artifact), "batch": batch, "steps": steps,
        "optimized_nodes": optimized_nodes,
        "profiled_run_p50_us": round(float(np.median(runs)), 1) if runs else None,
        "by_module": table(by_module, module_nodes),
        "by_op": table(by_op, op_nodes)[:15],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engines.profile", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", required=True, help="an exported .onnx step graph")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from .base import EngineLoadError

    try:
        report = profile(args.artifact, args.batch, args.steps)
    except EngineLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['artifact']}: {report['optimized_nodes']} nodes after optimization, "
          f"profiled step p50 {report['profiled_run_p50_us']} us (profiler overhead included)")
    for title in ("by_module", "by_op"):
        print(title.replace("_", " ") + ":")
        for row in report[title]:
            share = 100 * row["share"]
            print(f"  {row['name']:28s} {row['nodes']:4d} nodes {row['us_per_step']:8.1f} us {share:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
