"""Command line: serve the step model from a Triton Inference Server (PyTriton), stateless, dynamically batched.

    python -m serve [--model default|FILE.onnx] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
                    [--max-batch 64] [--queue-delay-us 500] [--instances 1] [--host 127.0.0.1] [--access-token T]

Prints one JSON line once the model is ready (addresses, model id, x width, the access token of the restricted
endpoints such as statistics), then serves until SIGINT/SIGTERM. Clients: ``run_live.py --engine triton
--triton-url http://HOST:8000``; statistics: ``python -m serve stats --url ... --access-token T``. Exit status 2
with one line when it cannot start (model missing, PyTriton not installed, port taken).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("serve")


def _fail(message: str) -> int:
    print(f"python -m serve: error: {message}", file=sys.stderr)
    return 2


def _port_in_use(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be bound (in use, bad address), or None when it can."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _parser() -> argparse.ArgumentParser:
    from .triton_server import ServeConfig

    d = ServeConfig()
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", choices=("run", "stats"), default="run",
                   help="run (default): serve; stats: print the served model's batch statistics as JSON")
    p.add_argument("--model", default=d.model, help="ONNX file, checkpoint or 'default' (the shipped model)")
    p.add_argument("--backend", default=d.backend, choices=("onnxruntime", "tensorrt", "torch"),
                   help="what runs the step inside the server (default: onnxruntime)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: best available)")
    p.add_argument("--host", default=d.host, help="address the HTTP/gRPC/metrics ports bind (default: loopback)")
    p.add_argument("--http-port", type=int, default=d.http_port)
    p.add_argument("--grpc-port", type=int, default=d.grpc_port)
    p.add_argument("--metrics-port", type=int, default=d.metrics_port)
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="rows (tracks) per model execution")
    p.add_argument("--queue-delay-us", type=int, default=d.queue_delay_us,
                   help="longest wait of the dynamic batcher for more requests (default: 500)")
    p.add_argument("--instances", type=int, default=d.instances, help="model instances (sessions) in parallel")
    p.add_argument("--access-token", default=None,
                   help="token for Triton's restricted endpoints (statistics, model control); default: random, "
                        "printed in the ready line")
    p.add_argument("--triton-log", default=None, metavar="FILE",
                   help="where tritonserver writes its log (default: livemocap-triton-PID.log in the temp folder)")
    p.add_argument("--url", default=None, help="stats: the server (default http://HOST:HTTP_PORT)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    return p


def _stats(args: argparse.Namespace) -> int:
    from .stats import model_stats

    if not args.access_token:
        return _fail("stats needs --access-token (printed by `python -m serve` when it started)")
    url = args.url or f"http://{args.host}:{args.http_port}"
    try:
        print(json.dumps(model_stats(url, args.access_token)))
    except Exception as exc:  # unreachable server, wrong token: one line
        return _fail(f"{url}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from engines.base import EngineLoadError
    from stream.publisher import is_loopback

    from .triton_server import ServeConfig, build_server

    for flag in ("http_port", "grpc_port", "metrics_port"):
        if not 1 <= getattr(args, flag) <= 65535:
            return _fail(f"--{flag.replace('_', '-')} must be 1..65535")
    if len({args.http_port, args.grpc_port, args.metrics_port}) != 3:
        return _fail("--http-port, --grpc-port and --metrics-port must differ")
    for flag in ("http_port", "grpc_port", "metrics_port"):  # fail now, not after PyTriton's minute-long wait
        busy = _port_in_use(args.host, getattr(args, flag))
        if busy:
            return _fail(f"--{flag.replace('_', '-')} {getattr(args, flag)} on {args.host}: {busy}")
    if not is_loopback(f"tcp://{args.host}:1"):
        log.warning("--host %s: Triton's ports are reachable from other hosts, unencrypted (the requests carry "
                    "people's keypoints); put it behind a private network or TLS", args.host)
    log_file = Path(args.triton_log) if args.triton_log else (
        Path(tempfile.gettempdir()) / f"livemocap-triton-{os.getpid()}.log")
    kwargs: dict[str, Any] = {"log_file": log_file}
    if args.access_token:
        kwargs["access_token"] = args.access_token
    cfg = ServeConfig(model=args.model, backend=args.backend, device=args.device, host=args.host,
                      http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                      max_batch=args.max_batch, queue_delay_us=args.queue_delay_us, instances=args.instances,
                      **kwargs)

    def load() -> Any:
        import engines

        return engines.load(cfg.model, prefer=[cfg.backend], device=cfg.device)

    try:
        triton, engine = build_server(cfg, load)
    except ImportError as exc:
        return _fail(f"PyTriton is not installed ({exc}); pip install -e '.[serve]'")
    except (EngineLoadError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            triton.run()
        except Exception as exc:  # a port in use, the server binary failing: PyTriton raises its own errors
            return _fail(f"Triton did not start: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
        print(json.dumps({
            "ready": True, "model": cfg.name, "model_id": engine.model_id, "x_width": engine.input_shapes["x"][0],
            "http": f"http://{cfg.host}:{cfg.http_port}", "grpc": f"grpc://{cfg.host}:{cfg.grpc_port}",
            "metrics": f"http://{cfg.host}:{cfg.metrics_port}/metrics", "max_batch": cfg.max_batch,
            "queue_delay_us": cfg.queue_delay_us, "instances": cfg.instances, "backend": engine.name,
            "device": engine.device, "access_token": cfg.access_token, "triton_log": str(log_file),
        }), flush=True)
        while not stop.wait(1.0):
            if not triton.is_alive():
                return _fail("the Triton server process died")
        return 0
    finally:
        triton.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return _stats(args) if args.command == "stats" else _run(args)


if __name__ == "__main__":
    sys.exit(main())
