"""Jitter of a recorded pose stream: `python -m stream.jitter A.jsonl [B.jsonl ...] --json`.

What the issue-11 refinement must not add: for each recording (JSON Lines, `--record`), the mean and median
second difference (acceleration, mm per frame^2) of the published joints, world (`joints`) and pelvis-relative,
over consecutive pose messages of the same track. No ground truth is needed, so it runs on real footage;
comparing two runs over the same video (e.g. `--refine` / `--no-refine`) shows what the difference adds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stream.protocol import ARRAY_LENGTHS, ARRAY_SHAPES
from stream.recorder import read_recording


def jitter(path: str | Path) -> dict[str, str | float | int | None]:
    """Second-difference statistics of one recording's published joints (mm / frame^2)."""
    tracks: dict[int, list[tuple[int, np.ndarray]]] = {}
    for msg in read_recording(path):
        if msg.status in ("init", "tracking") and len(msg.joints) == ARRAY_LENGTHS["joints"]:
            joints = np.asarray(msg.joints).reshape(ARRAY_SHAPES["joints"])
            tracks.setdefault(int(msg.track), []).append((int(msg.seq), joints))
    world, rel = [], []
    for frames in tracks.values():
        seq = np.array([s for s, _ in frames])
        joints = np.stack([j for _, j in frames]).astype(np.float64)
        ok = (seq[2:] - seq[1:-1] == 1) & (seq[1:-1] - seq[:-2] == 1)   # three consecutive frames only
        acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
        local = joints - joints[:, :1]
        acc_rel = local[2:] - 2 * local[1:-1] + local[:-2]
        world.append(np.linalg.norm(acc, axis=-1).mean(-1)[ok])
        rel.append(np.linalg.norm(acc_rel, axis=-1).mean(-1)[ok])
    w = np.concatenate(world) * 1e3 if world else np.zeros(0)
    r = np.concatenate(rel) * 1e3 if rel else np.zeros(0)
    stat = lambda a, f: round(float(f(a)), 3) if a.size else None  # noqa: E731
    return {"recording": str(path), "frames": int(w.size), "world_mean_mm": stat(w, np.mean),
            "world_median_mm": stat(w, np.median), "rel_mean_mm": stat(r, np.mean), "rel_median_mm": stat(r, np.median)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.jitter", description=__doc__.split("\n")[0])
    p.add_argument("recordings", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON list on stdout")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.recordings if not r.is_file()]
    if missing:
        print(f"error: no such recording: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [jitter(r) for r in args.recordings]
    print(json.dumps(rows) if args.json else "\n".join(json.dumps(r) for r in rows))
    return 0 if all(r["frames"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
