"""Live browser viewer: `python -m stream.viewer` on a live `run_live.py` stream, shown in a real headless Chromium
(Debian's package), driven over the DevTools protocol: the page receives frames, loads nothing from outside,
and its screenshot shows the skeleton."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from stream.viewer.build import STATIC, bundle_version, locked_version

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video" / "sports2d_demo.mp4"
IN_CI = os.environ.get("CI") == "true"
#: The page's track colours (static/viewer.js PALETTE), RGB.
PALETTE = [(0xFF, 0x8C, 0x1A), (0x1A, 0xB2, 0xFF), (0x3D, 0xDC, 0x84), (0xFF, 0x4F, 0xA3), (0xFF, 0xE1, 0x4D),
           (0xA7, 0x7B, 0xFF)]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=960,640",
                  "--remote-debugging-port=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def bundle() -> None:
    assert bundle_version() == locked_version(), "the viewer front end is not built: run python -m stream.viewer build"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("CI needs Debian's chromium (.ci/run installs it)")
        pytest.skip("needs headless Chromium (apt-get install chromium)")
    return path


class Viewer:
    """`python -m stream.viewer --port 0` in a subprocess; ``url`` once it printed it."""

    def __init__(self, sub: str) -> None:
        self.log = tempfile.TemporaryFile("w+")  # its log, read on failure (a pipe could fill and block it)
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.viewer", "--sub", sub, "--port", "0"], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        assert match, f"viewer did not start: {line!r} {self.stderr()}"
        self.url = match.group(1)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


class Chromium:
    """Debian's Chromium, headless, with a fresh profile, on one page; ``evaluate`` and ``screenshot`` over CDP."""

    def __init__(self, url: str, profile: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen([chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            assert time.monotonic() < deadline and self.proc.poll() is None, "Chromium did not start"
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", self.proc.stderr.readline())
            port = int(match.group(1)) if match else None
        # Keep reading Chromium's log: a full pipe would block the browser mid-test.
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()
        page = None
        while page is None:
            assert time.monotonic() < deadline, "no page target"
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            page = next((t for t in targets if t["type"] == "page" and t["url"].startswith(url)), None)
            time.sleep(0.2)
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20))
        self._id = 0

    def call(self, method: str, **params: object) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=f"JSON.stringify({expression})", returnByValue=True)
        return json.loads(result["result"].get("value", "null"))

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def skeleton_pixels(png: bytes) -> np.ndarray:
    """(N, 2) row/column of pixels within a small distance of a track colour."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    near = np.zeros(rgb.shape[:2], dtype=bool)
    for colour in PALETTE:
        near |= np.abs(rgb - np.array(colour)).sum(axis=-1) < 40
    return np.argwhere(near)


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


def test_viewer_serves_its_page_and_bundle_from_local_files() -> None:
    viewer = Viewer(f"tcp://127.0.0.1:{free_port()}")
    try:
        status, ctype, page = get(viewer.url)
        assert status == 200 and ctype.startswith("text/html") and b'"three": "./vendor/three/three.module.js"' in page
        for path in ("viewer.js", "vendor/three/three.module.js", "vendor/three/three.core.js",
                     "vendor/three/addons/controls/OrbitControls.js"):
            status, ctype, body = get(viewer.url + path)
            assert status == 200 and ctype.startswith("text/javascript") and len(body) > 1000, path
        assert get(viewer.url + "../build.py")[0] == 404 and get(viewer.url + "nope.js")[0] == 404
    finally:
        assert viewer.stop() == 0
    for name in ("index.html", "viewer.js"):  # nothing fetched from the internet at run time
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text and "cdn" not in text.lower(), name


def test_viewer_bad_arguments_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "stream.viewer", "--port", "70000"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_viewer_without_its_build_says_how_to_build(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import stream.viewer.__main__ as cli

    monkeypatch.setattr(cli, "bundle_version", lambda: None)
    assert cli.main(["--port", "0"]) == 2
    assert "python -m stream.viewer build" in capsys.readouterr().err


def test_live_stream_in_headless_chromium(tmp_path: Path) -> None:
    """run_live.py on the shared video -> ZeroMQ -> the viewer -> WebSocket -> a real browser drawing it."""
    if IN_CI:
        assert VIDEO.is_file(), f"CI needs {VIDEO}"
    if not VIDEO.is_file():
        pytest.skip(f"needs {VIDEO}")
    addr = f"tcp://127.0.0.1:{free_port()}"
    viewer = Viewer(addr)
    browser = Chromium(viewer.url, tmp_path / "profile")
    live = None
    try:
        deadline = time.monotonic() + 60
        while not (browser.evaluate("window.viewerStats") or {}).get("connected"):
            assert time.monotonic() < deadline, "the page never opened its WebSocket"
            time.sleep(0.2)
        log = open(tmp_path / "run_live.log", "w")  # a file, not a pipe nobody reads while it runs (it could fill)
        live = subprocess.Popen([sys.executable, "run_live.py", "--source", str(VIDEO), "--fast", "--max-frames", "200",
                                 "--publish", addr, "--wait-subscribers", "10"], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300  # generous: CI machines may be busy
        stats: dict = {}
        while stats.get("poses", 0) < 20 and live.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            stats = browser.evaluate("window.viewerStats")
        time.sleep(0.5)  # a few more frames drawn (people are kept for 5 s after their last frame)
        stats = browser.evaluate("window.viewerStats")
        png = browser.screenshot()
        resources = browser.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        live.send_signal(signal.SIGINT)  # enough seen: stop the run the way a user would
        live.wait(timeout=120)
        log.close()
        assert live.returncode == 0, (tmp_path / "run_live.log").read_text()[-2000:]
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        browser.close()
        viewer.stop()
    (tmp_path / "viewer.png").write_bytes(png)
    assert stats["poses"] >= 20 and stats["tracks"] >= 1 and stats["rendered"] > 0, (stats, viewer.stderr())
    origin = viewer.url
    assert resources and all(r.startswith(origin) for r in resources), resources  # offline: only our own files
    pixels = skeleton_pixels(png)
    assert len(pixels) > 400, f"skeleton colour on {len(pixels)} pixels only; see {tmp_path / 'viewer.png'}"
    rows = pixels[:, 0]
    assert rows.max() - rows.min() > 80, "the coloured pixels do not span a body"  # a standing figure, not a dot
