"""Evaluate a model on BVH motion seen through synthetic cameras with detector-like noise.

    python -m mocap.eval --checkpoint default --bvh ../shared/data/mocap/bandai --camera moving --json
    python -m mocap.eval --checkpoint default --bvh ../shared/data/mocap/bandai --protocol shifted --json

A directory is filtered to its validation split (mocap/data/splits.py) unless `--split all`. The model runs
causally, one `step` per frame, exactly as in the live loop. Prints ONE JSON object.

Protocols: `standard` = the first model's training distribution (level-ish cameras 0.3-2.5 m high, 2-12 m away,
a ~47-degree lens, white detector noise, 30 fps); `shifted` = what real users film and the prior was not built
on: cameras 30-50 degrees from above, portrait, 60 fps with 10 % dropped frames, BlazePose-like noise with
left/right swaps and drift, unseen styles (the validation split). `--fps` / `--drop` override either's timing.
Figures are per 30-fps frame at any frame rate (accel, foot slide; world chunks of 100 30-fps frames).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .adapt.simulate import EvalAdaptation
from .baselines.optimization import OptimizationBaseline
from .body import BuiltinBody
from .data.motion_bank import MotionWindows
from .bvh import bvh_files as dataset_bvh_files
from .data.build import CACHE_FPS, calibrate_groups
from .data.splits import split_of
from .data.detector_noise import LEGACY_NOISE, SHIFTED_NOISE
from .data.motion_bank import Timing, play_clip
from .data.synth import SynthConfig, SyntheticGenerator
from .data.virtual_camera import LEGACY_CAMERAS, SHIFTED_CAMERAS
from .fitting import RefineConfig, TrackState
from .model.state import REFERENCE_FPS
from .metrics import sequence_metrics, summarize
from .model import CausalMocap, load_model
from .model.checkpoint import DEFAULT_CHECKPOINT
from .replay import frame_dt, replay_step, sample_intrinsics
from .retarget import resample, retarget_bvh
from .rotations import axis_angle_to_matrix
from .smoothing import SmoothingConfig, smooth_sequence

DEFAULT_SEED = 1234
DEFAULT_SINGLE_FRAME = DEFAULT_CHECKPOINT.with_name("baseline_single_frame.safetensors")
#: Ankle / toe-base joints stand for the heel / toe contact points (L heel, L toe, R heel, R toe).
FOOT_JOINTS = [7, 10, 8, 11]
_KEYS = {
    "mpjpe": "mpjpe_mm", "pa_mpjpe": "pa_mpjpe_mm", "accel": "accel_err", "w_mpjpe": "w_mpjpe100_mm",
    "wa_mpjpe": "wa_mpjpe100_mm", "rte": "rte_pct", "foot_slide": "foot_slide_mm", "contact_f1": "contact_f1",
}


def bvh_files(paths: list[Path], split: str) -> tuple[list[Path], list[Path]]:
    """(files to evaluate, every file seen). Files named directly are always evaluated; directories contribute
    the clips of `split` ('all' = every clip). Every file seen calibrates the retargeting, as the dataset build does."""
    files: list[Path] = []
    seen: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [Path(p) for p in dataset_bvh_files(path)]
            seen += found
            files += [p for p in found if split == "all" or split_of(p) == split]
        elif path.is_file():
            files.append(path)
            seen.append(path)
        else:
            raise FileNotFoundError(f"no such BVH file or directory: {path}")
    if not files:
        raise ValueError(f"no BVH files found in {', '.join(map(str, paths))} (split {split!r})")
    return files, sorted(set(seen))


#: Evaluation protocols: how the synthetic views are made (cameras, detector) and played back (fps, drops).
PROTOCOLS: dict[str, tuple[SynthConfig, Timing]] = {
    "standard": (SynthConfig(random_betas=0.0, cameras=LEGACY_CAMERAS, detector=LEGACY_NOISE, view_margin=0.1),
                 Timing((REFERENCE_FPS,))),
    "shifted": (SynthConfig(random_betas=0.0, cameras=SHIFTED_CAMERAS, detector=SHIFTED_NOISE),
                Timing((60.0,), (0.1, 0.1))),
}


def protocol(name: str, fps: float | None = None, drop: float | None = None) -> tuple[SynthConfig, Timing]:
    """A named protocol, with its frame rate and drop rate optionally overridden."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (choose from {', '.join(PROTOCOLS)})")
    synth, timing = PROTOCOLS[name]
    rate = timing.fps_choices if fps is None else (float(fps),)
    drops = timing.drop_prob if drop is None else (float(drop), float(drop))
    return synth, Timing(rate, drops)


