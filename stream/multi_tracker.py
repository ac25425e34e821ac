"""Follow every person in view: stable ids, re-identification after gaps, left/right swap correction.

Why: each person has their own recurrent model state, so an id must stay on one body through crossings,
short occlusions and detector dropouts, and a new id (a fresh state) is given only to someone new. Cues are
appearance-free and cheap: each track predicts its box (constant velocity, damped after a few lost frames)
and its keypoints; detections are assigned by Hungarian matching on a cost of predicted-centre distance (in
box sizes), size change and keypoint-shape distance (orientation-free, so a side swap is still the same
person); the gates widen with each lost frame. A new track must be seen `min_hits` frames in a row before it
gets an id ("init"), so one-frame ghosts never reach the model. `max_lost` frames unseen drop it (`ended`).

Re-identification after a long dropout: a detector can miss someone for a second or more (a backflip, a long
occlusion), longer than `max_lost` may hold a track whose predicted box drifts away. A dropped confirmed track
stays *dormant* for `reid_seconds` (on the `t` clock, so at any fps); when a new track is confirmed, it takes
the id of the dormant track it matches best (centre distance from the last box, gated wider the longer the
person was gone, capped; size ratio; the box-normalised keypoint shape), never an id that is live. The revived
id reports "init" again: its model state was freed when it ended and is a second stale anyway, so the loops
start a fresh one under the old id. Only someone matching no dormant track gets a new id.

Swap correction: BlazePose can label the left limbs as right (and back) for many frames on side views. Per
body part (face, shoulders, arms, hips, legs) the tracker keeps the labelling most consistent with the part's own recent
motion: it compares the detection and its mirror (`mocap.skeleton.KEYPOINT_FLIP`) with the previous output
extrapolated one frame, and switches only when the other labelling is clearly closer (hysteresis), so a
detector swap is undone on the frame it happens and kept undone until the detector swaps back. Motion
says only which labellings are consistent with each other, not which one is right; the detector is right
most of the time, so when over the last `swap_window` frames a part was output mirrored more often than not,
the tracker adopts the detector's labelling for that part again.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from mocap.camera import CONF_THRESHOLD
from mocap.skeleton import KEYPOINT_FLIP, NUM_KEYPOINTS
from stream.detector.base import Detection
from mocap.smoothing import OneEuroFilter
from stream.tracker import TrackResult, person_candidates

#: Left/right keypoint pairs per body part whose labelling is checked on its own.
SWAP_PARTS: dict[str, tuple[tuple[int, int], ...]] = {
    "face": ((1, 2), (3, 4)),
    "shoulders": ((5, 6),),
    "arms": ((7, 8), (9, 10)),
    "hips": ((11, 12),),
    "legs": ((13, 14), (15, 16), (17, 19), (18, 20)),
}
_FLIP = np.asarray(KEYPOINT_FLIP)
_PART_NAMES = tuple(SWAP_PARTS)
_POINTS = np.array([i for pairs in SWAP_PARTS.values() for pair in pairs for i in pair])           # (16,)
_MIRROR = np.array([i for pairs in SWAP_PARTS.values() for a, b in pairs for i in (b, a)])        # (16,)
_PART_OF = np.array([k for k, pairs in enumerate(SWAP_PARTS.values()) for _ in range(2 * len(pairs))])
_BIG = 1e6


@dataclass
class PersonResult(TrackResult):
    """`TrackResult` of one confirmed person (always an id); swapped: the parts ("face", "arms", "legs") whose
    sides were corrected."""

    track_id: int
    swapped: tuple[str, ...] = ()


@dataclass
class _Track:
    track_id: int | None           # None while tentative
    box: np.ndarray                # (3,) last seen raw box [cx, cy, size]
    keypoints: np.ndarray          # (21, 3) last output (swap-corrected) keypoints
    t: float                       # last seen
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))   # box units per second
    kp_velocity: np.ndarray = field(default_factory=lambda: np.zeros((NUM_KEYPOINTS, 2)))
    hits: int = 1
    frames_lost: int = 0
    slot: int | None = None
    flipped: dict[str, bool] = field(default_factory=lambda: {p: False for p in SWAP_PARTS})
    flip_history: dict[str, collections.deque] = field(default_factory=dict)
    smoother: OneEuroFilter | None = None
    smoothed: np.ndarray | None = None

    def predict(self, t: float, damp_after: int) -> tuple[np.ndarray, np.ndarray]:
        """Box (3,) and keypoints (21, 3) expected at time t (motion damped after `damp_after` lost frames)."""
        dt = max(t - self.t, 0.0)
        if self.frames_lost > damp_after:
            dt = min(dt, damp_after / 30.0)
        box = self.box + self.velocity * dt
        box[2] = max(box[2], 1.0)
        kp = self.keypoints.copy()
        kp[:, :2] += self.kp_velocity * dt
        return box, kp


@dataclass
class _Dormant:
    """A dropped confirmed track that a newly confirmed one may still take the id of."""

    track_id: int
    box: np.ndarray                # (3,) last seen raw box
    shape: np.ndarray              # (21, 3) last output keypoints in box units (centre 0, size 1)
    t_seen: float                  # last seen
    t_dropped: float


def _box_shape(kp: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Keypoints (21, 3) in box units: centre at 0, box size 1 (confidences kept)."""
    out = kp.copy()
    out[:, :2] = (kp[:, :2] - box[:2]) / max(float(box[2]), 1.0)
    return out


