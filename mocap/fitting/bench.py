"""Cost of the test-time refinement per person-frame: `python -m mocap.fitting.bench --json`.

Frames are realistic: the shipped model (torch, causal steps) runs over a synthetic clip of the built-in walker
seen by a virtual camera with detector-like noise (`mocap.data`), and only the refinement of each step is timed
(`refine_step`, the live loop's call, world consistency and state feedback included). Prints one JSON object:
p50 / p99 / mean ms per person-frame in wall time and in the thread's CPU time (`cpu_*`: what the refinement
itself costs, less disturbed by other load on a shared machine), the reprojection error before and after, and
the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def synthetic_sample(n: int, seed: int) -> dict:
    """A synthetic clip of n frames (a procedural walk of the built-in body, moving virtual camera, detector-like
    2D noise), as `mocap.eval` samples are: x, omega, kp2d, focal, principal, ground truth."""
    import torch

    from mocap.data.motion_bank import MotionWindows
    from mocap.data.synth import SynthConfig, SyntheticGenerator
    from mocap.rotations import axis_angle_to_matrix
    from mocap.skeleton import NUM_JOINTS

    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    pose = np.zeros((n, NUM_JOINTS, 3))
    swing = 0.5 * np.sin(2 * np.pi * 0.9 * t)
    pose[:, 0, 1] = 0.3 * np.sin(2 * np.pi * 0.1 * t)             # slow turn
    pose[:, 1, 0], pose[:, 2, 0] = -swing, swing                  # hips
    pose[:, 4, 0], pose[:, 5, 0] = 0.6 * np.maximum(swing, 0), 0.6 * np.maximum(-swing, 0)  # knees
    pose[:, 16, 2], pose[:, 17, 2] = -1.2 + 0.3 * swing, 1.2 + 0.3 * swing                  # arms down, swinging
    pose[:, 18, 1], pose[:, 19, 1] = -0.4, 0.4
    trans = np.stack((0.8 * t, np.full(n, 0.93), np.zeros(n)), -1)
    motion = MotionWindows(
        pose_rotmat=axis_angle_to_matrix(torch.from_numpy(pose).float())[None],
        trans=torch.from_numpy(trans).float()[None],
        betas=torch.zeros(1, 10),
    )
    batch = SyntheticGenerator(SynthConfig(random_betas=0.0))(motion, rng, camera="moving")
    return {k: v[0] for k, v in batch.items()}


def _frames(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """n (outputs, state_before, state_after, kp2d) of the shipped model on a synthetic clip, and K (3, 3)."""
    import torch

    from mocap.eval import sample_intrinsics
    from mocap.model import load_model

    torch.set_num_threads(1)
    sample = synthetic_sample(n, seed)
    model = load_model("default")
    x = sample["x"][:, : model.config.input_dim]
    state = model.initial_state(1)
    frames = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            out, new_state = model.step(x[i : i + 1], sample["omega"][i : i + 1], state)
            as_np = lambda d: {k: v.numpy().copy() for k, v in d.items()}  # noqa: E731
            frames.append({"outputs": as_np(out), "before": as_np(state), "after": as_np(new_state),
                           "kp2d": sample["kp2d"][i].numpy().astype(np.float64)})
            state = new_state
    return frames, sample_intrinsics(sample)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mocap.fitting.bench", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic clip (default 300)")
    p.add_argument("--repeat", type=int, default=3, help="passes over the clip, each with a fresh track")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    args = p.parse_args(argv)
    if args.frames < 10 or args.repeat < 1:
        print("error: --frames must be >= 10 and --repeat >= 1", file=sys.stderr)
        return 2

    from mocap.fitting import RefineConfig, TrackState, refine_step
    from mocap.fitting.reprojection import reprojection_error

    frames, K = _frames(args.frames, args.seed)
    cfg = RefineConfig()
    times, cpu, kinds, before, after = [], [], [], [], []
    for rep in range(args.repeat):
        track = TrackState()
        for fr in frames:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            res = refine_step(fr["outputs"], fr["before"], fr["after"], fr["kp2d"], K, track, cfg)
            cpu.append(time.thread_time_ns() - c0)
            times.append(time.perf_counter_ns() - t0)
            kinds.append(res.refined is not None and np.isfinite(res.refined.cost_end))
            if rep == 0:
                e0 = reprojection_error(fr["outputs"]["kp3d_cam"][0], fr["kp2d"], K)
                e1 = reprojection_error(res.outputs["kp3d_cam"][0], fr["kp2d"], K)
                if e0 is not None and e1 is not None:
                    before.append(e0)
                    after.append(e1)
    ms, cpu_ms = np.asarray(times) / 1e6, np.asarray(cpu) / 1e6
    fitted = np.asarray(kinds, dtype=bool)
    fit, cpu_fit = ms[fitted], cpu_ms[fitted]
    r = lambda v: round(float(v), 3)  # noqa: E731
    report = {
        "person_frames": int(ms.size),
        "fitted_frames": int(fit.size),     # the rest had too few keypoints: the correction coasts (cheap)
        "p50_ms": r(np.percentile(ms, 50)),
        "p99_ms": r(np.percentile(ms, 99)),
        "mean_ms": r(ms.mean()),
        "fitted_p50_ms": r(np.percentile(fit, 50)) if fit.size else None,
        "fitted_p99_ms": r(np.percentile(fit, 99)) if fit.size else None,
        "fitted_p10_ms": r(np.percentile(fit, 10)) if fit.size else None,   # least disturbed by other load
        "fitted_min_ms": r(fit.min()) if fit.size else None,
        "cpu_p50_ms": r(np.percentile(cpu_ms, 50)),
        "cpu_p99_ms": r(np.percentile(cpu_ms, 99)),
        "fitted_cpu_p50_ms": r(np.percentile(cpu_fit, 50)) if fit.size else None,
        "fitted_cpu_p99_ms": r(np.percentile(cpu_fit, 99)) if fit.size else None,
        "reproj_before_median": round(float(np.median(before)), 4) if before else None,
        "reproj_after_median": round(float(np.median(after)), 4) if after else None,
        "iterations": cfg.iterations,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0 if fit.size > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
