"""Camera rotation integrated from a gyroscope rigidly attached to the camera.

Frames and signs. The gyro measures the *body-frame* angular velocity w(t) (rad/s): with C(t) the camera->world
rotation, dC/dt = C [w]x, so over [t0, t1] C(t1) = C(t0) @ D with the ordered product
D = exp([w_1 h_1]x) @ exp([w_2 h_2]x) @ ... (earliest step leftmost). The project's rotation is the world->camera
R = C.T, hence the per-frame rotation is Q = R(t1) @ R(t0).T = D.T -- the *inverse* of the body increment.
Example: w = (0, +a, 0) (about camera +Y, which points down) turns the optical axis toward +X, i.e. the camera
pans right; a static point straight ahead then has bearing Q @ (0, 0, 1) = (-sin, 0, cos): it slides left in the
image, as it should.

Samples arrive in the IMU frame and clock: ``w_cam = imu_to_camera @ w_imu`` and
``t_capture_clock = t_imu + time_offset``. Between samples w is interpolated linearly; a step between samples
further apart than ``max_gap`` holds the nearest sample for up to ``max_gap`` (status ``"gyro hold"``) and
counts as zero rotation beyond that (status ``"gyro gap"``). ``update`` never waits for late samples.

Honesty. A gyro that is silently ignored gives the output of a static camera, so the provider reports itself:
``coverage`` (frames whose interval had gyro samples, in %), a warning after ``silence_s`` (2 s) of frames
without samples (and when they resume), and a clock/unit check on the first samples (``ClockCheck``): timestamps
on another clock (Unix time while the frames use video time or the monotonic clock) are aligned so the first
sample meets the current frame, millisecond timestamps are scaled to seconds, and deg/s rates (an implausible
magnitude for rad/s) are converted, each with a warning saying what was assumed. ``source_used`` is "gyro" when
the frame was measured and "none" when it was not (the loop puts it in every message).
"""
from __future__ import annotations

import bisect
import collections
import csv
import functools
import logging
import math
import socket
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence, Union

import msgspec
import numpy as np
import zmq

from mocap.rotations import axis_angle_to_matrix

from .base import IDENTITY, CameraMotion

log = logging.getLogger(__name__)

Sink = Callable[[float, Sequence[float]], None]


class SampleBuffer:
    """Thread-safe, time-sorted, bounded store of (t, w (3,)) samples.

    Out-of-order samples are inserted in place; a sample with an existing timestamp replaces it (a retransmit).
    When full, the oldest samples go first.
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._t: list[float] = []
        self._w: list[tuple[float, float, float]] = []
        self._lock = threading.Lock()

    def add(self, t: float, w: Sequence[float]) -> None:
        sample = (float(w[0]), float(w[1]), float(w[2]))
        with self._lock:
            i = bisect.bisect_left(self._t, t)
            if i < len(self._t) and self._t[i] == t:
                self._w[i] = sample
                self.duplicates += 1
                return
            self._t.insert(i, t)
            self._w.insert(i, sample)
            if len(self._t) > self.capacity:
                drop = len(self._t) - self.capacity
                del self._t[:drop], self._w[:drop]

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples needed to evaluate w on [t0, t1]: the last one <= t0 through the first one >= t1.

        Returns ts (N,) float64 ascending and ws (N, 3) float64.
        """
        with self._lock:
            i0 = max(bisect.bisect_right(self._t, t0) - 1, 0)
            i1 = min(bisect.bisect_left(self._t, t1) + 1, len(self._t))
            ts, ws = self._t[i0:i1], self._w[i0:i1]
        return np.asarray(ts, dtype=np.float64), np.asarray(ws, dtype=np.float64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._t)

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._w.clear()


