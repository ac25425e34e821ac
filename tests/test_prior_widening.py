"""Issue 10: motion-prior augmentation, cameras as people mount them, detector-realistic noise, any frame rate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap.body import BuiltinBody
from mocap.data.augment import (Augment, JOINT_LIMITS, augment_motion, clamp_to_limits, keep_feet_grounded,
                                limit_violation_deg, mirror)
from mocap.data.detector_noise import DetectorNoise, corrupt_keypoints
from mocap.data.motion_bank import MotionBank, MotionWindows, Timing, play_clip
from mocap.data.synth import SynthConfig, SyntheticGenerator
from mocap.data.virtual_camera import SHIFTED_CAMERAS, angular_velocity_6d, sample_camera_track
from mocap.losses import second_difference
from mocap.metrics import accel_error
from mocap.model import CausalMocap, ModelConfig
from mocap.model.state import INPUT_DIM, X_FRAME_INTERVAL, frame_interval_feature
from mocap.rotations import axis_angle_to_matrix, axis_rotation, matrix_to_axis_angle
from mocap.skeleton import FOOT_KEYPOINT_IDS, KEYPOINT_FLIP


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True in each row of flags (B, T)."""
    out = []
    for row in flags:
        edges = np.diff(np.r_[0, row.astype(int), 0])
        out += list(np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0])
    return out


def _walk_bank(frames: int = 400) -> MotionBank:
    t = np.arange(frames) / 30.0
    aa = np.zeros((frames, 24, 3), np.float32)
    aa[:, 1, 0] = 0.5 * np.sin(2 * np.pi * t)
    aa[:, 2, 0] = -0.5 * np.sin(2 * np.pi * t)
    aa[:, 4, 0] = 0.4 * (1 + np.sin(2 * np.pi * t))
    trans = np.stack((np.zeros(frames), np.full(frames, 0.92), 1.2 * t), -1).astype(np.float32)
    return MotionBank({"pose_aa": aa, "trans": trans, "betas": np.zeros((frames, 10), np.float32),
                       "clip_start": np.array([0]), "clip_len": np.array([frames])})


def test_mirror_swaps_sides_and_reflects_positions() -> None:
    body = BuiltinBody()
    aa = torch.zeros(1, 1, 24, 3)
    aa[0, 0, 16] = torch.tensor([0.0, 0.0, 1.2])          # left arm raised sideways
    motion = MotionWindows(axis_angle_to_matrix(aa), torch.tensor([[[0.3, 0.9, 0.0]]]), torch.zeros(1, 10))
    out = mirror(motion, torch.tensor([True]))
    j0 = body(motion.pose_rotmat[0], torch.zeros(1, 10), motion.trans[0]).joints[0]
    j1 = body(out.pose_rotmat[0], torch.zeros(1, 10), out.trans[0]).joints[0]
    flip = torch.tensor([0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22])
    expected = j0[flip] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(j1, expected, atol=1e-5)
    assert j1[21, 1] > j1[20, 1] + 0.3                      # now the right wrist is up


def test_clamp_brings_every_joint_inside_its_limits() -> None:
    rng = np.random.default_rng(0)
    aa = torch.as_tensor(rng.normal(0, 1.5, size=(200, 24, 3)), dtype=torch.float32)
    assert (limit_violation_deg(aa) > 1).any()
    clamped = clamp_to_limits(aa)
    assert float(limit_violation_deg(clamped).max()) < 0.1
    knee = clamped[:, 4]                                         # a hinge: at most `off` degrees off its axis
    assert float(knee[:, 1:].norm(dim=-1).max()) <= np.deg2rad(JOINT_LIMITS[4].off) + 1e-5


def test_augmentation_keeps_feet_on_the_floor_and_poses_in_range() -> None:
    bank, body = _walk_bank(), BuiltinBody()
    rng = np.random.default_rng(1)
    raw = bank.sample(rng, 16, 48)
    aug = augment_motion(raw, rng, Augment(mirror_prob=0.0, recombine_prob=0.0, perturb_prob=1.0, pose_prob=1.0), body)
    assert not torch.allclose(aug.pose_rotmat, raw.pose_rotmat)
    low = lambda m: body(m.pose_rotmat.reshape(-1, 24, 3, 3), m.betas.repeat_interleave(48, 0),  # noqa: E731
                         m.trans.reshape(-1, 3)).keypoints[:, list(FOOT_KEYPOINT_IDS), 1].amin(-1)
    with torch.no_grad():
        assert torch.allclose(low(aug), low(raw), atol=1e-4)   # a crouch lowers the pelvis, not the feet
    assert float(limit_violation_deg(matrix_to_axis_angle(aug.pose_rotmat))[..., 1:].max()) < 0.5


