"""Publish -> receive latency of the pose stream on loopback, with a realistic (full ``tracking``) message.

    python -m stream.bench_publish [--count 600] [--rate 120] [--json]

The subscriber runs in its own process (as a game engine would), so the figure includes encode, the ZeroMQ
hop over TCP loopback, decode and both processes' scheduling, but no GIL sharing. Latencies use
``time.monotonic()``, which is system-wide on one host. Target: p99 <= 2 ms.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import numpy as np

from .protocol import ARRAY_SHAPES, PoseMessage, encode
from .publisher import Publisher
from .subscribe import LatencyStats, Subscriber

WARMUP_TRACK = 999_999  # never a real track id: marks messages that only wait for the subscriber to join
TARGET_P99_MS = 2.0


def realistic_message(seq: int, track: int, rng: np.random.Generator) -> PoseMessage:
    """Every v1 field filled with plausible float32 values (the size a live frame has)."""
    quat = rng.normal(size=ARRAY_SHAPES["pose_quat"])
    return PoseMessage.from_arrays(
        seq=seq,
        track=track,
        t_capture=time.monotonic(),
        model="bench-model@gen0",
        pose_aa=rng.normal(scale=0.3, size=ARRAY_SHAPES["pose_aa"]),
        pose_quat=quat / np.linalg.norm(quat, axis=1, keepdims=True),
        betas=rng.normal(size=ARRAY_SHAPES["betas"]),
        root_trans=rng.normal(size=3),
        joints=rng.normal(scale=0.5, size=ARRAY_SHAPES["joints"]),
        contact=rng.uniform(size=ARRAY_SHAPES["contact"]),
        cam_trans=rng.normal(size=3),
        kp2d=rng.uniform(0, 1000, size=ARRAY_SHAPES["kp2d"]),
    )


def _receiver(endpoint: str, count: int, ready: Any, results: Any) -> None:
    """Child process: flag readiness on the first warm-up message, then time ``count`` real ones."""
    stats = LatencyStats()
    with Subscriber(endpoint) as sub:
        while len(stats.capture_ms) < count:
            got = sub.recv(timeout=5.0)
            if got is None:
                break
            if got.msg.track == WARMUP_TRACK:
                ready.set()
                continue
            stats.add(got)
    results.put(stats.summary())


def run(count: int, rate: float, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited ZeroMQ state
    ready, results = ctx.Event(), ctx.Queue()
    with Publisher("tcp://127.0.0.1:*") as pub:
        child = ctx.Process(target=_receiver, args=(pub.endpoint, count, ready, results), daemon=True)
        child.start()
        try:
            deadline = time.monotonic() + 30.0
            while not ready.is_set():
                if time.monotonic() > deadline or not child.is_alive():
                    raise RuntimeError("the benchmark subscriber never joined")
                pub.publish(realistic_message(0, WARMUP_TRACK, rng))
                ready.wait(0.01)
            time.sleep(0.1)  # let the remaining warm-up messages drain
            payload = len(encode(realistic_message(0, 0, rng)))
            call_us = []
            period, start = 1.0 / rate, time.perf_counter()
            for seq in range(count):
                delay = start + seq * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                msg = realistic_message(seq, 0, rng)
                t0 = time.perf_counter()
                pub.publish(msg)
                call_us.append((time.perf_counter() - t0) * 1e6)
            summary = results.get(timeout=30.0)
        finally:
            child.join(timeout=5.0)
            if child.is_alive():
                child.terminate()
    p99 = summary["latency_publish_ms"]["p99"]
    return {
        "messages": count,
        "rate_hz": rate,
        "payload_bytes": payload,
        "publish_call_us": {"p50": float(np.percentile(call_us, 50)), "p99": float(np.percentile(call_us, 99))},
        "latency_publish_ms": summary["latency_publish_ms"],
        "latency_capture_ms": summary["latency_capture_ms"],
        "received": summary["messages"],
        "seq_gaps": summary["seq_gaps"],
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 is not None and p99 <= TARGET_P99_MS,
        "cpu_count": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],  # latency tails track how busy the host's cores are
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.bench_publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=600, help="measured messages (default 600)")
    parser.add_argument("--rate", type=float, default=120.0, help="messages per second (default 120)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.count < 10 or not args.rate > 0:
        parser.error("need --count >= 10 and --rate > 0")
    out = run(args.count, args.rate)
    if args.json:
        print(json.dumps(out))
    else:
        lat = out["latency_publish_ms"]
        print(
            f"{out['received']}/{out['messages']} messages of {out['payload_bytes']} B at {out['rate_hz']:.0f} Hz: "
            f"publish->receive p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, max {lat['max']:.3f} ms "
            f"(target p99 <= {TARGET_P99_MS} ms: {'met' if out['meets_target'] else 'MISSED'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
