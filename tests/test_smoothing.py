"""The One-Euro output smoother: less jitter at rest, little lag in fast motion, rotations stay rotations,
frame-rate independent, restarts on gaps, never touches its inputs."""
from __future__ import annotations

import numpy as np
import pytest

from mocap.rotations import axis_angle_to_matrix, rotation_angle
from mocap.smoothing import OutputSmoother, SmoothingConfig, smooth_sequence


def _clip(fps: float, seconds: float, rng: np.random.Generator, noise: float, speed_rad_s: float = 0.0) -> dict:
    """pose_rotmat (T, 24, 3, 3) turning about x at speed_rad_s plus per-frame noise; root_trans (T, 3) moving
    at 1 m/s * (speed_rad_s > 0) plus noise."""
    t = np.arange(int(fps * seconds)) / fps
    aa = np.zeros((len(t), 24, 3))
    aa[..., 0] = speed_rad_s * t[:, None]
    aa += rng.normal(scale=noise, size=aa.shape)
    trans = np.zeros((len(t), 3))
    trans[:, 0] = (1.0 if speed_rad_s else 0.0) * t
    trans += rng.normal(scale=noise, size=trans.shape)
    return {"pose_rotmat": axis_angle_to_matrix(aa).astype(np.float32), "root_trans": trans.astype(np.float32),
            "betas": rng.normal(size=(len(t), 10)).astype(np.float32), "t": t}


def _second_difference_rms(x: np.ndarray) -> float:
    return float(np.sqrt(((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2).mean()))


@pytest.mark.parametrize("fps", [30.0, 60.0])
def test_jitter_at_rest_falls_by_two_fifths(fps: float) -> None:
    """3 mm / 0.003 rad of per-frame noise, about the network's own jitter at rest."""
    clip = _clip(fps, 4.0, np.random.default_rng(0), noise=0.003)
    outputs = {k: clip[k] for k in ("pose_rotmat", "root_trans")}
    dt = np.full(len(clip["t"]), 1 / fps)
    smooth = smooth_sequence(outputs, dt)
    assert _second_difference_rms(smooth["root_trans"]) < 0.6 * _second_difference_rms(clip["root_trans"])
    assert _second_difference_rms(smooth["pose_rotmat"]) < 0.6 * _second_difference_rms(clip["pose_rotmat"])


def test_fast_motion_lags_little() -> None:
    """A joint turning at 6 rad/s (a fast arm swing) is followed within 2 frames' worth of motion at 30 fps."""
    fps = 30.0
    clip = _clip(fps, 2.0, np.random.default_rng(1), noise=0.0, speed_rad_s=6.0)
    dt = np.full(len(clip["t"]), 1 / fps)
    smooth = smooth_sequence({"pose_rotmat": clip["pose_rotmat"]}, dt)["pose_rotmat"]
    rel = np.swapaxes(smooth, -1, -2) @ clip["pose_rotmat"]
    lag = rotation_angle(rel.astype(np.float64))[30:]
    assert lag.max() < 2 * 6.0 / fps
    assert lag.max() > 0.01  # a causal low-pass must lag a moving joint somewhat: the filter did something


def test_rotations_stay_rotations_and_inputs_are_untouched() -> None:
    clip = _clip(30.0, 1.0, np.random.default_rng(2), noise=0.3)
    smoother, before = OutputSmoother(), clip["pose_rotmat"].copy()
    for t in range(len(clip["t"])):
        out = smoother({"pose_rotmat": clip["pose_rotmat"][t : t + 1], "betas": clip["betas"][t : t + 1]}, 1 / 30)
        r = out["pose_rotmat"][0].astype(np.float64)
        np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
        assert out["betas"] is clip["betas"][t : t + 1] or np.array_equal(out["betas"], clip["betas"][t : t + 1])
        assert out["pose_rotmat"].dtype == np.float32 and out["pose_rotmat"].shape == (1, 24, 3, 3)
    np.testing.assert_array_equal(clip["pose_rotmat"], before)


def test_cutoffs_are_in_hertz_not_frames() -> None:
    """The same step of a point is followed at the same speed in seconds at 30 and at 60 fps."""
    def settle_time(fps: float) -> float:
        smoother = OutputSmoother(SmoothingConfig(position_beta=0.0))
        smoother({"cam_trans": np.zeros(3)}, None)
        for k in range(1, 200):
            y = smoother({"cam_trans": np.ones(3)}, 1 / fps)["cam_trans"]
            if y[0] > 0.9:
                return k / fps
        raise AssertionError("never settled")
    assert settle_time(30.0) == pytest.approx(settle_time(60.0), abs=2 / 60)


def test_a_gap_or_a_bad_interval_restarts_from_the_new_frame() -> None:
    smoother = OutputSmoother()
    smoother({"root_trans": np.zeros(3)}, None)
    smoother({"root_trans": np.zeros(3)}, 1 / 30)
    far = np.array([5.0, 0.0, 0.0])
    assert smoother({"root_trans": far}, 1 / 30)["root_trans"][0] < 5.0     # smoothed toward the jump
    for bad in (2.0, 0.0, -1.0, None):                                        # a long gap, a repeated or bad time
        smoother({"root_trans": np.zeros(3)}, 1 / 30)
        np.testing.assert_array_equal(smoother({"root_trans": far}, bad)["root_trans"], far)


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ValueError, match="min_cutoff_hz"):
        SmoothingConfig(min_cutoff_hz=0.0)
    with pytest.raises(ValueError, match="betas"):
        SmoothingConfig(rotation_beta=-1.0)


