"""`python -m serve` as a child process: start it, wait for its ready line, stop it (tests, benchmarks).

The child runs in its own session so that stopping it also reaches the tritonserver and Python-backend stub it
spawned, and nothing else.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence


def free_ports(n: int) -> list[int]:
    """N distinct TCP ports free on loopback right now (Triton needs fixed port numbers)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class ServerProcess:
    """A running `python -m serve`; ``info`` is its ready line (http, grpc, access_token, model_id, ...)."""

    def __init__(self, ports: Sequence[int], args: Sequence[str] = (), *, token: str = "livemocap-test",
                 ready_s: float = 90.0, log_dir: str | Path | None = None) -> None:
        http, grpc, metrics = ports
        self.ports = tuple(ports)
        log = Path(log_dir or os.environ.get("TMPDIR", "/tmp")) / f"livemocap-triton-{http}-{time.time_ns()}.log"
        cmd = [sys.executable, "-m", "serve", "--http-port", str(http), "--grpc-port", str(grpc),
               "--metrics-port", str(metrics), "--access-token", token, "--triton-log", str(log), *args]
        self.triton_log = log
        self.stderr_log = log.with_suffix(".stderr")
        with self.stderr_log.open("w") as err:  # a file, not a pipe: an unread pipe would block the server
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True, cwd=Path(__file__).resolve().parents[1])
        self.info: dict[str, Any] = self._wait_ready(ready_s)
        self.url: str = self.info["http"]
        self.grpc_url: str = self.info["grpc"]
        self.token: str = self.info["access_token"]

    def _wait_ready(self, ready_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = self.proc.stdout.readline()
                if line.startswith('{"ready"'):
                    sel.close()
                    return json.loads(line)
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        sel.close()
        err = self._stop_and_read_stderr()
        raise RuntimeError(f"python -m serve did not become ready within {ready_s:g} s: {err[-800:]}")

    def _stop_and_read_stderr(self) -> str:
        self.stop()
        try:
            return self.stderr_log.read_text()
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the server stops Triton and cleans up), SIGKILL to the whole session after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of this session only (tritonserver, stub)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServerProcess", "free_ports"]
