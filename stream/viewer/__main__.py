"""Serve the live viewer, or build its front end.

    python -m stream.viewer [--sub tcp://127.0.0.1:5556] [--host 127.0.0.1] [--port 8080] [--curve-server-key K]
    python -m stream.viewer build

Serving prints the page's address on stdout and runs until Ctrl-C / SIGTERM. Exit 2 on bad arguments or when the
front end was never built (run ``python -m stream.viewer build``).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from stream.viewer.build import BuildError, build, bundle_version, locked_version


def _serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.viewer", description=__doc__.split("\n\n")[0])
    p.add_argument("--sub", default="tcp://127.0.0.1:5556", metavar="ADDR",
                   help="pose stream to show (default: tcp://127.0.0.1:5556)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the page on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="HTTP + WebSocket port (default: 8080; 0 = any free one)")
    p.add_argument("--curve-server-key", default=None, metavar="KEY",
                   help="Z85 public key of a CURVE-encrypted publisher")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be in 0..65535, got {args.port}")
    version = bundle_version()
    if version is None:
        print("python -m stream.viewer: error: the front end is not built; run: python -m stream.viewer build",
              file=sys.stderr)
        return 2
    if version != locked_version():
        logging.getLogger("livemocap.viewer").warning("static/vendor holds three %s, the lock file pins %s: "
                                                      "run python -m stream.viewer build", version, locked_version())
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("livemocap.viewer").warning(
            "serving on %s: anyone who can reach this address sees the tracked person's pose (plain HTTP)", args.host)
    from stream.viewer.server import ViewerServer

    server = ViewerServer(args.sub, args.host, args.port, curve=args.curve_server_key)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())

    async def main() -> None:
        task = asyncio.create_task(server.run())
        while server.port is None and not task.done():
            await asyncio.sleep(0.02)
        if server.port is not None:
            print(f"viewer: {server.url} (stream {args.sub})", flush=True)
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # port in use, address not available
        print(f"python -m stream.viewer: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"viewer: {server.received} stream messages, {server.forwarded} forwarded", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build"]:
        if len(argv) > 1:
            print("usage: python -m stream.viewer build", file=sys.stderr)
            return 2
        try:
            build()
        except (BuildError, OSError) as exc:
            print(f"python -m stream.viewer build: error: {exc}", file=sys.stderr)
            return 1
        return 0
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
