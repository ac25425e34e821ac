"""mocap.train's device plumbing: `--device cpu` trains the tiny config end to end, and a device or AMP request
the machine cannot honour stops up front with one sentence and exit code 2 (no CUDA traceback mid-run)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mocap.losses import LOSS_WEIGHTS
from mocap.train import DeviceError, _check_amp, _to_device, main, parse_loss_weights, resolve_device

REPO = Path(__file__).resolve().parents[1]


def _write_cache(folder: Path, seed: int, clips: int = 2, frames: int = 160) -> None:
    """A tiny cached dataset (the layout `mocap.data build` writes): slow random joint wiggles, a walking root."""
    rng = np.random.default_rng(seed)
    t = np.arange(clips * frames, dtype=np.float32) / 30.0
    pose = 0.2 * np.sin(t[:, None, None] * rng.uniform(0.5, 2.0, (1, 24, 3)) + rng.uniform(0, 6, (1, 24, 3)))
    trans = np.stack([0.5 * t, np.full_like(t, 0.9), np.zeros_like(t)], axis=1)
    np.savez(
        folder / ("train.npz" if seed == 0 else "val.npz"),
        pose_aa=pose.astype(np.float32), trans=trans.astype(np.float32),
        betas=np.zeros((clips * frames, 10), np.float32),
        clip_start=np.arange(clips, dtype=np.int64) * frames, clip_len=np.full(clips, frames, np.int64),
        clip_name=np.array([f"clip{i}" for i in range(clips)]), fps=np.array(30.0),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    _write_cache(folder, 0)
    _write_cache(folder, 1)
    return folder


def test_tiny_config_trains_on_cpu(cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    main(["--config", "tiny", "--device", "cpu", "--iters", "3", "--data", str(cache), "--out", str(out)])
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["checkpoint"] == str(out / "model.safetensors")
    assert "training on cpu" in captured.err
    meta = json.loads((out / "model.json").read_text())
    assert meta["device"] == "cpu" and meta["amp"] == "off" and meta["iteration"] == 3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["it"] for r in records] == [0, 1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert "val_pa_mpjpe_mm" in records[-1]


def test_loss_weight_overrides_are_what_the_logged_loss_adds_up_to(cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    main(["--config", "tiny", "--device", "cpu", "--iters", "2", "--data", str(cache), "--out", str(out),
          "--loss-weight", "smooth=12", "--loss-weight", "reproj=0"])
    capsys.readouterr()
    weights = {**LOSS_WEIGHTS, "smooth": 12.0, "reproj": 0.0}
    assert json.loads((out / "model.json").read_text())["train_config"]["loss_weights"] == {"smooth": 12.0, "reproj": 0.0}
    for record in (json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()):
        assert record["loss"] == pytest.approx(sum(w * record[k] for k, w in weights.items()), rel=1e-5)


@pytest.mark.parametrize("bad", ["smooth", "smoth=3", "smooth=-1", "smooth=x", "smooth=nan"])
def test_bad_loss_weights_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="smooth|TERM"):
        parse_loss_weights([bad])
    with pytest.raises(SystemExit) as exc:
        main(["--config", "tiny", "--loss-weight", bad])
    assert exc.value.code == 2


def test_unavailable_cuda_is_one_sentence_and_exit_code_2(cache: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the missing-CUDA error path cannot be exercised here")
    proc = subprocess.run(
        [sys.executable, "-m", "mocap.train", "--config", "tiny", "--device", "cuda", "--data", str(cache),
         "--out", str(tmp_path / "never")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "CUDA is not available" in lines[0], proc.stderr
    assert not (tmp_path / "never").exists()  # stopped before anything was loaded or written


def test_device_and_amp_requests(monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="cpu or cuda"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda:0")
    _check_amp("off", torch.device("cpu"))
    for amp in ("bf16", "fp16"):
        with pytest.raises(DeviceError, match="needs a CUDA device"):
            _check_amp(amp, torch.device("cpu"))


def test_batches_move_to_the_device() -> None:
    batch = {"x": torch.zeros(2, 3), "omega": torch.ones(2, 6)}
    moved = _to_device(batch, torch.device("meta"))  # a device without data: proves the move, costs nothing
    assert {v.device.type for v in moved.values()} == {"meta"} and moved.keys() == batch.keys()
