"""`python -m mocap.data build --bvh DIR [DIR...] --out DIR [--limit N] [--workers N]`.

Exit status: 0 when every file was imported, 1 when any file was skipped or no clip was built (each skipped
file is named with its reason on stderr), 2 when there was nothing to build from (e.g. no BVH files).
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mocap.data", description="Cached SMPL datasets from mocap files.")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="retarget BVH folders into OUT/train.npz and OUT/val.npz")
    b.add_argument("--bvh", nargs="+", required=True, metavar="DIR", help="folders (or files) of .bvh / .bvh.xz")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--limit", type=int, help="evenly spaced subset of this many files (quick builds)")
    b.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    b.add_argument("--preset", default="auto", help="retarget preset: auto | bandai | cmu | poser")
    b.add_argument("--mapping", help="JSON file {smpl_joint: source_joint} (overrides --preset)")
    b.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from mocap.data.build import build

    try:
        meta = build(args.bvh, args.out, args.limit, max(1, args.workers), args.preset, args.mapping,
                     progress=not args.no_progress)
    except ValueError as exc:  # nothing to build from (no BVH files, clashing names): one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: meta[k] for k in ("files", "train", "val", "seconds")} | {"skipped": len(meta["skipped"])}
    print(json.dumps(summary))
    for s in meta["skipped"]:
        print(f"error: skipped {s['file']}: {s['error']}", file=sys.stderr)
    clips = meta["train"]["clips"] + meta["val"]["clips"]
    if meta["skipped"] or not clips:
        print(f"error: {len(meta['skipped'])} of {meta['files']} file(s) skipped, {clips} clip(s) built",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
