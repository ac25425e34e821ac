"""Throughput and added latency of serving the step through Triton, against the in-process engine.

    python -m serve.bench [--cameras 4] [--tracks 3] [--steps 200] [--url http://HOST:8000 --access-token T]
                          [--max-batch 64] [--queue-delay-us 500] [--json]

Without --url it starts `python -m serve` on free loopback ports (and stops it). Each camera is a thread with its
own TritonEngine stepping its tracks in one request per frame, closed loop (as fast as answers come). Reported:
in-process step latency for one camera's batch, one camera alone through Triton (the added latency per step),
all cameras together (track-steps/s, per-request latency) and the server's rows per execution (batching).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import numpy as np


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1e3
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3)}


def _steps(engine: Any, tracks: int, steps: int, seed: int) -> list[float]:
    """Per-step wall times (s) of STEPS consecutive steps of TRACKS tracks, state fed back."""
    rng = np.random.default_rng(seed)
    width = engine.input_shapes["x"][0]
    state, times = engine.initial_state(tracks), []
    for _ in range(steps):
        feed = {"x": (0.4 * rng.standard_normal((tracks, width))).astype(np.float32),
                "omega": np.zeros((tracks, engine.input_shapes["omega"][0]), np.float32)}
        t0 = time.perf_counter()
        _, state = engine.step(feed, state)
        times.append(time.perf_counter() - t0)
    return times


def run(url: str, token: str | None, cameras: int, tracks: int, steps: int) -> dict[str, Any]:
    import engines
    from engines.triton_engine import TritonEngine

    from .stats import model_stats

    local = engines.load("default", prefer=["onnxruntime"])
    _steps(local, tracks, 20, 0)  # warm-up
    inproc = _steps(local, tracks, steps, 1)
    single = TritonEngine(url)
    _steps(single, tracks, 20, 0)
    alone = _steps(single, tracks, steps, 2)
    before = model_stats(url, token) if token else None

    workers = [TritonEngine(url) for _ in range(cameras)]
    per_worker: list[list[float]] = [[] for _ in range(cameras)]
    start = threading.Barrier(cameras + 1)

    def body(i: int) -> None:
        start.wait()
        per_worker[i] = _steps(workers[i], tracks, steps, 10 + i)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(cameras)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    report: dict[str, Any] = {
        "cameras": cameras, "tracks_per_camera": tracks, "steps": steps, "x_width": local.input_shapes["x"][0],
        "inproc_step_ms": _percentiles(inproc),
        "inproc_track_steps_per_s": round(tracks * steps / sum(inproc), 1),
        "triton_one_camera_step_ms": _percentiles(alone),
        "added_latency_ms_p50": round((np.median(alone) - np.median(inproc)) * 1e3, 3),
        "triton_all_cameras_request_ms": _percentiles([x for w in per_worker for x in w]),
        "triton_track_steps_per_s": round(cameras * tracks * steps / wall, 1),
    }
    if token:
        after = model_stats(url, token)
        rows = after["inference_count"] - before["inference_count"]
        execs = after["execution_count"] - before["execution_count"]
        report["server_rows_per_execution"] = round(rows / execs, 2) if execs else None
        report["server_batch_sizes"] = after["batch_sizes"]
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.bench", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--tracks", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--url", default=None, help="a running server (default: start one)")
    p.add_argument("--access-token", default=None, help="with --url: to read the server's batch statistics")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--queue-delay-us", type=int, default=500)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if min(args.cameras, args.tracks, args.steps) < 1:
        print("python -m serve.bench: error: --cameras, --tracks and --steps must be >= 1", file=sys.stderr)
        return 2
    server = None
    try:
        if args.url is None:
            from .process import ServerProcess, free_ports

            server = ServerProcess(free_ports(3), ["--max-batch", str(args.max_batch), "--queue-delay-us",
                                                   str(args.queue_delay_us)])
            url, token = server.url, server.token
        else:
            url, token = args.url, args.access_token
        report = run(url, token, args.cameras, args.tracks, args.steps)
        report["queue_delay_us"] = args.queue_delay_us if server else None
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
