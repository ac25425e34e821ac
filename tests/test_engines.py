"""engines/: onnxruntime vs torch equivalence, hot swap under load, clear load errors, backend choice + log."""
from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import engines
from engines import EngineLoadError, load
from engines.bench import main as bench_main
from engines.onnxruntime_engine import OnnxRuntimeEngine
from engines.torch_engine import TorchEngine
from export.inputs import realistic_inputs
from mocap.model.state import INPUT_DIM
from export.metadata import file_sha256
from export.onnx_export import export_onnx
from mocap.model import DEFAULT_CHECKPOINT, OUTPUT_NAMES, CausalMocap, ModelConfig, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def varied_model(seed: int, config: ModelConfig | None = None) -> CausalMocap:
    """Untrained, with sizeable head weights so outputs depend on the weights and inputs (see test_export)."""
    torch.manual_seed(seed)
    model = CausalMocap(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head" in name and p.dim() == 2:
                p.normal_(0.0, (0.3 if name.startswith("trajectory") else 1.0) / math.sqrt(p.shape[1]))
    return model


def _artifacts(folder: Path, name: str, model: CausalMocap) -> tuple[Path, Path]:
    """NAME.safetensors (+ .json) and the NAME.onnx exported from it, side by side."""
    ckpt = save_checkpoint(model, folder / f"{name}.safetensors", {"model_id": name})
    onnx_path = folder / f"{name}.onnx"
    export_onnx(model, onnx_path, name, checkpoint_sha256=file_sha256(ckpt))
    return ckpt, onnx_path


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("engines")
    a_ckpt, a_onnx = _artifacts(folder, "a", varied_model(0))
    b_ckpt, b_onnx = _artifacts(folder, "b", varied_model(1))
    small = varied_model(2, ModelConfig(encoder_hidden=32, decoder_hidden=32, traj_hidden=16))
    s_ckpt, s_onnx = _artifacts(folder, "small", small)
    return {"dir": folder, "a_ckpt": a_ckpt, "a_onnx": a_onnx, "b_ckpt": b_ckpt, "b_onnx": b_onnx,
            "small_ckpt": s_ckpt, "small_onnx": s_onnx}


def _inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, INPUT_DIM)).astype(np.float32),
            "omega": (0.1 * rng.standard_normal((batch, 6))).astype(np.float32)}


# ------------------------------------------------------------------------------------------ equivalence
def test_onnxruntime_and_torch_engines_agree_over_a_rollout(art):
    ort_engine = OnnxRuntimeEngine(art["a_onnx"], device="cpu")
    torch_engine = TorchEngine(art["a_ckpt"], device="cpu", threads=1)
    assert ort_engine.state_shapes == torch_engine.state_shapes
    assert ort_engine.output_names == torch_engine.output_names == OUTPUT_NAMES
    assert ort_engine.model_id == torch_engine.model_id == "a"
    x, omega, _ = realistic_inputs(batch=3, steps=60, seed=3, cache=None)
    s_ort, s_torch = ort_engine.initial_state(3), torch_engine.initial_state(3)
    worst = 0.0
    for t in range(len(x)):
        o_ort, s_ort = ort_engine.step({"x": x[t], "omega": omega[t]}, s_ort)
        o_torch, s_torch = torch_engine.step({"x": x[t], "omega": omega[t]}, s_torch)
        for name in OUTPUT_NAMES:
            assert o_ort[name].dtype == np.float32 and o_ort[name].shape == o_torch[name].shape
            worst = max(worst, float(np.abs(o_ort[name] - o_torch[name]).max()))
        for name in s_ort:
            worst = max(worst, float(np.abs(s_ort[name] - s_torch[name]).max()))
    assert worst <= 1e-4
    assert float(np.abs(o_ort["joints"]).max()) > 0.1  # a real pose, not zeros


def test_step_rejects_bad_inputs(art):
    engine = OnnxRuntimeEngine(art["a_onnx"])
    state = engine.initial_state(2)
    with pytest.raises(ValueError, match="omega"):
        engine.step({"x": np.zeros((2, INPUT_DIM), np.float32)}, state)
    with pytest.raises(ValueError, match="x: expected shape"):
        engine.step({"x": np.zeros((2, 65), np.float32), "omega": np.zeros((2, 6), np.float32)}, state)
    with pytest.raises(ValueError, match="h_motion"):
        engine.step(_inputs(3), state)  # state for 2 people, inputs for 3
    with pytest.raises(ValueError):
        engine.initial_state(0)


