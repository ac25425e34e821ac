#!/usr/bin/env python3
"""Live motion capture: webcam / video / images / URL / synthetic demo in, SMPL pose stream out over ZeroMQ.

    python run_live.py                                   # webcam 0, or the synthetic demo when there is none
    python run_live.py --source video.mp4 --fast --max-frames 200 --json-stats
    python -m stream.subscribe tcp://127.0.0.1:5556      # in another terminal: watch the stream

All options: ``python run_live.py --help``; the implementation lives in ``stream/__main__.py`` (also runnable as
``python -m stream`` from an installed package).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from anywhere without installing

from stream.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="run_live.py"))
