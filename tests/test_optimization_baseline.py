"""The per-frame optimization baseline recovers a known pose from its own 2D projection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap import metrics
from mocap.baselines.optimization import OptimizationBaseline, root_facing_camera, standing_pose, synthetic_views
from mocap.body import BuiltinBody
from mocap.camera import bbox_from_keypoints, default_intrinsics, project
from mocap.rotations import axis_angle_to_matrix
from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES

K = default_intrinsics(1280, 720)
J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
KP = {n: i for i, n in enumerate(KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def body() -> BuiltinBody:
    return BuiltinBody()


@pytest.fixture(scope="module")
def views(body: BuiltinBody) -> dict[str, np.ndarray]:
    """12 walking-ish frames of BuiltinBody, yaw within +-0.6 rad, 4 m from a 1280x720 camera."""
    return synthetic_views(body, K, frames=12, depth=4.0, seed=3)


@pytest.fixture(scope="module")
def fit(body: BuiltinBody, views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    fitter = OptimizationBaseline(body=body, K=K, iters=150, num_threads=1)
    return fitter.fit(views["kp2d"], bbox_from_keypoints(views["kp2d"]))


def test_neutral_start_stands_upright_facing_the_camera(body: BuiltinBody) -> None:
    pose = torch.zeros(1, 24, 3)
    pose[0, 0] = torch.as_tensor(root_facing_camera(0.0), dtype=torch.float32)
    out = body(pose, trans=torch.tensor([[0.0, 0.0, 4.0]]))
    j, kp = out.joints[0], out.keypoints[0]
    assert j[J["head"], 1] < j[J["pelvis"], 1] - 0.4  # head above pelvis: smaller Y in OpenCV (Y down)
    assert j[J["l_ankle"], 1] > j[J["pelvis"], 1] + 0.7
    assert kp[KP["nose"], 2] < j[J["head"], 2] - 0.05  # nose toward the camera (smaller Z)
    uv = project(kp, torch.as_tensor(K, dtype=torch.float32))
    assert uv[KP["l_shoulder"], 0] > uv[KP["r_shoulder"], 0]  # facing us, their left is on image right


def test_fit_reprojects_and_recovers_pose(
    body: BuiltinBody, fit: dict[str, np.ndarray], views: dict[str, np.ndarray]
) -> None:
    t = views["kp2d"].shape[0]
    assert fit["pose_aa"].shape == (t, 24, 3) and fit["betas"].shape == (t, 10)
    assert fit["cam_trans"].shape == (t, 3) and fit["joints_cam"].shape == (t, 24, 3)
    reproj = np.linalg.norm(fit["kp2d_fit"] - views["kp2d"][..., :2], axis=-1)
    assert reproj.mean() < 5.0, reproj.mean(1)
    # Noise-free synthetic views fit to < 1 px and 26-43 mm PA-MPJPE over seeds 0-5 (limb depth is ambiguous
    # from one view); 60 mm leaves room for that spread while staying far below the start pose's error.
    pa = metrics.pa_mpjpe(fit["joints_cam"], views["joints_cam"])
    assert pa < 60.0
    with torch.no_grad():
        start = body(torch.as_tensor(standing_pose(), dtype=torch.float32)[None]).joints.numpy()
    assert metrics.pa_mpjpe(np.broadcast_to(start, views["joints_cam"].shape), views["joints_cam"]) > pa + 30.0
    depth_err = np.abs(fit["cam_trans"][:, 2] - views["trans"][:, 2])
    assert depth_err.mean() < 0.2  # 4 m away: within 5 % (measured 7-12 cm: betas trade size for depth)


def test_person_facing_away_is_recovered(body: BuiltinBody, views: dict[str, np.ndarray]) -> None:
    """The second start (facing away) wins where the person shows the camera their back."""
    pose = views["pose_aa"][:4].copy()
    pose[:, 0] = np.stack([root_facing_camera(np.pi + yaw) for yaw in (-0.4, -0.1, 0.2, 0.5)])
    with torch.no_grad():
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        gt = body(f32(pose), f32(views["betas"][:4]), f32(views["trans"][:4]))
    kp = np.concatenate([project(gt.keypoints, f32(K)).numpy(), np.ones((4, 21, 1))], -1)
    fit = OptimizationBaseline(body=body, K=K, iters=150, num_threads=1).fit(kp, bbox_from_keypoints(kp))
    forward = axis_angle_to_matrix(fit["pose_aa"][:, 0].astype(np.float64))[:, :, 2]  # body +Z in camera frame
    assert np.all(forward[:, 2] > 0.5)  # faces away from the camera
    assert np.linalg.norm(fit["kp2d_fit"] - kp[..., :2], axis=-1).mean() < 5.0
    assert metrics.pa_mpjpe(fit["joints_cam"], gt.joints.numpy()) < 80.0


def test_outputs_are_consistent_with_the_body(fit: dict[str, np.ndarray], body: BuiltinBody) -> None:
    """pose_aa is local axis-angle with joint 0 the camera-frame root; cam_trans is the pelvis."""
    with torch.no_grad():
        out = body(torch.from_numpy(fit["pose_aa"]), torch.from_numpy(fit["betas"]), torch.from_numpy(fit["cam_trans"]))
    np.testing.assert_allclose(out.joints.numpy(), fit["joints_cam"], atol=1e-4)
    np.testing.assert_allclose(fit["joints_cam"][:, 0], fit["cam_trans"], atol=1e-6)


def test_masked_keypoints_are_ignored(body: BuiltinBody, views: dict[str, np.ndarray]) -> None:
    kp = views["kp2d"][:3].copy()
    hidden = [KP["l_wrist"], KP["r_ankle"], KP["nose"]]
    kp[:, hidden, 2] = 0.0
    bbox = bbox_from_keypoints(kp)
    junk = kp.copy()
    junk[:, hidden, :2] = np.array([[900.0, -400.0], [np.nan, np.nan], [5.0, 5.0]])  # far off or NaN
    fitter = OptimizationBaseline(body=body, K=K, iters=60, two_starts=False, num_threads=1)
    clean, masked = fitter.fit(kp, bbox), fitter.fit(junk, bbox)
    np.testing.assert_allclose(masked["joints_cam"], clean["joints_cam"], atol=1e-6)
    # The same junk trusted at full confidence drags the fit away: the mask is what protects it.
    junk[:, hidden[0], 2] = 1.0
    trusted = fitter.fit(junk, bbox)
    assert np.abs(trusted["joints_cam"] - clean["joints_cam"]).max() > 0.05


def test_bad_input_raises(body: BuiltinBody, views: dict[str, np.ndarray]) -> None:
    kp = views["kp2d"][:2]
    fitter = OptimizationBaseline(body=body, K=K, iters=1)
    with pytest.raises(ValueError, match="kp2d"):
        fitter.fit(kp[:, :17], np.ones((2, 3)))
    with pytest.raises(ValueError, match="bbox"):
        fitter.fit(kp, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="2 keypoints"):
        fitter.fit(np.concatenate([kp[..., :2], np.zeros((2, 21, 1))], -1), np.ones((2, 3)))
    with pytest.raises(ValueError, match="K"):
        OptimizationBaseline(body=body, K=None)
