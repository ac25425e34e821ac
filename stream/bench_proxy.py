"""Throughput and added latency of the fan-out proxy on loopback, with full ``tracking`` messages.

    python -m stream.bench_proxy [--cameras 8] [--tracks 3] [--rate 60] [--seconds 3] [--json]

Camera publishers (threads, ``pose/cam<i>/<track>``) send at RATE frames/s each through an in-process
``stream.proxy.Proxy`` (its own thread) to one subscriber; reported: messages offered and received, loss, the
received rate, and publish->receive latency (one hop more than a direct publisher: compare stream.bench_publish).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np

from .bench_publish import realistic_message
from .proxy import Proxy
from .publisher import Publisher
from .subscribe import Subscriber


def run(cameras: int, tracks: int, rate: float, seconds: float) -> dict:
    with Proxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", hwm=4096) as proxy:
        forward = threading.Thread(target=proxy.run, daemon=True)
        forward.start()
        sub = Subscriber(proxy.subscribers_endpoint, rcvhwm=100_000, rcvbuf=-1)
        pubs = [Publisher(connect=proxy.cameras_endpoint, camera_id=f"cam{i}", hwm=4096, sndbuf=-1)
                for i in range(cameras)]
        time.sleep(1.0)  # subscriptions travel upstream before the first measured message
        latencies: list[float] = []
        sent = [0] * cameras
        done = threading.Event()

        def camera(i: int) -> None:
            rng = np.random.default_rng(i)
            frames = int(rate * seconds)
            t0 = time.monotonic()
            for f in range(frames):
                for t in range(tracks):
                    if pubs[i].publish(realistic_message(f, t, rng)):
                        sent[i] += 1
                wait = t0 + (f + 1) / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)

        threads = [threading.Thread(target=camera, args=(i,), daemon=True) for i in range(cameras)]
        t_start = time.monotonic()
        for t in threads:
            t.start()

        def reader() -> None:
            while not done.is_set():
                got = sub.recv(timeout=0.1)
                if got is not None:
                    latencies.append(got.t_receive - got.msg.t_publish)

        r = threading.Thread(target=reader, daemon=True)
        r.start()
        for t in threads:
            t.join()
        time.sleep(0.5)
        done.set()
        r.join(2)
        elapsed = time.monotonic() - t_start
        for p in pubs:
            p.close()
        sub.close()
        proxy.stop()
        forward.join(2)
    offered = sum(sent)
    lat = np.asarray(latencies) * 1e3 if latencies else np.asarray([np.nan])
    return {"cameras": cameras, "tracks": tracks, "rate_hz": rate, "offered": offered, "received": len(latencies),
            "lost": offered - len(latencies), "received_per_s": round(len(latencies) / elapsed, 1),
            "latency_publish_ms": {"p50": round(float(np.percentile(lat, 50)), 3),
                                   "p99": round(float(np.percentile(lat, 99)), 3)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.bench_proxy", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--tracks", type=int, default=3)
    p.add_argument("--rate", type=float, default=60.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.cameras < 1 or args.tracks < 1 or args.rate <= 0 or args.seconds <= 0:
        print("python -m stream.bench_proxy: error: counts and rate must be positive", file=sys.stderr)
        return 2
    report = run(args.cameras, args.tracks, args.rate, args.seconds)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0 if report["received"] else 1


if __name__ == "__main__":
    sys.exit(main())