def test_timing_plays_any_frame_rate_with_drops() -> None:
    bank = _walk_bank()
    rng = np.random.default_rng(2)
    win = bank.sample(rng, 64, 40, timing=Timing(fps_choices=(60.0,), drop_prob=(0.2, 0.2), speed=(1.0, 1.0)))
    dt = win.dt.numpy()
    assert set(np.round(np.unique(dt) * 60).astype(int)) <= {1, 2, 3, 4} and (dt > 1.5 / 60).mean() > 0.1
    # Real speed: the pelvis advances 1.2 m/s times the elapsed time.
    elapsed = dt[:, 1:].sum(1)
    moved = (win.trans[:, -1, 2] - win.trans[:, 0, 2]).numpy()
    assert np.allclose(moved, 1.2 * elapsed, atol=1e-3)


def test_play_clip_covers_the_clip_at_the_requested_rate() -> None:
    bank = _walk_bank(91)
    clip = play_clip(np.zeros((91, 24, 3)), bank.trans, np.zeros(10), np.random.default_rng(0), Timing((60.0,)))
    assert clip.pose_rotmat.shape[1] == 179 and torch.allclose(clip.dt, torch.full_like(clip.dt, 1 / 60))


def test_replay_between_cached_frames_keeps_the_true_acceleration() -> None:
    """A 60-fps replay of 30-fps motion: exact on the cached frames, and its acceleration per 30-fps frame is the
    motion's own at every frame (a straight line between frames would read 2a, 0, 2a, 0, ...)."""
    bank = _walk_bank(91)
    clip = play_clip(np.zeros((91, 24, 3)), bank.trans, np.zeros(10), np.random.default_rng(0), Timing((60.0,)))
    z = clip.trans[0, :, 2].numpy().astype(np.float64)
    assert np.allclose(z[::2], bank.trans[: len(z[::2]), 2], atol=1e-6)
    sway = np.sin(3 * np.arange(91) / 30.0).astype(np.float32)         # lateral sway, 30-fps samples
    trans = np.stack((sway, np.full(91, 0.92, np.float32), np.zeros(91, np.float32)), -1)
    x = play_clip(np.zeros((91, 24, 3)), trans, np.zeros(10), np.random.default_rng(0), Timing((60.0,))).trans[0, :, 0]
    accel = np.diff(x.numpy().astype(np.float64), 2) / 0.25               # per 30-fps frame^2
    t = np.arange(1, len(x) - 1) / 60.0
    true = -9 * np.sin(3 * t) / 900
    assert np.abs(accel - true)[2:-2].max() < 0.05 * np.abs(true).max()
    # and windows never borrow a neighbouring clip's frames for the spline
    two = MotionBank({"pose_aa": np.zeros((40, 24, 3), np.float32),
                      "trans": np.r_[np.zeros((20, 3)), np.full((20, 3), 100.0)].astype(np.float32),
                      "betas": np.zeros((40, 10), np.float32), "clip_start": np.array([0, 20]),
                      "clip_len": np.array([20, 20])})
    win = two.sample(np.random.default_rng(1), 64, 8, timing=Timing((60.0,), speed=(1.0, 1.0)))
    values = win.trans.numpy()
    assert np.all((np.abs(values) < 1e-5) | (np.abs(values - 100.0) < 1e-3))


def test_omega_is_per_second_at_any_frame_rate() -> None:
    angle = torch.linspace(0, 0.5, 11)
    rot = axis_rotation(angle, 1)[None]                          # 0.05 rad per frame about Y
    at30 = angular_velocity_6d(rot, fps=30.0)
    at60 = angular_velocity_6d(rot, dt=torch.full((1, 11), 1 / 60))
    assert torch.allclose(at60[:, 1:], 2 * at30[:, 1:], atol=1e-4)


