"""Benchmark: batched BuiltinBody forward (FK + 21 keypoints) on CPU.

    python -m mocap.bench_fk --json

Times the full forward (axis-angle -> matrices, shaped bone offsets, FK, keypoints) of a batch of random poses
and betas; prints the median and quartiles in milliseconds over repeats after warm-up. One intra-op thread by
default: the ops are small (a 24-step chain of batched 3x3 products), so more threads mostly add scheduling noise,
especially on a shared machine; pass --threads 0 for torch's default.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from mocap.body import BuiltinBody
from mocap.skeleton import NUM_JOINTS


def bench(batch: int = 1000, repeats: int = 50, warmup: int = 10, threads: int = 1, seed: int = 0) -> dict:
    if threads > 0:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    pose = 0.4 * torch.randn(batch, NUM_JOINTS, 3, generator=gen)
    betas = torch.randn(batch, 10, generator=gen)
    trans = torch.randn(batch, 3, generator=gen)
    body = BuiltinBody().eval()
    times_ms = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            body(pose, betas, trans)
            if i >= warmup:
                times_ms.append(1e3 * (time.perf_counter() - start))
    q1, median, q3 = np.percentile(times_ms, [25, 50, 75])
    return {
        "benchmark": "builtin_body_forward_cpu",
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "median_ms": round(float(median), 3),
        "q1_ms": round(float(q1), 3),
        "q3_ms": round(float(q3), 3),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or args.threads < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup and --threads >= 0")
    result = bench(args.batch, args.repeats, args.warmup, args.threads)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"BuiltinBody forward, batch {result['batch']}: median {result['median_ms']} ms "
              f"(IQR {result['q1_ms']}-{result['q3_ms']} ms, {result['torch_threads']} threads)")


if __name__ == "__main__":
    main()
