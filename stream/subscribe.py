"""Subscriber side of the pose stream: a small library and a command that prints and measures it.

    python -m stream.subscribe tcp://127.0.0.1:5556 [--count N] [--json] [--timeout S] [--quiet]
    python -m stream.subscribe tcp://HOST:5556 --curve-server-key server.key [--curve-client me.key_secret]

One line per message (JSON with ``--json``), then a summary: latency p50/p99/max in ms of
``t_receive - t_capture`` and ``t_receive - t_publish`` (monotonic clock: same host only), messages, rate and
``seq`` gaps (messages the publisher sent that never arrived, e.g. dropped for a slow reader). Stops on Ctrl-C,
SIGTERM, ``--count`` or ``--timeout`` seconds without a message (exit 1 if nothing ever arrived).

Two reading modes. ``latest`` (the human live view's default, ``--latest``): a background thread drains the
socket as messages arrive and keeps only the newest one per track, so however slowly the caller reads it gets
the present (superseded messages are counted, not reported as gaps). ``every`` (``--json``'s default,
``--every``): every message in order through ZeroMQ's queues, which lag a slow reader by up to the queue bound
(docs/protocol.md gives it as measured). Heartbeats (``lost`` messages sent while no frame arrives) are not
frames: they are counted separately and left out of the latency figures and gap counts.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
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
    #: time.monotonic() right after the bytes arrived, before decoding; in latest mode, when recv handed the
    #: message over (so t_receive - t_capture is the age of what the reader sees)
    t_receive: float
    superseded: int = 0  # latest mode: newer messages of this track replaced this many unread ones before it


class AuthError(RuntimeError):
    """The publisher refused this client's CURVE handshake (wrong server key, or a key not on its allow-list)."""


def _as_bytes(key: bytes | str) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _key(spec: bytes | str) -> bytes:
    """Inline Z85 key or a key file (stream.keys)."""
    from stream.keys import load_public

    return load_public(spec)


class _LatestSlots:
    """Background reader keeping the newest raw message per topic; the consumer takes the oldest-updated one."""

    def __init__(self, sock: zmq.Socket) -> None:
        self._sock = sock
        self._cond = threading.Condition()
        self._pending: dict[bytes, tuple[list[bytes], float, int]] = {}
        self._halt = threading.Event()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="pose-latest-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                if not self._sock.poll(50):
                    continue
                while True:
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    key = frames[0] if frames else b""
                    with self._cond:
                        old = self._pending.pop(key, None)
                        self._pending[key] = (frames, time.monotonic(), 0 if old is None else old[2] + 1)
                        self._cond.notify()
        except zmq.ZMQError as exc:  # socket closed under us: stop quietly
            self.error = exc

    def take(self, timeout_ms: int) -> tuple[list[bytes], int] | None:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout_ms / 1000)
            if not self._pending:
                return None
            key = next(iter(self._pending))
            frames, _, superseded = self._pending.pop(key)
        return frames, superseded

    def close(self) -> None:
        self._halt.set()
        self._thread.join(timeout=1.0)


