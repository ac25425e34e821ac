"""Record the published stream to a file, and read it back.

Format: JSON Lines, one `PoseMessage` per line with exactly the keys of the wire map (`stream.protocol.to_dict`),
in publish order, ``t_publish`` included. Why JSON Lines rather than MessagePack: a recording is for people and
tools after the fact (grep, jq, pandas, any language), a half-written last line from a crash costs only that
line, and float32 values survive the round trip exactly (JSON keeps the shortest float64 text, which parses back
to the same float64, which holds the float32 value). A 30 fps stream writes about 0.2 MB/s.

    python -m stream.recorder FILE            # one summary line: messages, statuses, tracks, duration
    python -m stream.recorder FILE --json     # every message as JSON, then {"summary": ...}
"""
from __future__ import annotations

import argparse
import collections
import io
import sys
from pathlib import Path
from typing import Any, Iterator

import msgspec

from stream.protocol import PoseMessage

__all__ = ["Recorder", "read_recording", "summarize"]

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(PoseMessage)


class Recorder:
    """Appends messages to ``path`` as JSON Lines; ``write`` never raises (a full disk must not stop the loop).

    flush_every: messages between flushes (the OS buffer takes the rest); the file is flushed on close.
    Write failures are counted in ``errors`` and the first one is kept in ``last_error``.
    """

    def __init__(self, path: str | Path, flush_every: int = 30) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValueError(f"--record needs a file path, got the directory {self.path}")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        self.flush_every = max(1, int(flush_every))
        self.written = 0
        self.errors = 0
        self.last_error: str | None = None
        self._file: io.BufferedWriter | None = open(self.path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, msg: PoseMessage) -> bool:
        """Append one message; False (and counted) if it could not be written."""
        if self._file is None:
            return False
        try:
            self._file.write(_ENCODER.encode(msg) + b"\n")
            self.written += 1
            if self.written % self.flush_every == 0:
                self._file.flush()
        except (OSError, ValueError) as exc:
            self.errors += 1
            self.last_error = self.last_error or str(exc)
            return False
        return True

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self.errors += 1
                self.last_error = self.last_error or str(exc)
            self._file = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_recording(path: str | Path, *, strict: bool = False) -> Iterator[PoseMessage]:
    """Messages of a recording in order. A bad line raises ValueError with its number when ``strict``, else a
    truncated *last* line (a crash mid-write) is skipped; a bad line anywhere else always raises."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"recording not found: {path}")
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            if number == len(lines) and not strict:
                return
            raise ValueError(f"{path}:{number}: not a pose message: {exc}") from exc


def summarize(messages: Iterator[PoseMessage]) -> dict[str, Any]:
    """Counts by status and track, seq range and capture-time span of a recording."""
    statuses: collections.Counter[str] = collections.Counter()
    tracks: collections.Counter[int] = collections.Counter()
    n, t0, t1, seq0, seq1 = 0, None, None, None, None
    for msg in messages:
        n += 1
        statuses[msg.status] += 1
        tracks[msg.track] += 1
        t0 = msg.t_capture if t0 is None else min(t0, msg.t_capture)
        t1 = msg.t_capture if t1 is None else max(t1, msg.t_capture)
        seq0 = msg.seq if seq0 is None else min(seq0, msg.seq)
        seq1 = msg.seq if seq1 is None else max(seq1, msg.seq)
    return {
        "messages": n,
        "statuses": dict(statuses),
        "tracks": {str(k): v for k, v in sorted(tracks.items())},
        "seq_range": [seq0, seq1],
        "duration_s": (t1 - t0) if n else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.recorder", description="Read a --record file back.")
    parser.add_argument("file", help="a recording written by run_live.py --record")
    parser.add_argument("--json", action="store_true", help="print every message as JSON, then the summary")
    args = parser.parse_args(argv)
    try:
        messages = list(read_recording(args.file))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(iter(messages))
    try:
        if args.json:
            for msg in messages:
                sys.stdout.write(_ENCODER.encode(msg).decode() + "\n")
            print(_ENCODER.encode({"summary": summary}).decode())
        else:
            print(f"{summary['messages']} messages, statuses {summary['statuses']}, tracks {summary['tracks']}, "
                  f"seq {summary['seq_range'][0]}..{summary['seq_range'][1]}, {summary['duration_s']:.2f} s")
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

