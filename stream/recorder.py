"""Record the published stream to a file, and read it back.

Format: JSON Lines, one `PoseMessage` per line with exactly the keys of the wire map (`stream.protocol.to_dict`),
in publish order, ``t_publish`` included. Why JSON Lines rather than MessagePack: a recording is for people and
tools after the fact (grep, jq, pandas, any language), a half-written last line from a crash costs only that
line, and float32 values survive the round trip exactly (JSON keeps the shortest float64 text, which parses back
to the same float64, which holds the float32 value). A 30 fps stream writes about 0.2 MB/s.

No silent data loss, whatever the format. A recording is written to ``FILE.partial`` and renamed to FILE only
when it closes cleanly, so FILE is either absent or complete; an existing FILE is never touched unless
``overwrite``; the first write error is logged when it happens, every one is counted (``errors``), and the
command exits non-zero. A format is a writer (``FormatWriter``: ``write(msg)``, ``flush()``, ``close()``) made
from the path it must write (the ``.partial`` one) and chosen by FILE's suffix in ``FORMATS``; this module does
the partial file, the rename and the error accounting for all of them.

    python -m stream.recorder FILE            # one summary line: messages, statuses, tracks, duration
    python -m stream.recorder FILE --json     # every message as JSON, then {"summary": ...}
"""
from __future__ import annotations

import argparse
import collections
import io
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import msgspec

from stream.protocol import PoseMessage

__all__ = ["FORMATS", "FormatWriter", "JsonLinesWriter", "Recorder", "read_recording", "summarize"]

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(PoseMessage)
PARTIAL_SUFFIX = ".partial"


