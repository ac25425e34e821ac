"""Step latency of an engine per batch size (number of tracked people), after a warm-up.

    python -m engines.bench --engine onnxruntime|torch|auto --batch 1,8,64 --steps 2000 --json [--artifact PATH]

Each step feeds the previous step's state back, as the live loop does, and is timed around `engine.step`
(input validation and output dicts included). Reports p50/p99 in microseconds and steps/s per batch size;
the machine's load average is recorded because the figures mean little on a busy machine.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import Engine, EngineLoadError, load


def measure(engine: Engine, batch: int, steps: int, warmup: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((batch, engine.input_shapes["x"][0])).astype(np.float32),
              "omega": (0.1 * rng.standard_normal((batch, engine.input_shapes["omega"][0]))).astype(np.float32)}
    state = engine.initial_state(batch)
    for _ in range(warmup):
        _, state = engine.step(inputs, state)
    gc.collect()
    times = np.empty(steps, np.int64)
    clock = time.perf_counter_ns
    for i in range(steps):
        t0 = clock()
        _, state = engine.step(inputs, state)
        times[i] = clock() - t0
    mean_s = float(times.mean()) * 1e-9
    return {
        "p50_us": round(float(np.percentile(times, 50)) / 1e3, 1),
        "p99_us": round(float(np.percentile(times, 99)) / 1e3, 1),
        "mean_us": round(mean_s * 1e6, 1),
        "steps_per_s": round(1.0 / mean_s, 1),
        "people_per_s": round(batch / mean_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engines.bench", description=__doc__.split("\n")[0])
    p.add_argument("--engine", choices=["auto", "onnxruntime", "torch", "tensorrt"], default="auto")
    p.add_argument("--artifact", default="default", help=".onnx, .engine, a checkpoint, or 'default'")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: best available)")
    p.add_argument("--batch", default="1,8,64", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=2000,
                   help="steps before timing; fewer leave the CPU clock and caches cold (p50 reads ~50 %% high at 200)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads for the torch engine (the live loop uses 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.batch.split(",")]
        if any(b < 1 for b in batches) or args.steps < 1 or args.warmup < 0:
            raise ValueError
    except ValueError:
        print(f"error: --batch must be positive integers like 1,8,64 and --steps >= 1, got {args.batch!r}",
              file=sys.stderr)
        return 2
    if not args.json:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        engine = load(args.artifact, prefer=None if args.engine == "auto" else [args.engine], device=args.device)
    except (EngineLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if engine.name == "torch" and args.torch_threads:
        from .torch_engine import set_threads

        set_threads(args.torch_threads)

    results = {str(b): measure(engine, b, args.steps, args.warmup) for b in batches}
    report = {
        "engine": engine.name, "device": engine.device, "model_id": engine.model_id,
        "artifact": str(Path(args.artifact)), "steps": args.steps, "warmup": args.warmup,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "torch_threads": args.torch_threads, "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{engine.name} on {engine.device}, model {engine.model_id}, load avg {report['load_avg_1m']}")
        for b, r in results.items():
            print(f"  batch {b:>3}: p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  "
                  f"{r['steps_per_s']:9.1f} steps/s  {r['people_per_s']:10.1f} people/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