# ------------------------------------------------------------------------------------------ swap
def _swap_under_load(engine, new_weights, new_reference: dict[str, np.ndarray]) -> None:
    """One thread steps without pause while this one swaps: no step fails, each step's outputs are wholly the
    old model's or wholly the new one's, old never follows new, and the last steps are the new model's."""
    inputs, state = _inputs(2, seed=5), engine.initial_state(2)
    old_reference, _ = engine.step(inputs, state)
    results: list[dict[str, np.ndarray]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def stepper() -> None:
        while not stop.is_set():
            try:
                results.append(engine.step(inputs, state)[0])
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(results) < count and not errors and time.monotonic() < deadline:
            time.sleep(0.001)

    thread = threading.Thread(target=stepper)
    thread.start()
    try:
        wait_for(10)
        engine.swap(new_weights)
        wait_for(len(results) + 10)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert engine.generation == 1

    def matches(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> bool:
        return all(np.allclose(out[n], ref[n], atol=1e-5) for n in OUTPUT_NAMES)

    labels = []
    for out in results:
        is_old, is_new = matches(out, old_reference), matches(out, new_reference)
        assert is_old != is_new, "a step mixed old and new weights (or matched neither)"
        labels.append("new" if is_new else "old")
    first_new = labels.index("new")
    assert labels[first_new:] == ["new"] * (len(labels) - first_new)
    assert first_new >= 10 and len(labels) - first_new >= 10


def test_onnxruntime_swap_under_load(art):
    reference = OnnxRuntimeEngine(art["b_onnx"])
    new_ref, _ = reference.step(_inputs(2, seed=5), reference.initial_state(2))
    engine = OnnxRuntimeEngine(art["a_onnx"])
    _swap_under_load(engine, art["b_onnx"], new_ref)
    assert engine.model_id == "b"


def test_torch_swap_under_load(art):
    reference = TorchEngine(art["b_ckpt"], device="cpu", threads=1)
    new_ref, _ = reference.step(_inputs(2, seed=5), reference.initial_state(2))
    engine = TorchEngine(art["a_ckpt"], device="cpu", threads=1)
    state_dict = {k: v.numpy() for k, v in varied_model(1).state_dict().items()}  # arrays, as from a trainer
    _swap_under_load(engine, state_dict, new_ref)


def test_swap_refuses_bad_weights_and_keeps_running(art, tmp_path):
    engine = OnnxRuntimeEngine(art["a_onnx"])
    inputs, state = _inputs(1), engine.initial_state(1)
    before, _ = engine.step(inputs, state)
    with pytest.raises(ValueError, match="signature"):
        engine.swap(art["small_onnx"])  # other state shapes: the live loop's state would not fit
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx" * 50)
    with pytest.raises(EngineLoadError, match="junk.onnx"):
        engine.swap(junk)
    after, _ = engine.step(inputs, state)
    assert engine.generation == 0 and all(np.array_equal(before[n], after[n]) for n in OUTPUT_NAMES)

    t_engine = TorchEngine(art["a_ckpt"], device="cpu", threads=1)
    with pytest.raises(ValueError):
        t_engine.swap(art["small_ckpt"])
    with pytest.raises(ValueError, match="does not fit"):
        t_engine.swap({"encoder.embed.0.weight": np.zeros((3, 3), np.float32)})
    assert t_engine.generation == 0


def test_swap_in_background_returns_a_future(art):
    engine = OnnxRuntimeEngine(art["a_onnx"])
    assert engine.swap_in_background(art["b_onnx"]).result(timeout=30) is None
    assert engine.generation == 1 and engine.model_id == "b"
    with pytest.raises(EngineLoadError):
        engine.swap_in_background(art["dir"] / "missing.onnx").result(timeout=30)


# ------------------------------------------------------------------------------------------ load errors
def _wrong_inputs_onnx(path: Path) -> Path:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["y"])], "other", [image], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_missing_or_corrupt_artifacts_raise_clear_errors(art, tmp_path):
    data = art["a_onnx"].read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    _wrong_inputs_onnx(tmp_path / "wrong_inputs.onnx")
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage" * 100)
    shutil.copy(art["a_ckpt"].with_suffix(".json"), tmp_path / "corrupt.json")
    (tmp_path / "fake.engine").write_bytes(b"not a plan" * 10)
    cases = {
        "missing.onnx": "no such file",
        "truncated.onnx": "cannot load",
        "random.onnx": "cannot load",
        "wrong_inputs.onnx": "not a livemocap step graph",
        "corrupt.safetensors": "unreadable",
        "fake.engine": "",
    }
    for name, expected in cases.items():
        with pytest.raises(EngineLoadError) as info:
            load(tmp_path / name)
        message = str(info.value)
        assert name in message and expected in message, message
        assert "\n" not in message and "Traceback" not in message
        assert info.value.__cause__ is None


