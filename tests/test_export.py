"""export/: ONNX export + checker + metadata, torch/onnxruntime parity over 300 steps, CLI and its error paths."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.__main__ import main as export_main
from export.inputs import realistic_inputs
from mocap.model.state import INPUT_DIM
from export.metadata import parse_metadata
from export.onnx_export import export_onnx
from export.parity import check_onnx_parity
from mocap.model import OUTPUT_NAMES, CausalMocap, save_checkpoint, state_shapes
from mocap.model.state import state_output_name
from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES

REPO = Path(__file__).resolve().parents[1]


def varied_model(seed: int) -> CausalMocap:
    """An untrained model whose heads have sizeable weights, so every output moves with the input (the stock
    init scales heads by 0.01, which would make parity trivially easy). The trajectory head stays at 0.3x:
    at full scale its root-orientation recurrence turns chaotic and amplifies float rounding past 1e-4."""
    torch.manual_seed(seed)
    model = CausalMocap().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head" in name and p.dim() == 2:
                scale = 0.3 if name.startswith("trajectory") else 1.0
                p.normal_(0.0, scale / math.sqrt(p.shape[1]))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[CausalMocap, Path]:
    model = varied_model(0)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_onnx(model, path, "test-model")
    return model, path


@pytest.fixture(scope="module")
def walk_inputs() -> tuple[np.ndarray, np.ndarray, str]:
    return realistic_inputs(batch=4, steps=300, seed=1, cache=None)


def test_export_passes_checker_with_names_dynamic_batch_and_metadata(exported):
    model, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    states = list(state_shapes(model.config))
    assert [i.name for i in proto.graph.input] == ["x", "omega"] + states
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES) + [state_output_name(s) for s in states]
    for value in list(proto.graph.input) + list(proto.graph.output):
        batch_dim = value.type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.HasField("dim_value"), value.name
    assert proto.opset_import[0].version == 17

    meta = parse_metadata({p.key: p.value for p in proto.metadata_props})
    assert meta["joint_names"] == list(SMPL_JOINT_NAMES)
    assert meta["keypoint_names"] == list(KEYPOINT_NAMES)
    assert meta["normalized_dim"] == INPUT_DIM and "size / 2" in meta["input_normalization"]
    assert meta["fps"] == model.config.fps
    assert meta["model_id"] == "test-model"
    assert meta["state_names"] == states
    assert meta["state_outputs"] == {s: state_output_name(s) for s in states}
    assert meta["output_names"][: len(OUTPUT_NAMES)] == list(OUTPUT_NAMES)
    assert meta["livemocap_version"] not in ("", "unknown")


def test_parity_300_steps_batch_4(exported, walk_inputs):
    model, path = exported
    report = check_onnx_parity(model, path, inputs=walk_inputs)
    assert (report.steps, report.batch) == (300, 4)
    assert set(report.max_abs) == set(OUTPUT_NAMES) | {f"{s}_out" for s in state_shapes(model.config)}
    assert report.passed, report.to_json()
    assert max(report.max_abs.values()) <= 1e-4


def test_parity_check_catches_different_weights(exported, walk_inputs):
    _, path = exported
    x, omega, source = walk_inputs
    report = check_onnx_parity(varied_model(1), path, inputs=(x[:20], omega[:20], source))
    assert not report.passed
    assert report.worst[1] > 1e-2


def test_procedural_inputs_look_like_model_inputs():
    x, omega, source = realistic_inputs(batch=3, steps=60, seed=0, cache=None)
    assert source == "procedural walk"
    assert x.shape == (60, 3, INPUT_DIM) and omega.shape == (60, 3, 6) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.isfinite(omega).all()
    visible = x[..., 2:63:3]
    assert set(np.unique(visible)) <= {0.0, 1.0} and visible.mean() > 0.5
    assert x[..., 0:63:3].std(axis=0).mean() > 1e-3  # keypoints move over time
    assert x[..., 65].min() > 0  # bbox size / f


def test_cli_onnx_prints_one_json_line(tmp_path, capsys):
    ckpt = save_checkpoint(varied_model(2), tmp_path / "ckpt.safetensors", {"model_id": "cli-model"})
    out = tmp_path / "cli.onnx"
    rc = export_main(["onnx", "--checkpoint", str(ckpt), "--out", str(out), "--steps", "30", "--batch", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["passed"] and figures["steps"] == 30 and figures["batch"] == 2
    assert figures["model_id"] == "cli-model" and figures["worst_max_abs"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert len(meta["checkpoint_sha256"]) == 64


def test_cli_dynamo_exporter_keeps_signature_batch_axis_and_parity(tmp_path, capsys):
    """The torch.export-based exporter (not the default: export/onnx_export.py says why) still works."""
    pytest.importorskip("onnxscript")
    model = varied_model(3)
    ckpt = save_checkpoint(model, tmp_path / "ckpt.safetensors", {"model_id": "dynamo-model"})
    out = tmp_path / "dynamo.onnx"
    rc = export_main(["onnx", "--checkpoint", str(ckpt), "--out", str(out), "--steps", "60", "--batch", "2",
                      "--exporter", "dynamo"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 1, lines
    figures = json.loads(lines[0])
    assert figures["passed"] and figures["exporter"] == "dynamo" and figures["opset"] == 18
    proto = onnx.load(str(out))
    states = list(state_shapes(model.config))
    assert [i.name for i in proto.graph.input] == ["x", "omega"] + states
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES) + [state_output_name(s) for s in states]
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param, value.name
    assert sum(n.op_type == "GRU" for n in proto.graph.node) == 2
    assert parse_metadata({p.key: p.value for p in proto.metadata_props})["model_id"] == "dynamo-model"


def test_cli_dynamo_exporter_without_onnxscript_is_one_sentence(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    ckpt = save_checkpoint(varied_model(2), tmp_path / "ckpt.safetensors", {"model_id": "cli-model"})
    rc = export_main(["onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "d.onnx"), "--exporter", "dynamo"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "onnxscript" in err


def test_cli_onnx_missing_checkpoint_is_one_sentence(tmp_path, capsys):
    rc = export_main(["onnx", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "a.onnx")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.safetensors" in err


def test_cli_tensorrt_without_tensorrt_fails_with_one_sentence(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        from export.tensorrt_runtime import require_tensorrt

        require_tensorrt()
        pytest.skip("TensorRT and a GPU are present: the error path cannot be exercised here")
    except Exception:
        pass
    _, path = exported
    proc = subprocess.run(
        [sys.executable, "-m", "export", "tensorrt", "--onnx", str(path), "--out", str(tmp_path / "m.engine")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "TensorRT" in lines[0] or "GPU" in lines[0] or "cuda" in lines[0]
    assert not (tmp_path / "m.engine").exists()


def test_metadata_rejects_newer_format():
    with pytest.raises(ValueError, match="newer"):
        parse_metadata({"format_version": "99"})
    with pytest.raises(ValueError, match="malformed"):
        parse_metadata({"joint_names": "[not json"})


class _FakeTensorRT:
    """Just enough of the TensorRT 10 builder API to run `build_engine` here and record what it asked for."""

    __version__ = "10.0.1"

    class Logger:
        WARNING = "warning"

        def __init__(self, level: str) -> None:
            self.level = level

    class BuilderFlag:
        REFIT, FP16, TF32 = "REFIT", "FP16", "TF32"

    def __init__(self) -> None:
        fake = self
        self.flags: set[str] = {"TF32"}  # TensorRT enables TF32 by default
        self.profiles: list[dict] = []

        class Tensor:
            def __init__(self, name: str, shape: tuple[int, ...]) -> None:
                self.name, self.shape = name, shape

        class Network:
            inputs: list = []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> Tensor:
                return self.inputs[i]

        class OnnxParser:
            def __init__(self, network: Network, logger: object) -> None:
                self.network = network

            def parse_from_file(self, path: str) -> bool:
                graph = onnx.load(path).graph
                self.network.inputs = [
                    Tensor(i.name, tuple(d.dim_value or -1 for d in i.type.tensor_type.shape.dim)) for i in graph.input
                ]
                return True

        class Config:
            def set_flag(self, flag: str) -> None:
                fake.flags.add(flag)

            def clear_flag(self, flag: str) -> None:
                fake.flags.discard(flag)

            def add_optimization_profile(self, profile: dict) -> None:
                fake.profiles.append(profile)

        class Profile(dict):
            def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
                self[name] = (lo, opt, hi)

        class Builder:
            def __init__(self, logger: object) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                assert flags == 0
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                return b"serialized-plan"

        self.OnnxParser, self.Builder = OnnxParser, Builder


def test_tensorrt_build_asks_for_refit_and_a_dynamic_batch_profile(exported, tmp_path, monkeypatch):
    import types

    from export import tensorrt_build

    fake = _FakeTensorRT()
    cudart = types.SimpleNamespace(
        cudaError_t=types.SimpleNamespace(cudaSuccess=0), cudaGetDeviceCount=lambda: (0, 1)
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(bindings=types.SimpleNamespace(runtime=cudart)))
    monkeypatch.setitem(sys.modules, "cuda.bindings", types.SimpleNamespace(runtime=cudart))
    model, onnx_path = exported
    out = tensorrt_build.build_engine(onnx_path, tmp_path / "m.engine", max_batch=64)
    assert out.read_bytes() == b"serialized-plan"
    assert "REFIT" in fake.flags and "TF32" not in fake.flags and "FP16" not in fake.flags
    (profile,) = fake.profiles
    assert list(profile) == ["x", "omega"] + list(state_shapes(model.config))
    for name, (lo, opt, hi) in profile.items():
        assert lo[0] == 1 and opt[0] == 1 and hi[0] == 64 and lo[1:] == opt[1:] == hi[1:], name
        assert -1 not in lo[1:]
    meta = json.loads(tensorrt_build.metadata_path(out).read_text())
    assert meta["model_id"] == "test-model" and meta["precision"] == "fp32" and meta["max_batch"] == "64"

    tensorrt_build.build_engine(onnx_path, tmp_path / "h.engine", fp16=True)
    assert "FP16" in fake.flags