def angular_velocity_at(
    ts: np.ndarray, ws: np.ndarray, times: np.ndarray, max_gap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-linear w at ``times`` (M,) from samples ts (N,), ws (N, 3).

    Returns (w (M, 3), held (M,) bool, gap (M,) bool): held = nearest sample held across a long gap,
    gap = no sample within ``max_gap`` (w = 0 there).
    """
    m = len(times)
    if len(ts) == 0:
        return np.zeros((m, 3)), np.zeros(m, bool), np.ones(m, bool)
    n = len(ts)
    left = np.searchsorted(ts, times, side="right") - 1
    has_left, has_right = left >= 0, left + 1 < n
    il, ir = np.clip(left, 0, n - 1), np.clip(left + 1, 0, n - 1)
    tl, tr = ts[il], ts[ir]
    span = tr - tl
    interp = has_left & has_right & (span <= max_gap)
    alpha = np.where(interp, (times - tl) / np.where(span > 0, span, 1.0), 0.0)
    w = ws[il] + alpha[:, None] * (ws[ir] - ws[il])
    near_left = has_left & (times - tl <= max_gap)
    near_right = has_right & (tr - times <= max_gap)
    hold_left = ~interp & near_left
    hold_right = ~interp & ~near_left & near_right
    w = np.where(hold_left[:, None], ws[il], w)
    w = np.where(hold_right[:, None], ws[ir], w)
    gap = ~interp & ~hold_left & ~hold_right
    w = np.where(gap[:, None], 0.0, w)
    return w, hold_left | hold_right, gap


def integrate_body_rotation(
    ts: np.ndarray, ws: np.ndarray, t0: float, t1: float, max_gap: float, max_step: float = 0.002
) -> tuple[np.ndarray, float, float]:
    """Body-frame rotation increment D (3, 3) over [t0, t1] (earliest step leftmost).

    Steps break at every sample and hold boundary and are at most ``max_step`` long; each uses w at its midpoint,
    exact for piecewise-constant and second-order for piecewise-linear w. Returns (D, held_s, gap_s) with the
    seconds of the interval that were held / uncovered.
    """
    if not t1 > t0:
        raise ValueError(f"need t1 > t0, got [{t0}, {t1}]")
    cuts = [np.array([t0, t1])]
    if len(ts):
        cuts += [ts, ts + max_gap, ts - max_gap]
    knots = np.unique(np.concatenate(cuts))
    knots = knots[(knots >= t0) & (knots <= t1)]
    seg = np.diff(knots)
    pieces = np.maximum(np.ceil(seg / max_step).astype(int), 1)  # equal sub-steps per knot interval
    first = np.cumsum(pieces) - pieces
    within = np.arange(pieces.sum()) - np.repeat(first, pieces)
    steps = np.append(np.repeat(knots[:-1], pieces) + within * np.repeat(seg / pieces, pieces), t1)
    h = np.diff(steps)
    w, held, gap = angular_velocity_at(ts, ws, steps[:-1] + h / 2, max_gap)
    mats = axis_angle_to_matrix(w * h[:, None])  # (K, 3, 3)
    delta = functools.reduce(np.matmul, mats, IDENTITY)
    return delta, float(h[held].sum()), float(h[gap].sum())


class GyroPacket(msgspec.Struct):
    """One sample on the wire: ``{"t": seconds (IMU clock), "w": [wx, wy, wz] rad/s (IMU frame)}``."""

    t: float
    w: tuple[float, float, float]


_PacketOrList = Union[GyroPacket, list[GyroPacket]]
_MSGPACK_DECODER = msgspec.msgpack.Decoder(_PacketOrList)
_JSON_DECODER = msgspec.json.Decoder(_PacketOrList)


def parse_gyro_payload(data: bytes) -> list[GyroPacket]:
    """MessagePack or JSON (detected by a leading ``{`` / ``[``), one packet or a list -> packets."""
    text = data.lstrip()
    try:
        if text[:1] in (b"{", b"["):
            out = _JSON_DECODER.decode(text)
        else:
            out = _MSGPACK_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad gyro packet ({len(data)} bytes): {exc}") from exc
    return out if isinstance(out, list) else [out]


class GyroSource(ABC):
    """Delivers (t_imu, w_imu) samples to a sink; streaming sources run a daemon thread."""

    bad_packets: int = 0

    @abstractmethod
    def start(self, sink: Sink) -> None:
        """Begin delivering samples (returns at once for streams)."""

    def close(self) -> None:
        """Stop delivering; idempotent."""


class CsvSource(GyroSource):
    """A recorded log: columns t, wx, wy, wz (a header row is optional; named columns may come in any order)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.samples = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        if not path.is_file():
            raise FileNotFoundError(f"gyro CSV not found: {path}")
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        if not rows:
            raise ValueError(f"{path}: empty gyro CSV")
        cols = [0, 1, 2, 3]
        try:
            [float(c) for c in rows[0][:4]]
        except ValueError:
            header = [c.strip().lower() for c in rows.pop(0)]
            if all(name in header for name in ("t", "wx", "wy", "wz")):
                cols = [header.index(name) for name in ("t", "wx", "wy", "wz")]
        if not rows:
            raise ValueError(f"{path}: gyro CSV has a header but no samples")
        out = np.empty((len(rows), 4))
        for n, row in enumerate(rows):
            try:
                out[n] = [float(row[c]) for c in cols]
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}: row {n + 1} is not t, wx, wy, wz numbers: {row!r}") from exc
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{path}: non-finite values in the gyro CSV")
        return out

    def start(self, sink: Sink) -> None:
        for t, wx, wy, wz in self.samples:
            sink(t, (wx, wy, wz))


class _ThreadSource(GyroSource):
    """Shared receive loop: poll briefly, parse, hand samples over, count bad packets, never die."""

    def __init__(self) -> None:
        self.bad_packets = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        if self._thread is not None:
            raise RuntimeError("source already started")
        self._thread = threading.Thread(target=self._run, args=(sink,), name=type(self).__name__, daemon=True)
        self._thread.start()

    def _deliver(self, data: bytes, sink: Sink) -> None:
        try:
            for p in parse_gyro_payload(data):
                sink(p.t, p.w)
        except ValueError as exc:
            self.bad_packets += 1
            if self.bad_packets == 1:
                log.warning("dropping bad gyro packet: %s", exc)

    @abstractmethod
    def _run(self, sink: Sink) -> None: ...

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class ZmqSource(_ThreadSource):
    """ZeroMQ SUB connected to an IMU publisher; the payload is the last frame of each message."""

    def __init__(self, addr: str, topic: bytes = b"", context: zmq.Context | None = None) -> None:
        super().__init__()
        self.addr, self.topic, self.label = addr, topic, addr
        if addr.startswith("tcp://"):
            port = addr.rpartition(":")[2]
            if not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"gyro {addr}: expected tcp://HOST:PORT with a port 1..65535")
        self._ctx = context or zmq.Context.instance()
        # Connect here, not in the thread, so a malformed address is an error now rather than a dead thread.
        self._sock = self._ctx.socket(zmq.SUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, 10000)
            self._sock.setsockopt(zmq.SUBSCRIBE, self.topic)
            self._sock.connect(self.addr)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise ValueError(f"gyro {addr}: cannot connect: {exc}") from None

    def _run(self, sink: Sink) -> None:
        sock = self._sock
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._deliver(frames[-1], sink)
        finally:
            sock.close()


class UdpSource(_ThreadSource):
    """UDP datagrams, one payload each; binds at construction so ``port`` is known (port 0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"gyro udp://{host}:{port}: port must be 0..65535")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except (OSError, OverflowError) as exc:  # unknown host, address in use, not a local address
            self._sock.close()
            raise ValueError(f"gyro udp://{host}:{port}: cannot listen there: {exc}") from None
        self._sock.settimeout(0.1)
        self.host, self.port = self._sock.getsockname()[:2]
        self.label = f"udp://{self.host}:{self.port}"

    def _run(self, sink: Sink) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self._sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                self._deliver(data, sink)
        finally:
            self._sock.close()


#: Faster than this (rad/s, ~1150 deg/s) no hand-held or rigged camera turns; a gyro reporting it is in deg/s.
#: (A slow pan in deg/s stays below it and is not detected: pass rad/s, as the CSV and packet formats say.)
MAX_PLAUSIBLE_RAD_S = 20.0
#: Timestamps this far (s) from the frames' clock are on another clock (e.g. Unix time vs video time).
OTHER_CLOCK_S = 1e5


class ClockCheck:
    """Decides, from the first ``needed`` samples and the first frame time, how raw samples map to the frame
    clock: ``scale`` (1e-3 for milliseconds), ``offset`` (seconds added after scaling) and ``deg`` (deg/s input).

    Millisecond timestamps: the median sample spacing is >= 0.2 "s" (an IMU under 5 Hz) while 1/1000 of it is a
    usual IMU rate (100 Hz .. 10 kHz). Another clock: the scaled first sample is more than a day from the frame
    time; the first sample is then assumed to coincide with the frame. deg/s: the largest rate exceeds
    ``MAX_PLAUSIBLE_RAD_S`` (checked on every later sample too).
    """

    def __init__(self, user_offset: float, needed: int = 10) -> None:
        self.user_offset, self.needed = user_offset, needed
        self.scale, self.offset, self.deg = 1.0, user_offset, False
        self.decided = False
        self.assumed: list[str] = []

    def decide(self, ts: np.ndarray, ws: np.ndarray, t_frame: float, anchor_newest: bool = False) -> None:
        """ts (N,) raw timestamps, ws (N, 3) raw rates, t_frame the frame time the oldest (or, for a live stream,
        the newest) sample should meet when the clocks differ."""
        self.decided = True
        if len(ts) >= 3:
            spacing = float(np.median(np.diff(np.sort(ts))))
            if spacing >= 0.2 and 1e-4 <= spacing * 1e-3 <= 1e-2:
                self.scale = 1e-3
                self._assume(f"gyro timestamps look like milliseconds (median spacing {spacing:g}): scaled to s")
        raw = float(np.max(ts) if anchor_newest else np.min(ts)) * self.scale
        first = raw + self.offset
        if abs(first - t_frame) > OTHER_CLOCK_S:
            self.offset += t_frame - first
            kind = "Unix time" if 1e8 < raw < 1e10 else "another clock"
            which = "newest sample is" if anchor_newest else "first sample is at"
            self._assume(f"gyro timestamps are on {kind} ({first:.6g} s) while frames are at {t_frame:.6g} s: "
                         f"assumed the {which} the current frame time (offset {self.offset:+.6g} s)")
        self.check_rates(ws)

    def check_rates(self, ws: np.ndarray) -> None:
        if not self.deg and len(ws) and float(np.abs(ws).max()) > MAX_PLAUSIBLE_RAD_S:
            self.deg = True
            self._assume(f"gyro rates up to {float(np.abs(ws).max()):.4g} are implausible in rad/s: assumed deg/s "
                         "and converted")

    def _assume(self, text: str) -> None:
        self.assumed.append(text)
        log.warning("%s", text)

    def apply(self, t: float, w: np.ndarray) -> tuple[float, np.ndarray]:
        return t * self.scale + self.offset, np.radians(w) if self.deg else w


def _check_rotation(m: np.ndarray | None) -> np.ndarray:
    if m is None:
        return IDENTITY.copy()
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (3, 3) or not np.allclose(m @ m.T, IDENTITY, atol=1e-4) or np.linalg.det(m) < 0:
        raise ValueError(f"imu_to_camera must be a 3x3 rotation (orthonormal, det +1), got\n{m}")
    return m


class GyroCameraMotion(CameraMotion):
    """Per-frame camera rotation from gyro samples; see the module docstring for frames and signs.

    Args:
        source: where samples come from (``from_csv`` / ``from_zmq`` / ``from_udp`` build one); None = only
            ``push`` feeds it.
        imu_to_camera: (3, 3) rotation taking IMU-frame vectors to the OpenCV camera frame.
        time_offset: seconds added to IMU timestamps to put them on the capture clock.
        max_gap: widest sample spacing interpolated across, and the longest hold past the nearest sample.
        capacity: samples kept (the oldest go first).
        max_step: longest integration step (s).
        silence_s: frames without any gyro sample for this long (s) log a warning (once per silence).
        check_clock: detect and fix millisecond / other-clock timestamps and deg/s rates (see ``ClockCheck``);
            only for samples from ``source`` (a caller that ``push``es owns its clock).
    """

    kind = "gyro"

    def __init__(
        self,
        source: GyroSource | None = None,
        *,
        imu_to_camera: np.ndarray | None = None,
        time_offset: float = 0.0,
        max_gap: float = 0.1,
        capacity: int = 4096,
        max_step: float = 0.002,
        fps: float | None = None,
        silence_s: float = 2.0,
        check_clock: bool = True,
    ) -> None:
        super().__init__(fps)
        if not (math.isfinite(time_offset)):
            raise ValueError(f"time_offset must be finite, got {time_offset}")
        if not max_gap > 0 or not max_step > 0:
            raise ValueError(f"max_gap and max_step must be positive, got {max_gap}, {max_step}")
        self.imu_to_camera = _check_rotation(imu_to_camera)
        self.time_offset, self.max_gap, self.max_step = float(time_offset), float(max_gap), float(max_step)
        if isinstance(source, CsvSource):
            capacity = max(capacity, len(source.samples))
        self.buffer = SampleBuffer(capacity)
        self.rejected = 0
        self.samples = 0
        self.frames = 0            # updates with an interval (the first frame has none)
        self.covered = 0           # of those, intervals with gyro samples ("ok" or "gyro hold")
        self.silence_s = float(silence_s)
        self.clock = ClockCheck(self.time_offset)
        self.clock.decided = not check_clock or source is None  # push-only callers own their clock
        self._pending: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._last_covered: float | None = None
        self._silent_since: float | None = None
        self._warned_silence = False
        self._first_frame_t: float | None = None
        self.source = source
        self.label = getattr(source, "label", "push")
        if source is not None:
            source.start(self.push)
            if isinstance(source, CsvSource):
                self._calibrate(0.0, now=True)

    @classmethod
    def from_csv(cls, path: str | Path, **kwargs) -> "GyroCameraMotion":
        return cls(CsvSource(path), **kwargs)

    @classmethod
    def from_zmq(cls, addr: str, topic: bytes = b"", **kwargs) -> "GyroCameraMotion":
        return cls(ZmqSource(addr, topic), **kwargs)

    @classmethod
    def from_udp(cls, host: str = "127.0.0.1", port: int = 0, **kwargs) -> "GyroCameraMotion":
        return cls(UdpSource(host, port), **kwargs)

    def push(self, t_imu: float, w_imu: Sequence[float]) -> None:
        """Add one sample (IMU clock seconds, IMU-frame rad/s); non-finite samples are counted and dropped."""
        w = np.asarray(w_imu, dtype=np.float64).reshape(-1)
        t = float(t_imu)
        if w.shape != (3,) or not math.isfinite(t) or not np.all(np.isfinite(w)):
            self.rejected += 1
            return
        with self._lock:
            self.samples += 1
            if not self.clock.decided:
                self._pending.append((t, w))  # mapped once the first frame time and enough samples are known
                return
            self.clock.check_rates(w[None])
            self._add(t, w)

    def _add(self, t: float, w: np.ndarray) -> None:
        t_frame, w = self.clock.apply(t, w)
        self.buffer.add(t_frame, self.imu_to_camera @ w)

    def _calibrate(self, t_frame: float, now: bool = False) -> None:
        """Decide the clock mapping from the pending samples (see ClockCheck) and release them into the buffer.

        A stream waits (up to 1 s of frames) for enough samples to judge their spacing, and anchors its newest
        sample at the current frame; a recorded CSV is decided at once, its first sample anchored at t_frame
        (video time 0, the CSV convention).
        """
        with self._lock:
            if self.clock.decided or not self._pending:
                return
            if not now and len(self._pending) < self.clock.needed:
                if self._first_frame_t is None or t_frame - self._first_frame_t < 1.0:
                    return
            ts = np.array([p[0] for p in self._pending])
            ws = np.array([p[1] for p in self._pending])
            self.clock.decide(ts, ws, t_frame, anchor_newest=not now)
            for t, w in self._pending:
                self._add(t, w)
            self._pending.clear()

    @property
    def coverage(self) -> float | None:
        """Percent of frame intervals that had gyro samples (None before the second frame)."""
        return 100.0 * self.covered / self.frames if self.frames else None

    @property
    def source_used(self) -> str:
        """What measured the last frame's rotation: "gyro", or "none" (no sample: a static camera assumed)."""
        return "gyro" if self.status in ("ok", "gyro hold", "init") else "none"

    def report(self) -> dict[str, object]:
        """For the run summary: coverage, sample counts and what the clock check assumed."""
        return {"provider": "gyro", "source": self.label, "frames": self.frames, "covered": self.covered,
                "coverage_pct": self.coverage, "samples": self.samples, "rejected": self.rejected,
                "bad_packets": getattr(self.source, "bad_packets", 0), "assumed": list(self.clock.assumed)}

    def _step(
        self, t_prev: float | None, t: float, frame: np.ndarray | None, bbox: np.ndarray | None
    ) -> tuple[np.ndarray, str]:
        if self._first_frame_t is None:
            self._first_frame_t = t
        if not self.clock.decided:
            self._calibrate(t)
        if t_prev is None:
            return IDENTITY.copy(), "init"
        ts, ws = self.buffer.window(t_prev, t)
        body, held_s, gap_s = integrate_body_rotation(ts, ws, t_prev, t, self.max_gap, self.max_step)
        status = "gyro gap" if gap_s > 0 else "gyro hold" if held_s > 0 else "ok"
        self._account(t, covered=gap_s < (t - t_prev))
        return body.T, status

    def _account(self, t: float, covered: bool) -> None:
        """Coverage counts, and the warning after ``silence_s`` of frames without a sample (frame clock)."""
        self.frames += 1
        if covered:
            self.covered += 1
            if self._warned_silence:
                log.warning("gyro %s: samples again after %.1f s without (coverage so far %.0f %%)", self.label,
                            t - (self._silent_since or t), self.coverage)
            self._silent_since, self._warned_silence = None, False
            return
        if self._silent_since is None:
            self._silent_since = t
        if not self._warned_silence and t - self._silent_since >= self.silence_s:
            self._warned_silence = True
            why = ("no sample received yet" if self.samples == 0 else
                   "samples arrive but none near the frame times (clock or time_offset mismatch?)"
                   if self.buffer.window(t - 1.0, t)[0].size == 0 else "samples too sparse")
            log.warning("gyro %s: %.1f s of frames without gyro samples (%s): the camera is assumed static there "
                        "(coverage so far %.0f %%)", self.label, t - self._silent_since, why, self.coverage)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


__all__ = [
    "CsvSource",
    "GyroCameraMotion",
    "GyroPacket",
    "GyroSource",
    "SampleBuffer",
    "UdpSource",
    "ZmqSource",
    "angular_velocity_at",
    "integrate_body_rotation",
    "parse_gyro_payload",
]