def shape_distance(kp: np.ndarray, ref: np.ndarray, size: float, conf: float = CONF_THRESHOLD) -> float:
    """Median keypoint distance in box sizes over points confident in both, the better of kp and its mirror
    (a side swap does not make another person); 1.0 when fewer than 3 points are shared."""
    best = _BIG
    ref_ok = ref[:, 2] >= conf
    for cand in (kp, kp[_FLIP]):
        ok = (cand[:, 2] >= conf) & ref_ok
        n = int(np.count_nonzero(ok))
        if n >= 3:
            best = min(best, _median(np.linalg.norm(cand[ok, :2] - ref[ok, :2], axis=1), n) / max(size, 1.0))
    return 1.0 if best >= _BIG else best


def _median(values: np.ndarray, n: int) -> float:
    """np.median of n >= 1 values, bit for bit (the middle one, or the mean of the middle two), without its
    per-call overhead (~10 us: four calls per track-detection pair made it the tracker's largest cost)."""
    d = np.sort(values)
    return float(d[n // 2]) if n % 2 else float((d[n // 2 - 1] + d[n // 2]) / 2.0)


class MultiTracker:
    """Many-person tracker; `update` returns one `PersonResult` per confirmed track (seen or briefly lost).

    max_people: most confirmed tracks at once (the largest candidates win); min_hits: consecutive frames a new
    person must be seen before getting an id; max_lost: frames a track may go unseen and keep its id.
    max_center_dist: centre gate in box sizes (grows by `gate_growth` per lost frame); max_size_ratio: size
    gate; w_size / w_shape: cost weights of the log size change and of the keypoint-shape distance.
    swap_margin: a part switches labelling when the other one is closer by this fraction and by at least
    `swap_min_px` / box size (hysteresis against jitter); swap_window: frames of the majority vote that
    returns a part to the detector's labelling (0 = never). reid_seconds: how long (on the `t` clock) a dropped
    confirmed track stays dormant so that a newly confirmed track near it takes its id again (0 = never);
    its centre gate is max_center_dist + reid_speed box sizes per second gone, at most reid_max_dist;
    reid_max_shape: gate on the box-normalised keypoint-shape distance (the size gate is max_size_ratio); loose,
    because a person's posture changes a lot while unseen (0.51 between the sports2d athlete mid-flip and landing;
    two different people standing: ~0.10), so it rejects only a wholly different shape.
    conf_threshold / min_keypoints / bbox_scale and the One-Euro box filter (min_cutoff, beta, d_cutoff) are as
    in `stream.tracker.Tracker`; fps: clock when `update` gets no t.
    """

    def __init__(self, *, max_people: int = 4, min_hits: int = 3, max_lost: int = 15,
                 max_center_dist: float = 0.6, gate_growth: float = 0.15, max_size_ratio: float = 1.8,
                 w_size: float = 0.5, w_shape: float = 1.0, slot_bonus: float = 0.05, swap: bool = True,
                 swap_margin: float = 0.35, swap_min_px: float = 0.015, swap_window: int = 90,
                 reid_seconds: float = 2.0, reid_speed: float = 2.0, reid_max_dist: float = 3.0,
                 reid_max_shape: float = 0.75, conf_threshold: float = CONF_THRESHOLD,
                 min_keypoints: int = 6, bbox_scale: float = 1.2, min_cutoff: float = 1.0, beta: float = 1.5,
                 d_cutoff: float = 1.0, fps: float = 30.0) -> None:
        if max_people < 1 or min_hits < 1 or max_lost < 0 or min_keypoints < 2 or fps <= 0:
            raise ValueError("need max_people >= 1, min_hits >= 1, max_lost >= 0, min_keypoints >= 2, fps > 0")
        if max_center_dist <= 0 or max_size_ratio <= 1:
            raise ValueError("need max_center_dist > 0 and max_size_ratio > 1")
        if reid_seconds < 0 or reid_speed < 0 or reid_max_dist <= 0 or reid_max_shape <= 0:
            raise ValueError("need reid_seconds >= 0, reid_speed >= 0, reid_max_dist > 0, reid_max_shape > 0")
        self.max_people, self.min_hits, self.max_lost = max_people, min_hits, max_lost
        self.max_center_dist, self.gate_growth, self.max_size_ratio = max_center_dist, gate_growth, max_size_ratio
        self.w_size, self.w_shape, self.slot_bonus = w_size, w_shape, slot_bonus
        self.swap, self.swap_margin, self.swap_min_px, self.swap_window = swap, swap_margin, swap_min_px, swap_window
        self.conf_threshold, self.min_keypoints = conf_threshold, min_keypoints
        self.bbox_scale, self.fps = bbox_scale, fps
        self.reid_seconds, self.reid_speed, self.reid_max_dist = reid_seconds, reid_speed, reid_max_dist
        self.reid_max_shape = reid_max_shape
        self._filter_args = (min_cutoff, beta, d_cutoff)
        self._next_id = 0
        self._frame = 0
        self.tracks: list[_Track] = []
        #: dropped confirmed tracks whose id a newly confirmed track may take again (see the module doc)
        self.dormant: list[_Dormant] = []
        #: ids dropped by the last `update` (their per-person state can be freed)
        self.ended: list[int] = []

    def reset(self) -> None:
        """Forget every track, dormant ones too (ids keep increasing: an old id is never reused)."""
        self.ended = [t.track_id for t in self.tracks if t.track_id is not None]
        self.tracks, self.dormant = [], []

    # ------------------------------------------------------------------ one frame
    def update(self, detections: Sequence[Detection], image_size: tuple[int, int], t: float | None = None
               ) -> list[PersonResult]:
        """detections of one frame, image_size (W, H), t capture time in seconds -> confirmed tracks, by id."""
        t = self._frame / self.fps if t is None else float(t)
        self._frame += 1
        self.ended = []
        self.dormant = [d for d in self.dormant if t - d.t_dropped <= self.reid_seconds]
        cands = self._candidates(detections, image_size)
        pairs, unmatched = self._associate(cands, t)
        results: dict[int, PersonResult] = {}
        newly: list[tuple[_Track, PersonResult]] = []   # confirmed this frame: ids given at the end, jointly
        confirmed = self._confirmed()
        for ti, ci in pairs:
            track = self.tracks[ti]
            det, kp, box = cands[ci]
            swapped = self._correct_swaps(track, kp, t) if self.swap else ()
            kp = self._apply_flips(track, kp)
            smoothed = self._observe(track, kp, box, t, getattr(det, "slot", None))
            if track.track_id is not None:
                results[track.track_id] = PersonResult("tracking", track.track_id, kp, smoothed.copy(), box.copy(),
                                                       0, det, swapped)
            elif track.hits >= self.min_hits and confirmed < self.max_people:
                confirmed += 1
                newly.append((track, PersonResult("init", -1, kp, smoothed.copy(), box.copy(), 0, det, swapped)))
        matched = {ti for ti, _ in pairs}
        keep: list[_Track] = []
        for ti, track in enumerate(self.tracks):
            if ti not in matched:
                track.frames_lost += 1
                if track.track_id is None or track.frames_lost > self.max_lost:
                    if track.track_id is not None:
                        self.ended.append(track.track_id)
                        confirmed -= 1
                        if self.reid_seconds > 0:
                            self.dormant.append(_Dormant(track.track_id, track.box.copy(),
                                                         _box_shape(track.keypoints, track.box), track.t, t))
                    continue
                held = None if track.smoothed is None else track.smoothed.copy()
                results[track.track_id] = PersonResult("lost", track.track_id, None, held, None,
                                                       track.frames_lost, None)
            keep.append(track)
        for ci in sorted(unmatched, key=lambda c: -cands[c][2][2]):  # larger people first
            det, kp, box = cands[ci]
            track, smoothed = self._new_track(kp, box, t, getattr(det, "slot", None))
            keep.append(track)
            if self.min_hits <= 1 and confirmed < self.max_people:
                confirmed += 1
                newly.append((track, PersonResult("init", -1, kp, smoothed.copy(), box.copy(), 0, det)))
        for (track, result), tid in zip(newly, self._give_ids([tr for tr, _ in newly], t, keep)):
            track.track_id = result.track_id = tid
            results[tid] = result
        self.tracks = keep
        return [results[k] for k in sorted(results)]

    # ------------------------------------------------------------------ pieces
    def _confirmed(self, tracks: list[_Track] | None = None) -> int:
        return sum(tr.track_id is not None for tr in (self.tracks if tracks is None else tracks))

    def _give_ids(self, newly: list[_Track], t: float, tracks: list[_Track]) -> list[int]:
        """Ids for the tracks confirmed this frame (tracks: every track kept): those of the dormant tracks they
        match (Hungarian on the cost of `_associate`, under gates that widen with the time gone), else new ones."""
        live = {tr.track_id for tr in tracks if tr.track_id is not None}
        dormant = [d for d in self.dormant if d.track_id not in live]
        ids: list[int | None] = [None] * len(newly)
        if newly and dormant:
            cost = np.full((len(newly), len(dormant)), _BIG)
            for i, track in enumerate(newly):
                shape = _box_shape(track.keypoints, track.box)
                for j, d in enumerate(dormant):
                    gate = min(self.max_center_dist + self.reid_speed * max(t - d.t_seen, 0.0), self.reid_max_dist)
                    dist = float(np.hypot(*(track.box[:2] - d.box[:2]))) / d.box[2]
                    ratio = float(track.box[2] / d.box[2])
                    if dist > gate or not (1.0 / self.max_size_ratio < ratio < self.max_size_ratio):
                        continue
                    shape_d = shape_distance(shape, d.shape, 1.0, self.conf_threshold)
                    if shape_d <= self.reid_max_shape:
                        cost[i, j] = dist + self.w_size * abs(math.log(ratio)) + self.w_shape * shape_d
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] < _BIG:
                    ids[r] = dormant[c].track_id
            revived = set(ids)
            self.dormant = [d for d in self.dormant if d.track_id not in revived]
        out = []
        for tid in ids:
            if tid is None:
                tid = self._next_id
                self._next_id += 1
            out.append(tid)
        return out

    def _candidates(self, detections: Sequence[Detection], image_size: tuple[int, int]
                    ) -> list[tuple[Detection, np.ndarray, np.ndarray]]:
        return person_candidates(detections, image_size, self.conf_threshold, self.min_keypoints, self.bbox_scale,
                                 min_size=1.0)

    def _associate(self, cands: list[tuple[Detection, np.ndarray, np.ndarray]], t: float
                   ) -> tuple[list[tuple[int, int]], list[int]]:
        """Hungarian assignment of candidates to tracks under the gates; (pairs, unmatched candidates)."""
        if not self.tracks or not cands:
            return [], list(range(len(cands)))
        cost = np.full((len(self.tracks), len(cands)), _BIG)
        for i, track in enumerate(self.tracks):
            box_p, kp_p = track.predict(t, damp_after=5)
            gate = self.max_center_dist * (1.0 + self.gate_growth * track.frames_lost)
            for j, (det, kp, box) in enumerate(cands):
                dist = float(np.hypot(*(box[:2] - box_p[:2]))) / box_p[2]
                ratio = float(box[2] / box_p[2])
                if dist > gate or not (1.0 / self.max_size_ratio < ratio < self.max_size_ratio):
                    continue
                c = dist + self.w_size * abs(math.log(ratio)) + self.w_shape * shape_distance(kp, kp_p, box_p[2])
                if track.frames_lost == 0 and track.slot is not None and getattr(det, "slot", None) == track.slot:
                    c -= self.slot_bonus
                # confirmed tracks first: a tentative one never takes a confirmed person's detection
                cost[i, j] = c + (0.0 if track.track_id is not None else 0.5)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < _BIG]
        used = {c for _, c in pairs}
        return pairs, [j for j in range(len(cands)) if j not in used]

    def _new_track(self, kp: np.ndarray, box: np.ndarray, t: float, slot: int | None
                   ) -> tuple[_Track, np.ndarray]:
        """A tentative track and its smoothed box (3,)."""
        smoother = OneEuroFilter(*self._filter_args)
        track = _Track(None, box.copy(), kp.copy(), t, slot=slot, smoother=smoother)
        track.smoothed = smoothed = smoother(box, t, speed_scale=1.0 / box[2])
        return track, smoothed

    def _observe(self, track: _Track, kp: np.ndarray, box: np.ndarray, t: float, slot: int | None) -> np.ndarray:
        """The track moved to this detection; its smoothed box (3,)."""
        dt = t - track.t
        if dt > 1e-6:
            a = 0.5 if track.frames_lost == 0 else 0.2  # velocity from a gap is less certain
            track.velocity = (1 - a) * track.velocity + a * (box - track.box) / dt
            both = (kp[:, 2] >= self.conf_threshold) & (track.keypoints[:, 2] >= self.conf_threshold)
            v = np.where(both[:, None], (kp[:, :2] - track.keypoints[:, :2]) / dt, 0.0)
            track.kp_velocity = 0.5 * track.kp_velocity + 0.5 * v if track.frames_lost == 0 else v * 0.2
        track.box, track.keypoints, track.t, track.slot = box.copy(), kp.copy(), t, slot
        track.hits += 1
        track.frames_lost = 0
        assert track.smoother is not None
        track.smoothed = smoothed = track.smoother(box, t, speed_scale=1.0 / box[2])
        return smoothed

    def _apply_flips(self, track: _Track, kp: np.ndarray) -> np.ndarray:
        out = kp.copy()
        for part, pairs in SWAP_PARTS.items():
            if track.flipped[part]:
                for a, b in pairs:
                    out[[a, b]] = kp[[b, a]]
        return out

    def _correct_swaps(self, track: _Track, kp: np.ndarray, t: float) -> tuple[str, ...]:
        """Update the per-part labelling from temporal consistency; the parts now output mirrored."""
        if track.frames_lost > 2:
            return tuple(p for p, f in track.flipped.items() if f)
        _, ref = track.predict(t, damp_after=2)
        size = max(float(track.box[2]), 1.0)
        flipped = np.array([track.flipped[p] for p in _PART_NAMES])[_PART_OF]   # per point of every part
        r = ref[_POINTS]
        means, counts = [], []
        for idx in (np.where(flipped, _MIRROR, _POINTS), np.where(flipped, _POINTS, _MIRROR)):  # current, other
            cand = kp[idx]
            ok = (cand[:, 2] >= self.conf_threshold) & (r[:, 2] >= self.conf_threshold)
            dist = np.linalg.norm(cand[:, :2] - r[:, :2], axis=1) * ok
            n = np.bincount(_PART_OF, weights=ok, minlength=len(_PART_NAMES))
            means.append(np.bincount(_PART_OF, weights=dist, minlength=len(_PART_NAMES)) / np.maximum(n, 1))
            counts.append(n)
        for k, part in enumerate(_PART_NAMES):
            d_cur, d_oth = means[0][k], means[1][k]
            if min(counts[0][k], counts[1][k]) >= 2 and d_oth < (1.0 - self.swap_margin) * d_cur \
                    and d_cur - d_oth > self.swap_min_px * size:
                track.flipped[part] = not track.flipped[part]
            if self.swap_window > 0:
                hist = track.flip_history.setdefault(part, collections.deque(maxlen=self.swap_window))
                hist.append(track.flipped[part])
                if len(hist) == self.swap_window and 2 * sum(hist) > len(hist):
                    track.flipped[part] = False  # the detector's labelling wins the vote: follow it again
                    inverted = [not f for f in hist]
                    hist.clear()
                    hist.extend(inverted)
        return tuple(p for p, f in track.flipped.items() if f)


__all__ = ["MultiTracker", "PersonResult", "SWAP_PARTS", "shape_distance"]
