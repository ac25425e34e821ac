"""How stale is what a slow reader sees? The queue bound of the pose stream, measured, in both reading modes.

    python -m stream.bench_staleness [--rate 30] [--read-s 0.5] [--seconds 20] [--json]

A publisher sends full ``tracking`` messages at ``--rate`` Hz; a subscriber in another process takes
``--read-s`` seconds per message (a slow game loop, a viewer on a busy machine). For each mode it reports the
age of every message at the moment the reader gets it (``now - t_capture``, ms: p50 / p99 / max) and that age in
frame intervals. ``every`` (the queued mode): once the queue (publisher HWM + both kernel buffers + the
subscriber's HWM) is full, each message waits for the Q reads ahead of it, so its age is Q x the read time
(``queued_messages`` = Q); it is first filled at (rate - read rate) messages/s, so ``--warmup-s`` must cover
that. ``latest`` stays under a frame interval plus the reader's own latency, whatever the read time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from typing import Any

import numpy as np

from .bench_publish import realistic_message
from .protocol import encode
from .publisher import Publisher
from .subscribe import Subscriber


def _reader(addr: str, latest: bool, read_s: float, seconds: float, out: Any) -> None:
    ages: list[tuple[float, float]] = []  # (t_read, age s)
    with Subscriber(addr, latest=latest) as sub:
        end = time.monotonic() + seconds
        out.put("ready")
        while time.monotonic() < end:
            got = sub.recv(timeout=1.0)
            if got is None:
                continue
            now = time.monotonic()
            ages.append((now, now - got.msg.t_capture))
            time.sleep(read_s)
    out.put(ages)


def measure(mode: str, rate: float, read_s: float, seconds: float, warmup_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    rng = np.random.default_rng(0)
    with Publisher("tcp://127.0.0.1:*", watch_subscribers=True) as pub:
        proc = ctx.Process(target=_reader, args=(pub.endpoint, mode == "latest", read_s, seconds, out), daemon=True)
        proc.start()
        assert out.get(timeout=60) == "ready"
        pub.wait_for_subscriber(10.0)
        t0, seq = time.monotonic(), 0
        while proc.is_alive():
            msg = realistic_message(seq, 0, rng)
            msg.t_capture = time.monotonic()
            pub.publish(msg)
            seq += 1
            time.sleep(max(0.0, t0 + seq / rate - time.monotonic()))
            if not out.empty():
                break
        ages = out.get(timeout=30)
        proc.join(timeout=5)
    start = ages[0][0] + warmup_s if ages else 0.0
    kept = np.array([a for t, a in ages if t >= start]) * 1e3
    if kept.size == 0:
        return {"mode": mode, "reads": 0}
    frame_ms = 1e3 / rate
    return {"mode": mode, "reads": int(kept.size), "age_ms": {"p50": float(np.percentile(kept, 50)),
            "p99": float(np.percentile(kept, 99)), "max": float(kept.max())},
            "age_frames": {"p50": float(np.percentile(kept, 50) / frame_ms), "max": float(kept.max() / frame_ms)},
            # Once the queue is full, a message waits for the Q reads ahead of it: age = Q * read time.
            "queued_messages": float(np.percentile(kept, 50) / 1e3 / read_s) if read_s > 0 else None,
            "message_bytes": len(encode(realistic_message(0, 0, rng)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.bench_staleness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz (default 30)")
    parser.add_argument("--read-s", type=float, default=0.5, help="seconds the reader spends per message (0.5)")
    parser.add_argument("--seconds", type=float, default=20.0, help="reader run time per mode (default 20)")
    parser.add_argument("--warmup-s", type=float, default=8.0, help="first seconds left out (queue filling; 8)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.rate > 0 and args.read_s >= 0 and args.seconds > args.warmup_s >= 0):
        parser.error("need --rate > 0, --read-s >= 0 and --seconds > --warmup-s >= 0")
    config: dict[str, Any] = {key: value for key, value in vars(args).items() if key != "json"}
    modes = [measure(mode, args.rate, args.read_s, args.seconds, args.warmup_s) for mode in ("every", "latest")]
    results = {"config": config, "modes": modes}
    if args.json:
        print(json.dumps(results))
    else:
        for r in modes:
            a = r.get("age_ms") or {}
            print(f"{r['mode']:>6}: {r['reads']} reads, age p50 {a.get('p50', float('nan')):.0f} ms, "
                  f"max {a.get('max', float('nan')):.0f} ms ({r.get('age_frames', {}).get('max', float('nan')):.1f} "
                  "frame intervals)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