def synthesize_clip(path: Path, camera: str, seed: int, index: int, corrections: np.ndarray | None = None,
                    setup: tuple[SynthConfig, Timing] | None = None) -> dict[str, torch.Tensor]:
    """Retarget one clip (with the skeleton's pooled rest corrections, as in training data) and view it through a
    seeded camera (body proportions as retargeted), played back with the protocol's timing."""
    synth, timing = setup or protocol("standard")
    res = resample(retarget_bvh(path, corrections=corrections), CACHE_FPS)
    rng = np.random.default_rng([seed, index])
    if timing.fps_choices == (CACHE_FPS,) and timing.drop_prob == (0.0, 0.0):
        motion = MotionWindows(
            pose_rotmat=axis_angle_to_matrix(torch.from_numpy(res.pose_aa).float())[None],
            trans=torch.from_numpy(res.trans).float()[None],
            betas=torch.from_numpy(res.betas).float()[None],
        )
    else:
        motion = play_clip(res.pose_aa, res.trans, res.betas, rng, timing, CACHE_FPS)
    batch = SyntheticGenerator(synth)(motion, rng, camera=camera)
    return {k: v[0] for k, v in batch.items()}


@torch.no_grad()
def run_model_causally(model: CausalMocap, sample: dict[str, torch.Tensor],
                       refine: RefineConfig | None = None) -> dict[str, np.ndarray]:
    """One `step` per frame (batch 1), as the live loop does; returns (T, ...) arrays. With `refine`, each step is
    followed by the live loop's test-time refinement (mocap/fitting) on numpy copies, its state fed back."""
    state = model.initial_state(1)
    outs: list[dict[str, torch.Tensor]] = []
    x = sample["x"][:, : model.config.input_dim]  # a model without the frame-interval column reads the first 66
    track, K = TrackState(), sample_intrinsics(sample)
    for t in range(x.shape[0]):
        out, state = replay_step(model, x[t : t + 1], sample["omega"][t : t + 1], state, refine,
                                 sample["kp2d"][t].numpy(), K, track, frame_dt(sample, t))
        outs.append(out)
    return {k: torch.cat([o[k] for o in outs]).numpy() for k in outs[0]}


def evaluate_clip(model_kind: str, model: CausalMocap | None, sample: dict[str, torch.Tensor], body: BuiltinBody,
                  adaptation: "EvalAdaptation | None" = None, refine: RefineConfig | None = None,
                  smoothing: SmoothingConfig | None = None) -> dict[str, float]:
    gt_cam = sample["gt_joints_cam_rel"].numpy()
    if model_kind == "optimization":
        K = np.array([[float(sample["focal"]), 0, float(sample["principal"][0])],
                      [0, float(sample["focal"]), float(sample["principal"][1])], [0, 0, 1]])
        kp2d, bbox = sample["kp2d"].numpy(), sample["bbox"].numpy()
        usable = (kp2d[..., 2] >= 0.3).sum(-1) >= 2                    # frames the detector did not drop
        fit = OptimizationBaseline(K=K, num_threads=1).fit(kp2d[usable], bbox[usable])
        rel = fit["joints_cam"] - fit["cam_trans"][:, None]
        # A dropped frame keeps the last fit (the baseline has nothing to fit there), like the live loop would.
        pred_cam = rel[np.clip(np.cumsum(usable) - 1, 0, None)]
        return sequence_metrics(pred_cam, gt_cam)
    assert model is not None
    out = run_model_causally(model, sample, refine) if adaptation is None else adaptation.run(model, sample, refine)
    if smoothing is not None:  # the live loop's output smoothing, after refinement, on what it would publish
        out = smooth_sequence(out, sample["dt"].numpy(), smoothing)
    pose_cam = np.concatenate((out["cam_root_rotmat"][:, None], out["pose_rotmat"][:, 1:]), axis=1)
    with torch.no_grad():
        pred_cam = body(torch.from_numpy(pose_cam), torch.from_numpy(out["betas"])).joints.numpy()
    return sequence_metrics(
        pred_cam, gt_cam,
        pred_world=out["joints"], gt_world=sample["gt_joints_world"].numpy(),
        pred_feet_world=out["joints"][:, FOOT_JOINTS], contact_gt=sample["gt_contact"].numpy() > 0.5,
        contact_prob=out["contact"], interval=sample["dt"].numpy() * REFERENCE_FPS,
    )


