"""Reprojection error over time on a real video, background adaptation on vs off (issue 11's plot).

    python -m stream.adaptation.bench --source ../shared/data/video/sports2d_demo.mp4 --passes 3 --every 60 \
        --refine --smooth --json --plot docs/adaptation_sports2d.png

BlazePose runs once over the video; its keypoints are then replayed through the real live loop and engine (the
same model path as run_live.py) `--passes` times, as a user who keeps being filmed, once without and once with
adaptation. With adaptation, a worker cycle runs synchronously every `--every` frames (the decision the
background worker would take, without its timing noise: the live command runs the same cycle off the frame path,
and its result lands a few seconds later). Prints one JSON object: per-pass median reprojection error (relative to
the keypoint box height) off / on, and the worker's counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mocap.skeleton import NUM_KEYPOINTS
from stream.loop import FrameReport, LiveLoop
from stream.sources.base import Frame, Source

log = logging.getLogger(__name__)


class KeypointReplay(Source):
    """Frames that carry pre-detected keypoints (the loop then skips its detector), at the video's size/fps."""

    def __init__(self, keypoints: list[np.ndarray | None], size: tuple[int, int], fps: float) -> None:
        super().__init__()
        self._kp, self._size, self._fps, self._i = keypoints, size, fps, 0
        self.status = "replaying keypoints"

    def read(self, timeout: float = 0.1) -> Frame | None:
        if self._i >= len(self._kp):
            self.finished = True
            return None
        kp = self._kp[self._i]
        frame = Frame(None, self._i, time.monotonic(), kp if kp is not None else np.zeros((NUM_KEYPOINTS, 3), np.float32),
                      {"video_time": self._i / self._fps})
        self._i += 1
        return frame


def detect_video(path: str) -> tuple[list[np.ndarray | None], tuple[int, int], float]:
    """BlazePose keypoints (21, 3) per frame (None where nobody is found), frame size, fps."""
    from stream.detector import MediaPipePoseDetector
    from stream.sources import OpenCVSource

    src = OpenCVSource(path, realtime=False)
    det = MediaPipePoseDetector(input_width=640)
    out: list[np.ndarray | None] = []
    try:
        while True:
            frame = src.read(1.0)
            if frame is None:
                if src.finished:
                    break
                continue
            assert frame.image is not None  # a video source's frames always carry the image
            found = det.detect(frame.image)
            out.append(np.asarray(found[0].keypoints, np.float32) if found else None)
        return out, src.size, float(src.fps)
    finally:
        det.close()
        src.close()


def replay(keypoints: list[np.ndarray | None], size: tuple[int, int], fps: float, passes: int, worker: Any,
           every: int, engine: Any, refine: bool = False, smooth: bool = False) -> list[dict[str, Any]]:
    """Per processed frame: pass, frame index, reprojection error, generation. refine / smooth: the live
    command's test-time refinement and output smoothing (both on in `run_live.py` by default)."""
    from mocap.fitting import RefineConfig
    from mocap.smoothing import SmoothingConfig
    from stream.camera_motion import make_camera_motion
    from stream.tracker import Tracker

    class Sink:
        def publish(self, msg: Any) -> bool:
            return True

    rows: list[dict[str, Any]] = []
    for p in range(passes):
        loop = LiveLoop(KeypointReplay(keypoints, size, fps), None, Tracker(max_lost=14, fps=fps),
                        make_camera_motion("static"), engine, Sink(), lost_reset_frames=15, clock="media",
                        refine=RefineConfig() if refine else None, smoothing=SmoothingConfig() if smooth else None)

        def on_frame(report: FrameReport, p: int = p) -> None:
            rows.append({"pass": p, "frame": report.seq, "reproj": report.reproj_err,
                         "generation": int(getattr(engine, "generation", 0))})
            if worker is not None and (len(rows) % every) == 0:
                worker.run_once()

        loop.on_frame = on_frame
        if worker is not None:
            loop.on_model_step = worker.on_step
        loop.run()
    return rows


