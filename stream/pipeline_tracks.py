"""Multi-person 2D on a video, measured: tracks and ids, detector cost, swap-correction effect, MediaPipe agreement.

    python -m stream.pipeline_tracks --video ../shared/data/video/sports2d_demo.mp4 --json [--compare-mediapipe]

Runs `BlazePoseMultiDetector` + `MultiTracker` frame by frame (every frame, no pacing) and prints one JSON
object: each track id's first / last frame and frame count, frames with >= 2 people, the detector's ms per
frame (wall and CPU: the CPU figure is what a busy machine cannot inflate much) and how often the person
detector ran, the mean / p99 2-D acceleration of the limb keypoints
(px per frame², consecutive confident frames of a track) with the swap correction on and off (the same
detections re-tracked), and with --compare-mediapipe the median pixel distance of the best-matching person to
MediaPipe's own single-person graph on the same frames (both unsmoothed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.detector.base import Detection


def limb_acceleration(tracks: dict[int, dict[int, np.ndarray]], conf: float = 0.5) -> dict[str, float]:
    """Mean / p99 of |k_t - 2 k_(t-1) + k_(t-2)| over limb keypoints (5..20) confident in all three frames."""
    acc = []
    for frames in tracks.values():
        for i, kp in frames.items():
            if i - 1 in frames and i - 2 in frames:
                a, b = frames[i - 1], frames[i - 2]
                ok = (kp[5:, 2] > conf) & (a[5:, 2] > conf) & (b[5:, 2] > conf)
                acc.extend(np.linalg.norm((kp[5:, :2] - 2 * a[5:, :2] + b[5:, :2])[ok], axis=1))
    arr = np.asarray(acc)
    return {"mean": float(arr.mean()) if arr.size else float("nan"),
            "p99": float(np.percentile(arr, 99)) if arr.size else float("nan"), "n": int(arr.size)}


def track(detections: list[list[Detection]], size: tuple[int, int], fps: float, **kwargs: Any
          ) -> dict[int, dict[int, np.ndarray]]:
    from stream.multi_tracker import MultiTracker

    tracker = MultiTracker(fps=fps, **kwargs)
    out: dict[int, dict[int, np.ndarray]] = {}
    for i, dets in enumerate(detections):
        for r in tracker.update(dets, size, t=i / fps):
            if r.keypoints is not None and r.track_id is not None:  # every MultiTracker result has an id
                out.setdefault(r.track_id, {})[i] = r.keypoints
    return out


def run(video: Path, frames: int | None, max_people: int, compare: bool) -> dict[str, Any]:
    from stream.detector.blazepose_multi import BlazePoseMultiDetector

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {video}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    detector = BlazePoseMultiDetector(max_people, fps=fps)
    ref = ref_raw = None
    if compare:
        from stream.detector.mediapipe_pose import MediaPipePoseDetector

        ref, ref_raw = MediaPipePoseDetector(smooth_landmarks=False), BlazePoseMultiDetector(max_people, smooth=False)
    detections: list[list[Detection]] = []
    ms, cpu, runs, crops, agree = [], [], 0, 0, []
    size = (0, 0)
    while frames is None or len(detections) < frames:
        ok, image = cap.read()
        if not ok:
            break
        size = (image.shape[1], image.shape[0])
        tic, cpu0 = time.perf_counter(), time.process_time()
        dets = detector.detect(image, t=len(detections) / fps)
        ms.append((time.perf_counter() - tic) * 1e3)
        cpu.append((time.process_time() - cpu0) * 1e3)
        runs += detector.last_info["detector_runs"]
        crops += detector.last_info["crops"]
        detections.append(dets)
        if ref is not None and ref_raw is not None:
            mine, theirs = ref_raw.detect(image), ref.detect(image)
            if mine and theirs:
                agree.append(min(float(np.median(np.linalg.norm(d.keypoints[:, :2] - theirs[0].keypoints[:, :2],
                                                                axis=1))) for d in mine))
    cap.release()
    if not detections:
        raise ValueError(f"{video}: no frame could be read")
    tracks = track(detections, size, fps)
    per_frame = np.zeros(len(detections), int)
    for f in tracks.values():
        per_frame[list(f)] += 1
    out: dict[str, Any] = {
        "video": str(video), "frames": len(detections), "size": list(size), "max_people": max_people,
        "tracks": {str(k): {"first": min(f), "last": max(f), "frames": len(f)} for k, f in sorted(tracks.items())},
        "frames_with_2_or_more": int((per_frame >= 2).sum()),
        "detect_ms": {"p50": float(np.median(ms)), "p99": float(np.percentile(ms, 99))},
        "detect_cpu_ms": {"p50": float(np.median(cpu)), "p99": float(np.percentile(cpu, 99))},
        "person_detector_runs": runs, "crops_per_frame": crops / len(detections),
        "limb_accel_px_per_frame2": {"swap_correction": limb_acceleration(tracks),
                                     "no_swap_correction": limb_acceleration(track(detections, size, fps, swap=False))},
    }
    if compare:
        out["median_px_to_mediapipe"] = {"p50": float(np.median(agree)) if agree else None,
                                         "p90": float(np.percentile(agree, 90)) if agree else None, "n": len(agree)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.pipeline_tracks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, default=None, help="first N frames only")
    parser.add_argument("--max-people", type=int, default=4)
    parser.add_argument("--compare-mediapipe", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (the default)")
    args = parser.parse_args(argv)
    if not Path(args.video).is_file():
        parser.error(f"--video {args.video!r}: no such file")
    if args.max_people < 1 or (args.frames is not None and args.frames < 3):
        parser.error("need --max-people >= 1 and --frames >= 3")
    try:
        result = run(Path(args.video), args.frames, args.max_people, args.compare_mediapipe)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"python -m stream.pipeline_tracks: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
