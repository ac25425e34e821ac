"""BVH and NPZ recording formats (chosen by ``--record`` FILE's suffix in `stream.recorder.FORMATS`), and a fan-out
of pose-message sinks.

    run_live.py --record out.jsonl | out.bvh | out.npz
    python -m stream.recording IN.jsonl OUT.bvh|OUT.npz [--fps F]     (convert a JSON Lines recording)

``.bvh``: `stream.recording.bvh_writer` (SMPL skeleton, world translation, the stream's fps); ``.npz``:
`stream.recording.npz_writer` (every message field as arrays); anything else: JSON Lines. The partial file,
the rename and the error accounting are `stream.recorder.Recorder`'s, for every format. (The writers are
imported where used, so the live loop loads scipy only for a BVH or NPZ recording.)
"""
from __future__ import annotations

from typing import Any


class FanOut:
    """Several sinks behind the live loop's one ``recorder`` slot (e.g. a recording and a VMC sender).

    A sink that raises is counted in ``errors`` and never stops the others; closing stays with their owners.
    """

    def __init__(self, *sinks: Any) -> None:
        self.sinks = [s for s in sinks if s is not None]
        self.errors = 0

    def write(self, msg: Any) -> bool:
        ok = True
        for sink in self.sinks:
            try:
                ok = bool(sink.write(msg)) and ok
            except Exception:  # a sink's bug must not stop the live loop
                self.errors += 1
                ok = False
        return ok


__all__ = ["FanOut"]
