"""Camera geometry and the input normalizer (docs/architecture.md contracts), numpy and torch."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mocap import camera as cam

RNG = np.random.default_rng(11)
W, H = 1280, 720
K = cam.default_intrinsics(W, H)


def _points_in_front(n: int) -> np.ndarray:
    return np.column_stack((RNG.uniform(-1, 1, n), RNG.uniform(-1, 1, n), RNG.uniform(1.5, 8.0, n)))


def _kp2d(batch: int = 4) -> np.ndarray:
    """(batch, 21, 3) keypoints scattered in the image with confidences in [0, 1]."""
    xy = np.stack((RNG.uniform(200, 900, (batch, 21)), RNG.uniform(100, 600, (batch, 21))), -1)
    return np.concatenate((xy, RNG.uniform(0.0, 1.0, (batch, 21, 1))), -1)


def test_default_intrinsics() -> None:
    f = np.hypot(W, H)
    np.testing.assert_allclose(K, [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    with pytest.raises(ValueError):
        cam.default_intrinsics(0, 480)


def test_project_matches_opencv_and_backprojects() -> None:
    pts = _points_in_front(50)
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, None)
    uv = cam.project(pts, K)
    np.testing.assert_allclose(uv, ref[:, 0], atol=1e-6)
    np.testing.assert_allclose(cam.backproject(uv, pts[:, 2], K), pts, atol=1e-9)
    uv_t = cam.project(torch.from_numpy(pts).float(), torch.from_numpy(K).float())
    assert isinstance(uv_t, torch.Tensor) and uv_t.dtype == torch.float32
    np.testing.assert_allclose(uv_t.numpy(), uv, rtol=1e-5)


def test_project_batched_intrinsics_and_behind_camera() -> None:
    pts = np.stack((_points_in_front(5), _points_in_front(5)))  # (2, 5, 3)
    ks = np.stack((K, cam.default_intrinsics(640, 480)))  # (2, 3, 3)
    uv = cam.project(pts, ks)
    np.testing.assert_allclose(uv[1], cam.project(pts[1], ks[1]))
    behind = np.array([[0.1, 0.2, -2.0], [0.0, 0.0, 0.0], [0.1, 0.1, 1.0]])
    out = cam.project(behind, K)
    assert np.isnan(out[:2]).all() and np.isfinite(out[2]).all()


def test_bbox_from_keypoints() -> None:
    kp = np.zeros((3, 21, 3))
    kp[0, :2] = [[100, 200, 0.9], [300, 260, 0.8]]  # extent 200 x 60 -> square side 200 * 1.2
    kp[0, 2] = [5000, 5000, 0.1]  # low confidence, ignored
    kp[1, 0] = [100, 100, 1.0]  # only one visible -> NaN
    kp[2, :2] = [[50, 50, 1.0], [50, 50, 1.0]]  # coincide -> NaN
    box = cam.bbox_from_keypoints(kp)
    np.testing.assert_allclose(box[0], [200, 230, 240])
    assert np.isnan(box[1:]).all()
    box_t = cam.bbox_from_keypoints(torch.from_numpy(kp), scale=1.0)
    np.testing.assert_allclose(box_t[0].numpy(), [200, 230, 200])
    kp[0, 1, :2] = np.nan  # a NaN coordinate is never trusted, whatever its confidence
    assert np.isnan(cam.bbox_from_keypoints(kp)[0]).all()


def test_cliff_round_trip_and_meaning() -> None:
    cam_wp = np.column_stack((RNG.uniform(0.5, 1.5, 20), RNG.uniform(-0.3, 0.3, 20), RNG.uniform(-0.3, 0.3, 20)))
    bbox = np.column_stack((RNG.uniform(200, 1000, 20), RNG.uniform(150, 550, 20), RNG.uniform(100, 600, 20)))
    f, pp = K[0, 0], K[:2, 2]
    trans = cam.cam_crop_to_full(cam_wp, bbox, f, pp)
    assert np.all(trans[:, 2] > 0)
    np.testing.assert_allclose(cam.full_to_cam_crop(trans, bbox, f, pp), cam_wp, rtol=1e-10)
    # The root, projected by the full camera, lands where the weak-perspective crop camera puts it.
    uv = cam.project(trans[:, None], K)[:, 0]
    s, tx, ty = cam_wp.T
    np.testing.assert_allclose(uv[:, 0], bbox[:, 0] + s * tx * bbox[:, 2] / 2, rtol=1e-9)
    np.testing.assert_allclose(uv[:, 1], bbox[:, 1] + s * ty * bbox[:, 2] / 2, rtol=1e-9)


def test_cam_crop_to_full_torch_grad_and_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")

    class Head(torch.nn.Module):
        def forward(self, cam_wp: torch.Tensor, bbox: torch.Tensor, focal: torch.Tensor) -> torch.Tensor:
            return cam.cam_crop_to_full(cam_wp, bbox, focal, (640.0, 360.0))

    cam_wp = torch.tensor([[0.9, 0.1, -0.2], [1.2, 0.0, 0.05]], requires_grad=True)
    bbox, focal = torch.tensor([[600.0, 300.0, 400.0], [700.0, 400.0, 250.0]]), torch.tensor([1468.6, 1468.6])
    out = Head()(cam_wp, bbox, focal)
    out.sum().backward()
    assert torch.isfinite(cam_wp.grad).all()
    path = tmp_path / "cliff.onnx"
    torch.onnx.export(Head(), (cam_wp.detach(), bbox, focal), str(path), dynamo=False, opset_version=17,
                      input_names=["cam", "bbox", "focal"], output_names=["trans"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"cam": cam_wp.detach().numpy(), "bbox": bbox.numpy(), "focal": focal.numpy()})[0]
    np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-6)


def test_normalize_layout_and_masking() -> None:
    kp = _kp2d(3)
    box = cam.bbox_from_keypoints(kp, conf_threshold=0.0)
    x = cam.normalize_keypoints(kp, box, K[0, 0], K[:2, 2])
    assert cam.NORMALIZED_DIM == 66 and x.shape == (3, 66)
    per_kp = x[:, :63].reshape(3, 21, 3)
    visible = kp[..., 2] >= cam.CONF_THRESHOLD
    np.testing.assert_array_equal(per_kp[..., 2], visible.astype(float))
    assert np.all(per_kp[~visible][:, :2] == 0)
    expected = (kp[..., :2] - box[:, None, :2]) / (box[:, None, 2:] / 2)
    np.testing.assert_allclose(per_kp[visible][:, :2], expected[visible])
    np.testing.assert_allclose(x[:, 63:], np.column_stack(((box[:, :2] - K[:2, 2]) / K[0, 0], box[:, 2] / K[0, 0])))


def test_normalize_masked_points_cannot_leak() -> None:
    kp = _kp2d(1)
    kp[0, :, 2] = 0.9
    box = cam.bbox_from_keypoints(kp)
    kp[0, 4, 2] = 0.1  # low confidence: its coordinates must not matter
    a = cam.normalize_keypoints(kp, box, 1000.0, (640.0, 360.0))
    kp[0, 4, :2] = [np.nan, 1e9]
    b = cam.normalize_keypoints(kp, box, 1000.0, (640.0, 360.0))
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(b).all() and b[0, 4 * 3 + 2] == 0.0
    kp[0, 5, :2] = np.nan  # confident but NaN: masked too
    c = cam.normalize_keypoints(kp, box, 1000.0, (640.0, 360.0))
    assert np.isfinite(c).all() and c[0, 5 * 3 + 2] == 0.0
    custom = cam.normalize_keypoints(kp, box, 1000.0, (640.0, 360.0), conf_threshold=0.95)
    assert custom[0, 2:63:3].sum() == 0


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_normalize_invariant_to_translating_and_scaling_the_image(kind: str) -> None:
    kp, f, pp = _kp2d(4), K[0, 0], K[:2, 2]
    box = cam.bbox_from_keypoints(kp)
    shift, scale = np.array([37.5, -120.0]), 2.7
    moved = kp.copy()
    moved[..., :2] += shift
    moved_box = box + np.array([*shift, 0.0])
    scaled = kp.copy()
    scaled[..., :2] *= scale
    conv = (lambda a: a) if kind == "numpy" else torch.from_numpy
    x = cam.normalize_keypoints(conv(kp), conv(box), f, pp)
    x_moved = cam.normalize_keypoints(conv(moved), conv(moved_box), f, conv(pp + shift))
    x_scaled = cam.normalize_keypoints(conv(scaled), conv(box * scale), f * scale, conv(pp * scale))
    np.testing.assert_allclose(np.asarray(x_moved), np.asarray(x), atol=1e-12)
    np.testing.assert_allclose(np.asarray(x_scaled), np.asarray(x), atol=1e-12)
    # ... and the box derived from the moved/scaled keypoints is the moved/scaled box.
    np.testing.assert_allclose(cam.bbox_from_keypoints(scaled), box * scale)


def test_normalize_rejects_bad_input() -> None:
    kp = _kp2d(2)
    box = cam.bbox_from_keypoints(kp)
    with pytest.raises(ValueError, match="bbox"):
        cam.normalize_keypoints(kp, np.array([np.nan, 0, 0]), 1000.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="kp2d"):
        cam.normalize_keypoints(kp[:, :17], box, 1000.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="focal"):
        cam.normalize_keypoints(kp, box, 0.0, (0.0, 0.0))


def test_numpy_and_torch_agree_and_keep_kind() -> None:
    kp = _kp2d(2).astype(np.float32)
    box = cam.bbox_from_keypoints(kp)
    assert isinstance(box, np.ndarray) and box.dtype == np.float32
    x_np = cam.normalize_keypoints(kp, box, 1000.0, np.array([640.0, 360.0]))
    x_t = cam.normalize_keypoints(torch.from_numpy(kp), box, 1000.0, np.array([640.0, 360.0]))
    assert isinstance(x_np, np.ndarray) and isinstance(x_t, torch.Tensor) and x_t.dtype == torch.float32
    np.testing.assert_allclose(x_t.numpy(), x_np)