def medians(rows: list[dict[str, Any]]) -> list[float | None]:
    out = []
    for p in sorted({r["pass"] for r in rows}):
        vals = [r["reproj"] for r in rows if r["pass"] == p and r["reproj"] is not None]
        out.append(round(float(np.median(vals)), 4) if vals else None)
    return out


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], out: Path, path_note: str = "") -> None:
    """One panel per video; path_note (e.g. "refinement + smoothing") goes into each title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.2 * len(results)), squeeze=False)
    for ax, (name, runs) in zip(axes[:, 0], results.items()):
        for label, rows in runs.items():
            x = np.arange(len(rows))
            y = np.array([np.nan if r["reproj"] is None else 100 * r["reproj"] for r in rows])
            k = 15  # running median over half a second: the raw per-frame error is noisy
            smooth = np.array([np.nanmedian(y[max(0, i - k + 1): i + 1]) for i in range(len(y))])
            ax.plot(x, smooth, label=label)
            if label.startswith("adapt"):
                gens = np.array([r["generation"] for r in rows])
                for i in np.flatnonzero(np.diff(gens)) + 1:
                    ax.axvline(i, color="grey", lw=0.6, ls=":")
        starts = [i for i, r in enumerate(next(iter(runs.values()))) if i and r["pass"] != next(iter(runs.values()))[i - 1]["pass"]]
        for i in starts:
            ax.axvline(i, color="black", lw=0.8)
        ax.set_title(f"{name}{path_note}: reprojection error (running median of 15 frames); "
                     "black = next pass, dotted = swap")
        ax.set_xlabel("processed frame")
        ax.set_ylabel("% of keypoint box height")
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def paced_latency(mode: str, seconds: float, fps: float = 30.0, warm_frames: int = 300, rest: float = 0.0,
                  interval_s: float = 0.05) -> dict[str, Any]:
    """Model-stage latency of the live engine stepping at FPS for SECONDS, with the adaptation worker (mode
    "thread" / "process") pausing `interval_s` between cycles (0.05: back to back, the worst case; run_live.py's
    --adapt-interval default is 3 s), or absent ("off"). The worker is first fed `warm_frames` real model steps
    (the synthetic walker through the loop), so it has something to adapt on from the first second."""
    import engines
    from stream.adaptation.setup import build_worker
    from stream.camera_motion import make_camera_motion
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    class Sink:
        def publish(self, msg: Any) -> bool:
            return True

    engine = engines.load("default", prefer=["onnxruntime"])
    steps: list[Any] = []
    loop = LiveLoop(SyntheticSource(realtime=False, render=False, n_frames=warm_frames), None, Tracker(max_lost=4),
                    make_camera_motion("static"), engine, Sink(), lost_reset_frames=5, clock="media")
    loop.on_model_step = steps.append
    loop.run()
    worker = None
    with tempfile.TemporaryDirectory() as tmp:
        if mode != "off":
            worker = build_worker(engine, "default", profile="latency", profile_dir=tmp, mode=mode,
                                  interval_s=interval_s, rest=rest)
            for st in steps:
                worker.on_step(st)
            worker.start()
        state = engine.initial_state(1)
        times: list[float] = []
        period, t_next, t_end = 1.0 / fps, time.perf_counter(), time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < t_end:
            st = steps[i % len(steps)]
            t0 = time.perf_counter()
            _, state = engine.step({"x": st.x[None], "omega": st.omega[None]}, state)
            times.append((time.perf_counter() - t0) * 1e3)
            i += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))
        stats = worker.stats() if worker is not None else None
        if worker is not None:
            worker.close()
    arr = np.asarray(times)
    return {"mode": mode, "steps": len(times), "p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3), "max_ms": round(float(arr.max()), 2),
            "worker": None if stats is None else {k: stats[k] for k in ("cycles", "accepted", "rejected", "errors")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.adaptation.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", nargs="+", default=None, help="video file(s)")
    p.add_argument("--latency", default=None, metavar="MODES",
                   help="instead: paced model-stage latency with the worker off/thread/process, e.g. off,thread,process "
                        "(each --reps times, interleaved, --seconds each)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rest", type=float, default=0.0, help="worker sleep per second of optimizer step (duty cycle)")
    p.add_argument("--interval", type=float, default=0.05,
                   help="--latency: seconds between the worker's cycles (default 0.05: back to back; run_live's is 3)")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--every", type=int, default=60, help="frames between adaptation cycles")
    p.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "torch"))
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=False,
                   help="test-time refinement after each step, as run_live.py does by default")
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=False,
                   help="output smoothing, as run_live.py does by default")
    p.add_argument("--plot", type=Path, default=None, help="write the PNG here")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.passes < 1 or args.every < 1 or not args.interval > 0:
        print("error: --passes and --every must be >= 1, --interval > 0", file=sys.stderr)
        return 2
    if args.latency:
        modes = [m.strip() for m in args.latency.split(",")]
        if any(m not in ("off", "thread", "process") for m in modes):
            print("error: --latency takes off, thread and/or process", file=sys.stderr)
            return 2
        latency_runs = [paced_latency(m, args.seconds, rest=args.rest, interval_s=args.interval)
                        for _ in range(args.reps) for m in modes]

        def median_ms(key: str, mode: str) -> float:
            return round(float(np.median([r[key] for r in latency_runs if r["mode"] == mode])), 3)

        summary = {m: {"p99_ms_median": median_ms("p99_ms", m), "p50_ms_median": median_ms("p50_ms", m)} for m in modes}
        out = {"seconds": args.seconds, "reps": args.reps, "rest": args.rest, "interval": args.interval,
               "summary": summary,
               "runs": latency_runs}
        print(json.dumps(out) if args.json else json.dumps(out, indent=2))
        return 0
    if not args.source:
        print("error: give --source VIDEO... (or --latency MODES)", file=sys.stderr)
        return 2
    import engines
    from stream.adaptation.setup import build_worker

    report: dict[str, Any] = {"every": args.every, "passes": args.passes, "engine": args.engine,
                              "refine": args.refine, "smooth": args.smooth, "videos": {}}
    plots: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for video in args.source:
        if not Path(video).is_file():
            print(f"error: {video}: no such file", file=sys.stderr)
            return 2
        keypoints, size, fps = detect_video(video)
        runs: dict[str, list[dict[str, Any]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label in ("off", "adapt"):
                engine = engines.load("default", prefer=[args.engine])
                worker = build_worker(engine, "default", profile="bench", profile_dir=tmp) if label == "adapt" else None
                t0 = time.perf_counter()
                runs[label] = replay(keypoints, size, fps, args.passes, worker, args.every, engine, args.refine,
                                     args.smooth)
                entry = {"median_reproj_per_pass": medians(runs[label]), "seconds": round(time.perf_counter() - t0, 1)}
                if worker is not None:
                    entry["worker"] = worker.stats()
                    entry["events"] = [{k: e[k] for k in ("kind", "generation", "detail")} for e in worker.events]
                    worker.close()
                report["videos"].setdefault(Path(video).name, {})[label] = entry
        report["videos"][Path(video).name]["frames"] = len(keypoints)
        plots[Path(video).name] = runs
    if args.plot is not None:
        stages = [name for name, on in (("refinement", args.refine), ("smoothing", args.smooth)) if on]
        plot(plots, args.plot, f" ({' + '.join(stages)})" if stages else "")
        report["plot"] = str(args.plot)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
