"""Convert a JSON Lines recording (``run_live.py --record x.jsonl``) to BVH or NPZ.

    python -m stream.recording IN.jsonl OUT.bvh|OUT.npz [--fps F] [--overwrite] [--check]

--fps: the source's frame rate (default: estimated from the capture clock, right for real-time captures).
--check (BVH): re-import the file and print its errors against the messages as JSON (`stream.recording.check`).
Prints the files written; exit 1 if the recording failed, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from stream.recorder import FORMATS, Recorder, read_recording

_SUFFIXES = (".bvh", ".npz")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.recording", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a JSON Lines recording")
    p.add_argument("out", help="output file: .bvh or .npz")
    p.add_argument("--fps", type=float, default=None, help="the source's frame rate (default: estimated)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--check", action="store_true", help="BVH: re-import and print the errors as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if Path(args.out).suffix.lower() not in _SUFFIXES or Path(args.out).suffix.lower() not in FORMATS:
        p.error(f"OUT must end in {' or '.join(_SUFFIXES)}, got {args.out!r}")
    if args.fps is not None and not args.fps > 0:
        p.error("--fps must be > 0")
    try:
        messages = read_recording(args.source)
        recorder = Recorder(args.out, overwrite=args.overwrite)
    except (OSError, ValueError) as exc:
        print(f"python -m stream.recording: error: {exc}", file=sys.stderr)
        return 2
    recorder.set_fps(args.fps)
    with recorder:
        try:
            for msg in messages:
                recorder.write(msg)
        except (OSError, ValueError) as exc:
            print(f"python -m stream.recording: error: {exc}", file=sys.stderr)
            return 2
    if recorder.errors or recorder.final_path is None:
        print(f"python -m stream.recording: recording failed ({recorder.last_error or 'nothing recorded'})",
              file=sys.stderr)
        return 1
    print(recorder.final_path)  # further BVH tracks are logged as they are written
    if args.check and recorder.final_path.suffix.lower() == ".bvh":
        from stream.recording.check import check_bvh

        print(json.dumps(check_bvh(recorder.final_path, list(read_recording(args.source)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
