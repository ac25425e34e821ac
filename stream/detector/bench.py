"""Measure a detector's throughput on a video: `python -m stream.detector.bench --video FILE --json`.

Frames are decoded first and resized to `--width` (like a webcam frame; 0 keeps the full size, as `run_live.py`
hands them over), so only `detect()` is timed; `--height` centre-crops to that aspect first (e.g. 640x480, a
webcam's 4:3, from a 16:9 video). The first `--warmup` frames are excluded (model loading, first person
detection). Besides wall time it reports the whole process's CPU time per frame (OpenCV's and XNNPACK's worker
threads included: wall time on a shared machine measures the other processes), and for `blazepose-multi` the
person-detector runs, crops, and the 2-D limb jitter of the tracks `MultiTracker` makes of them.
`--detector-option NAME=VALUE` (repeatable) passes a constructor option, e.g. `full_res_crops=false`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import cv2
import numpy as np

from stream.detector import create_detector
from stream.detector.blazepose_multi import BlazePoseMultiDetector
from stream.multi_tracker import MultiTracker
from stream.sources import OpenCVSource


def _fit(image: np.ndarray, width: int, height: int | None) -> np.ndarray:
    """Centre-crop to width:height (if given), then resize to `width` wide (0: keep the size)."""
    if width == 0:
        return image
    h, w = image.shape[:2]
    if height is not None:
        crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
        x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
        image, (h, w) = image[y0:y0 + crop_h, x0:x0 + crop_w], (crop_h, crop_w)
    size = (width, height if height is not None else round(h * width / w))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def parse_option(text: str) -> tuple[str, Any]:
    """'NAME=VALUE' -> (name, value): true/false, int, float, else the string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    low = raw.lower()
    if low in ("true", "false"):
        return name, low == "true"
    for kind in (int, float):
        try:
            return name, kind(raw)
        except ValueError:
            pass
    return name, raw


def run(video: str, detector: str = "mediapipe", width: int = 640, height: int | None = None, max_frames: int = 0,
        warmup: int = 5, options: dict[str, Any] | None = None) -> dict:
    frames = []
    with OpenCVSource(video, realtime=False) as src:
        for frame in src:
            assert frame.image is not None  # a video source's frames always carry the image
            frames.append(_fit(frame.image, width, height))
            if max_frames and len(frames) >= max_frames + warmup:
                break
    if len(frames) <= warmup:
        raise ValueError(f"{video}: only {len(frames)} frames, need more than warmup={warmup}")
    times, cpu, found, runs, crops = [], [], 0, 0, 0
    size, fps = (frames[0].shape[1], frames[0].shape[0]), src.fps or 30.0
    multi = detector == "blazepose-multi"
    tracker = MultiTracker(max_people=(options or {}).get("max_people", 4)) if multi else None
    tracks: dict[int, dict[int, np.ndarray]] = {}
    load_start = os.getloadavg()
    with create_detector(detector, **({"fps": fps} if multi else {}), **(options or {})) as det:
        for i, image in enumerate(frames):
            t0, c0 = time.perf_counter(), time.process_time()
            dets = det.detect(image, t=i / fps) if isinstance(det, BlazePoseMultiDetector) else det.detect(image)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if tracker is not None:
                for r in tracker.update(dets, size, t=i / fps):
                    if r.keypoints is not None:
                        tracks.setdefault(r.track_id, {})[i] = r.keypoints
            if i >= warmup:
                times.append(dt)
                cpu.append(dc)
                found += bool(dets)
                runs += getattr(det, "last_info", {}).get("detector_runs", 0)
                crops += getattr(det, "last_info", {}).get("crops", 0)
    ms, cpu_ms = np.asarray(times) * 1000.0, np.asarray(cpu) * 1000.0
    result: dict[str, Any] = {
        "detector": detector, "options": options or {}, "video": os.path.basename(video),
        "input": f"{size[0]}x{size[1]}", "frames": len(times), "fps": round(len(times) / float(np.sum(times)), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "process_cpu_ms_per_frame": {"p50": round(float(np.percentile(cpu_ms, 50)), 2),
                                     "mean": round(float(cpu_ms.mean()), 2)},
        "detected_fraction": round(found / len(times), 3),
        "load_average": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
    }
    if multi:
        from stream.pipeline_tracks import limb_acceleration

        result.update({"person_detector_runs": runs, "crops": crops,
                       "tracks": {tid: [min(f), max(f)] for tid, f in sorted(tracks.items())},
                       "limb_accel_px_per_frame2": limb_acceleration(tracks)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--detector", default="mediapipe", help="'mediapipe' or a top-down .onnx model")
    parser.add_argument("--width", type=int, default=640,
                        help="resize frames to this width before detection (0 = full size, as run_live.py)")
    parser.add_argument("--height", type=int, default=None, help="centre-crop to width:height, then resize")
    parser.add_argument("--frames", type=int, default=0, help="timed frames (0 = whole video)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--detector-option", action="append", default=[], metavar="NAME=VALUE",
                        help="detector constructor option (repeatable), e.g. full_res_crops=false")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        options = dict(parse_option(o) for o in args.detector_option)
    except ValueError as exc:
        parser.error(f"--detector-option: {exc}")
    result = run(args.video, args.detector, args.width, args.height, args.frames, args.warmup, options)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
