"""`mocap.camera.look_at`, the one look-at of the training cameras (torch) and the demo source (numpy).

The references are the two functions it replaced, kept here verbatim: the training cameras' bits must not move
(torch: equal), the demo source's only by float64 rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap.camera import look_at
from mocap.data.virtual_camera import look_at as training_look_at
from stream.sources.synthetic import SyntheticSource

PAIRS = [((0.0, 1.2, 5.0), (0.0, 0.9, 0.0)), ((3.0, 1.5, -2.0), (0.2, 1.0, 0.4)),
         ((-4.0, 0.3, 1.0), (0.0, 1.7, 0.0)), ((0.5, 2.5, 0.5), (0.0, 0.0, 0.0))]


def _old_torch(centre: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # mocap/data/virtual_camera.py
    z = target - centre
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    down = torch.tensor([0.0, -1.0, 0.0], dtype=z.dtype).expand_as(z)
    y = down - (down * z).sum(-1, keepdim=True) * z
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.stack((torch.linalg.cross(y, z), y, z), dim=-2)


def _old_numpy(eye: np.ndarray, target: np.ndarray) -> np.ndarray:  # stream/sources/synthetic.py
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def test_training_cameras_unchanged() -> None:
    g = torch.Generator().manual_seed(0)
    centre, target = torch.randn(8, 30, 3, generator=g) * 3, torch.randn(8, 30, 3, generator=g)
    assert torch.equal(training_look_at(centre, target), _old_torch(centre, target))
    for eye, tgt in PAIRS:
        e, t = torch.tensor(eye), torch.tensor(tgt)
        assert torch.equal(training_look_at(e, t), _old_torch(e, t))


def test_demo_source_unchanged() -> None:
    for eye, tgt in PAIRS:
        e, t = np.array(eye), np.array(tgt)
        np.testing.assert_allclose(look_at(e, t), _old_numpy(e, t), rtol=0, atol=1e-14)
    src = SyntheticSource(realtime=False, render=False, n_frames=1)
    pelvis = np.array([0.0, float(src._trans[:, 1].mean()), 0.0])
    np.testing.assert_allclose(src.rotation(0), _old_numpy(src.cam_position, pelvis), rtol=0, atol=1e-14)


def test_numpy_and_torch_agree_and_it_is_a_rotation() -> None:
    rng = np.random.default_rng(3)
    eye, target = rng.normal(size=(5, 3)) * 4, rng.normal(size=(5, 3))
    r_np = look_at(eye, target)
    r_t = look_at(torch.from_numpy(eye), torch.from_numpy(target))
    assert isinstance(r_np, np.ndarray) and r_t.dtype == torch.float64
    np.testing.assert_allclose(r_np, r_t.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r_np @ np.swapaxes(r_np, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r_np), 1.0, atol=1e-12)
    forward = (target - eye) / np.linalg.norm(target - eye, axis=-1, keepdims=True)
    np.testing.assert_allclose(r_np[:, 2], forward, atol=1e-12)  # z looks at the target
    assert np.all(r_np[:, 1, 1] < 0)  # y points down (no roll, world Y up)


def test_vertical_view_raises() -> None:
    with pytest.raises(ValueError, match="vertical"):
        look_at(np.array([0.0, 3.0, 0.0]), np.zeros(3))
    with pytest.raises(ValueError, match="vertical"):
        look_at(torch.tensor([[0.0, 0.0, 1.0], [0.0, 3.0, 0.0]]), torch.zeros(2, 3))
