"""Metrics on hand-made cases whose answers are known in closed form."""
from __future__ import annotations

import numpy as np
import pytest

from mocap import metrics
from mocap.rotations import axis_angle_to_matrix


def _rot(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    aa = np.asarray(axis, dtype=np.float64)
    return axis_angle_to_matrix(aa / np.linalg.norm(aa) * angle)


@pytest.fixture
def joints() -> np.ndarray:
    """(T=12, J=24, 3) random but reproducible, person-sized point clouds (metres)."""
    rng = np.random.default_rng(0)
    return rng.normal(scale=0.4, size=(12, 24, 3))


def test_mpjpe_ignores_translation_but_not_offsets(joints: np.ndarray) -> None:
    shifted = joints + np.array([1.0, -2.0, 3.0])
    assert metrics.mpjpe(shifted, joints) == pytest.approx(0.0, abs=1e-9)
    moved = joints.copy()
    moved[:, 5] += np.array([0.0, 0.03, 0.04])  # one joint of 24 off by 5 cm -> 50 / 24 mm
    assert metrics.mpjpe(moved, joints) == pytest.approx(50.0 / 24.0)


def test_pa_mpjpe_removes_similarity_and_mpjpe_does_not(joints: np.ndarray) -> None:
    r = _rot((0.3, 1.0, -0.2), 0.9)
    copy = 1.3 * joints @ r.T + np.array([0.2, 0.1, 4.0])
    assert metrics.pa_mpjpe(copy, joints) == pytest.approx(0.0, abs=1e-6)
    assert metrics.mpjpe(copy, joints) > 100.0


def test_pa_mpjpe_does_not_undo_a_mirror(joints: np.ndarray) -> None:
    mirrored = joints * np.array([-1.0, 1.0, 1.0])
    assert metrics.pa_mpjpe(mirrored, joints) > 50.0


def test_align_procrustes_rigid_keeps_scale(joints: np.ndarray) -> None:
    aligned = metrics.align_procrustes(2.0 * joints, joints, scale=False)
    spread = np.linalg.norm(aligned - aligned.mean(1, keepdims=True), axis=-1)
    ref = np.linalg.norm(joints - joints.mean(1, keepdims=True), axis=-1)
    np.testing.assert_allclose(spread, 2.0 * ref, rtol=1e-9)


def test_accel_error_zero_for_constant_velocity_error_and_known_for_a_kick() -> None:
    t = np.arange(10, dtype=np.float64)[:, None, None]
    gt = np.zeros((10, 3, 3))
    gt[:, 1:] += 0.01 * t**2  # accelerating limbs
    drift = gt.copy()
    drift[:, 2] += 0.005 * t[:, 0] * np.array([1.0, 0.0, 0.0])  # error growing linearly: zero acceleration
    assert metrics.accel_error(drift, gt) == pytest.approx(0.0, abs=1e-9)
    kick = gt.copy()
    kick[4, 1, 1] += 0.01  # a 10 mm one-frame spike of joint 1: second differences 10, -20, 10 mm
    expected = (10 + 20 + 10) / (8 * 3)
    assert metrics.accel_error(kick, gt) == pytest.approx(expected)


def test_accel_error_is_root_aligned_by_default() -> None:
    gt = np.zeros((6, 2, 3))
    pred = gt.copy()
    pred[:, :, 0] += 0.01 * np.arange(6)[:, None] ** 2  # whole body accelerates together
    assert metrics.accel_error(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.accel_error(pred, gt, root=None) == pytest.approx(20.0)


def _walk(frames: int) -> np.ndarray:
    """(T, 5, 3) world points of a 'person' walking 2 cm per frame along x."""
    t = np.arange(frames, dtype=np.float64)
    body = np.array([[0, 0.9, 0], [0.1, 0.5, 0], [-0.1, 0.5, 0], [0, 1.5, 0.05], [0.2, 1.3, 0]])
    return body[None] + np.stack([0.02 * t, 0 * t, 0.01 * np.sin(t / 5)], -1)[:, None]


def test_world_metrics_zero_for_a_rigidly_moved_trajectory() -> None:
    gt = _walk(250)
    pred = gt @ _rot((0, 1, 0), 1.2).T + np.array([3.0, 0.0, -1.0])
    assert metrics.w_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert metrics.wa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert metrics.rte_pct(pred[:, 0], gt[:, 0]) == pytest.approx(0.0, abs=1e-6)


def test_w_mpjpe_sees_drift_that_wa_mpjpe_partly_absorbs() -> None:
    gt = _walk(100)
    pred = gt.copy()
    pred += (0.001 * np.arange(100))[:, None, None] * np.array([0.0, 0.0, 1.0])  # 1 mm/frame sideways drift
    # First-two-frame alignment: error of frame k is ~k mm minus the tiny head alignment -> mean ~49.5 mm.
    assert metrics.w_mpjpe(pred, gt, chunk=100) == pytest.approx(49.5, abs=1.5)
    assert metrics.wa_mpjpe(pred, gt, chunk=100) < metrics.w_mpjpe(pred, gt, chunk=100)


def test_w_mpjpe_chunks_average_equally_and_drop_single_frame_tail() -> None:
    gt = np.zeros((201, 3, 3))
    gt[:, 1, 0], gt[:, 2, 1] = 0.5, 0.5
    pred = gt.copy()
    pred[100:200, 0, 2] += 0.03  # second chunk: one of three joints off by 30 mm after the head frames too
    # Rigid fit on frames 100-101 spreads the offset; error must be equal on every frame of chunk 2, so the
    # mean over chunks is (0 + e) / 2 and the 1-frame tail (frame 200) is ignored.
    two = metrics.w_mpjpe(pred, gt, chunk=100)
    only_second = metrics.w_mpjpe(pred[100:200], gt[100:200], chunk=100)
    assert two == pytest.approx(only_second / 2)
    assert 0 < only_second < 30.0


def test_wa_mpjpe_similarity_vs_rigid() -> None:
    gt = _walk(50)
    pred = 1.1 * gt
    assert metrics.wa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert metrics.wa_mpjpe(pred, gt, scale=False) > 10.0


def test_rte_known_value_and_standing_still() -> None:
    t = np.arange(11, dtype=np.float64)
    gt = np.stack([0.1 * t, 0 * t, 0 * t], -1)  # 1 m straight line
    pred = gt.copy()
    pred[:, 1] += np.where(t % 2 == 0, 0.01, -0.01)  # +-1 cm zig-zag: alignment cannot remove it
    # Best rigid alignment keeps the zig-zag roughly centred; the mean error stays about 1 cm of 1 m -> ~1 %.
    assert metrics.rte_pct(pred, gt) == pytest.approx(1.0, abs=0.1)
    still = np.zeros((5, 3))
    assert np.isnan(metrics.rte_pct(still + 0.1, still))


def test_foot_slide_counts_only_contact_pairs() -> None:
    t = np.arange(6, dtype=np.float64)
    feet = np.zeros((6, 4, 3))
    feet[:, 0, 0] = 0.01 * t  # L heel slides 1 cm / frame in x
    feet[:, 0, 1] = 0.05 * t  # vertical motion must not count
    feet[:, 2, 2] = 0.1 * t  # R heel moves 10 cm / frame in z but is never in contact
    contact = np.zeros((6, 4), dtype=bool)
    contact[:, 0] = True
    contact[:, 1] = True  # L toe in contact and still -> 0 mm
    contact[3, 2] = True  # isolated single frame: no pair counts
    assert metrics.foot_slide(feet, contact) == pytest.approx((5 * 10.0 + 5 * 0.0) / 10)
    assert np.isnan(metrics.foot_slide(feet, np.zeros((6, 4), dtype=bool)))


def test_contact_f1_small_table() -> None:
    prob = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4], [0.5, 0.0]])
    gt = np.array([[True, False], [False, True], [True, False], [True, False]])
    # pred >= 0.5: (T,F),(T,T),(F,F),(T,F) -> tp 3, fp 1, fn 1 -> F1 = 6 / 8
    assert metrics.contact_f1(prob, gt) == pytest.approx(0.75)
    assert metrics.contact_f1(prob, gt, threshold=0.95) == pytest.approx(0.0)
    assert np.isnan(metrics.contact_f1(np.zeros((3, 4)), np.zeros((3, 4), dtype=bool)))


