"""BVH reader: any hierarchy, any channel order, `.bvh` or `.bvh.xz`, with vectorized motion parsing.

The hierarchy is parsed token by token (it is small); the motion block, which is nearly all of the file, goes
through one `np.fromstring` call, so a whole mocap folder reads in seconds. Errors name the file and line.
"""
from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mocap.kinematics import forward_kinematics_offsets
from mocap.rotations import euler_to_matrix

_POSITION = ("Xposition", "Yposition", "Zposition")
_ROTATION = ("Xrotation", "Yrotation", "Zrotation")
_VALID_CHANNELS = {c.lower(): c for c in _POSITION + _ROTATION}


@dataclass
class Bvh:
    """A parsed BVH file, in the file's own units.

    names/parents: J joints in file order (parents[j] < j, -1 for the root).
    offsets: (J, 3) OFFSET of each joint in its parent's frame.
    channels: per joint, the channel names in file order (e.g. ("Xposition", ..., "Zrotation", ...)).
    channel_start: (J,) column of each joint's first channel in `motion`.
    end_sites: (E,) parent joint index of each End Site; end_offsets: (E, 3) their OFFSETs.
    frame_time: seconds per frame; motion: (F, C) float64 channel values (degrees for rotations).
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    channel_start: np.ndarray
    end_sites: list[int]
    end_offsets: np.ndarray
    frame_time: float
    motion: np.ndarray
    path: str = "<string>"

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.motion.shape[1])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        """Joint index by exact name; ValueError listing the joints if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"{self.path}: no joint {name!r}; joints are {self.names}") from None

    def local_rotmats(self) -> np.ndarray:
        """(F, J, 3, 3) rotation of each joint in its parent's frame (identity where it has no rotation channel).

        Rotation channels compose left to right in file order (Zrotation Xrotation Yrotation -> Rz @ Rx @ Ry).
        """
        frames, joints = self.num_frames, len(self.names)
        out = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
        for j, chans in enumerate(self.channels):
            rot = [(k, c[0]) for k, c in enumerate(chans) if c in _ROTATION]
            if not rot:
                continue
            cols = [self.channel_start[j] + k for k, _ in rot]
            order = "".join(axis for _, axis in rot)
            angles = self.motion[:, cols]
            if len(order) < 3:  # pad with zero angles about unused axes: same product, one code path
                missing = [a for a in "XYZ" if a not in order][: 3 - len(order)]
                order += "".join(missing)
                angles = np.concatenate((angles, np.zeros((frames, len(missing)))), axis=1)
                out[:, j] = euler_to_matrix(angles, order)
            elif len(order) == 3:
                out[:, j] = euler_to_matrix(angles, order)
            else:  # more than three rotation channels: compose in groups of three
                m = np.eye(3)
                for s in range(0, len(order), 3):
                    sub, ang = order[s : s + 3], angles[:, s : s + 3]
                    pad = 3 - len(sub)
                    if pad:
                        ang = np.concatenate((ang, np.zeros((frames, pad))), axis=1)
                        sub += "".join([a for a in "XYZ" if a not in sub][:pad])
                    m = m @ euler_to_matrix(ang, sub)
                out[:, j] = m
        return out

    def frame_offsets(self) -> np.ndarray:
        """(F, J, 3) per-frame offsets: a joint's position channels replace the matching OFFSET components.

        This holds for the root too, so the root's position channels are its world position.
        """
        frames = self.num_frames
        out = np.broadcast_to(self.offsets, (frames,) + self.offsets.shape).copy()
        for j, chans in enumerate(self.channels):
            for k, c in enumerate(chans):
                if c in _POSITION:
                    out[:, j, _POSITION.index(c)] = self.motion[:, self.channel_start[j] + k]
        return out

    def fk(self, end_sites: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """World joint positions (F, J, 3) and global rotations (F, J, 3, 3), file units.

        With end_sites=True, positions are (F, J + E, 3), the End Sites appended in file order.
        """
        local = torch.from_numpy(self.local_rotmats())
        offsets = torch.from_numpy(self.frame_offsets())
        pos, glob = forward_kinematics_offsets(local, offsets, self.parents)
        pos_np, glob_np = pos.numpy(), glob.numpy()
        if end_sites and self.end_sites:
            par = np.asarray(self.end_sites)
            ends = pos_np[:, par] + np.einsum("fejk,ek->fej", glob_np[:, par], self.end_offsets)
            pos_np = np.concatenate((pos_np, ends), axis=1)
        return pos_np, glob_np


    def head(self, frames: int) -> "Bvh":
        """The same skeleton with only its first `frames` frames (cheap pose analysis of a long file)."""
        return Bvh(self.names, self.parents, self.offsets, self.channels, self.channel_start, self.end_sites,
                   self.end_offsets, self.frame_time, self.motion[:frames], self.path)

    def promote_end_site(self, e: int, name: str) -> "Bvh":
        """A copy in which End Site e becomes a joint `name` without channels (appended last, so parents stay
        before children): a skeleton lacking a joint (Poser's head, a toe) still gives its position."""
        if not 0 <= e < len(self.end_sites):
            raise ValueError(f"{self.path}: no End Site {e}")
        if name in self.names:
            raise ValueError(f"{self.path}: joint {name!r} already exists")
        keep = [k for k in range(len(self.end_sites)) if k != e]
        return Bvh(
            names=self.names + [name], parents=self.parents + [self.end_sites[e]],
            offsets=np.concatenate((self.offsets, self.end_offsets[e : e + 1]), 0),
            channels=self.channels + [()],
            channel_start=np.append(self.channel_start, self.num_channels).astype(np.int64),
            end_sites=[self.end_sites[k] for k in keep], end_offsets=self.end_offsets[keep].reshape(-1, 3),
            frame_time=self.frame_time, motion=self.motion, path=self.path,
        )


def _read_text(path: Path) -> str:
    if path.suffix == ".xz" or path.name.endswith(".lzma"):
        with lzma.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8", errors="replace")


def read_bvh(path: str | Path) -> Bvh:
    """Read a `.bvh` or `.bvh.xz` file."""
    path = Path(path)
    try:
        text = _read_text(path)
    except (OSError, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    return parse_bvh(text, str(path))


def read_bvh_header(path: str | Path) -> list[str]:
    """Joint names of a BVH file from its HIERARCHY alone (streams only until MOTION; cheap for grouping files)."""
    path = Path(path)
    opener = lzma.open if path.suffix == ".xz" else open
    head = ""
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            while True:
                chunk = fh.read(1 << 14)
                head += chunk
                if not chunk or "MOTION" in head:
                    break
    except (OSError, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    at = _find_motion(head, str(path))
    return _parse_hierarchy(head[:at], str(path))["names"]


def parse_bvh(text: str, name: str = "<string>") -> Bvh:
    """Parse BVH text; `name` is used in error messages."""
    motion_at = _find_motion(text, name)
    head = text[:motion_at]
    hier = _parse_hierarchy(head, name)
    line0 = head.count("\n") + 1
    frames, frame_time, motion = _parse_motion(text[motion_at:], line0, hier["num_channels"], name)
    return Bvh(
        names=hier["names"],
        parents=hier["parents"],
        offsets=np.asarray(hier["offsets"], dtype=np.float64).reshape(-1, 3),
        channels=hier["channels"],
        channel_start=np.asarray(hier["channel_start"], dtype=np.int64),
        end_sites=hier["end_sites"],
        end_offsets=np.asarray(hier["end_offsets"], dtype=np.float64).reshape(-1, 3),
        frame_time=frame_time,
        motion=motion,
        path=name,
    )


def _find_motion(text: str, name: str) -> int:
    pos = 0
    while True:
        at = text.find("MOTION", pos)
        if at < 0:
            raise ValueError(f"{name}: no MOTION section")
        before = text[at - 1] if at else "\n"
        after = text[at + 6 : at + 7]
        if before in "\r\n \t" and (after == "" or after.isspace()):
            return at
        pos = at + 6


def _parse_hierarchy(head: str, name: str) -> dict:
    """Token-level parse of HIERARCHY; returns names, parents, offsets, channels, channel starts, end sites."""
    tokens: list[tuple[str, int]] = []
    for lineno, text_line in enumerate(head.splitlines(), start=1):
        tokens.extend((tok, lineno) for tok in text_line.split())
    if not tokens or tokens[0][0] != "HIERARCHY":
        raise ValueError(f"{name}:1: file does not start with HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    channel_start: list[int] = []
    end_sites: list[int] = []
    end_offsets: list[list[float]] = []
    stack: list[int] = []  # joint index per open brace; -2 marks an End Site block
    pending: int | None = None  # node declared, its "{" not yet seen
    num_channels = 0
    i = 1

    def need(k: int, what: str, line: int) -> list[str]:
        if i + k > len(tokens):
            raise ValueError(f"{name}:{line}: unexpected end of HIERARCHY while reading {what}")
        return [t for t, _ in tokens[i : i + k]]

    def floats(vals: list[str], what: str, line: int) -> list[float]:
        try:
            return [float(v) for v in vals]
        except ValueError:
            raise ValueError(f"{name}:{line}: bad number in {what}: {' '.join(vals)!r}") from None

    while i < len(tokens):
        tok, line = tokens[i]
        i += 1
        if tok in ("ROOT", "JOINT"):
            if tok == "ROOT" and stack:
                raise ValueError(f"{name}:{line}: ROOT inside another joint (unbalanced braces?)")
            if tok == "JOINT" and (not stack or stack[-1] < 0):
                raise ValueError(f"{name}:{line}: JOINT outside a joint block (unbalanced braces?)")
            if tok == "ROOT" and names:
                raise ValueError(f"{name}:{line}: more than one ROOT is not supported")
            (jname,) = need(1, "joint name", line)
            i += 1
            names.append(jname)
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
            channel_start.append(num_channels)
            pending = len(names) - 1
        elif tok == "End":
            (site,) = need(1, "End Site", line)
            i += 1
            if site != "Site" or not stack or stack[-1] < 0:
                raise ValueError(f"{name}:{line}: misplaced 'End {site}'")
            end_sites.append(stack[-1])
            end_offsets.append([0.0, 0.0, 0.0])
            pending = -2
        elif tok == "{":
            if pending is None:
                raise ValueError(f"{name}:{line}: '{{' without a ROOT/JOINT/End Site before it")
            stack.append(pending)
            pending = None
        elif tok == "}":
            if not stack:
                raise ValueError(f"{name}:{line}: unbalanced braces: '}}' with no open block")
            stack.pop()
        elif tok == "OFFSET":
            vals = floats(need(3, "OFFSET", line), "OFFSET", line)
            i += 3
            if not stack:
                raise ValueError(f"{name}:{line}: OFFSET outside a block")
            if stack[-1] == -2:
                end_offsets[-1] = vals
            else:
                offsets[stack[-1]] = vals
        elif tok == "CHANNELS":
            (count_s,) = need(1, "CHANNELS count", line)
            try:
                count = int(count_s)
            except ValueError:
                raise ValueError(f"{name}:{line}: bad CHANNELS count {count_s!r}") from None
            i += 1
            if not stack or stack[-1] < 0:
                raise ValueError(f"{name}:{line}: CHANNELS outside a joint block")
            chans = need(count, "CHANNELS", line)
            if any(tokens[i + k][1] != line for k in range(count)):
                raise ValueError(f"{name}:{line}: CHANNELS declares {count} channels but lists fewer on its line")
            i += count
            if i < len(tokens) and tokens[i][1] == line:
                raise ValueError(f"{name}:{line}: CHANNELS declares {count} channels but lists more on its line")
            canon = []
            for c in chans:
                if c.lower() not in _VALID_CHANNELS:
                    raise ValueError(f"{name}:{line}: unknown channel {c!r}")
                canon.append(_VALID_CHANNELS[c.lower()])
            if len(set(canon)) != len(canon):
                raise ValueError(f"{name}:{line}: repeated channel in {canon}")
            j = stack[-1]
            if channels[j]:
                raise ValueError(f"{name}:{line}: second CHANNELS line for joint {names[j]!r}")
            channels[j] = tuple(canon)
            channel_start[j] = num_channels
            num_channels += count
        else:
            raise ValueError(f"{name}:{line}: unexpected token {tok!r} in HIERARCHY")
    if stack or pending is not None:
        raise ValueError(f"{name}: unbalanced braces: {len(stack)} block(s) left open before MOTION")
    if not names:
        raise ValueError(f"{name}: HIERARCHY has no joints")
    # Channel starts must follow file order even when a joint's CHANNELS line came late.
    start = 0
    for j in range(len(names)):
        channel_start[j] = start
        start += len(channels[j])
    return dict(names=names, parents=parents, offsets=offsets, channels=channels, channel_start=channel_start,
                end_sites=end_sites, end_offsets=end_offsets, num_channels=num_channels)


def _header_value(line: str, key: str, name: str, lineno: int) -> str:
    if not line.strip().lower().startswith(key.lower()):
        raise ValueError(f"{name}:{lineno}: expected '{key}', got {line.strip()[:40]!r}")
    return line.split(":", 1)[1].strip()


def _parse_motion(block: str, line0: int, num_channels: int, name: str) -> tuple[int, float, np.ndarray]:
    """block starts at 'MOTION'; line0 is its 1-based line number. Returns frames, frame_time, (F, C)."""
    parts = block.split("\n", 3)
    if len(parts) < 3:
        raise ValueError(f"{name}:{line0}: MOTION section lacks 'Frames:' / 'Frame Time:' lines")
    frames_s = _header_value(parts[1], "Frames:", name, line0 + 1)
    time_s = _header_value(parts[2], "Frame Time:", name, line0 + 2)
    try:
        frames = int(frames_s)
        frame_time = float(time_s)
    except ValueError:
        raise ValueError(f"{name}:{line0 + 1}: bad Frames/Frame Time header ({frames_s!r}, {time_s!r})") from None
    if frames < 0 or not frame_time > 0:
        raise ValueError(f"{name}:{line0 + 1}: need Frames >= 0 and Frame Time > 0, got {frames}, {frame_time}")
    data = parts[3] if len(parts) > 3 else ""
    first_data_line = line0 + 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fromstring warns (and stops) on a bad token
        values = np.fromstring(data, dtype=np.float64, sep=" ")
    expected = frames * num_channels
    lines = [ln for ln in data.splitlines()]
    nonblank = [(k, ln) for k, ln in enumerate(lines) if ln.strip()]
    if values.size == expected and len(nonblank) == frames:
        # Same total and same number of lines can still hide one short and one long line: check each line.
        counts = np.fromiter((len(ln.split()) for _, ln in nonblank), dtype=np.int64, count=len(nonblank))
        if (counts == num_channels).all():
            if not np.isfinite(values).all():
                bad = int(np.argmax(~np.isfinite(values))) // max(num_channels, 1)
                raise ValueError(f"{name}:{first_data_line + nonblank[bad][0]}: non-finite value in frame {bad}")
            return frames, frame_time, values.reshape(frames, num_channels)
    _raise_motion_error(nonblank, frames, num_channels, first_data_line, name)
    raise AssertionError("unreachable")


def _raise_motion_error(nonblank: list[tuple[int, str]], frames: int, num_channels: int, first: int,
                        name: str) -> None:
    """Slow path, only on bad input: find the first offending line and say what is wrong with it."""
    for f, (k, ln) in enumerate(nonblank[:frames]):
        toks = ln.split()
        for t in toks:
            try:
                float(t)
            except ValueError:
                raise ValueError(f"{name}:{first + k}: bad number {t!r} in frame {f}") from None
        if len(toks) != num_channels:
            raise ValueError(f"{name}:{first + k}: frame {f} has {len(toks)} values, "
                             f"the HIERARCHY declares {num_channels} channels")
    if len(nonblank) < frames:
        raise ValueError(f"{name}: truncated motion: header says {frames} frames, file has {len(nonblank)}")
    k = nonblank[frames][0]
    raise ValueError(f"{name}:{first + k}: {len(nonblank)} motion lines, header says {frames} frames")


def bvh_files(root: str | Path) -> list[Path]:
    """All `.bvh` / `.bvh.xz` files under root (a file is returned as itself), sorted by path."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ValueError(f"{root}: no such file or directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith((".bvh", ".bvh.xz")))


def _bench(root: Path) -> dict:
    files = bvh_files(root)
    t0 = time.perf_counter()
    frames = 0
    errors: list[str] = []
    for p in files:
        try:
            frames += read_bvh(p).num_frames
        except ValueError as exc:
            errors.append(str(exc))
    secs = time.perf_counter() - t0
    return {"dir": str(root), "files": len(files), "frames": frames, "errors": len(errors),
            "seconds": round(secs, 2), "ms_per_file": round(1000 * secs / max(len(files), 1), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mocap.bvh", description="Inspect or benchmark BVH files.")
    ap.add_argument("path", nargs="?", help="a .bvh/.bvh.xz file to summarize")
    ap.add_argument("--bench", metavar="DIR", help="read every BVH under DIR and time it")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    if args.bench:
        out = _bench(Path(args.bench))
    elif args.path:
        b = read_bvh(args.path)
        out = {"path": args.path, "joints": len(b.names), "channels": b.num_channels, "frames": b.num_frames,
               "fps": round(b.fps, 4), "names": b.names}
    else:
        ap.error("give a file or --bench DIR")
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