def _person(rng: np.random.Generator, noise: float) -> dict[str, np.ndarray]:
    """One person's step outputs (batch 1) whose joints and keypoints are posed from its rotations, as the
    network's are."""
    from mocap.fitting.body_numpy import pose

    world = axis_angle_to_matrix(rng.normal(scale=noise, size=(24, 3)) + np.r_[0.0, 0.5, 0.0])
    cam_root = axis_angle_to_matrix(np.r_[3.0, 0.1, 0.0] + rng.normal(scale=noise, size=3))
    betas, root, cam = rng.normal(scale=0.5, size=10), rng.normal(size=3), np.r_[0.0, 0.0, 3.0]
    body = pose(world, betas)
    out = {"pose_rotmat": world, "cam_root_rotmat": cam_root, "betas": betas, "root_trans": root, "cam_trans": cam,
           "joints": body.joints + root, "kp3d_cam": body.keypoints @ (cam_root @ world[0].T).T + cam,
           "contact": rng.uniform(size=4)}
    return {k: v[None].astype(np.float32) for k, v in out.items()}


def test_published_joints_and_keypoints_are_posed_from_the_smoothed_rotations() -> None:
    """Joints and keypoints are not filtered on their own: they stay the skeleton the smoothed rotations pose
    (first frame: the network's own, to float32 rounding)."""
    from mocap.fitting.body_numpy import pose

    rng, smoother = np.random.default_rng(3), OutputSmoother()
    for t in range(20):
        raw = _person(rng, noise=0.05)
        out = smoother(raw, None if t == 0 else 1 / 30)
        if t == 0:
            for k in raw:
                np.testing.assert_allclose(out[k], raw[k], atol=2e-5)
        body = pose(out["pose_rotmat"][0].astype(np.float64), out["betas"][0].astype(np.float64))
        np.testing.assert_allclose(out["joints"][0], body.joints + out["root_trans"][0], atol=2e-5)
        np.testing.assert_array_equal(out["contact"], raw["contact"])
    assert np.abs(out["joints"] - raw["joints"]).max() > 1e-3   # it did smooth


def test_posed_outputs_without_their_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="missing"):
        OutputSmoother()({"joints": np.zeros((24, 3)), "pose_rotmat": np.tile(np.eye(3), (24, 1, 1))}, None)