class FormatWriter(Protocol):
    """One recording format. May raise OSError / ValueError from any method; ``Recorder`` counts them."""

    def write(self, msg: PoseMessage) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesWriter:
    """One JSON object per line (the default format)."""

    def __init__(self, path: Path) -> None:
        self._file: io.BufferedWriter = open(path, "xb")  # noqa: SIM115 - closed by close()

    def write(self, msg: PoseMessage) -> None:
        self._file.write(_ENCODER.encode(msg) + b"\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _bvh_writer(path: Path) -> FormatWriter:
    from stream.recording.bvh_writer import BvhWriter  # scipy only when asked for

    return BvhWriter(path)


def _npz_writer(path: Path) -> FormatWriter:
    from stream.recording.npz_writer import NpzWriter

    return NpzWriter(path)


#: Recording formats by lower-case file suffix ("" = anything not listed): path to write -> writer.
FORMATS: dict[str, Callable[[Path], FormatWriter]] = {"": JsonLinesWriter, ".jsonl": JsonLinesWriter,
                                                      ".json": JsonLinesWriter, ".bvh": _bvh_writer,
                                                      ".npz": _npz_writer}


class Recorder:
    """Writes messages to ``path`` through the format its suffix names; ``write`` never raises (a full disk
    must not stop the loop). See the module docstring for the partial file, overwrite and error rules.

    flush_every: messages between flushes (the OS buffer takes the rest); everything is flushed on close.
    Failures are counted in ``errors``; the first is kept in ``last_error`` and logged at once.
    ``final_path`` is where the recording ended up after ``close`` (None: nothing recorded or it failed).
    """

    def __init__(self, path: str | Path, flush_every: int = 30, *, overwrite: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        if self.path.is_dir():
            raise ValueError(f"--record needs a file path, got the directory {self.path}")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        if self.path.exists() and not stat.S_ISREG(self.path.stat().st_mode):
            raise ValueError(f"cannot record to {self.path}: not a regular file")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass --overwrite to replace it (it is left untouched)")
        if self.partial.exists():
            if not overwrite:
                raise FileExistsError(f"{self.partial} exists (an interrupted recording?); move it away or pass "
                                      "--overwrite")
            self.partial.unlink()
        factory = FORMATS.get(self.path.suffix.lower(), FORMATS[""])
        self.flush_every = max(1, int(flush_every))
        self.overwrite = overwrite
        self.written = 0
        self.errors = 0
        self.last_error: str | None = None
        self.final_path: Path | None = None
        self._writer: FormatWriter | None = factory(self.partial)
        if hasattr(self._writer, "overwrite"):  # formats that write further files (BVH: one per extra track)
            self._writer.overwrite = overwrite

    def set_fps(self, fps: float | None) -> None:
        """The source's frame rate, for formats that store one (BVH, NPZ); JSON Lines needs none."""
        if self._writer is not None and hasattr(self._writer, "set_fps"):
            self._writer.set_fps(fps)

    def _fail(self, what: str, exc: Exception) -> None:
        self.errors += 1
        if self.last_error is None:
            self.last_error = f"{what}: {exc}"
            log.error("recording to %s: %s failed: %s (further failures are counted, the run goes on)",
                      self.path, what, exc)

    def write(self, msg: PoseMessage) -> bool:
        """Append one message; False (and counted) if it could not be written."""
        if self._writer is None:
            return False
        try:
            self._writer.write(msg)
            self.written += 1
            if self.written % self.flush_every == 0:
                self._writer.flush()
        except (OSError, ValueError) as exc:
            self._fail("write", exc)
            return False
        return True

    def close(self) -> None:
        """Flush, close and rename ``FILE.partial`` to FILE; idempotent.

        Nothing written: the partial file is removed (no empty recordings). A failed close, or a FILE that
        appeared meanwhile (without ``overwrite``), keeps the data in ``FILE.partial`` and counts an error.
        """
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.flush()
            writer.close()
        except (OSError, ValueError) as exc:
            self._fail("close", exc)
        if self.written == 0 and self.errors == 0:
            self.partial.unlink(missing_ok=True)
            return
        if self.errors:
            log.error("recording kept as %s: %d message(s) written, %d failure(s) (first: %s)", self.partial,
                      self.written, self.errors, self.last_error)
            self.final_path = self.partial if self.partial.exists() else None
            return
        if self.path.exists() and not self.overwrite:
            self._fail("rename", FileExistsError(f"{self.path} appeared during the run; kept {self.partial}"))
            self.final_path = self.partial
            return
        try:
            os.replace(self.partial, self.path)
            self.final_path = self.path
        except OSError as exc:
            self._fail("rename", exc)
            self.final_path = self.partial

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_recording(path: str | Path, *, strict: bool = False, skipped: list[int] | None = None
                   ) -> Iterator[PoseMessage]:
    """Messages of a recording in order. A bad line raises ValueError with its number when ``strict``; else it
    is skipped with a warning (one corrupt line costs that line, not the recording) and its number appended to
    ``skipped``."""
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
            if strict:
                raise ValueError(f"{path}:{number}: not a pose message: {exc}") from exc
            log.warning("%s:%d: skipping a line that is not a pose message: %s", path, number, exc)
            if skipped is not None:
                skipped.append(number)


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
        "duration_s": (t1 - t0) if t0 is not None and t1 is not None else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.recorder", description="Read a --record file back.")
    parser.add_argument("file", help="a recording written by run_live.py --record")
    parser.add_argument("--json", action="store_true", help="print every message as JSON, then the summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    skipped: list[int] = []
    try:
        messages = list(read_recording(args.file, skipped=skipped))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if skipped and not messages:
        print(f"error: {args.file}: no line is a pose message ({len(skipped)} corrupt)", file=sys.stderr)
        return 2
    summary = summarize(iter(messages))
    summary["corrupt_lines"] = skipped
    try:
        if args.json:
            for msg in messages:
                sys.stdout.write(_ENCODER.encode(msg).decode() + "\n")
            print(_ENCODER.encode({"summary": summary}).decode())
        else:
            print(f"{summary['messages']} messages, statuses {summary['statuses']}, tracks {summary['tracks']}, "
                  f"seq {summary['seq_range'][0]}..{summary['seq_range'][1]}, {summary['duration_s']:.2f} s"
                  + (f", {len(skipped)} corrupt line(s) skipped" if skipped else ""))
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