class Subscriber:
    """A SUB socket connected to a publisher; ``recv`` waits at most ``timeout`` and never swallows Ctrl-C.

    curve: the server's public key (Z85 text or a key file; an ephemeral client key pair is made), or
        (server_public, client_public, client_secret) for a publisher with an allow-list.
    latest: keep only the newest message per track (see the module docstring); else every message in order.
    """

    def __init__(
        self,
        addr: str,
        topic: bytes = TOPIC_PREFIX,
        curve: CurveSpec | None = None,
        rcvhwm: int = 64,
        rcvbuf: int = 1 << 16,
        latest: bool = False,
    ) -> None:
        """rcvhwm (messages) and rcvbuf (kernel bytes, -1 = OS default) bound the backlog a slow reader lags by."""
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._monitor: zmq.Socket | None = None
        self._latest: _LatestSlots | None = None
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
            self._sock.setsockopt(zmq.RCVBUF, rcvbuf)
            if curve is not None:
                self._setup_curve(curve)
                self._monitor = self._sock.get_monitor_socket(
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
            self._sock.setsockopt(zmq.SUBSCRIBE, topic)
            self._sock.connect(addr)
            if latest:
                self._latest = _LatestSlots(self._sock)
        except Exception:
            self.close()
            raise

    def _setup_curve(self, curve: CurveSpec) -> None:
        if isinstance(curve, (bytes, str)):
            server = _key(curve)
            public, secret = zmq.curve_keypair()
        else:
            server, public, secret = (_as_bytes(k) for k in curve)
            server = _key(server)
        if len(server) != 40:
            raise ValueError("the CURVE server key must be a 40-character Z85 public key")
        self._sock.curve_serverkey = server
        self._sock.curve_publickey = public
        self._sock.curve_secretkey = secret

    def _check_auth(self) -> None:
        """Raise AuthError once the publisher has refused the handshake (otherwise it would just be silent)."""
        if self._monitor is not None and self._monitor.poll(0):
            from zmq.utils.monitor import parse_monitor_message

            event = parse_monitor_message(self._monitor.recv_multipart())
            # pyzmq's stub types the event as int; at run time it already is a zmq.Event (Event(e) is e).
            raise AuthError(f"the publisher refused the CURVE handshake ({zmq.Event(event['event']).name}): wrong server "
                            "public key, or this client's key is not on its allow-list")

    def recv(self, timeout: float | None = None) -> Received | None:
        """Next message, or None after ``timeout`` seconds without one (None = wait forever).

        Raises ValueError for a payload that is not a pose message (the socket stays usable).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Short polls keep KeyboardInterrupt responsive even while waiting forever.
            wait = 100 if deadline is None else max(0, min(100, int((deadline - time.monotonic()) * 1000)))
            if self._latest is not None:
                taken = self._latest.take(wait)
                if taken is not None:
                    frames, superseded = taken
                    if len(frames) != 2:
                        raise ValueError(f"expected [topic, payload], got {len(frames)} frames")
                    return Received(decode(frames[1]), frames[0], time.monotonic(), superseded)
            elif self._sock.poll(wait):
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
                t_receive = time.monotonic()
                if len(frames) != 2:
                    raise ValueError(f"expected [topic, payload], got {len(frames)} frames")
                return Received(decode(frames[1]), frames[0], t_receive)
            self._check_auth()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        if self._latest is not None:
            self._latest.close()
            self._latest = None
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if not self._sock.closed:
            self._sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    addr: str, topic: bytes = TOPIC_PREFIX, curve: CurveSpec | None = None, timeout: float | None = None,
    latest: bool = False,
) -> Iterator[PoseMessage]:
    """Yield pose messages from ``addr`` until ``timeout`` seconds pass without one (None = forever).

    latest: only the newest message per track at each step (a slow consumer always gets the present)."""
    with Subscriber(addr, topic, curve, latest=latest) as sub:
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
        self.superseded = 0
        self.heartbeats = 0
        self.decode_errors = 0
        self._last_seq: dict[int, int] = {}
        self._first: float | None = None
        self._last: float | None = None

    def add(self, got: Received) -> None:
        msg = got.msg
        if msg.heartbeat:  # not a frame: its t_capture is "now" and its seq repeats the last frame's
            self.heartbeats += 1
            return
        self.superseded += got.superseded
        self.capture_ms.append((got.t_receive - msg.t_capture) * 1e3)
        self.publish_ms.append((got.t_receive - msg.t_publish) * 1e3)
        last = self._last_seq.get(msg.track)
        if last is not None and msg.seq > last + 1:
            self.gaps += max(0, msg.seq - last - 1 - got.superseded)
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
        span = (self._last - self._first) if n > 1 and self._last is not None and self._first is not None else 0.0
        return {
            "messages": n,
            "seq_gaps": self.gaps,
            "superseded": self.superseded,
            "heartbeats": self.heartbeats,
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
        f"{s['messages']} messages, {s['seq_gaps']} seq gaps, {s['superseded']} superseded (latest mode), "
        f"{s['heartbeats']} heartbeats, {s['decode_errors']} undecodable; "
        f"capture->receive ms: {fmt(s['latency_capture_ms'])}; publish->receive ms: {fmt(s['latency_publish_ms'])}"
    )


#: Longest single wait of the CLI's loop: how soon a stop request (Ctrl-C, SIGTERM) is seen.
_POLL_S = 0.1


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT / SIGTERM set ``stop`` (the loop finishes its message and prints the summary); a second one raises
    KeyboardInterrupt. Why a flag and not an exception at once: an exception raised at an arbitrary bytecode can
    land inside the message slots' lock handling and leave the reader thread waiting on a lock nobody holds.
    -> the previous handlers, for restoring."""
    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.subscribe", description=__doc__.split("\n\n")[0])
    parser.add_argument("addr", help="publisher endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--topic", default=TOPIC_PREFIX.decode(), help="topic prefix (default: pose/)")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, then {'summary': ...}")
    parser.add_argument("--timeout", type=float, default=None, help="give up after S seconds without a message")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--curve-server-key", default=None, metavar="KEY|FILE",
                        help="the publisher's public key: Z85 text or its .key file (enables CURVE)")
    parser.add_argument("--curve-client", default=None, metavar="KEYFILE",
                        help="this client's .key_secret file, for a publisher with --curve-allow "
                             "(default: a throw-away key pair)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--latest", dest="latest", action="store_true", default=None,
                      help="newest message per track only, never a backlog (default for the human view)")
    mode.add_argument("--every", dest="latest", action="store_false",
                      help="every message in order through the queues (default with --json)")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("--count must be >= 1")
    if args.curve_client and not args.curve_server_key:
        parser.error("--curve-client needs --curve-server-key")
    latest = (not args.json) if args.latest is None else args.latest
    from stream.keys import KeyFileError, load_public, load_secret

    curve: CurveSpec | None = None
    try:
        if args.curve_server_key:
            server = load_public(args.curve_server_key)
            curve = (server, *load_secret(args.curve_client)) if args.curve_client else server
    except KeyFileError as exc:
        parser.error(str(exc))

    stop = threading.Event()
    previous_handlers = _stop_on_signals(stop)
    stats = LatencyStats()
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    timed_out = False
    try:
        with Subscriber(args.addr, args.topic.encode(), curve, latest=latest) as sub:
            last_message = time.monotonic()
            while not stop.is_set() and (args.count is None or len(stats.capture_ms) < args.count):
                left = None if args.timeout is None else args.timeout - (time.monotonic() - last_message)
                try:
                    got = sub.recv(_POLL_S if left is None else max(0.0, min(_POLL_S, left)))
                except ValueError as exc:
                    stats.decode_errors += 1
                    print(f"skipping undecodable message: {exc}", file=sys.stderr)
                    continue
                if got is None:
                    if left is not None and left <= _POLL_S:
                        timed_out = True
                        break
                    continue
                last_message = time.monotonic()
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
    except AuthError as exc:
        print(f"python -m stream.subscribe: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head`: the reader left, nothing more to say
        return 0
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    if timed_out and not stats.capture_ms:
        hint = "" if curve else " (if the publisher uses CURVE, pass --curve-server-key)"
        print(f"python -m stream.subscribe: no message within {args.timeout:g} s from {args.addr}{hint}",
              file=sys.stderr)
    summary = stats.summary()
    try:
        print(encoder.encode({"summary": summary}).decode() if args.json else _human_summary(summary), flush=True)
    except BrokenPipeError:
        return 0
    return 1 if timed_out and not stats.capture_ms else 0


if __name__ == "__main__":
    sys.exit(main())