def test_default_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "DEFAULT_CHECKPOINT", tmp_path / "default.safetensors")
    monkeypatch.setattr(engines, "DEFAULT_ONNX", tmp_path / "default.onnx")
    with pytest.raises(EngineLoadError, match="shipped model is missing"):
        load("default")


def test_default_paths_agree_with_mocap():
    assert engines.DEFAULT_CHECKPOINT == DEFAULT_CHECKPOINT
    assert engines.DEFAULT_ONNX == DEFAULT_CHECKPOINT.with_suffix(".onnx")


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file() and not DEFAULT_CHECKPOINT.with_suffix(".onnx").is_file(),
                    reason="no shipped model yet")
def test_default_model_loads_and_steps():
    engine = load("default")
    inputs = _inputs(1)
    inputs["x"] = inputs["x"][:, : engine.input_shapes["x"][0]]   # the shipped model says how wide x is
    out, state = engine.step(inputs, engine.initial_state(1))
    assert np.isfinite(out["joints"]).all() and set(state) == set(engine.state_shapes)


# ------------------------------------------------------------------------------------------ backend choice
def test_load_picks_backend_and_logs_why(art, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="engines")

    def chosen(*args, **kwargs) -> tuple[str, str]:
        caplog.clear()
        engine = load(*args, **kwargs)
        (record,) = [r for r in caplog.records if r.name == "engines"]
        return engine.name, record.getMessage()

    name, message = chosen(art["a_onnx"])
    assert name == "onnxruntime" and "skipped" in message and "torch: cannot run an ONNX file" in message

    name, message = chosen(art["a_ckpt"])  # a fresh export sits beside the checkpoint
    assert name == "onnxruntime" and "a.onnx" in message

    name, message = chosen(art["a_ckpt"], prefer=["torch"], device="cpu")
    assert name == "torch" and "not in prefer" in message

    stale = tmp_path / "stale"
    stale.mkdir()
    shutil.copy(art["a_ckpt"], stale / "a.safetensors")
    shutil.copy(art["a_ckpt"].with_suffix(".json"), stale / "a.json")
    shutil.copy(art["b_onnx"], stale / "a.onnx")  # exported from other weights
    name, message = chosen(stale / "a.safetensors", device="cpu")
    assert name == "torch" and "stale" in message

    with pytest.raises(ValueError, match="unknown backend"):
        load(art["a_onnx"], prefer=["tflite"])
    with pytest.raises(EngineLoadError, match="prefer"):
        load(art["a_onnx"], prefer=["torch"])


def test_onnxruntime_path_never_imports_torch(art):
    code = (
        "import sys, numpy as np, engines\n"
        f"e = engines.load({str(art['a_onnx'])!r})\n"
        "out, st = e.step({'x': np.zeros((1, 67), np.float32), 'omega': np.zeros((1, 6), np.float32)},"
        " e.initial_state(1))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(e.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "onnxruntime"


def test_bench_prints_json_figures(art, capsys):
    rc = bench_main(["--engine", "onnxruntime", "--artifact", str(art["a_onnx"]), "--batch", "1,4",
                     "--steps", "30", "--warmup", "3", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["engine"] == "onnxruntime" and set(report["results"]) == {"1", "4"}
    for figures in report["results"].values():
        assert 0 < figures["p50_us"] <= figures["p99_us"] and figures["steps_per_s"] > 0
