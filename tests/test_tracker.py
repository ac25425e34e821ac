"""Main-person tracker: id continuity, loss and re-init, causal box smoothing, masking of bad keypoints."""
from __future__ import annotations

import numpy as np
import pytest

from stream.detector import Detection
from mocap.smoothing import OneEuroFilter
from stream.tracker import Tracker, mask_keypoints

SIZE = (640, 480)
# A standing person's 21 keypoints in a unit box (x, y in [0, 1], y down): head, arms, hips, legs, feet.
_TEMPLATE = np.array([
    [0.50, 0.05], [0.48, 0.03], [0.52, 0.03], [0.45, 0.05], [0.55, 0.05], [0.40, 0.20], [0.60, 0.20],
    [0.35, 0.35], [0.65, 0.35], [0.33, 0.50], [0.67, 0.50], [0.43, 0.52], [0.57, 0.52], [0.42, 0.75],
    [0.58, 0.75], [0.42, 0.95], [0.58, 0.95], [0.41, 0.98], [0.44, 1.00], [0.59, 0.98], [0.56, 1.00],
])


def person(cx: float, cy: float, height: float, conf: float = 0.9, score: float = 0.9) -> Detection:
    """A detection of the template person centred at (cx, cy), `height` pixels tall."""
    xy = (_TEMPLATE - 0.5) * height + [cx, cy]
    kp = np.concatenate([xy, np.full((21, 1), conf)], axis=1)
    return Detection(kp, np.r_[xy.min(0), xy.max(0)], score)


def test_keeps_id_while_the_person_moves_and_ignores_a_bystander() -> None:
    tr = Tracker()
    first = tr.update([person(300, 240, 200)], SIZE, t=0.0)
    assert first.status == "init" and first.track_id == 0
    for i in range(1, 30):
        # The person walks right; a larger bystander appears far away, which must not steal the track.
        dets = [person(300 + 5 * i, 240, 200)] + ([person(80, 240, 300)] if i > 10 else [])
        res = tr.update(dets[::-1], SIZE, t=i / 30)
        assert res.status == "tracking" and res.track_id == 0
        assert res.bbox_raw[0] == pytest.approx(300 + 5 * i, abs=1.0)


def test_init_picks_the_largest_confident_person() -> None:
    res = Tracker().update([person(150, 240, 150), person(450, 240, 260), person(300, 240, 270, score=0.05)], SIZE)
    assert res.status == "init" and res.bbox_raw[0] == pytest.approx(450, abs=1.0)


def test_short_dropout_keeps_id_long_one_reinits() -> None:
    tr = Tracker(max_lost=5)
    assert tr.update([person(300, 240, 200)], SIZE).status == "init"
    statuses = [tr.update([], SIZE).status for _ in range(3)]
    assert statuses == ["lost"] * 3
    back = tr.update([person(310, 240, 200)], SIZE)
    assert back.status == "tracking" and back.track_id == 0
    lost = [tr.update([], SIZE) for _ in range(6)]
    assert [r.status for r in lost] == ["lost"] * 6 and [r.frames_lost for r in lost][:5] == [1, 2, 3, 4, 5]
    assert lost[4].track_id == 0 and lost[5].track_id is None  # dropped after more than max_lost frames
    again = tr.update([person(310, 240, 200)], SIZE)
    assert again.status == "init" and again.track_id == 1


def test_a_different_person_gets_a_new_id_only_after_max_lost() -> None:
    tr = Tracker(max_lost=3)
    tr.update([person(120, 240, 150)], SIZE)
    other = [person(520, 240, 150)]
    assert [tr.update(other, SIZE).status for _ in range(3)] == ["lost"] * 3
    res = tr.update(other, SIZE)
    assert res.status == "init" and res.track_id == 1 and res.bbox_raw[0] == pytest.approx(520, abs=1.0)


def test_too_few_confident_keypoints_is_no_person() -> None:
    det = person(300, 240, 200)
    det.keypoints[5:, 2] = 0.1  # only the 5 face points are confident
    res = Tracker(min_keypoints=6).update([det], SIZE)
    assert res.status == "lost" and res.track_id is None and res.keypoints is None


def test_nan_and_out_of_image_keypoints_are_masked() -> None:
    det = person(300, 240, 200)
    det.keypoints[3] = [np.nan, 10.0, 0.9]
    det.keypoints[4, 2] = np.nan
    det.keypoints[15] = [700.0, 300.0, 0.95]  # right of a 640-wide image
    det.keypoints[16, 2] = 1.7
    res = Tracker().update([det], SIZE)
    kp = res.keypoints
    assert np.isfinite(kp).all()
    np.testing.assert_array_equal(kp[[3, 4, 15]], 0.0)
    assert kp[16, 2] == 1.0 and (kp[[0, 1, 2, 5], 2] == pytest.approx(0.9))
    assert np.isfinite(res.bbox).all() and res.bbox[0] + res.bbox[2] / 2 < 640 + 1e-3
    np.testing.assert_array_equal(mask_keypoints(det.keypoints, SIZE), kp)


def test_box_smoothing_is_causal_and_reduces_jitter() -> None:
    rng = np.random.default_rng(0)
    jitter = rng.normal(0.0, 4.0, (60, 2))
    prefix = [person(300 + jx, 240 + jy, 200) for jx, jy in jitter[:40]]
    suffix_a = [person(300 + jx, 240 + jy, 200) for jx, jy in jitter[40:]]
    suffix_b = [person(450, 200, 260) for _ in range(20)]

    def run(seq: list[Detection]) -> np.ndarray:
        tr = Tracker()
        return np.stack([tr.update([d], SIZE, t=i / 30).bbox for i, d in enumerate(seq)])

    a, b = run(prefix + suffix_a), run(prefix + suffix_b)
    np.testing.assert_array_equal(a[:40], b[:40])  # the future never changes a past output
    raw_std = np.std([d.keypoints[:, 0].mean() for d in prefix[10:]])
    assert np.std(a[10:40, 0]) < 0.6 * raw_std


def test_one_euro_filter_tracks_steps_without_overshoot() -> None:
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = [f(np.array([0.0]), 0.0)[0]] + [f(np.array([10.0]), i / 30)[0] for i in range(1, 120)]
    assert out[0] == 0.0 and all(0 <= b - a for a, b in zip(out, out[1:])) and out[-1] <= 10.0
    assert 9.5 < out[-1] and out[1] < 5.0  # smoothed (not a jump), converges within 4 s
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
