"""Pick and follow the one main person across frames, with a stable id and a causally smoothed box.

Why: the model is recurrent per person, so feeding it a different person mid-stream (or a jittering crop) breaks
its state. The tracker keeps the same person while they overlap the previous box, tolerates short detector
dropouts (`max_lost` frames) under the same id, and only then starts a new id (status "init" tells the model
to reset its state). Untrustworthy keypoints (NaN, outside the image) are masked to confidence 0 here, once,
so nothing downstream has to guess. The box [cx, cy, size] (as `mocap.camera.bbox_from_keypoints` defines it)
is smoothed with a One-Euro filter: it uses past samples only, so it adds no look-ahead latency.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from mocap.camera import CONF_THRESHOLD, bbox_from_keypoints
from mocap.smoothing import OneEuroFilter
from stream.detector.base import Detection

TrackStatus = Literal["init", "tracking", "lost"]


@dataclass
class TrackResult:
    """The tracker's answer for one frame.

    status: "init" (first frame of track `track_id`; reset per-person state), "tracking", or "lost" (no person).
    keypoints: (21, 3) masked keypoints of the tracked person, None when lost.
    bbox: (3,) smoothed [cx, cy, size] pixels (held at its last value while lost; None before any track).
    bbox_raw: (3,) this frame's unsmoothed box, None when lost.
    """

    status: TrackStatus
    track_id: int | None
    keypoints: np.ndarray | None
    bbox: np.ndarray | None
    bbox_raw: np.ndarray | None
    frames_lost: int
    detection: Detection | None


def mask_keypoints(keypoints: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(21, 3) -> copy with NaN/inf or out-of-image points set to (0, 0, conf 0) and confidences clipped to [0, 1]."""
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    w, h = image_size
    finite = np.isfinite(kp).all(axis=1)
    with np.errstate(invalid="ignore"):
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
    bad = ~(finite & inside)
    kp[bad] = 0.0
    kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)
    return kp


def person_candidates(detections: Sequence[Detection], image_size: tuple[int, int], conf_threshold: float,
                      min_keypoints: int, bbox_scale: float, min_size: float = 0.0
                      ) -> list[tuple[Detection, np.ndarray, np.ndarray]]:
    """Detections that are a person: (detection, masked keypoints (21, 3), box (3,)) for each with at least
    `min_keypoints` confident points and a finite box larger than `min_size` pixels."""
    out = []
    for det in detections:
        kp = mask_keypoints(det.keypoints, image_size)
        if int(np.count_nonzero(kp[:, 2] >= conf_threshold)) < min_keypoints:
            continue
        box = np.asarray(bbox_from_keypoints(kp, conf_threshold, bbox_scale), dtype=np.float64)
        if np.isfinite(box).all() and box[2] > min_size:
            out.append((det, kp, box))
    return out


def square_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two square boxes [cx, cy, size]."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[2] / 2, a[0] + a[2] / 2, a[1] + a[2] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[2] / 2, b[0] + b[2] / 2, b[1] + b[2] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] ** 2 + b[2] ** 2 - inter
    return float(inter / union) if union > 0 else 0.0


class Tracker:
    """Main-person tracker.

    conf_threshold: keypoints below it are not "confident"; min_keypoints: fewer confident ones = no person.
    max_lost: frames a person may go undetected and keep their id; after that the next person gets a new id.
    min_iou / max_center_dist: a candidate continues the track if its box overlaps the last matched box by
    `min_iou`, or its centre lies within `max_center_dist` box sizes (tolerance grows 10 % per lost frame).
    bbox_scale: box margin around the keypoints; min_cutoff/beta/d_cutoff: One-Euro box filter (speed in
    box sizes per second). fps: clock used when `update` gets no timestamp.
    """

    def __init__(self, *, conf_threshold: float = CONF_THRESHOLD, min_keypoints: int = 6, max_lost: int = 15,
                 min_iou: float = 0.1, max_center_dist: float = 0.5, bbox_scale: float = 1.2,
                 min_cutoff: float = 1.0, beta: float = 1.5, d_cutoff: float = 1.0, fps: float = 30.0) -> None:
        if min_keypoints < 2 or max_lost < 0 or fps <= 0:
            raise ValueError("need min_keypoints >= 2, max_lost >= 0, fps > 0")
        self.conf_threshold, self.min_keypoints, self.max_lost = conf_threshold, min_keypoints, max_lost
        self.min_iou, self.max_center_dist, self.bbox_scale, self.fps = min_iou, max_center_dist, bbox_scale, fps
        self._filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self._next_id = 0
        self._frame = 0
        self.reset()

    def reset(self) -> None:
        """Forget the current track (ids keep increasing, so an old id is never reused)."""
        self.track_id: int | None = None
        self.frames_lost = 0
        self._last_raw: np.ndarray | None = None
        self._smoothed: np.ndarray | None = None
        self._filter.reset()

    def _candidates(self, detections: Sequence[Detection], image_size: tuple[int, int]
                    ) -> list[tuple[Detection, np.ndarray, np.ndarray]]:
        return person_candidates(detections, image_size, self.conf_threshold, self.min_keypoints, self.bbox_scale)

    def _match(self, cands: list[tuple[Detection, np.ndarray, np.ndarray]]) -> int | None:
        """Index of the candidate continuing the current track, or None."""
        ref = self._last_raw
        assert ref is not None
        tol = self.max_center_dist * (1.0 + 0.1 * self.frames_lost)
        best, best_key = None, None
        for i, (_, _, box) in enumerate(cands):
            iou = square_iou(ref, box)
            dist = float(np.hypot(*(box[:2] - ref[:2])) / ref[2])
            if iou >= self.min_iou or dist <= tol:
                key = (iou, -dist)
                if best_key is None or key > best_key:
                    best, best_key = i, key
        return best

    def update(self, detections: Sequence[Detection], image_size: tuple[int, int], t: float | None = None
               ) -> TrackResult:
        """detections of one frame, image_size (W, H), t capture time in seconds (None: frame count / fps)."""
        t = self._frame / self.fps if t is None else float(t)
        self._frame += 1
        cands = self._candidates(detections, image_size)
        status: TrackStatus
        chosen = None
        if self.track_id is not None:
            chosen = self._match(cands)
            if chosen is None:
                self.frames_lost += 1
                if self.frames_lost > self.max_lost:
                    self.reset()
        if self.track_id is not None and chosen is not None:
            status = "tracking"
        elif self.track_id is None and cands:
            # No track: the main person is the largest box weighted by detector confidence.
            chosen = max(range(len(cands)), key=lambda i: cands[i][2][2] ** 2 * max(cands[i][0].score, 1e-3))
            self.reset()
            self.track_id = self._next_id
            self._next_id += 1
            status = "init"
        else:
            return TrackResult("lost", self.track_id, None, self._held(), None, self.frames_lost, None)
        det, kp, box = cands[chosen]
        self.frames_lost = 0
        self._last_raw = box
        self._smoothed = self._filter(box, t, speed_scale=1.0 / box[2])
        return TrackResult(status, self.track_id, kp, self._smoothed.copy(), box.copy(), 0, det)

    def _held(self) -> np.ndarray | None:
        return None if self._smoothed is None else self._smoothed.copy()
