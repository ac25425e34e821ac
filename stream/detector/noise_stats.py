"""Measure how the live 2D detector actually errs on real video, to fit the synthetic noise model to it.

    python -m stream.detector.noise_stats --video ../shared/data/video/sports2d_demo.mp4 --json

Without 3D ground truth only the detector's *temporal* behaviour is observable, and that is what the synthetic
noise (`mocap/data/detector_noise.py`) has to imitate: the jitter left after removing smooth motion (the
residual of a centred 5-frame quadratic fit, in units of the keypoint box height), its spectrum (how much of it
is frame-to-frame white noise versus slow drift), left/right swaps (runs of frames where exchanging the person's
left and right keypoints explains the neighbouring frames better), how far the foot points slide against the
ankle, and the confidence histogram of visible vs. low-confidence points. Prints ONE JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from mocap.camera import CONF_THRESHOLD
from mocap.skeleton import FOOT_KEYPOINT_IDS, KEYPOINT_FLIP, NUM_KEYPOINTS

#: Left/right limb keypoints whose swap is detectable (shoulders .. ankles; the face is too small).
_LIMBS = np.arange(5, 17)


def detect_video(path: Path, input_width: int = 640, max_frames: int | None = None) -> np.ndarray:
    """(T, 21, 3) keypoints (pixels + confidence) of the tracked person per frame; NaN where none was found."""
    from stream.detector.mediapipe_pose import MediaPipePoseDetector

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    frames: list[np.ndarray] = []
    with MediaPipePoseDetector(input_width=input_width) as det:
        while max_frames is None or len(frames) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            found = det.detect(image)
            frames.append(found[0].keypoints if found else np.full((NUM_KEYPOINTS, 3), np.nan, np.float32))
    cap.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return np.stack(frames)


def _box_height(kp: np.ndarray) -> np.ndarray:
    """kp: (T, 21, 3) -> (T,) height of the confident keypoints' box (NaN when fewer than 4)."""
    ok = kp[..., 2] >= CONF_THRESHOLD
    y = np.where(ok, kp[..., 1], np.nan)
    with np.errstate(all="ignore"):
        h = np.nanmax(y, axis=1) - np.nanmin(y, axis=1)
    return np.where(ok.sum(1) >= 4, h, np.nan)


def jitter_residual(kp: np.ndarray) -> np.ndarray:
    """(T, 21) residual of each point from a centred 5-frame quadratic fit, in box heights (NaN at the edges).

    A quadratic follows real limb motion over 1/6 s at 30 fps, so what is left is the detector's own noise."""
    t = np.arange(-2, 3, dtype=np.float64)
    basis = np.stack((np.ones(5), t, t**2), 1)                       # (5, 3)
    hat = basis @ np.linalg.pinv(basis)                              # (5, 5) projection onto quadratics
    xy = kp[..., :2].astype(np.float64)
    res = np.full(kp.shape[:2], np.nan)
    h = _box_height(kp)
    for i in range(2, len(kp) - 2):
        win = xy[i - 2 : i + 3]                                      # (5, 21, 2)
        fit = np.einsum("ab,bkd->akd", hat, win)[2]
        res[i] = np.linalg.norm(win[2] - fit, axis=-1) / h[i]
    return res


def swap_runs(kp: np.ndarray, margin: float = 0.3) -> list[int]:
    """Lengths of runs of frames whose left/right limb labels are swapped relative to their neighbours.

    A frame counts as swapped when exchanging its left and right keypoints brings them closer to the previous
    frame's (taken with its own swap decision) by more than `margin` of the unswapped distance."""
    flip = np.asarray(KEYPOINT_FLIP)
    runs: list[int] = []
    swapped = False
    run = 0
    prev = None
    for frame in kp:
        if not np.isfinite(frame[:, :2]).all():
            prev, swapped = None, False
            continue
        cur = frame[flip] if swapped else frame
        if prev is not None:
            keep = np.linalg.norm(cur[_LIMBS, :2] - prev[_LIMBS, :2], axis=-1).mean()
            other = (frame if swapped else frame[flip])
            change = np.linalg.norm(other[_LIMBS, :2] - prev[_LIMBS, :2], axis=-1).mean()
            if change < (1 - margin) * keep:
                swapped = not swapped
                cur = other
        if swapped:
            run += 1
        elif run:
            runs.append(run)
            run = 0
        prev = cur
    if run:
        runs.append(run)
    return runs


def noise_stats(kp: np.ndarray, fps: float) -> dict:
    """Summary of the detector's temporal error on one video; kp: (T, 21, 3)."""
    found = np.isfinite(kp[..., :2]).all(axis=(1, 2))
    res = jitter_residual(kp)
    conf = kp[..., 2]
    ok = np.isfinite(res) & (conf >= CONF_THRESHOLD)
    per_joint = np.array([np.nanmedian(np.where(ok[:, j], res[:, j], np.nan)) for j in range(NUM_KEYPOINTS)])
    # Spectrum of the detrended motion of the confident points: energy fraction above fps/4 (white noise puts
    # half its energy there; smooth drift almost none).
    xy = kp[found, :, :2].astype(np.float64)
    hf_fraction = None
    if len(xy) >= 16:
        h = np.nanmedian(_box_height(kp[found]))
        sig = (xy - xy.mean(0)) / h
        sig = sig - np.linspace(0, 1, len(sig))[:, None, None] * (sig[-1] - sig[0])
        spec = np.abs(np.fft.rfft(np.diff(sig, axis=0), axis=0)) ** 2
        freqs = np.fft.rfftfreq(len(sig) - 1, d=1 / fps)
        hf_fraction = float(spec[freqs > fps / 4].sum() / spec.sum())
    ankle = kp[:, [15, 15, 16, 16], :2]
    foot = kp[:, list(FOOT_KEYPOINT_IDS), :2]
    foot_len = np.linalg.norm(foot - ankle, axis=-1) / _box_height(kp)[:, None]   # (T, 4)
    runs = swap_runs(kp)
    hist, edges = np.histogram(conf[np.isfinite(conf)], bins=10, range=(0, 1))
    return {
        "frames": int(len(kp)),
        "found_pct": round(100 * float(found.mean()), 1),
        "jitter_median_rel": round(float(np.nanmedian(np.where(ok, res, np.nan))), 5),
        "jitter_p90_rel": round(float(np.nanpercentile(np.where(ok, res, np.nan), 90)), 5),
        "jitter_per_keypoint_rel": [round(float(v), 5) for v in per_joint],
        "jitter_hf_energy_fraction": None if hf_fraction is None else round(hf_fraction, 3),
        "swap_runs": runs,
        "swap_frames_pct": round(100 * sum(runs) / max(int(found.sum()), 1), 2),
        "foot_length_cv": round(float(np.nanmean(np.nanstd(foot_len, 0) / np.nanmean(foot_len, 0))), 4),
        "confidence_hist": {f"{edges[i]:.1f}-{edges[i + 1]:.1f}": int(hist[i]) for i in range(10)},
        "low_confidence_pct": round(100 * float((conf[np.isfinite(conf)] < CONF_THRESHOLD).mean()), 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m stream.detector.noise_stats", description=__doc__.split("\n")[0])
    p.add_argument("--video", type=Path, nargs="+", required=True)
    p.add_argument("--input-width", type=int, default=640)
    p.add_argument("--json", action="store_true", help="compact JSON")
    args = p.parse_args(argv)
    report = {}
    for path in args.video:
        try:
            kp = detect_video(path, args.input_width)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
        fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) or 30.0
        report[path.name] = {"fps": fps, **noise_stats(kp, fps)}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
