"""Subscriber side of the pose stream: a small library and a command that prints and measures it.

    python -m stream.subscribe tcp://127.0.0.1:5556 [--count N] [--json] [--timeout S] [--quiet]

One line per message (JSON with ``--json``), then a summary: latency p50/p99/max in ms of
``t_receive - t_capture`` and ``t_receive - t_publish`` (monotonic clock: same host only), messages, rate and
``seq`` gaps (messages the publisher sent that never arrived, e.g. dropped for a slow reader). Stops on Ctrl-C,
SIGTERM, ``--count`` or ``--timeout`` seconds without a message (exit 1 if nothing ever arrived).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, Iterator, NamedTuple, Union

import msgspec
import numpy as np
import zmq

from .protocol import TOPIC_PREFIX, PoseMessage, decode, to_dict

#: A Z85 server public key (an ephemeral client key pair is made), or (server_public, client_public, client_secret).
CurveSpec = Union[bytes, str, tuple[bytes, bytes, bytes]]


class Received(NamedTuple):
    msg: PoseMessage
    topic: bytes
    t_receive: float  # time.monotonic() right after the bytes arrived, before decoding


def _as_bytes(key: bytes | str) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


class Subscriber:
    """A SUB socket connected to a publisher; ``recv`` waits at most ``timeout`` and never swallows Ctrl-C."""

    def __init__(
        self,
        addr: str,
        topic: bytes = TOPIC_PREFIX,
        curve: CurveSpec | None = None,
        rcvhwm: int = 64,
        rcvbuf: int = 1 << 16,
    ) -> None:
        """rcvhwm (messages) and rcvbuf (kernel bytes, -1 = OS default) bound the backlog a slow reader lags by."""
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
            self._sock.setsockopt(zmq.RCVBUF, rcvbuf)
            if curve is not None:
                self._setup_curve(curve)
            self._sock.setsockopt(zmq.SUBSCRIBE, topic)
            self._sock.connect(addr)
        except Exception:
            self.close()
            raise

    def _setup_curve(self, curve: CurveSpec) -> None:
        if isinstance(curve, (bytes, str)):
            server = _as_bytes(curve)
            public, secret = zmq.curve_keypair()
        else:
            server, public, secret = (_as_bytes(k) for k in curve)
        if len(server) != 40:
            raise ValueError("the CURVE server key must be a 40-character Z85 public key")
        self._sock.curve_serverkey = server
        self._sock.curve_publickey = public
        self._sock.curve_secretkey = secret

    def recv(self, timeout: float | None = None) -> Received | None:
        """Next message, or None after ``timeout`` seconds without one (None = wait forever).

        Raises ValueError for a payload that is not a pose message (the socket stays usable).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Short polls keep KeyboardInterrupt responsive even while waiting forever.
            wait = 100 if deadline is None else max(0, min(100, int((deadline - time.monotonic()) * 1000)))
            if self._sock.poll(wait):
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
                t_receive = time.monotonic()
                if len(frames) != 2:
                    raise ValueError(f"expected [topic, payload], got {len(frames)} frames")
                return Received(decode(frames[1]), frames[0], t_receive)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    addr: str, topic: bytes = TOPIC_PREFIX, curve: CurveSpec | None = None, timeout: float | None = None
) -> Iterator[PoseMessage]:
    """Yield pose messages from ``addr`` until ``timeout`` seconds pass without one (None = forever)."""
    with Subscriber(addr, topic, curve) as sub:
        while True:
            got = sub.recv(timeout)
            if got is None:
                return
            yield got.msg


class LatencyStats:
    """Accumulates receive latencies and per-track ``seq`` gaps for the end-of-run summary."""

    def __init__(self) -> None:
        self.capture_ms: list[float] = []
        self.publish_ms: list[float] = []
        self.gaps = 0
        self.decode_errors = 0
        self._last_seq: dict[int, int] = {}
        self._first: float | None = None
        self._last: float | None = None

    def add(self, got: Received) -> None:
        msg = got.msg
        self.capture_ms.append((got.t_receive - msg.t_capture) * 1e3)
        self.publish_ms.append((got.t_receive - msg.t_publish) * 1e3)
        last = self._last_seq.get(msg.track)
        if last is not None and msg.seq > last + 1:
            self.gaps += msg.seq - last - 1
        self._last_seq[msg.track] = msg.seq
        self._first = got.t_receive if self._first is None else self._first
        self._last = got.t_receive

    @staticmethod
    def _percentiles(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p99": None, "max": None}
        arr = np.asarray(values)
        return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}

    def summary(self) -> dict[str, Any]:
        n = len(self.capture_ms)
        span = (self._last - self._first) if n > 1 else 0.0
        return {
            "messages": n,
            "seq_gaps": self.gaps,
            "decode_errors": self.decode_errors,
            "duration_s": span,
            "rate_hz": (n - 1) / span if span > 0 else None,
            "latency_capture_ms": self._percentiles(self.capture_ms),
            "latency_publish_ms": self._percentiles(self.publish_ms),
        }


def _human_line(got: Received) -> str:
    m = got.msg
    root = "(" + ", ".join(f"{x:+.3f}" for x in m.root_trans) + ")" if m.root_trans else "-"
    lat = (got.t_receive - m.t_capture) * 1e3
    return f"seq={m.seq} track={m.track} {m.status} root={root} latency={lat:.2f}ms model={m.model or '-'}"


def _human_summary(s: dict[str, Any]) -> str:
    def fmt(d: dict[str, float | None]) -> str:
        return "n/a" if d["p50"] is None else f"p50 {d['p50']:.3f} p99 {d['p99']:.3f} max {d['max']:.3f}"

    return (
        f"{s['messages']} messages, {s['seq_gaps']} seq gaps, {s['decode_errors']} undecodable; "
        f"capture->receive ms: {fmt(s['latency_capture_ms'])}; publish->receive ms: {fmt(s['latency_publish_ms'])}"
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.subscribe", description=__doc__.split("\n\n")[0])
    parser.add_argument("addr", help="publisher endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--topic", default=TOPIC_PREFIX.decode(), help="topic prefix (default: pose/)")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, then {'summary': ...}")
    parser.add_argument("--timeout", type=float, default=None, help="give up after S seconds without a message")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--curve-server-key", default=None, help="Z85 server public key (enables CURVE)")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("--count must be >= 1")

    signal.signal(signal.SIGTERM, _raise_interrupt)
    stats = LatencyStats()
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    timed_out = False
    try:
        with Subscriber(args.addr, args.topic.encode(), args.curve_server_key) as sub:
            while args.count is None or len(stats.capture_ms) < args.count:
                try:
                    got = sub.recv(args.timeout)
                except ValueError as exc:
                    stats.decode_errors += 1
                    print(f"skipping undecodable message: {exc}", file=sys.stderr)
                    continue
                if got is None:
                    timed_out = True
                    break
                stats.add(got)
                if not args.quiet:
                    if args.json:
                        line = encoder.encode({**to_dict(got.msg), "t_receive": got.t_receive}).decode()
                    else:
                        line = _human_line(got)
                    out.write(line + "\n")
                    out.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # e.g. piped into `head`: the reader left, nothing more to say
        return 0
    summary = stats.summary()
    try:
        print(encoder.encode({"summary": summary}).decode() if args.json else _human_summary(summary), flush=True)
    except BrokenPipeError:
        return 0
    return 1 if timed_out and not stats.capture_ms else 0


if __name__ == "__main__":
    sys.exit(main())
