"""Benchmark the whole live loop on a video: sustained fps and keypoints-ready -> subscriber-received latency.

    python -m stream.bench_loop --source ../shared/data/video/sports2d_demo.mp4 --frames 200 --json
    python -m stream.bench_loop --source ../shared/data/video/sports2d_demo.mp4 --frames 200 --max-people 4 \
        --pipelined --realtime --json

With ``--max-people N`` > 1 or ``--pipelined`` the multi-person path runs (`stream.pipeline_loop`: the mediapipe
wheel's BlazePose networks for N people on LiteRT, `MultiTracker`, one batched model step per frame);
``--pipelined`` puts capture, keypoints and model + publish in their own threads (latest frame wins), and
``--realtime`` plays the file at its own fps, as a camera would deliver it (frames the loop cannot keep up
with are dropped and counted). The JSON then also carries people per frame, dropped-frame % and the batched
model step's cost for 1, 2 and 4 people.

Frames are decoded as fast as possible and resized to ``--width`` (640) before the loop, as a 640x480-class
webcam would deliver them; MediaPipe BlazePose detects, the engine steps, the publisher sends. A subscriber runs
in another process (``python -m stream.subscribe --json``), so the latency includes the real socket hop and
message decoding. Latency = subscriber ``t_receive`` - the time the person's keypoints were ready (detector and
tracker done), matched by ``seq``; both are ``time.monotonic()``, one clock for every process on the host.
The first ``--warmup`` frames (model and detector start-up) are left out of the figures.

CPU time, besides wall time: on a shared machine a stage's wall time mostly measures the other processes, so
the JSON also has each stage's thread CPU (``stages_cpu_ms``: p50 and the per-frame mean, the detector split
into prepare / person detector / landmarks / post; multi-person path only), the source's decode and resize
CPU (``source_cpu_ms``), the whole process's CPU per processed frame (every thread: the decoder's, OpenCV's,
ZeroMQ's) and the subscriber process's, and the load average at the start and the end. ``--width 0`` hands
the detector full-size frames, as ``run_live.py`` does (it then downscales to 640 itself). Test-time
refinement is on, as in ``run_live.py`` (``--no-refine`` turns it off).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from stream.loop import FrameReport, LiveLoop, StageStats
from stream.sources.base import Frame, Source
from stream.stage_clock import StageClock


class ResizedSource(Source):
    """Wraps a source and downsizes its frames to ``width`` pixels wide (aspect kept; smaller frames pass;
    0 = full size). `cpu` keeps the thread-CPU ms of each read's decode and resize."""

    def __init__(self, inner: Source, width: int) -> None:
        super().__init__()
        if width != 0 and width < 64:
            raise ValueError(f"width must be 0 (full size) or >= 64, got {width}")
        self.inner, self.width = inner, int(width) or 1 << 30
        self._fps = inner.fps
        w, h = inner.size
        self._size = (self.width, round(h * self.width / w)) if w > self.width else (w, h)
        self.cpu = StageStats()

    def read(self, timeout: float = 0.1) -> Frame | None:
        clock = StageClock()
        frame = self.inner.read(timeout)
        clock.stop("decode")
        self.finished, self.status = self.inner.finished, self.inner.status
        if frame is None:
            return frame
        self.cpu.add("decode", clock.cpu["decode"])
        if frame.image is None or frame.image.shape[1] <= self.width:
            return frame
        clock.start()
        h, w = frame.image.shape[:2]
        size = (self.width, round(h * self.width / w))
        frame.image = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
        self._size = size
        clock.stop("resize")
        self.cpu.add("resize", clock.cpu["resize"])
        return frame

    def close(self) -> None:
        self.inner.close()
        super().close()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    s = StageStats.summarize(values)
    return {"p50": s["p50"], "p99": s["p99"], "max": s["max"], "n": s["n"]}