def test_bad_input_raises() -> None:
    a = np.zeros((4, 24, 3))
    with pytest.raises(ValueError, match="same shape"):
        metrics.mpjpe(a, a[:, :23])
    with pytest.raises(ValueError, match="NaN"):
        metrics.pa_mpjpe(a + np.nan, a)
    with pytest.raises(ValueError, match="3 frames"):
        metrics.accel_error(a[:2], a[:2])
    with pytest.raises(ValueError, match="bool"):
        metrics.contact_f1(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shorter"):
        metrics.w_mpjpe(a[:1], a[:1])


def test_sequence_metrics_and_summarize() -> None:
    gt = _walk(120)
    pred = gt + np.array([0.0, 0.0, 0.5])
    feet = gt[:, 1:5]
    contact = np.ones((120, 4), dtype=bool)
    res = metrics.sequence_metrics(
        pred, gt, pred_world=pred, gt_world=gt, pred_feet_world=feet, contact_gt=contact,
        contact_prob=np.full((120, 4), 0.9),
    )
    assert set(res) == {"frames", "mpjpe", "pa_mpjpe", "accel", "w_mpjpe", "wa_mpjpe", "rte", "foot_slide",
                        "contact_f1"}
    assert res["mpjpe"] == pytest.approx(0.0, abs=1e-6) and res["contact_f1"] == 1.0
    assert res["foot_slide"] == pytest.approx(20.0, rel=0.01)  # 2 cm / frame walking speed (+ small sway)
    other = {"frames": 40.0, "mpjpe": 40.0, "rte": float("nan")}
    summary = metrics.summarize([res, other])
    assert summary["mpjpe"] == pytest.approx(40.0 * 40 / 160)
    assert summary["rte"] == pytest.approx(res["rte"])  # NaN skipped
    assert summary["frames"] == 160 and summary["sequences"] == 2
    assert all(isinstance(v, float) for v in summary.values())
