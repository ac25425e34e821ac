"""Re-identification after a long dropout (issue 13): a person missed for longer than `max_lost` takes their old
id back when they reappear near where they vanished within `reid_seconds`; anyone else, or the same person
later, gets a new id; the revived id reports "init" (a fresh model state). And the shared world frame outlives
its reference person, so a revived reference id is aligned into it again."""
from __future__ import annotations

import numpy as np
import pytest

from stream.detector import Detection
from stream.multi_tracker import MultiTracker, PersonResult

SIZE = (1920, 1080)
# A standing figure in box units (x right, y down, height 1): nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles, heels, toes (COCO-17 + 4 feet); the right forearm is raised so left and right differ.
_FIGURE = np.array([
    [0.00, -0.45], [-0.02, -0.47], [0.02, -0.47], [-0.05, -0.46], [0.05, -0.46], [-0.12, -0.33], [0.12, -0.33],
    [-0.16, -0.15], [0.20, -0.40], [-0.17, 0.00], [0.22, -0.55], [-0.08, 0.02], [0.08, 0.02], [-0.09, 0.25],
    [0.09, 0.25], [-0.09, 0.47], [0.09, 0.47], [-0.10, 0.50], [-0.05, 0.52], [0.10, 0.50], [0.05, 0.52],
])


def figure(cx: float, cy: float, height: float) -> np.ndarray:
    """(21, 3) keypoints of the figure centred at (cx, cy), `height` px tall, all confident."""
    return np.concatenate([_FIGURE * height + [cx, cy], np.full((21, 1), 0.9)], axis=1)


def detection(kp: np.ndarray) -> Detection:
    return Detection(kp, np.r_[kp[:, :2].min(0), kp[:, :2].max(0)], 0.9)


def play(tracker: MultiTracker, frames: list[list[np.ndarray]], fps: float = 30.0
         ) -> tuple[list[dict[int, PersonResult]], list[list[int]]]:
    """Feed frames of keypoint sets; per frame {id: result} of the people seen there, and the ids ended."""
    seen, ended = [], []
    for i, people in enumerate(frames):
        res = tracker.update([detection(kp) for kp in people], SIZE, t=i / fps)
        seen.append({r.track_id: r for r in res if r.keypoints is not None})
        ended.append(list(tracker.ended))
    return seen, ended


def ids(seen: list[dict[int, PersonResult]]) -> set[int]:
    return {k for s in seen for k in s}


@pytest.mark.parametrize("fps", [30.0, 60.0])
def test_a_person_back_after_a_long_dropout_keeps_their_id_with_a_fresh_start(fps: float) -> None:
    # seen 0.7 s walking right, missed 1.3 s (far beyond max_lost), back 40 px further on for 1 s
    n_in, n_gap = round(0.7 * fps), round(1.3 * fps)
    frames = [[figure(600 + 2 * i * 30 / fps, 500, 300)] for i in range(n_in)] + [[] for _ in range(n_gap)]
    frames += [[figure(680 + 2 * i * 30 / fps, 500, 290)] for i in range(round(fps))]
    seen, ended = play(MultiTracker(fps=fps), frames, fps)
    assert ids(seen) == {0}
    assert [i for i, e in enumerate(ended) if e] == [n_in + 15] and ended[n_in + 15] == [0]  # freed on the drop
    back = [i for i, s in enumerate(seen) if i >= n_in and s]
    assert back[0] == n_in + n_gap + 2                     # min_hits = 3 frames before the id comes back
    assert seen[back[0]][0].status == "init"               # the loops start a fresh model state for it
    assert all(seen[i][0].status == "tracking" for i in back[1:])


def test_someone_else_far_away_during_the_dropout_gets_a_new_id() -> None:
    frames = [[figure(600, 500, 300)] for _ in range(20)] + [[] for _ in range(20)]
    # a smaller person enters on the far right while the first one is gone, and is still there when they return
    frames += [[figure(1700, 700, 200)] for _ in range(20)]
    frames += [[figure(1700, 700, 200), figure(630, 500, 300)] for _ in range(20)]
    seen, _ = play(MultiTracker(), frames)
    assert ids(seen[:40]) == {0} and ids(seen[40:60]) == {1}
    assert set(seen[-1]) == {0, 1}
    assert seen[-1][0].keypoints[0, 0] == pytest.approx(630, abs=1)  # the first person took their own id back


def test_a_much_larger_person_at_the_same_spot_is_someone_new() -> None:
    frames = [[figure(600, 500, 300)] for _ in range(20)] + [[] for _ in range(20)]
    frames += [[figure(600, 450, 600)] for _ in range(10)]          # twice the size: beyond max_size_ratio
    seen, _ = play(MultiTracker(), frames)
    assert ids(seen[:20]) == {0} and ids(seen[40:]) == {1}


