"""Cached datasets: the split rule, a tiny build from shared Bandai files, bad-file skipping, loader checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mocap.data import CACHE_KEYS, load_cache
from mocap.data.build import build
from mocap.data.splits import clip_stem, is_validation, split_of

BANDAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "bandai"
FILES = ["dataset-1_bow_sad_001.bvh.xz", "dataset-2_walk_normal_009.bvh.xz", "dataset-2_run_active_011.bvh.xz"]
needs_data = pytest.mark.skipif(not all((BANDAI / f).is_file() for f in FILES), reason="shared Bandai data absent")


@pytest.mark.parametrize(
    "name, val",
    [
        ("dataset-1_walk_sad_002.bvh.xz", True),
        ("dataset-1_walk_not-confident_001.bvh.xz", False),
        ("dataset-1_dance-short_normal_001.bvh", False),
        ("dataset-2_walk_normal_009.bvh.xz", True),
        ("dataset-2_walk-turn-left_elderly_019.bvh.xz", True),
        ("dataset-2_walk-turn-right_active_029.bvh.xz", True),
        ("dataset-2_run_youthful_119.bvh.xz", True),
        ("dataset-2_run_youthful_118.bvh.xz", False),
        ("dataset-2_wave-left-hand_active_009.bvh.xz", False),  # not a walk/run content: trains
        ("dataset-2_raise-up-both-hands_normal_019.bvh.xz", False),
    ],
)
def test_bandai_split_rule(name: str, val: bool) -> None:
    assert is_validation(name) is val
    assert split_of(Path("/x") / name) == ("val" if val else "train")


def test_other_sources_hash_about_ten_percent() -> None:
    names = [f"subject{i:03d}_take{i % 7}.bvh" for i in range(3000)]
    frac = np.mean([is_validation(n) for n in names])
    assert 0.08 < frac < 0.12
    assert is_validation("a/b/c/clip_17.bvh") == is_validation("clip_17.bvh.xz")  # name only, extension-free
    assert clip_stem("dir/x_y_001.bvh.xz") == "x_y_001"


@needs_data
def test_tiny_build_writes_documented_npz(tmp_path: Path) -> None:
    src = tmp_path / "bvh"
    src.mkdir()
    for f in FILES:
        (src / f).symlink_to(BANDAI / f)
    (src / "broken.bvh").write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n")  # must be skipped, not fatal
    out = tmp_path / "cache"
    meta = build([src], out, workers=1, progress=False)
    assert meta["files"] == 4 and len(meta["skipped"]) == 1 and "broken.bvh" in meta["skipped"][0]["file"]
    assert json.loads((out / "meta.json").read_text())["train"]["clips"] == 1
    train, val = load_cache(out, "train"), load_cache(out / "val.npz")
    assert list(train["clip_name"]) == ["dataset-2_run_active_011"]
    assert sorted(val["clip_name"]) == ["dataset-1_bow_sad_001", "dataset-2_walk_normal_009"]
    for data in (train, val):
        assert set(data) == set(CACHE_KEYS)
        n, c = len(data["pose_aa"]), len(data["clip_len"])
        assert data["pose_aa"].shape == (n, 24, 3) and data["pose_aa"].dtype == np.float32
        assert data["trans"].shape == (n, 3) and data["trans"].dtype == np.float32
        assert data["betas"].shape == (n, 10) and data["betas"].dtype == np.float32
        assert data["clip_start"].dtype == np.int64 and data["clip_len"].dtype == np.int64 and c >= 1
        assert data["clip_len"].sum() == n and data["clip_start"][0] == 0 and float(data["fps"]) == 30.0
        for s, length in zip(data["clip_start"], data["clip_len"]):
            assert np.ptp(data["betas"][s:s + length], axis=0).max() == 0  # constant per clip
        assert np.isfinite(data["pose_aa"]).all() and (np.linalg.norm(data["pose_aa"], axis=-1) <= np.pi + 1e-5).all()
        assert 0.7 < np.median(data["trans"][:, 1]) < 1.1  # pelvis height in metres, floor at 0
    assert meta["val"]["mean_retarget_error_cm"] < 3.0


def test_load_cache_rejects_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m mocap.data build"):
        load_cache(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="split"):
        load_cache(tmp_path)
    np.savez(tmp_path / "bad.npz", pose_aa=np.zeros((2, 24, 3), np.float32))
    with pytest.raises(ValueError, match="missing keys"):
        load_cache(tmp_path / "bad.npz")
    good = dict(pose_aa=np.zeros((3, 24, 3), np.float32), trans=np.zeros((3, 3), np.float32),
                betas=np.zeros((3, 10), np.float32), clip_start=np.array([0, 2]), clip_len=np.array([2, 2]),
                clip_name=np.array(["a", "b"]), fps=np.array(30.0))
    np.savez(tmp_path / "tiling.npz", **good)
    with pytest.raises(ValueError, match="tile"):
        load_cache(tmp_path / "tiling.npz")
    good["trans"] = np.zeros((3, 2), np.float32)
    np.savez(tmp_path / "shape.npz", **good)
    with pytest.raises(ValueError, match="'trans' has shape"):
        load_cache(tmp_path / "shape.npz")
