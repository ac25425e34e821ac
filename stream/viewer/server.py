"""The viewer's server: the page and its files over HTTP, the pose stream over a WebSocket, on one port.

A `stream.subscribe.Subscriber` thread reads the ZeroMQ stream; each message becomes a small JSON object (world
joints to 0.1 mm, contact probabilities, status) pushed to every open page through ``/ws``. A slow page never
slows the others or the stream: each page has a short queue of its own and loses its oldest frames first.
Everything else under ``/`` is a file of static/ (index.html, viewer.js, the three.js bundle in vendor/).
"""
from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stream.protocol import ARRAY_LENGTHS, PoseMessage
from stream.subscribe import Subscriber
from stream.viewer.build import STATIC

log = logging.getLogger("livemocap.viewer")
QUEUE = 8  # frames a page may lag behind before it loses the oldest
_TYPES = {".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".json": "application/json"}


def frame_json(msg: PoseMessage) -> str:
    """The browser's view of one message: track, seq, status, time, and (with a pose) joints + contacts."""
    out: dict[str, Any] = {"type": "pose", "track": msg.track, "seq": msg.seq, "status": msg.status,
                           "t": round(msg.t_capture, 4), "model": msg.model}
    if len(msg.joints) == ARRAY_LENGTHS["joints"]:
        out["joints"] = np.round(np.asarray(msg.joints, dtype=np.float64), 4).tolist()  # (72,) x y z per joint
        out["contact"] = np.round(np.asarray(msg.contact or [0.0] * 4, dtype=np.float64), 3).tolist()
    return json.dumps(out, separators=(",", ":"))


class ViewerServer:
    """Serves static/ and ``/ws`` on host:port (port 0 picks one: see ``port`` once started)."""

    def __init__(self, sub_addr: str, host: str = "127.0.0.1", port: int = 8080, curve: Any = None) -> None:
        self.sub_addr, self.host, self.requested_port, self.curve = sub_addr, host, port, curve
        self.port: int | None = None
        self.forwarded = 0
        self.received = 0
        self.undecodable = 0
        self._clients: dict[ServerConnection, asyncio.Queue[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ HTTP
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # go on with the WebSocket handshake
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        file = (STATIC / rel).resolve()
        if STATIC.resolve() not in file.parents or not file.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body = file.read_bytes()
        ctype = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
                           ("Connection", "close")])
        return Response(HTTPStatus.OK, "OK", headers, body)

    # ------------------------------------------------------------------ WebSocket
    async def _page(self, connection: ServerConnection) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE)
        self._clients[connection] = queue
        log.info("page connected (%d open)", len(self._clients))
        closed = asyncio.ensure_future(connection.wait_closed())
        try:
            await connection.send(json.dumps({"type": "hello", "sub": self.sub_addr}))
            while True:  # wait for a frame or the end of the connection, whichever comes first
                frame = asyncio.ensure_future(queue.get())
                await asyncio.wait((frame, closed), return_when=asyncio.FIRST_COMPLETED)
                if not frame.done():
                    frame.cancel()
                    break
                await connection.send(frame.result())
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            self._clients.pop(connection, None)
            log.info("page left (%d open)", len(self._clients))

    def _push(self, text: str) -> None:
        """On the event loop: hand one frame to every page, dropping a lagging page's oldest frame."""
        for queue in self._clients.values():
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(text)
        self.forwarded += 1

    # ------------------------------------------------------------------ ZeroMQ side
    def _read_stream(self) -> None:
        try:
            with Subscriber(self.sub_addr, curve=self.curve) as sub:
                while not self._stop.is_set():
                    try:
                        got = sub.recv(0.2)
                    except ValueError as exc:
                        self.undecodable += 1
                        if self.undecodable == 1:
                            log.warning("skipping undecodable message: %s", exc)
                        continue
                    if got is None or got.msg.heartbeat:
                        continue
                    self.received += 1
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._push, frame_json(got.msg))
        except Exception as exc:  # a dead reader must be visible, not a silent blank page
            log.error("stream reader stopped: %s", exc)

    async def run(self, ready: threading.Event | None = None) -> None:
        """Serve until ``stop`` (or the task is cancelled)."""
        self._loop = asyncio.get_running_loop()
        reader = threading.Thread(target=self._read_stream, name="viewer-sub", daemon=True)
        async with serve(self._page, self.host, self.requested_port, process_request=self._http,
                         compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            reader.start()
            if ready is not None:
                ready.set()
            try:
                while not self._stop.is_set():
                    await asyncio.sleep(0.1)
            finally:
                self._stop.set()
                reader.join(2)

    def stop(self) -> None:
        self._stop.set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


__all__ = ["ViewerServer", "frame_json"]
