"""ZeroMQ PUB end of the pose stream: bind, stamp, encode, send without ever blocking the live loop.

Drops. A PUB socket keeps one queue per subscriber, capped at ``hwm`` messages (plus the OS socket buffers).
By default (``nodrop=False``) a full queue drops the message *for that subscriber only*: a slow viewer never
costs the game engine a frame, and the publisher cannot see the drop (subscribers see it as a ``seq`` gap,
which ``stream.subscribe`` reports). With ``nodrop=True`` a full queue makes the whole send fail with
``zmq.Again``; the message is then dropped for everyone and counted in ``dropped``. Either way ``publish``
returns at once.

Clock. ``t_publish`` is ``time.monotonic()`` at send time, the same clock as ``t_capture``, so latencies are only
meaningful on the publishing host (or between hosts whose monotonic clocks are known to agree).

Security. The default address is loopback. When binding wider, pass ``curve_secret_key`` (see
``curve_keypair``): traffic is then encrypted and clients need the server public key; add
``curve_allowed_clients`` to also refuse clients whose public key is not listed.
"""
from __future__ import annotations

import time
from typing import Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .protocol import PoseMessage, encode, topic, validate

DEFAULT_ADDR = "tcp://127.0.0.1:5556"


def curve_keypair() -> tuple[bytes, bytes]:
    """A new CURVE key pair as Z85 text (public, secret); keep the secret one out of version control."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")
    return zmq.curve_keypair()


class _AllowList:
    """ZAP credentials provider: accept exactly the listed Z85 client public keys."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = {k if isinstance(k, bytes) else k.encode() for k in keys}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


class Publisher:
    """Binds a PUB socket and sends one ``[topic, payload]`` message per ``publish`` call, never blocking.

    Args:
        addr: ZeroMQ endpoint to bind; ``tcp://127.0.0.1:*`` picks a free port (see ``endpoint``).
        hwm: per-subscriber queue length in messages (small: stale poses are worthless).
        sndbuf: kernel send buffer per connection in bytes (-1 = OS default, which on loopback can hold
            hundreds of messages a slow reader would see late).
        nodrop: fail (and count) a send when any subscriber's queue is full, instead of the per-subscriber
            silent drop; see the module docstring.
        curve_secret_key: Z85 server secret key; enables CURVE encryption.
        curve_allowed_clients: Z85 client public keys allowed to connect (needs ``curve_secret_key``).
        validate: check every message with ``protocol.validate`` before sending (costs ~20 us).
    """

    def __init__(
        self,
        addr: str = DEFAULT_ADDR,
        *,
        hwm: int = 4,
        sndbuf: int = 1 << 16,
        nodrop: bool = False,
        curve_secret_key: bytes | None = None,
        curve_allowed_clients: Iterable[bytes] | None = None,
        validate: bool = False,
    ) -> None:
        if hwm < 1:
            raise ValueError(f"hwm must be >= 1, got {hwm}")
        if curve_allowed_clients is not None and curve_secret_key is None:
            raise ValueError("curve_allowed_clients needs curve_secret_key")
        self.sent = 0
        self.dropped = 0
        self._validate = validate
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._sock = self._ctx.socket(zmq.PUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.SNDHWM, hwm)
            self._sock.setsockopt(zmq.SNDBUF, sndbuf)
            if nodrop:
                self._sock.setsockopt(zmq.XPUB_NODROP, 1)
            if curve_secret_key is not None:
                self._setup_curve(curve_secret_key, curve_allowed_clients)
            self._sock.bind(addr)
        except Exception:
            self.close()
            raise
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _setup_curve(self, secret: bytes, allowed: Iterable[bytes] | None) -> None:
        if not zmq.has("curve"):
            raise RuntimeError("this libzmq was built without CURVE support")
        secret = secret if isinstance(secret, bytes) else secret.encode()
        if len(secret) != 40:
            raise ValueError("curve_secret_key must be a 40-character Z85 key (see curve_keypair())")
        if allowed is not None:
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=_AllowList(allowed))
        self._sock.curve_secretkey = secret
        self._sock.curve_publickey = zmq.curve_public(secret)
        self._sock.curve_server = True

    def publish(self, msg: PoseMessage) -> bool:
        """Stamp ``msg.t_publish`` (monotonic s), encode and send on ``pose/<track>``; False if dropped."""
        if self._validate:
            validate(msg)
        msg.t_publish = time.monotonic()
        frames = [topic(msg.track), encode(msg)]
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block until a subscriber connects (or ``timeout`` s); True if one did.

        PUB/SUB drops what is sent before a subscriber has joined (ZeroMQ's slow joiner), so a short recording
        or test run can wait here first. Uses a socket monitor; the subscription follows the connection within
        a round trip, hence the short grace period.
        """
        monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_ACCEPTED)
        try:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if monitor.poll(int(left * 1000) + 1):
                    monitor.recv_multipart()
                    time.sleep(0.2)
                    return True
            return False
        finally:
            self._sock.disable_monitor()
            monitor.close(linger=0)

    def close(self) -> None:
        """Close the socket without lingering; idempotent."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if not self._sock.closed:
            self._sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_ADDR", "Publisher", "curve_keypair"]