def _cpu_summary(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """CPU stage figures: p50 and the per-frame mean (a stage that runs on some frames, like the person
    detector, records 0 on the others, so its mean is its cost per frame)."""
    return {k: {"p50": v["p50"], "mean": v["mean"], "p99": v["p99"]} for k, v in summary.items()}


def run_bench(source_path: Path, frames: int, checkpoint: str, engine_name: str, width: int, warmup: int,
              max_people: int = 1, pipelined: bool = False, realtime: bool = False, refine: bool = True,
              detector_options: dict[str, Any] | None = None, record: Path | None = None,
              smooth: bool = True, gc_between_frames: bool = True) -> dict[str, Any]:
    import engines
    from mocap.fitting import RefineConfig
    from mocap.smoothing import SmoothingConfig
    from stream.__main__ import _single_thread_torch
    from stream.camera_motion import make_camera_motion
    from stream.detector import MediaPipePoseDetector
    from stream.publisher import Publisher
    from stream.sources import OpenCVSource
    from stream.tracker import Tracker

    engine = engines.load(checkpoint, prefer=None if engine_name == "auto" else [engine_name])
    _single_thread_torch(engine)
    source = ResizedSource(OpenCVSource(source_path, realtime=realtime), width)
    multi = max_people > 1 or pipelined
    if multi:
        from stream.detector.blazepose_multi import BlazePoseMultiDetector, loop_threads
        from stream.pipeline_people import bench_batched_step

        detector_options = {"num_threads": loop_threads(pipelined), **(detector_options or {})}  # as run_live.py
        detector: Any = BlazePoseMultiDetector(max_people, input_width=width or 640, fps=source.fps,
                                               **detector_options)
    else:
        detector = MediaPipePoseDetector(input_width=width or 640)
    refine_config = RefineConfig() if refine else None
    smoothing = SmoothingConfig() if smooth else None
    recorder = None
    if record is not None:  # every published message, as run_live.py --record writes them (outputs compared)
        from stream.recorder import Recorder

        recorder = Recorder(record, overwrite=True)
    load_start = os.getloadavg()
    reports: dict[int, FrameReport] = {}
    # The subscriber writes to a file, not a pipe: an undrained pipe would stall it and drop messages.
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as publisher, tempfile.TemporaryFile("w+") as sub_out:
        sub = subprocess.Popen([sys.executable, "-m", "stream.subscribe", publisher.endpoint, "--json"],
                               stdout=sub_out, stderr=subprocess.DEVNULL, text=True)
        try:
            if not publisher.wait_for_subscriber(20.0):
                raise RuntimeError("the subscriber process never connected")
            if multi:
                from stream.multi_tracker import MultiTracker
                from stream.pipeline_loop import MultiPersonLoop

                loop: LiveLoop = MultiPersonLoop(
                    source, detector, MultiTracker(max_people=max_people, max_lost=14, fps=source.fps),
                    make_camera_motion("static"), engine, publisher, clock="media", pipelined=pipelined,
                    lossless=not realtime, skip_late=realtime and not pipelined, refine=refine_config, smoothing=smoothing,
                    recorder=recorder, collect_between_frames=gc_between_frames)
            else:
                loop = LiveLoop(source, detector, Tracker(max_lost=14, fps=source.fps), make_camera_motion("static"),
                                engine, publisher, clock="media", skip_late=realtime, refine=refine_config, smoothing=smoothing,
                                recorder=recorder, collect_between_frames=gc_between_frames)
            loop.on_frame = lambda r: reports.__setitem__(r.seq, r)
            cpu_start = time.process_time()
            stats = loop.run(frames)
            process_cpu_s = time.process_time() - cpu_start
            time.sleep(0.5)  # let the last messages arrive
            sub.send_signal(signal.SIGTERM)
            sub.wait(timeout=10)
            sub_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            sub_out.seek(0)
            out = sub_out.read()
        finally:
            if sub.poll() is None:
                sub.kill()
            source.close()
            detector.close()
            if recorder is not None:
                recorder.close()
    lines = out.strip().splitlines()
    received: dict[int, float] = {}
    for line in lines[:-1]:
        msg = json.loads(line)
        if msg.get("heartbeat"):
            continue
        # several people share a frame's seq: the frame is received when its last message is
        received[msg["seq"]] = max(msg["t_receive"], received.get(msg["seq"], 0.0))
    kept = sorted(seq for seq in reports if seq >= warmup)
    t_ready = [reports[s].t_keypoints for s in kept]
    fps = (len(kept) - 1) / (reports[kept[-1]].t_published - reports[kept[0]].t_published) if len(kept) > 1 else None
    kp_to_rx = [(received[s] - reports[s].t_keypoints) * 1e3 for s in kept if s in received]
    cap_to_rx = [(received[s] - reports[s].t_capture) * 1e3 for s in kept if s in received]
    trained = str(checkpoint) == "default" or Path(checkpoint).resolve() == engines.DEFAULT_CHECKPOINT.resolve()
    span = (max(reports) - min(reports) + 1) if reports else 0
    extra: dict[str, Any] = {}
    if multi:
        extra = {"people": stats.get("people"), "slot_dropped": stats.get("slot_dropped"),
                 "stages_cpu_ms": _cpu_summary(stats.get("stages_cpu_ms", {})),
                 "batched_model_step_ms": bench_batched_step(engine),
                 "batched_model_step_cpu_ms": bench_batched_step(engine, clock=time.thread_time)}
    processed = max(stats["frames"], 1)
    return {
        "source": str(source_path),
        "frames": stats["frames"],
        "frame_size": list(source.size),
        "warmup_frames": warmup,
        "sustained_fps": fps,
        "engine": engine.name,
        "engine_device": engine.device,
        "model": stats["model"],
        "trained_default_model": trained,
        "detector": f"{detector.name} at {width or 640} px wide",
        "detector_options": detector_options or {},
        "refine": refine,
        "smooth": smooth,
        "gc_between_frames": gc_between_frames,
        "gc_passes": dict(loop.garbage.passes) if loop.garbage is not None else None,
        "max_people": max_people,
        "pipelined": pipelined,
        "realtime": realtime,
        "dropped": stats["dropped"],
        "dropped_pct": 100.0 * stats["dropped"] / max(stats["dropped"] + stats["frames"], 1),
        "processed_seq_span": span,
        "published": stats["published"],
        "received": len(received),
        "lost": stats["lost"],
        "latency_keypoints_to_receive_ms": _percentiles(kp_to_rx),
        "latency_capture_to_receive_ms": _percentiles(cap_to_rx),
        "stages_ms": {k: {"p50": v["p50"], "p99": v["p99"]} for k, v in stats["stages_ms"].items()},
        "reproj_err_rel_p50": stats["reproj_err_rel"]["p50"],
        "source_cpu_ms": _cpu_summary(source.cpu.summary()),
        "process_cpu_ms_per_frame": 1e3 * process_cpu_s / processed,
        "subscriber_cpu_ms_per_frame": 1e3 * (sub_cpu.ru_utime + sub_cpu.ru_stime) / processed,
        "measured_frames": len(t_ready),
        "cpu_count": os.cpu_count(),
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        **extra,
    }


def _option(text: str) -> tuple[str, Any]:
    """"name=value" -> (name, value as JSON when it parses, else the string)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.bench_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="video file")
    parser.add_argument("--frames", type=int, default=200, help="frames to run (default 200)")
    parser.add_argument("--checkpoint", default="default", help="model for engines.load (default: the shipped one)")
    parser.add_argument("--engine", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    parser.add_argument("--width", type=int, default=640,
                        help="frames are resized to this width (default 640; 0 = full size, as run_live.py)")
    parser.add_argument("--warmup", type=int, default=10, help="first frames left out of the figures")
    parser.add_argument("--max-people", type=int, default=1, metavar="N",
                        help="people to follow; > 1 runs the multi-person path (default 1: single-person MediaPipe)")
    parser.add_argument("--pipelined", action="store_true",
                        help="capture / keypoints / model+publish threads with latest-frame-wins hand-off")
    parser.add_argument("--realtime", action="store_true", help="play the file at its fps, as a camera")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                        help="test-time refinement of each step, as run_live.py (default on)")
    parser.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                        help="One-Euro smoothing of the published poses, as run_live.py (default on)")
    parser.add_argument("--gc-between-frames", action=argparse.BooleanOptionalAction, default=True,
                        help="Python's garbage collector between frames, as run_live.py (default on; off = "
                             "CPython's own timing, mid-frame)")
    parser.add_argument("--detector-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a BlazePoseMultiDetector keyword (multi-person path), e.g. num_threads=2; repeatable")
    parser.add_argument("--record", type=Path, default=None, metavar="FILE",
                        help="also write every published message to FILE (JSON Lines, replaced if it exists)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if not Path(args.source).is_file():
        parser.error(f"--source {args.source!r}: no such video file")
    if args.frames <= args.warmup + 1:
        parser.error("--frames must exceed --warmup + 1")
    if args.max_people < 1:
        parser.error(f"--max-people must be >= 1, got {args.max_people}")
    try:
        options = dict(_option(text) for text in args.detector_option)
    except ValueError as exc:
        parser.error(f"--detector-option: {exc}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run_bench(Path(args.source), args.frames, args.checkpoint, args.engine, args.width, args.warmup,
                       args.max_people, args.pipelined, args.realtime, args.refine, options, args.record,
                       smooth=args.smooth, gc_between_frames=args.gc_between_frames)
    if args.json:
        print(json.dumps(result))
    else:
        lat = result["latency_keypoints_to_receive_ms"]
        print(f"{result['sustained_fps']:.1f} fps sustained over {result['measured_frames']} frames "
              f"({result['frame_size'][0]}x{result['frame_size'][1]}, {result['engine']}, {result['model']}); "
              f"keypoints ready -> received: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
