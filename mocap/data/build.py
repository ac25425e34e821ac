"""Turn BVH folders into the cached SMPL datasets `train.npz` / `val.npz` (docs/architecture.md, "Cached datasets").

Each file is retargeted to SMPL-24 (mocap/retarget.py), resampled to 30 fps, and assigned a split by name
(mocap/data/splits.py). Clips are concatenated along frames. A file that fails is skipped and named with its reason;
the build never aborts for one bad clip (the command line then exits non-zero). `OUT/meta.json` records what was
built, skipped, and the retarget error.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from mocap.skeleton import NUM_BETAS, NUM_JOINTS

CACHE_FPS = 30.0
#: key -> (trailing shape, dtype); the leading dim is N frames, C clips, or none for `fps`.
CACHE_KEYS: dict[str, tuple[tuple[int, ...], str]] = {
    "pose_aa": ((NUM_JOINTS, 3), "float32"),
    "trans": ((3,), "float32"),
    "betas": ((NUM_BETAS,), "float32"),
    "clip_start": ((), "int64"),
    "clip_len": ((), "int64"),
    "clip_name": ((), "str"),
    "fps": ((), "float"),
}


def _retarget_one(args: tuple[str, str, str | None, np.ndarray | None]) -> dict:
    """Worker: one file -> arrays at CACHE_FPS, or {'error': message}. Never raises for bad input."""
    path, preset, mapping_file, corrections = args
    import torch

    torch.set_num_threads(1)  # one thread per worker process: the workers are the parallelism
    from mocap.data.splits import clip_stem, split_of
    from mocap.retarget import resample, retarget_bvh

    try:
        res = resample(retarget_bvh(path, preset, mapping_file, corrections=corrections), CACHE_FPS)
    except (ValueError, KeyError, IndexError, np.linalg.LinAlgError) as exc:
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}
    if res.num_frames < 1 or not (np.isfinite(res.pose_aa).all() and np.isfinite(res.trans).all()):
        return {"path": path, "error": "empty or non-finite retarget result"}
    return {
        "path": path, "name": clip_stem(path), "split": split_of(path), "pose_aa": res.pose_aa,
        "trans": res.trans, "betas": res.betas, "error_cm": 100 * res.mean_error, "preset": res.preset,
    }


def _concat(clips: list[dict]) -> dict[str, np.ndarray]:
    lens = np.array([c["pose_aa"].shape[0] for c in clips], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64) if len(clips) else lens
    if clips:
        pose = np.concatenate([c["pose_aa"] for c in clips]).astype(np.float32)
        trans = np.concatenate([c["trans"] for c in clips]).astype(np.float32)
        betas = np.concatenate([np.repeat(c["betas"][None], n, 0) for c, n in zip(clips, lens)]).astype(np.float32)
    else:
        pose = np.zeros((0, NUM_JOINTS, 3), np.float32)
        trans = np.zeros((0, 3), np.float32)
        betas = np.zeros((0, NUM_BETAS), np.float32)
    return {
        "pose_aa": pose, "trans": trans, "betas": betas, "clip_start": starts, "clip_len": lens,
        "clip_name": np.array([c["name"] for c in clips], dtype=str), "fps": np.array(CACHE_FPS),
    }


def build(bvh_dirs: Sequence[str | Path], out: str | Path, limit: int | None = None, workers: int = 1,
          preset: str = "auto", mapping_file: str | Path | None = None, progress: bool = True) -> dict:
    """Build OUT/train.npz, OUT/val.npz and OUT/meta.json from every BVH under bvh_dirs; returns the meta dict."""
    from tqdm import tqdm

    from mocap.bvh import bvh_files
    from mocap.retarget import pick_evenly

    files: list[Path] = []
    for d in bvh_dirs:
        files.extend(bvh_files(d))
    files = pick_evenly(sorted(set(files)), limit)
    if not files:
        raise ValueError(f"no .bvh / .bvh.xz files under {', '.join(map(str, bvh_dirs))}")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise ValueError(f"clip names must be unique across folders (they pick the split), duplicates: {dup}")
    t0 = time.perf_counter()
    mapping_arg = None if mapping_file is None else str(mapping_file)
    corrections = calibrate_groups(files, preset, mapping_arg)
    jobs = [(str(f), preset, mapping_arg, corrections.get(str(f))) for f in files]
    results: list[dict] = []
    bar = tqdm(total=len(jobs), desc="retarget", unit="file", disable=not progress, file=sys.stderr)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap(_retarget_one, jobs, chunksize=4):
                results.append(r)
                _report(r, bar)
    else:
        for job in jobs:
            r = _retarget_one(job)
            results.append(r)
            _report(r, bar)
    bar.close()
    ok = [r for r in results if "error" not in r]
    skipped = [{"file": r["path"], "error": r["error"]} for r in results if "error" in r]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict = {"sources": [str(d) for d in bvh_dirs], "fps": CACHE_FPS, "files": len(files), "skipped": skipped}
    for split in ("train", "val"):
        clips = [r for r in ok if r["split"] == split]
        arrays = _concat(clips)
        np.savez(out / f"{split}.npz", **arrays)
        meta[split] = {
            "clips": len(clips), "frames": int(arrays["clip_len"].sum()),
            "mean_retarget_error_cm": round(float(np.mean([c["error_cm"] for c in clips])), 3) if clips else None,
            "bytes": (out / f"{split}.npz").stat().st_size,
        }
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def calibrate_groups(files: list[Path], preset: str, mapping_file: str | None) -> dict[str, np.ndarray]:
    """Pooled rest corrections per skeleton (files grouped by joint names), so every clip of one skeleton maps the
    same source rotation to the same SMPL rotation. Returns {file: (24, 3, 3)}; files whose group cannot be
    calibrated are left out (they fall back to per-clip fits, or fail and are skipped)."""
    from mocap.bvh import read_bvh_header
    from mocap.retarget import calibrate_files

    groups: dict[tuple[str, ...], list[Path]] = {}
    for f in files:
        try:
            groups.setdefault(tuple(read_bvh_header(f)), []).append(f)
        except ValueError:
            continue
    out: dict[str, np.ndarray] = {}
    for members in groups.values():
        try:
            corr = calibrate_files(members, preset, mapping_file)
        except ValueError as exc:
            print(f"warning: calibration failed for {len(members)} file(s) like {members[0]}: {exc}", file=sys.stderr)
            continue
        out.update({str(f): corr for f in members})
    return out


def _report(r: dict, bar) -> None:
    if "error" in r:
        bar.write(f"warning: skipped {r['path']}: {r['error']}", file=sys.stderr)
    bar.update(1)


def load_cache(path: str | Path, split: str | None = None) -> dict[str, np.ndarray]:
    """Load a cached dataset: a `.npz` file, or a build folder plus split ('train' / 'val').

    Returns {key: array} with the keys of CACHE_KEYS (`fps` a 0-d array); ValueError if the file is not one.
    """
    path = Path(path)
    if path.is_dir():
        if split not in ("train", "val"):
            raise ValueError(f"{path} is a folder: pass split='train' or 'val'")
        path = path / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"cached dataset not found: {path} (build it with `python -m mocap.data build`)")
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    missing = [k for k in CACHE_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: not a cached dataset, missing keys {missing}")
    frames, clips = data["pose_aa"].shape[0], data["clip_start"].shape[0]
    for key, (tail, _) in CACHE_KEYS.items():
        lead = () if key == "fps" else ((clips,) if key.startswith("clip_") else (frames,))
        if data[key].shape != lead + tail:
            raise ValueError(f"{path}: '{key}' has shape {data[key].shape}, expected {lead + tail}")
    if clips and (data["clip_start"][-1] + data["clip_len"][-1] != frames or (data["clip_len"] < 1).any()):
        raise ValueError(f"{path}: clip_start / clip_len do not tile the {frames} frames")
    return data
