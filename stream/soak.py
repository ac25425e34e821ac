"""Soak test of the live loop: run it for minutes, report memory, latency and drops per time window as JSON.

    python -m stream.soak --minutes 60 [--window-s 60] [--checkpoint default] [--render]

The synthetic person at its real-time pace (30 fps) goes through the real path (normalization, the engine,
the publisher on loopback) while a subscriber thread reads every message. Each window reports the process RSS,
loop latency (capture -> handed to the publisher) p50/p99, receive latency (capture -> subscriber) p50/p99 and
every kind of drop. The verdict compares the last window with the first one after warm-up: RSS growth (MB) and
p99 drift (%). Why windows and not one figure: a leak or a growing queue shows as a trend, which a single
percentile over an hour hides. One progress line per window goes to stderr, so a log shows how far a killed run got.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.loop import FrameReport, LiveLoop

log = logging.getLogger(__name__)


def rss_mb() -> float:
    """Resident set size of this process in MB (from /proc; 0.0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


@dataclass
class _Window:
    loop_ms: list[float] = field(default_factory=list)
    receive_ms: list[float] = field(default_factory=list)
    received: int = 0
    seq_gaps: int = 0


class _Reader(threading.Thread):
    """Subscriber thread: receive latency and seq gaps of pose messages (heartbeats are not frames)."""

    def __init__(self, addr: str, collect: "Soak") -> None:
        super().__init__(daemon=True, name="soak-subscriber")
        from stream.subscribe import Subscriber

        self.sub = Subscriber(addr)
        self.collect = collect
        self.halt = threading.Event()
        self._last_seq: int | None = None

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                got = self.sub.recv(0.2)
            except ValueError:
                self.collect.undecodable += 1
                continue
            if got is None or got.msg.status == "lost" and not got.msg.pose_aa and got.msg.seq == self._last_seq:
                continue  # a timeout, or a heartbeat repeating the last frame's seq
            self.collect.on_receive(got.msg.seq, (got.t_receive - got.msg.t_capture) * 1e3, self._last_seq)
            self._last_seq = got.msg.seq if self._last_seq is None else max(self._last_seq, got.msg.seq)
        self.sub.close()


class Soak:
    """Collects per-window figures from the loop's frame reports and the subscriber thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window = _Window()
        self.undecodable = 0
        # Counts, not seq sets: a set of every seq grows by ~12 MB an hour and would itself fail the memory verdict.
        # Exact all the same: each frame message has its own seq, so what arrived is a subset of what was sent.
        self.sent = 0        # frame messages handed to the publisher
        self.received = 0    # frame messages the subscriber got (heartbeats excluded by the reader)

    def on_frame(self, report: FrameReport) -> None:
        with self.lock:
            self.window.loop_ms.append((report.t_published - report.t_capture) * 1e3)
            self.sent += 1

    def lost_in_transport(self) -> int:
        """Messages handed to the publisher that never reached the subscriber: the exact count, unlike seq gaps,
        which also hold the frames the loop skipped or the source replaced."""
        with self.lock:
            return max(0, self.sent - self.received)

    def on_receive(self, seq: int, latency_ms: float, last_seq: int | None) -> None:
        with self.lock:
            self.window.receive_ms.append(latency_ms)
            self.window.received += 1
            self.received += 1
            if last_seq is not None and seq > last_seq + 1:
                self.window.seq_gaps += seq - last_seq - 1

    def take(self) -> _Window:
        with self.lock:
            window, self.window = self.window, _Window()
        return window


def run_soak(minutes: float, window_s: float, checkpoint: str, render: bool, warmup_windows: int
             ) -> dict[str, Any]:
    import engines
    from stream.__main__ import _single_thread_torch
    from stream.camera_motion import make_camera_motion
    from stream.publisher import Publisher
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    engine = engines.load(checkpoint)
    _single_thread_torch(engine)
    source = SyntheticSource(realtime=True, render=render)
    collect = Soak()
    windows: list[dict[str, Any]] = []
    with Publisher("tcp://127.0.0.1:*") as publisher:
        reader = _Reader(publisher.endpoint, collect)
        reader.start()
        publisher.wait_for_subscriber(10.0)
        loop = LiveLoop(source, None, Tracker(max_lost=14, fps=source.fps), make_camera_motion("static"), engine,
                        publisher, clock="media", skip_late=True)
        loop.on_frame = collect.on_frame
        t_start = time.monotonic()
        t_end = t_start + minutes * 60.0
        done = threading.Event()

        def sample() -> None:
            last = loop.stats()
            n = 0
            while not done.wait(max(0.0, t_start + (n + 1) * window_s - time.monotonic())):
                n += 1
                stats = loop.stats()
                w = collect.take()
                row = {
                    "window": n,
                    "t_end_s": round(time.monotonic() - t_start, 1),
                    "rss_mb": round(rss_mb(), 2),
                    "frames": stats["frames"] - last["frames"],
                    "received": w.received,
                    "loop_latency_ms": _pcts(w.loop_ms),
                    "receive_latency_ms": _pcts(w.receive_ms),
                    "seq_gaps": w.seq_gaps,
                    "publish_dropped": stats["publish_dropped"] - last["publish_dropped"],
                    "skipped_late": stats["skipped_late"] - last["skipped_late"],
                    "errors": sum(stats["errors"].values()) - sum(last["errors"].values()),
                }
                windows.append(row)
                last = stats
                print(json.dumps(row), file=sys.stderr, flush=True)
                if time.monotonic() >= t_end - 1e-3:
                    loop.stop()
                    return

        sampler = threading.Thread(target=sample, daemon=True, name="soak-sampler")
        sampler.start()
        try:
            stats = loop.run()
        finally:
            done.set()
            sampler.join(timeout=5)
            time.sleep(0.3)
            reader.halt.set()
            reader.join(timeout=5)
            source.close()
    return {"config": {"minutes": minutes, "window_s": window_s, "source": repr(source), "engine": engine.name,
                       "model": stats["model"], "render": render, "warmup_windows": warmup_windows,
                       "cpu_count": os.cpu_count()},
            "windows": windows, "verdict": verdict(windows, warmup_windows, collect.lost_in_transport()),
            "totals": {"frames": stats["frames"], "published": stats["published"], "errors": stats["errors"],
                       "undecodable": collect.undecodable}}


def verdict(windows: list[dict[str, Any]], warmup_windows: int, lost_in_transport: int | None = None
            ) -> dict[str, Any]:
    """Memory growth and p99 drift between the first window after warm-up and the last; drops summed.

    `lost_in_transport` (frame messages sent and never received) makes the unexplained drops exact; without it
    (re-verdicts of old reports) they are estimated as seq gaps minus skipped frames."""
    if len(windows) <= warmup_windows:
        return {"note": f"fewer than {warmup_windows + 1} windows: nothing to compare"}
    first, last = windows[warmup_windows], windows[-1]

    def drift(key: str) -> float | None:
        a, b = first[key]["p99"], last[key]["p99"]
        return None if a is None or b is None or a <= 0 else 100.0 * (b - a) / a

    return {
        "rss_first_mb": first["rss_mb"], "rss_last_mb": last["rss_mb"],
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 2),
        "rss_max_mb": max(w["rss_mb"] for w in windows[warmup_windows:]),
        "loop_p99_drift_pct": drift("loop_latency_ms"),
        "receive_p99_drift_pct": drift("receive_latency_ms"),
        "seq_gaps": sum(w["seq_gaps"] for w in windows),
        "publish_dropped": sum(w["publish_dropped"] for w in windows),
        "skipped_late": sum(w["skipped_late"] for w in windows),
        # A frame the loop skipped (behind real time: CPU contention) never gets a message, so it shows as a
        # seq gap too; what is left is a message lost between publisher and subscriber.
        "unexplained_drops": lost_in_transport if lost_in_transport is not None else
        max(0, sum(w["seq_gaps"] for w in windows) - sum(w["skipped_late"] for w in windows))
        + sum(w["publish_dropped"] for w in windows),
        "unexplained_drops_exact": lost_in_transport is not None,
        "errors": sum(w["errors"] for w in windows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=0.0, help="how long to run (required unless --reverdict)")
    parser.add_argument("--window-s", type=float, default=60.0, help="seconds per reported window (default 60)")
    parser.add_argument("--warmup-windows", type=int, default=1, help="windows left out of the verdict (default 1)")
    parser.add_argument("--checkpoint", default="default", help="model for engines.load (default: the shipped one)")
    parser.add_argument("--render", action="store_true", help="also render the synthetic images (heavier)")
    parser.add_argument("--reverdict", metavar="JSON", default=None,
                        help="recompute the verdict of a finished soak's JSON output (e.g. with more warm-up windows)")
    args = parser.parse_args(argv)
    if args.reverdict:
        with open(args.reverdict, encoding="utf-8") as f:
            done = json.loads(f.read().strip().splitlines()[-1])
        done["verdict"] = verdict(done["windows"], args.warmup_windows)
        done["config"]["warmup_windows"] = args.warmup_windows
        print(json.dumps(done["verdict"]))
        return 0
    if not args.minutes > 0 or not args.window_s > 0 or args.warmup_windows < 0:
        parser.error("--minutes and --window-s must be > 0, --warmup-windows >= 0")
    if args.window_s > args.minutes * 60:
        parser.error("--window-s must not exceed the run (--minutes * 60)")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run_soak(args.minutes, args.window_s, args.checkpoint, args.render, args.warmup_windows)
    print(json.dumps(result), flush=True)
    return 0 if result["windows"] else 1


if __name__ == "__main__":
    sys.exit(main())
