"""`python -m mocap.soup`: the uniform weight average of fine-tunes from one start; unrelated runs refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mocap.model.checkpoint import CheckpointError, load_model, save_checkpoint
from mocap.soup import main, soup


def _fine_tunes(tmp_path: Path, init: str = "start") -> tuple[torch.nn.Module, list[Path]]:
    base = load_model("default")
    paths = []
    for i, sign in enumerate((1.0, -1.0)):
        model = load_model("default")
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.add_(sign * 0.01 * (1 + len(k) % 7))
        paths.append(save_checkpoint(model, tmp_path / f"run{i}" / "model.safetensors",
                                     {"model_id": f"run{i}", "init": init, "iteration": 10 + i}))
    return base, paths


def test_soup_of_opposite_fine_tunes_is_their_start(tmp_path: Path) -> None:
    base, paths = _fine_tunes(tmp_path)
    out = soup(paths, tmp_path / "soup" / "model.safetensors", model_id="souped")
    souped = load_model(out)
    for (k, a), b in zip(base.state_dict().items(), souped.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=k)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert souped.model_id == "souped" and meta["init"] == "start"
    assert [m["model_id"] for m in meta["soup_of"]] == ["run0", "run1"] and "iteration" not in meta


def test_soup_refuses_unrelated_runs_and_a_single_checkpoint(tmp_path: Path) -> None:
    _, paths = _fine_tunes(tmp_path)
    _, others = _fine_tunes(tmp_path / "other", init="another start")
    with pytest.raises(CheckpointError, match="starting checkpoint"):
        soup([paths[0], others[0]], tmp_path / "bad.safetensors")
    meta_path = others[1].with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["init"], meta["config"]["decoder_hidden"] = "start", 128
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="different model configs"):
        soup([paths[0], others[1]], tmp_path / "bad.safetensors")
    assert main([str(paths[0]), "--out", str(tmp_path / "one.safetensors")]) == 2
    assert not (tmp_path / "bad.safetensors").exists() and not (tmp_path / "one.safetensors").exists()
