"""Fan-out for many cameras: a ZeroMQ XSUB/XPUB forwarder between camera workers and subscribers.

    python -m stream.proxy [--cameras tcp://127.0.0.1:5555] [--subscribers tcp://127.0.0.1:5556]
                           [--curve-secret proxy.key_secret [--curve-allow clients.txt]] [--insecure-public]
                           [--hwm 64] [--duration S] [--json]

Camera workers connect to ``--cameras`` (``run_live.py --proxy tcp://HOST:5555 --camera-id cam1``) and publish on
``pose/<camera>/<track>``; subscribers connect to ``--subscribers`` as they would to one camera (``python -m
stream.subscribe tcp://HOST:5556``) and subscribe to ``pose/`` (everyone) or ``pose/<camera>/`` (one camera).
Subscriptions travel upstream, so a camera's publisher only sends what someone reads.

Drops: the subscriber side is an XPUB with a per-subscriber queue of ``--hwm`` messages; a full queue drops the
message for that subscriber only, as a direct publisher does (the subscriber sees a ``seq`` gap). Security as for
``run_live.py``: binding beyond loopback needs CURVE (``--curve-secret``, which covers both sides: cameras and
subscribers then need the proxy's public key; ``--curve-allow`` lists the subscribers let in) or
``--insecure-public``.
Prints one JSON line of counts at the end (messages, bytes, per-camera messages, subscriptions); exit 1 when
nothing was forwarded.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .protocol import TOPIC_PREFIX
from .publisher import _AllowList, check_bind_address, is_loopback

DEFAULT_CAMERAS = "tcp://127.0.0.1:5555"
DEFAULT_SUBSCRIBERS = "tcp://127.0.0.1:5556"


def camera_of(topic: bytes) -> str:
    """``pose/<camera>/<track>`` -> camera; ``pose/<track>`` (one camera, no id) -> ""."""
    rest = topic[len(TOPIC_PREFIX):] if topic.startswith(TOPIC_PREFIX) else topic
    camera, sep, _ = rest.partition(b"/")
    return camera.decode(errors="replace") if sep else ""


@dataclass
class ProxyStats:
    messages: int = 0
    bytes: int = 0
    subscriptions: int = 0
    unsubscriptions: int = 0
    per_camera: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "bytes": self.bytes,
                "subscriptions": self.subscriptions, "unsubscriptions": self.unsubscriptions,
                "cameras": len(self.per_camera), "per_camera": dict(sorted(self.per_camera.items()))}


class Proxy:
    """Binds both sides; ``run`` forwards until ``stop`` (thread-safe) or ``duration`` seconds.

    Forwarding is a poll loop rather than ``zmq.proxy`` so that it can count per camera and stop cleanly; it moves
    tens of thousands of messages a second (BENCHMARKS.md), above what a studio's cameras send.
    """

    def __init__(self, cameras: str = DEFAULT_CAMERAS, subscribers: str = DEFAULT_SUBSCRIBERS, *, hwm: int = 64,
                 curve_secret_key: bytes | None = None, curve_allowed_clients: Iterable[bytes] | None = None) -> None:
        if hwm < 1:
            raise ValueError(f"hwm must be >= 1, got {hwm}")
        if curve_allowed_clients is not None and curve_secret_key is None:
            raise ValueError("curve_allowed_clients needs curve_secret_key")
        self.stats = ProxyStats()
        self._halt = threading.Event()
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = self._ctx.socket(zmq.XPUB)
        try:
            if curve_allowed_clients is not None:
                # The allow-list guards the subscriber side; cameras need only the proxy's public key.
                self._auth = ThreadAuthenticator(self._ctx)
                self._auth.start()
                self._auth.configure_curve_callback("subscribers",
                                                    credentials_provider=_AllowList(curve_allowed_clients))
                self._auth.configure_curve(domain="cameras", location=zmq.auth.CURVE_ALLOW_ANY)
                self._xsub.zap_domain = b"cameras"
                self._xpub.zap_domain = b"subscribers"
            for sock in (self._xsub, self._xpub):
                sock.setsockopt(zmq.LINGER, 0)
                if curve_secret_key is not None:
                    if not zmq.has("curve"):
                        raise RuntimeError("this libzmq was built without CURVE support")
                    sock.curve_secretkey = curve_secret_key
                    sock.curve_publickey = zmq.curve_public(curve_secret_key)
                    sock.curve_server = True
            self._xsub.setsockopt(zmq.RCVHWM, hwm * 16)  # many cameras feed this one queue
            self._xpub.setsockopt(zmq.SNDHWM, hwm)
            self._xsub.bind(check_bind_address(cameras))
            self._xpub.bind(check_bind_address(subscribers))
        except Exception:
            self.close()
            raise
        self.cameras_endpoint = self._xsub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscribers_endpoint = self._xpub.getsockopt_string(zmq.LAST_ENDPOINT)

    def run(self, duration: float | None = None) -> ProxyStats:
        poller = zmq.Poller()
        poller.register(self._xsub, zmq.POLLIN)
        poller.register(self._xpub, zmq.POLLIN)
        deadline = None if duration is None else time.monotonic() + duration
        stats = self.stats
        while not self._halt.is_set() and (deadline is None or time.monotonic() < deadline):
            ready = dict(poller.poll(100))
            if self._xpub in ready:  # subscriptions travel upstream to every camera
                while True:
                    try:
                        sub = self._xpub.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if sub[:1] == b"\x01":
                        stats.subscriptions += 1
                    elif sub[:1] == b"\x00":
                        stats.unsubscriptions += 1
                    self._xsub.send(sub)
            if self._xsub in ready:
                for _ in range(1024):  # bounded so subscriptions are never starved
                    try:
                        frames = self._xsub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._xpub.send_multipart(frames, zmq.NOBLOCK)  # a full subscriber queue drops silently
                    stats.messages += 1
                    stats.bytes += sum(len(f) for f in frames)
                    camera = camera_of(frames[0]) if frames else ""
                    stats.per_camera[camera] = stats.per_camera.get(camera, 0) + 1
        return stats

    def stop(self) -> None:
        self._halt.set()

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        for sock in (self._xsub, self._xpub):
            if not sock.closed:
                sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_security(addr: str, proxy_key: str | None, insecure_public: bool) -> dict[str, Any]:
    """Publisher keyword arguments for a camera worker connecting to a proxy at ``addr`` (``--proxy``): the proxy's
    CURVE public key when given; beyond loopback without one needs ``insecure_public``. ValueError otherwise."""
    check_bind_address(addr)
    kwargs: dict[str, Any] = {"connect": addr}
    if proxy_key:
        from .keys import load_public

        kwargs["curve_server_key"] = load_public(proxy_key)
    elif not is_loopback(addr) and not insecure_public:
        raise ValueError(f"{addr}: sending the pose stream to another host unencrypted; pass --proxy-key "
                         "proxy.key (the proxy runs with --curve-secret) or, knowingly, --insecure-public")
    return kwargs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stream.proxy", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", default=DEFAULT_CAMERAS, metavar="ADDR",
                   help=f"where camera workers connect (XSUB bind; default {DEFAULT_CAMERAS})")
    p.add_argument("--subscribers", default=DEFAULT_SUBSCRIBERS, metavar="ADDR",
                   help=f"where subscribers connect (XPUB bind; default {DEFAULT_SUBSCRIBERS})")
    p.add_argument("--curve-secret", default=None, metavar="KEYFILE", help="encrypt both sides with this key pair")
    p.add_argument("--curve-allow", default=None, metavar="CLIENTS",
                   help="with --curve-secret: accept only these subscriber public keys (cameras need only the "
                        "proxy's public key)")
    p.add_argument("--insecure-public", action="store_true", help="bind beyond loopback without encryption")
    p.add_argument("--hwm", type=int, default=64, help="per-subscriber queue in messages (default 64)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print the end-of-run counts as JSON (default: a line)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .keys import KeyFileError, load_allowed, load_secret

    kwargs: dict[str, Any] = {}
    try:
        for flag, addr in (("--cameras", args.cameras), ("--subscribers", args.subscribers)):
            check_bind_address(addr)
            if not is_loopback(addr) and not args.curve_secret and not args.insecure_public:
                raise ValueError(f"{flag} {addr}: binding beyond loopback would carry people's poses unencrypted; "
                                 "pass --curve-secret KEYFILE or, knowingly, --insecure-public")
        if args.curve_allow and not args.curve_secret:
            raise ValueError("--curve-allow needs --curve-secret")
        if args.curve_secret:
            kwargs["curve_secret_key"] = load_secret(args.curve_secret)[1]
        if args.curve_allow:
            kwargs["curve_allowed_clients"] = load_allowed(args.curve_allow)
        proxy = Proxy(args.cameras, args.subscribers, hwm=args.hwm, **kwargs)
    except (ValueError, KeyFileError, zmq.ZMQError, RuntimeError) as exc:
        print(f"python -m stream.proxy: error: {exc}", file=sys.stderr)
        return 2
    if args.insecure_public and not args.curve_secret:
        print("python -m stream.proxy: warning: --insecure-public: the proxy is reachable WITHOUT encryption",
              file=sys.stderr)
    previous = {sig: signal.signal(sig, lambda *_: proxy.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(json.dumps({"cameras": proxy.cameras_endpoint, "subscribers": proxy.subscribers_endpoint}),
          file=sys.stderr, flush=True)
    try:
        stats = proxy.run(args.duration).as_dict()
    finally:
        proxy.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(json.dumps(stats), flush=True)
    else:
        print(f"forwarded {stats['messages']} messages ({stats['bytes']} bytes) from {stats['cameras']} camera(s), "
              f"{stats['subscriptions']} subscription(s)", flush=True)
    return 0 if stats["messages"] else 1


if __name__ == "__main__":
    sys.exit(main())