def test_cameras_cover_elevation_roll_portrait_and_fov() -> None:
    rng = np.random.default_rng(3)
    pelvis = torch.zeros(400, 2, 3) + torch.tensor([0.0, 0.9, 0.0])
    def elevation(cam) -> torch.Tensor:   # of the camera seen from the pelvis, degrees
        d = cam.centre[:, 0] - pelvis[:, 0]
        return torch.rad2deg(torch.atan2(d[:, 1], d[:, [0, 2]].norm(dim=-1)))

    cam = sample_camera_track(rng, pelvis, force_moving=False)
    assert elevation(cam).min() < 5 and elevation(cam).max() > 45
    w, h = cam.image_size[:, 0], cam.image_size[:, 1]
    assert 0.2 < float((h > w).float().mean()) < 0.5
    hfov = torch.rad2deg(2 * torch.atan(w / (2 * cam.focal)))
    land = w > h
    assert hfov[land].min() >= 39.9 and hfov[land].max() <= 90.1 and hfov[land].max() - hfov[land].min() > 30
    assert hfov[~land].min() >= 24.9 and hfov[~land].max() <= 70.1
    down = sample_camera_track(rng, pelvis, force_moving=False, ranges=SHIFTED_CAMERAS)
    el = elevation(down)
    assert el.min() > 25 and el.max() < 55 and bool((down.image_size[:, 1] > down.image_size[:, 0]).all())


def test_detector_noise_swaps_sides_for_runs_of_frames_and_is_mostly_confident() -> None:
    rng = np.random.default_rng(4)
    b, t = 64, 90
    clean = torch.as_tensor(rng.uniform(100, 900, size=(b, t, 21, 2)), dtype=torch.float32)
    params = DetectorNoise(bias=0, drift=0, jitter=0, outlier_rate=0, foot_slide=0, swap_rate=1.0, frame_drop=0,
                           occlusions_per_64=0, no_feet_prob=0)
    kp, conf = corrupt_keypoints(rng, clean, torch.full((b,), 500.0), torch.ones(b, t, 21, dtype=torch.bool),
                                 params=params)
    swapped = (kp[..., 9, :] - clean[..., 10, :]).norm(dim=-1) < 1e-3   # left wrist where the right one is
    runs = _runs(swapped.numpy())
    assert len(runs) > 10 and np.median(runs) >= 3
    assert float((conf > 0.9).float().mean()) > 0.5 and float(conf.min()) >= 0.45


def test_generator_appends_the_frame_interval_and_the_model_scales_velocity_by_it() -> None:
    bank = _walk_bank()
    rng = np.random.default_rng(5)
    gen = SyntheticGenerator(SynthConfig())
    batch = gen(bank.sample(rng, 4, 32, timing=Timing((60.0,), (0.3, 0.3))), rng)
    assert batch["x"].shape[-1] == INPUT_DIM
    assert torch.allclose(batch["x"][..., X_FRAME_INTERVAL][..., 0], frame_interval_feature(batch["dt"]))
    torch.manual_seed(0)
    model = CausalMocap(ModelConfig()).eval()
    # Blind the network to the feature (its input weights for the last column = 0): the only effect left is the
    # explicit scaling, so a frame that took twice as long must move the root exactly twice as far.
    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, torch.nn.Linear) and module.in_features == INPUT_DIM:
                module.weight[:, -1] = 0.0
                break
        else:
            raise AssertionError("no input layer of width INPUT_DIM found")
    x = batch["x"][:1, :1].clone()
    omega = torch.zeros(1, 1, 6)
    with torch.no_grad():
        x[..., X_FRAME_INTERVAL] = frame_interval_feature(1 / 30)
        v30 = model.forward_sequence(x, omega)[0]["root_vel_net"]
        x[..., X_FRAME_INTERVAL] = frame_interval_feature(1 / 15)
        v15 = model.forward_sequence(x, omega)[0]["root_vel_net"]
    assert float(v30.abs().max()) > 0 and torch.allclose(v15, 2 * v30, atol=1e-6)