def test_the_id_is_not_reused_after_reid_seconds_or_when_disabled() -> None:
    # dropped at frame 35 (15 lost frames after 20 seen), dormant for 1 s = 30 frames, back at frame 70
    frames = [[figure(600, 500, 300)] for _ in range(20)] + [[] for _ in range(50)]
    frames += [[figure(610, 500, 300)] for _ in range(10)]
    seen, _ = play(MultiTracker(reid_seconds=1.0), frames)
    assert ids(seen[:20]) == {0} and ids(seen[70:]) == {1}
    short = frames[:40] + frames[70:]                      # the same return after a 20-frame gap...
    assert ids(play(MultiTracker(), short)[0][40:]) == {0}
    assert ids(play(MultiTracker(reid_seconds=0.0), short)[0][40:]) == {1}   # ...unless re-id is off


@pytest.mark.parametrize("first_back", ["left", "right"])
def test_with_two_people_dormant_each_gets_their_own_id_back(first_back: str) -> None:
    # two people 500 px apart (about 1.4 box sizes: each return is within both gates) vanish together
    left, right = (600.0, 500.0, 300.0), (1100.0, 520.0, 280.0)
    frames = [[figure(*left), figure(*right)] for _ in range(20)] + [[] for _ in range(30)]
    one, other = (right, left) if first_back == "right" else (left, right)
    frames += [[figure(one[0] + 30, one[1], one[2])] for _ in range(10)]
    frames += [[figure(one[0] + 30, one[1], one[2]), figure(other[0] - 30, other[1], other[2])] for _ in range(10)]
    seen, _ = play(MultiTracker(), frames)
    left_id = min(seen[10], key=lambda k: seen[10][k].keypoints[0, 0])
    right_id = 1 - left_id
    assert ids(seen) == {0, 1}                             # nobody got a third id
    for s in seen[-5:]:
        assert s[left_id].keypoints[0, 0] == pytest.approx(left[0] - 30 if first_back == "right" else left[0] + 30)
        assert s[right_id].keypoints[0, 0] == pytest.approx(right[0] + 30 if first_back == "right" else right[0] - 30)


def test_a_revived_id_is_taken_once_and_a_newcomer_beside_it_is_new() -> None:
    frames = [[figure(600, 500, 300)] for _ in range(20)] + [[] for _ in range(25)]
    # two people come in together, the farther one (still within the gate) listed, so confirmed, first
    frames += [[figure(900, 500, 300), figure(620, 500, 300)] for _ in range(10)]
    seen, _ = play(MultiTracker(), frames)
    assert set(seen[-1]) == {0, 1}
    near = min(seen[-1], key=lambda k: abs(seen[-1][k].keypoints[0, 0] - 620))
    assert near == 0                                      # the closer one is the person who left, not the first


def test_reset_forgets_dormant_tracks() -> None:
    tracker = MultiTracker()
    play(tracker, [[figure(600, 500, 300)] for _ in range(10)] + [[] for _ in range(20)])
    assert [d.track_id for d in tracker.dormant] == [0]
    tracker.reset()
    assert tracker.dormant == []


def test_bad_reid_arguments() -> None:
    with pytest.raises(ValueError):
        MultiTracker(reid_seconds=-1.0)
    with pytest.raises(ValueError):
        MultiTracker(reid_max_dist=0.0)


# ------------------------------------------------------------------------------------------- shared world
def _outputs(r_wc: np.ndarray, t_wc: np.ndarray, cam_trans: np.ndarray) -> dict[str, np.ndarray]:
    """Batch-1 outputs of a person whose world frame sees the camera at (r_wc, t_wc)."""
    pose = np.tile(np.eye(3), (1, 24, 1, 1))
    pose[0, 0] = r_wc
    root = r_wc @ cam_trans + t_wc
    return {"pose_rotmat": pose, "cam_root_rotmat": np.eye(3)[None], "cam_trans": cam_trans[None],
            "root_trans": root[None], "joints": np.tile(root, (1, 24, 1))}


def test_a_revived_reference_id_is_aligned_into_the_old_frame() -> None:
    from mocap.rotations import axis_rotation
    from stream.pipeline_world import SharedWorld

    world = SharedWorld(align_frames=3)
    cam0 = np.array([0.0, 0.2, 3.0])
    for _ in range(3):
        world.to_shared(0, _outputs(np.eye(3), np.array([0.0, 1.5, 0.0]), cam0))
    world.drop(0)  # id 0 ended; re-identified later with a fresh state whose frame is turned and shifted
    turn = np.asarray(axis_rotation(np.array(np.pi / 3), "y")).reshape(3, 3)
    fresh = _outputs(turn.T, np.array([-1.0, 1.5, 2.0]), np.array([0.5, 0.2, 4.0]))
    out = world.to_shared(0, fresh)
    expected = np.array([0.5, 0.2, 4.0]) + np.array([0.0, 1.5, 0.0])  # where the old frame has that person
    assert np.allclose(out["root_trans"][0], expected, atol=1e-5)
    assert world.reference is None                       # nobody's outputs define the frame any more