def evaluate(paths: list[Path], checkpoint: str, model_kind: str, camera: str, seed: int, split: str,
             limit: int | None = None, progress: bool = True, protocol_name: str = "standard",
             fps: float | None = None, drop: float | None = None, adapt: bool = False,
             refine: bool = False, smooth: bool = False) -> dict:
    files, seen = bvh_files(paths, split)
    files = files[:limit]
    corrections = calibrate_groups(seen, "auto", None) if len(seen) > 1 else {}
    model = None
    if model_kind != "optimization":
        ckpt = checkpoint
        if model_kind == "single-frame" and checkpoint == "default":
            ckpt = str(DEFAULT_SINGLE_FRAME)
        model = load_model(ckpt)
        if model.config.kind != model_kind:
            raise ValueError(f"checkpoint {ckpt} holds a {model.config.kind!r} model, not {model_kind!r}")
    body = BuiltinBody()
    torch.set_num_threads(1)
    setup = protocol(protocol_name, fps, drop)
    if adapt and model is None:
        raise ValueError("--adapt adapts a network; the optimization baseline has none")
    adaptation = EvalAdaptation() if adapt else None  # issue 11: causal replay of the background adaptation
    if refine and model is None:
        raise ValueError("--refine refines a network's steps; it is not wired into the optimization baseline")
    refine_cfg = RefineConfig() if refine else None  # issue 11: the live loop's per-frame test-time refinement
    if smooth and model is None:
        raise ValueError("--smooth smooths a network's steps; it is not wired into the optimization baseline")
    smoothing = SmoothingConfig() if smooth else None  # the live loop's One-Euro output smoothing
    results, t_model, frames = [], 0.0, 0
    for i, path in enumerate(tqdm(files, desc=f"eval {model_kind}", disable=not progress, file=sys.stderr)):
        sample = synthesize_clip(path, camera, seed, i, corrections.get(str(path)), setup)
        t0 = time.perf_counter()
        results.append(evaluate_clip(model_kind, model, sample, body, adaptation, refine_cfg, smoothing))
        t_model += time.perf_counter() - t0
        frames += sample["x"].shape[0]
    summary = summarize(results)
    report: dict[str, Any] = {"frames": int(summary.pop("frames")), "sequences": int(summary.pop("sequences"))}
    report.update({_KEYS.get(k, k): round(v, 3) for k, v in summary.items()})
    for key in _KEYS.values():
        report.setdefault(key, None)  # world metrics do not exist for the per-frame optimization baseline
    report.update({"model": model_kind, "checkpoint": None if model is None else getattr(model, "model_id", checkpoint),
                   "camera": camera, "seed": seed, "split": split, "ms_per_frame": round(1000 * t_model / max(frames, 1), 3),
                   "adapt": None if adaptation is None else adaptation.summary(), "refine": refine, "smooth": smooth, "protocol": protocol_name, "fps": setup[1].fps_choices[0], "drop": setup[1].drop_prob[0]})
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mocap.eval", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="default", help="PATH or 'default' (the shipped model)")
    p.add_argument("--bvh", type=Path, nargs="+", required=True, help="BVH files (.bvh/.bvh.xz) or directories")
    p.add_argument("--camera", choices=["static", "moving"], default="moving")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--model", choices=["causal", "single-frame", "optimization"], default="causal")
    p.add_argument("--split", choices=["val", "train", "all"], default="val", help="clips taken from directories")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N clips")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="standard",
                   help="standard: the first model's distribution; shifted: from above, portrait, 60 fps, drops, swaps")
    p.add_argument("--fps", type=float, default=None, help="override the protocol's frame rate")
    p.add_argument("--drop", type=float, default=None, help="override the protocol's dropped-frame probability")
    p.add_argument("--adapt", action="store_true",
                   help="replay the live background adaptation causally on each clip (mocap/adapt/simulate.py)")
    p.add_argument("--refine", action="store_true",
                   help="after each step, the live loop's test-time refinement to the 2D keypoints (mocap/fitting)")
    p.add_argument("--smooth", action="store_true",
                   help="after refinement, the live loop's One-Euro output smoothing (mocap/smoothing.py)")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    args = p.parse_args(argv)
    try:
        report = evaluate(args.bvh, args.checkpoint, args.model, args.camera, args.seed, args.split, args.limit,
                          progress=not args.json, protocol_name=args.protocol, fps=args.fps, drop=args.drop,
                          adapt=args.adapt, refine=args.refine, smooth=args.smooth)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