def test_accel_with_intervals_matches_plain_accel_at_30fps_and_is_rate_independent() -> None:
    t30 = np.arange(60) / 30
    t60 = np.arange(120) / 60
    path = lambda t: np.stack((np.sin(3 * t), t**2, np.zeros_like(t)), -1)[:, None].repeat(2, 1)  # noqa: E731
    noise30 = np.zeros((60, 2, 3))
    gt30, gt60 = path(t30), path(t60)
    pred30 = gt30 + 0.01 * np.sin(7 * t30)[:, None, None]
    pred60 = gt60 + 0.01 * np.sin(7 * t60)[:, None, None]
    plain = accel_error(pred30 + noise30, gt30, root=None)
    assert accel_error(pred30, gt30, root=None, interval=np.ones(60)) == pytest.approx(plain)
    per30 = accel_error(pred60, gt60, root=None, interval=np.full(120, 0.5))
    assert per30 == pytest.approx(plain, rel=0.05)
    assert accel_error(pred60, gt60, root=None) == pytest.approx(plain / 4, rel=0.05)


def test_swap_flip_table_is_an_involution() -> None:
    flip = np.asarray(KEYPOINT_FLIP)
    assert (flip[flip] == np.arange(21)).all()


def _standing_on_left_leg(frames: int = 30) -> MotionWindows:
    """(1, frames) windows of a body standing still on its left leg, the right knee raised high."""
    aa = torch.zeros(1, frames, 24, 3)
    aa[..., 2, 0] = -1.2                                        # right hip flexed ...
    aa[..., 5, 0] = 1.5                                         # ... and its knee bent: the right foot is off the floor
    return MotionWindows(axis_angle_to_matrix(aa), torch.tensor([0.0, 0.95, 0.0]).expand(1, frames, 3).clone(),
                         torch.zeros(1, 10), torch.full((1, frames), 1 / 30))


def test_keep_feet_grounded_leaves_the_planted_foot_where_it_stood() -> None:
    body = BuiltinBody()
    before = _standing_on_left_leg()
    aa = matrix_to_axis_angle(before.pose_rotmat)
    aa[..., 1, 2] = 0.25                                        # the stance (left) hip abducted by 14 degrees
    after = MotionWindows(axis_angle_to_matrix(aa), before.trans, before.betas, before.dt)
    feet = lambda m: body(m.pose_rotmat[0], torch.zeros(30, 10), m.trans[0]).keypoints[:, [17, 18]]  # noqa: E731
    with torch.no_grad():
        dragged = (feet(after) - feet(before))[..., [0, 2]].mean(1).norm(dim=-1)
        fixed = (feet(keep_feet_grounded(before, after, body)) - feet(before))[..., [0, 2]].mean(1).norm(dim=-1)
    assert float(dragged.min()) > 0.05                          # without the shift the foot moves > 5 cm
    assert float(fixed.max()) < 1e-3                            # with it the left foot stays planted


def test_perturbation_spares_stance_legs_but_moves_swing_legs() -> None:
    body = BuiltinBody()
    motion = _standing_on_left_leg()
    cfg = Augment(mirror_prob=0.0, recombine_prob=0.0, perturb_prob=1.0, pose_prob=0.0, perturb_deg=20.0)
    aug = augment_motion(motion, np.random.default_rng(3), cfg, body)
    change = (aug.pose_rotmat - motion.pose_rotmat).abs().amax(dim=(0, 1, 3, 4))      # (24,) per joint
    assert float(change[[1, 4, 7, 10]].max()) < 1e-6           # left leg planted all the time: untouched
    assert float(change[[2, 5]].max()) > 1e-2                  # right leg in the air: perturbed
    assert float(change[[16, 17]].max()) > 1e-2                # arms always perturbed


def test_loss_acceleration_matches_the_metric_at_any_interval() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 12, 24, 3))
    interval = np.concatenate(([1.0], rng.choice([0.5, 1.0, 2.0], size=11)))
    from mocap.metrics import _second_difference
    torch_acc = second_difference(torch.as_tensor(x), torch.as_tensor(interval)[None])[0].numpy()
    assert np.allclose(torch_acc, _second_difference(x[0], interval))
    assert np.allclose(second_difference(torch.as_tensor(x), None)[0].numpy(), _second_difference(x[0], None))
