"""Measure a detector's throughput on a video: `python -m stream.detector.bench --video FILE --json`.

Frames are decoded first and resized to `--width` (like a webcam frame), so only `detect()` is timed;
`--height` centre-crops to that aspect first (e.g. 640x480, a webcam's 4:3, from a 16:9 video).
The first `--warmup` frames are excluded (model loading, first person detection).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import cv2
import numpy as np

from stream.detector import create_detector
from stream.sources import OpenCVSource


def _fit(image: np.ndarray, width: int, height: int | None) -> np.ndarray:
    """Centre-crop to width:height (if given), then resize to `width` wide."""
    h, w = image.shape[:2]
    if height is not None:
        crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
        x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
        image, (h, w) = image[y0:y0 + crop_h, x0:x0 + crop_w], (crop_h, crop_w)
    size = (width, height if height is not None else round(h * width / w))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def run(video: str, detector: str = "mediapipe", width: int = 640, height: int | None = None, max_frames: int = 0,
        warmup: int = 5) -> dict:
    frames = []
    with OpenCVSource(video, realtime=False) as src:
        for frame in src:
            frames.append(_fit(frame.image, width, height))
            if max_frames and len(frames) >= max_frames + warmup:
                break
    if len(frames) <= warmup:
        raise ValueError(f"{video}: only {len(frames)} frames, need more than warmup={warmup}")
    times, found = [], 0
    with create_detector(detector) as det:
        for i, image in enumerate(frames):
            t0 = time.perf_counter()
            dets = det.detect(image)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
                found += bool(dets)
    ms = np.asarray(times) * 1000.0
    return {
        "detector": detector, "video": os.path.basename(video), "input": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "frames": len(times), "fps": round(len(times) / float(np.sum(times)), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "detected_fraction": round(found / len(times), 3),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--detector", default="mediapipe", help="'mediapipe' or a top-down .onnx model")
    parser.add_argument("--width", type=int, default=640, help="resize frames to this width before detection")
    parser.add_argument("--height", type=int, default=None, help="centre-crop to width:height, then resize")
    parser.add_argument("--frames", type=int, default=0, help="timed frames (0 = whole video)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.video, args.detector, args.width, args.height, args.frames, args.warmup)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
