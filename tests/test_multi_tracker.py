"""Multi-person tracker: ids through crossings and occlusions, new ids only for new people, ghosts never get an
id, left/right swap correction per body part."""
from __future__ import annotations

import numpy as np
import pytest

from mocap.skeleton import KEYPOINT_FLIP
from stream.detector import Detection
from stream.multi_tracker import MultiTracker, shape_distance

SIZE = (1280, 720)
FPS = 30.0
# A person in a unit box (x, y in [0, 1], y down), left and right told apart: the left arm is raised.
_BASE = np.array([
    [0.50, 0.05], [0.47, 0.03], [0.53, 0.03], [0.44, 0.05], [0.56, 0.05], [0.62, 0.20], [0.38, 0.20],
    [0.72, 0.10], [0.33, 0.35], [0.78, 0.00], [0.32, 0.50], [0.57, 0.52], [0.43, 0.52], [0.58, 0.75],
    [0.42, 0.75], [0.58, 0.95], [0.42, 0.95], [0.57, 0.98], [0.60, 1.00], [0.41, 0.98], [0.44, 1.00],
])
LEGS = (13, 14, 15, 16, 17, 18, 19, 20)  # L/R knee, ankle, heel, toe


def person(cx: float, cy: float, height: float, phase: float | None = None) -> np.ndarray:
    """(21, 3) keypoints of the template centred at (cx, cy); `phase` swings the legs as in a side-view walk."""
    xy = _BASE.copy()
    if phase is not None:  # left leg forward by s, right leg back by s (knee half as far)
        s = 0.18 * np.sin(phase)
        for i in (13, 15, 17, 18):
            xy[i, 0] = 0.5 + s * (0.5 if i == 13 else 1.0)
        for i in (14, 16, 19, 20):
            xy[i, 0] = 0.5 - s * (0.5 if i == 14 else 1.0)
    xy = (xy - 0.5) * height + [cx, cy]
    return np.concatenate([xy, np.full((21, 1), 0.9)], axis=1)


def det(kp: np.ndarray) -> Detection:
    return Detection(kp, np.r_[kp[:, :2].min(0), kp[:, :2].max(0)], 0.9)


