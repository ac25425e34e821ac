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
``curve_keypair``, or key files from ``python -m stream.keys``): traffic is then encrypted and clients need the
server public key; add ``curve_allowed_clients`` to also refuse clients whose public key is not listed.
``run_live.py`` refuses a non-loopback address without CURVE unless told ``--insecure-public``
(``is_loopback``); ``check_bind_address`` refuses ports libzmq would silently wrap.
"""
from __future__ import annotations

import ipaddress
import re
import time
from typing import Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .protocol import TOPIC_PREFIX, PoseMessage, encode, topic, validate

DEFAULT_ADDR = "tcp://127.0.0.1:5556"
_LOCAL_TRANSPORTS = ("ipc://", "inproc://")


def check_bind_address(addr: str) -> str:
    """ValueError (one line) for an endpoint ZeroMQ would mis-read; returns ``addr``.

    Why: libzmq takes the port modulo 65536, so ``tcp://127.0.0.1:99999`` silently binds port 34463.
    """
    if addr.startswith(_LOCAL_TRANSPORTS):
        return addr
    if not addr.startswith("tcp://"):
        raise ValueError(f"{addr!r}: expected tcp://HOST:PORT (or ipc://PATH)")
    host, sep, port = addr[len("tcp://"):].rpartition(":")
    if not sep or not host:
        raise ValueError(f"{addr!r}: expected tcp://HOST:PORT")
    if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{addr!r}: port must be 1..65535 or * (a free one), got {port!r}")
    return addr


def is_loopback(addr: str) -> bool:
    """True when binding ``addr`` is reachable from this host only (loopback tcp, ipc, inproc)."""
    if addr.startswith(_LOCAL_TRANSPORTS):
        return True
    host = addr[len("tcp://"):].rpartition(":")[0].strip("[]") if addr.startswith("tcp://") else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: reachable from elsewhere
        return False


def curve_keypair() -> tuple[bytes, bytes]:
    """A new CURVE key pair as Z85 text (public, secret); keep the secret one out of version control."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")
    return zmq.curve_keypair()


_CAMERA_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_camera_id(camera: str) -> str:
    """ValueError (one line) unless ``camera`` is 1-64 of ``A-Z a-z 0-9 _ . -`` (it becomes a topic segment)."""
    if not isinstance(camera, str) or not _CAMERA_ID.fullmatch(camera):
        raise ValueError(f"camera id {camera!r}: use 1-64 letters, digits, '_', '.' or '-' (no '/')")
    return camera


def camera_topic(camera: str, track: int) -> bytes:
    """Topic of a track of one camera among many: ``b"pose/<camera>/<track>"``.

    Additive to ``protocol.topic``: subscribing to ``b"pose/"`` still gets everyone, ``b"pose/<camera>/"`` gets
    one camera (the trailing slash keeps ``cam1`` from matching ``cam10``).
    """
    if track < 0:
        raise ValueError(f"track id must be >= 0, got {track}")
    return TOPIC_PREFIX + check_camera_id(camera).encode() + b"/" + str(int(track)).encode()


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
        watch_subscribers: count connections from construction on, so ``wait_for_subscriber`` also sees a
            subscriber that connected before it was called (the monitor stops in ``wait_for_subscriber``).
        camera_id: publish on ``pose/<camera>/<track>`` (``camera_topic``) instead of ``pose/<track>``, for many
            cameras behind one proxy (``python -m stream.proxy``); None keeps the one-camera topics.
        connect: connect to this endpoint (a proxy's XSUB side) instead of binding ``addr``.
        curve_server_key: with ``connect``: the proxy's Z85 public key (the proxy runs CURVE; we are a client).
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
        watch_subscribers: bool = False,
        camera_id: str | None = None,
        connect: str | None = None,
        curve_server_key: bytes | None = None,
    ) -> None:
        self.camera_id = check_camera_id(camera_id) if camera_id is not None else None
        if curve_server_key is not None and (connect is None or curve_secret_key is not None):
            raise ValueError("curve_server_key is for a publisher that connects to a proxy (connect=...), as a "
                             "CURVE client; a binding publisher uses curve_secret_key")
        if hwm < 1:
            raise ValueError(f"hwm must be >= 1, got {hwm}")
        if curve_allowed_clients is not None and curve_secret_key is None:
            raise ValueError("curve_allowed_clients needs curve_secret_key")
        self.sent = 0
        self.dropped = 0
        self._monitor: zmq.Socket | None = None
        self._subscribers = 0
        self._validate = validate
        self._topics: dict[int, bytes] = {}   # track -> topic bytes
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
            if watch_subscribers:  # from the start: wait_for_subscriber then sees one that joined before it
                self._start_monitor()
            if curve_server_key is not None:  # CURVE client of a proxy: an ephemeral key pair of our own
                public, secret = curve_keypair()
                self._sock.curve_serverkey = curve_server_key
                self._sock.curve_publickey, self._sock.curve_secretkey = public, secret
            if connect is not None:
                self._sock.connect(check_bind_address(connect))
            else:
                self._sock.bind(check_bind_address(addr))
        except Exception:
            self.close()
            raise
        self.endpoint: str = connect if connect is not None else self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

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
        """Stamp ``msg.t_publish`` (monotonic s), encode and send on ``pose/<track>`` (``pose/<camera>/<track>``
        with a camera id); False if dropped."""
        if self._validate:
            validate(msg)
        msg.t_publish = time.monotonic()
        key = self._topics.get(msg.track)
        if key is None:  # a new track: its topic once (the check of the id included), not on every message
            key = topic(msg.track) if self.camera_id is None else camera_topic(self.camera_id, msg.track)
            if len(self._topics) >= 1024:  # ids only grow: forget old tracks' topics now and then
                self._topics.clear()
            self._topics[msg.track] = key
        payload = encode(msg)
        try:
            # what send_multipart([key, payload]) does, without its per-call type checks of the two parts
            self._sock.send(key, zmq.SNDMORE | zmq.NOBLOCK)
            self._sock.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def _drain_monitor(self, wait_ms: int) -> None:
        """Count connection events (handshake done = +1, disconnect = -1); waits up to ``wait_ms`` for one."""
        assert self._monitor is not None
        from zmq.utils.monitor import parse_monitor_message

        while self._monitor.poll(wait_ms):
            event = parse_monitor_message(self._monitor.recv_multipart())["event"]
            self._subscribers += 1 if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else -1
            wait_ms = 0

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block until a subscriber is connected (or ``timeout`` s); True if one is, even if it joined earlier.

        PUB/SUB drops what is sent before a subscriber has joined (ZeroMQ's slow joiner), so a short recording
        or test run can wait here first. With ``watch_subscribers`` the count started at construction; the
        monitor stops here either way (it is for start-up only: an unread monitor queue would grow). The
        subscription follows the connection within a round trip, hence the short grace period.
        """
        if self._monitor is None:
            self._start_monitor()
        try:
            deadline = time.monotonic() + timeout
            self._drain_monitor(0)
            while self._subscribers <= 0 and (left := deadline - time.monotonic()) > 0:
                self._drain_monitor(int(left * 1000) + 1)
            if self._subscribers > 0:
                time.sleep(0.2)
                return True
            return False
        finally:
            self._stop_monitor()

    def _start_monitor(self) -> None:
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None

    def close(self) -> None:
        """Close the socket without lingering; idempotent."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if not self._sock.closed:
            self._stop_monitor()
            self._sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_ADDR", "Publisher", "camera_topic", "check_bind_address", "check_camera_id", "curve_keypair",
           "is_loopback"]
