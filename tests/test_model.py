"""The causal model: one path in two layouts (step == sequence), state handling, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap.data.motion_bank import MotionWindows
from mocap.data.synth import SyntheticGenerator
from safetensors.torch import load_file

from mocap.model import (
    DEFAULT_CHECKPOINT, OUTPUT_NAMES, OUTPUT_SHAPES, CausalMocap, CheckpointError, ModelConfig, load_model,
    save_checkpoint,
)
from mocap.model.checkpoint import load_checkpoint_meta
from mocap.model.state import TRAINING_OUTPUT_SHAPES
from mocap.rotations import axis_angle_to_matrix


def _walk(batch: int, frames: int) -> MotionWindows:
    """A procedural walk: swinging legs and arms, moving forward at 1 m/s."""
    t = torch.arange(frames, dtype=torch.float32) / 30
    aa = torch.zeros(batch, frames, 24, 3)
    phase = 2 * torch.pi * 1.0 * t
    aa[:, :, 1, 0], aa[:, :, 2, 0] = 0.5 * torch.sin(phase), -0.5 * torch.sin(phase)
    aa[:, :, 4, 0], aa[:, :, 5, 0] = 0.5 * (1 + torch.sin(phase)), 0.5 * (1 - torch.sin(phase))
    aa[:, :, 16, 2], aa[:, :, 17, 2] = -1.2, 1.2
    trans = torch.zeros(batch, frames, 3)
    trans[..., 1], trans[..., 2] = 0.92, t
    return MotionWindows(axis_angle_to_matrix(aa), trans, torch.zeros(batch, 10))


@pytest.fixture(scope="module")
def sample() -> dict[str, torch.Tensor]:
    return SyntheticGenerator()(_walk(3, 40), np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["causal", "single-frame"])
def test_step_equals_sequence(sample: dict[str, torch.Tensor], kind: str) -> None:
    torch.manual_seed(0)
    model = CausalMocap(ModelConfig(kind=kind)).eval()
    for p in model.parameters():  # larger weights than the init so every stage matters
        p.data.add_(0.05 * torch.randn_like(p))
    x, omega = sample["x"], sample["omega"]
    with torch.no_grad():
        seq, _, seq_state = model.sequence(x, omega)
        state = model.initial_state(x.shape[0])
        steps = []
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], omega[:, t], state)
            steps.append(out)
    for name in OUTPUT_NAMES:
        stepped = torch.stack([s[name] for s in steps], dim=1)
        assert torch.allclose(stepped, seq[name], atol=1e-5, rtol=0), (name, (stepped - seq[name]).abs().max())
    for name, value in state.items():
        assert torch.allclose(value, seq_state[name], atol=1e-5), name


def test_step_outputs_and_training_outputs_are_apart(sample: dict[str, torch.Tensor]) -> None:
    """The step returns exactly the contract's outputs; the window adds the losses' extras in their own dict."""
    model = CausalMocap().eval()
    x, omega = sample["x"][:, :5], sample["omega"][:, :5]
    with torch.no_grad():
        out, state = model.step(x[:, 0], omega[:, 0], model.initial_state(3))
        seq = model.sequence(x, omega)
        flat, _ = model.forward_sequence(x, omega)
    assert tuple(out) == OUTPUT_NAMES and tuple(seq.outputs) == OUTPUT_NAMES
    assert tuple(seq.training) == tuple(TRAINING_OUTPUT_SHAPES)
    for name, shape in OUTPUT_SHAPES.items():
        assert out[name].shape == (3,) + shape and seq.outputs[name].shape == (3, 5) + shape, name
    for name, shape in TRAINING_OUTPUT_SHAPES.items():
        assert seq.training[name].shape == (3, 5) + shape, name
    assert flat.keys() == seq.outputs.keys() | seq.training.keys()
    assert state.keys() == seq.state.keys() == model.initial_state(1).keys()


def test_shipped_checkpoint_fits_the_module_tree() -> None:
    """The weights' names and shapes are the checkpoint format: restructuring the code must not rename them."""
    model = CausalMocap(ModelConfig.from_dict(load_checkpoint_meta(DEFAULT_CHECKPOINT)["config"]))
    shipped = load_file(str(DEFAULT_CHECKPOINT))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in shipped.items()}


def test_sequence_can_be_split_into_chunks(sample: dict[str, torch.Tensor]) -> None:
    """Carrying state across calls gives the same result as one call (no reset per call)."""
    model = CausalMocap().eval()
    x, omega = sample["x"], sample["omega"]
    with torch.no_grad():
        whole, _ = model.forward_sequence(x, omega)
        first, state = model.forward_sequence(x[:, :17], omega[:, :17])
        second, _ = model.forward_sequence(x[:, 17:], omega[:, 17:], state)
    joined = torch.cat((first["root_trans"], second["root_trans"]), dim=1)
    assert torch.allclose(joined, whole["root_trans"], atol=1e-5)


def test_outputs_are_well_formed(sample: dict[str, torch.Tensor]) -> None:
    model = CausalMocap().eval()
    with torch.no_grad():
        out, _ = model.forward_sequence(sample["x"], sample["omega"])
    rot = out["pose_rotmat"]
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-4)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(rot.shape[:-2]), atol=1e-4)
    assert ((out["contact"] >= 0) & (out["contact"] <= 1)).all()
    assert (out["cam_trans"][..., 2] > 0).all()
    # A fresh track starts at the origin, lowest foot point on the floor.
    assert torch.allclose(out["root_trans"][:, 0, [0, 2]], torch.zeros(3, 2))
    feet_y = out["joints"][:, 0, [7, 8, 10, 11], 1]
    assert (feet_y.min(-1).values > -0.1).all()


def test_checkpoint_round_trip_and_errors(tmp_path) -> None:
    model = CausalMocap(ModelConfig(encoder_hidden=32, decoder_hidden=32, traj_hidden=16))
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"model_id": "test-model"})
    loaded = load_model(path)
    assert loaded.model_id == "test-model"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    (tmp_path / "bad.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(corrupt)
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(path)