def run(tracker: MultiTracker, frames: list[list[np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """Feed frames of keypoint sets; per frame {track id: output keypoints} of the tracks seen there."""
    out = []
    for i, people in enumerate(frames):
        res = tracker.update([det(kp) for kp in people], SIZE, t=i / FPS)
        out.append({r.track_id: r.keypoints for r in res if r.keypoints is not None})
    return out


def hip_x(kp: np.ndarray) -> float:
    return float(kp[11:13, 0].mean())


def test_two_people_crossing_keep_their_ids() -> None:
    # A walks right, B walks left; they cross at x = 640 (boxes overlap for ~10 frames), A a bit larger.
    frames = [[person(300 + 12 * i, 380, 300), person(980 - 12 * i, 360, 260)] for i in range(60)]
    out = run(MultiTracker(), frames)
    assert set(out[10]) == {0, 1}
    a_id = min(out[10], key=lambda k: hip_x(out[10][k]))  # the one on the left at the start is A
    for i in range(3, 60):
        assert set(out[i]) == {0, 1}, i
        assert hip_x(out[i][a_id]) == pytest.approx(300 + 12 * i, abs=2.0), i  # A stays A through the crossing


def test_crossing_with_the_front_person_hiding_the_other() -> None:
    # While they overlap, only the front person (A) is detected; B reappears on its course and keeps its id.
    frames = []
    for i in range(60):
        a, b = person(300 + 12 * i, 380, 300), person(980 - 12 * i, 360, 260)
        frames.append([a] if 25 <= i < 33 else [a, b])
    out = run(MultiTracker(), frames)
    b_id = max(out[10], key=lambda k: hip_x(out[10][k]))
    assert all(b_id not in out[i] for i in range(25, 33))
    for i in range(34, 60):
        assert hip_x(out[i][b_id]) == pytest.approx(980 - 12 * i, abs=2.0), i
    assert max(max(o) for o in out if o) == 1  # no third id


def test_short_occlusion_keeps_id_long_one_gives_a_new_id() -> None:
    tracker = MultiTracker(max_lost=10, reid_seconds=0.0)  # max_lost alone (re-identification: tests/test_reid.py)
    frames = [[person(400 + 5 * i, 360, 300)] for i in range(10)] + [[] for _ in range(8)] \
        + [[person(400 + 5 * i, 360, 300)] for i in range(18, 30)]
    out = run(tracker, frames)
    assert {k for o in out for k in o} == {0}
    frames = [[] for _ in range(12)] + [[person(550, 360, 300)] for _ in range(5)]
    more = run(tracker, frames)
    assert tracker.ended == [] and {k for o in more for k in o} == {1}  # id 0 ended during the long gap


def test_a_ghost_never_gets_an_id_and_max_people_caps_tracks() -> None:
    tracker = MultiTracker(max_people=2)
    frames = [[person(200, 360, 250), person(600, 360, 250)] for _ in range(5)]
    frames[2].append(person(1000, 360, 250))       # one-frame ghost
    frames += [[person(200, 360, 250), person(600, 360, 250), person(1000, 360, 250)] for _ in range(6)]
    out = run(tracker, frames)
    assert {k for o in out[:5] for k in o} == {0, 1}
    assert all(set(o) == {0, 1} for o in out[3:])  # the third real person waits: max_people = 2
    assert out[0] == {} and out[1] == {}            # min_hits = 3: ids from the third frame on


def test_new_people_enter_and_leave_without_disturbing_the_others() -> None:
    tracker = MultiTracker(max_lost=3)
    frames = [[person(200, 360, 250)] + ([person(900, 360, 250)] if 10 <= i < 20 else []) for i in range(30)]
    out = run(tracker, frames)
    assert all(0 in o for o in out[2:])
    assert all(1 in out[i] for i in range(12, 20)) and all(1 not in out[i] for i in range(20, 30))
    assert 1 not in {t.track_id for t in tracker.tracks}


@pytest.mark.parametrize("swap_at", [9, 18])  # legs apart (sin ~ 1) / crossing (sin ~ 0)
def test_leg_swap_is_corrected_from_temporal_consistency(swap_at: int) -> None:
    truth = [person(300 + 6 * i, 360, 320, phase=i * 0.17) for i in range(60)]
    seen = []
    for i, kp in enumerate(truth):
        k = kp.copy()
        if swap_at <= i < swap_at + 20:  # the detector labels the legs the wrong way round for 20 frames
            k[list(LEGS)] = kp[[KEYPOINT_FLIP[j] for j in LEGS]]
        seen.append([k])
    out = run(MultiTracker(min_hits=1), seen)
    errors = [np.abs(out[i][0][list(LEGS), :2] - truth[i][list(LEGS), :2]).max() for i in range(60)]
    legs_apart = [i for i in range(60) if abs(np.sin(i * 0.17)) > 0.3]
    assert max(errors[i] for i in legs_apart) < 1.0, [round(float(e)) for e in errors]
    # arms were never swapped and stay as detected
    assert all(np.allclose(out[i][0][5:11], truth[i][5:11]) for i in range(60))


def test_the_majority_vote_adopts_the_detector_labelling_when_the_track_started_swapped() -> None:
    truth = [person(300 + 2 * i, 360, 320, phase=i * 0.17) for i in range(150)]
    seen = []
    for i, kp in enumerate(truth):
        k = kp.copy()
        if i < 20:  # wrong from the first frame: motion alone would keep this labelling for ever
            k[list(LEGS)] = kp[[KEYPOINT_FLIP[j] for j in LEGS]]
        seen.append([k])
    out = run(MultiTracker(min_hits=1, swap_window=60), seen)
    err = [np.abs(out[i][0][list(LEGS), :2] - truth[i][list(LEGS), :2]).max() for i in range(150)]
    apart = [i for i in range(150) if abs(np.sin(i * 0.17)) > 0.3]
    assert min(err[i] for i in apart if 20 <= i < 60) > 20.0  # consistent with the (wrong) start
    assert max(err[i] for i in apart if i >= 60) < 1.0        # the vote (60 frames) restored the truth


def test_a_fully_mirrored_detection_is_the_same_person() -> None:
    kp = person(500, 360, 300)
    assert shape_distance(kp[list(KEYPOINT_FLIP)], kp, 300.0) == pytest.approx(0.0)
    frames = [[person(500 + 3 * i, 360, 300)] for i in range(10)]
    frames += [[person(500 + 3 * i, 360, 300)[list(KEYPOINT_FLIP)]] for i in range(10, 20)]
    out = run(MultiTracker(), frames)
    assert {k for o in out for k in o} == {0}
    assert np.allclose(out[15][0][5:7], person(545, 360, 300)[5:7])  # shoulders un-mirrored


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MultiTracker(max_people=0)
    with pytest.raises(ValueError):
        MultiTracker(max_size_ratio=1.0)
