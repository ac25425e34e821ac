"""Bridge the ZeroMQ pose stream to a VMC receiver (OSC over UDP).

    python -m stream.vmc --sub tcp://127.0.0.1:5556 --to 127.0.0.1:39539 [--track N] [--no-upper-chest]
                         [--count N] [--timeout S] [--json]

Runs until Ctrl-C / SIGTERM, ``--count`` messages, or ``--timeout`` seconds without one; then prints what it
sent (JSON with --json). Exit status 1 when no pose was sent, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from stream.subscribe import Subscriber
from stream.vmc.sender import DEFAULT_PORT, VmcSender


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.vmc", description=__doc__.split("\n\n")[0])
    p.add_argument("--sub", default="tcp://127.0.0.1:5556", metavar="ADDR",
                   help="pose stream to read (default: tcp://127.0.0.1:5556)")
    p.add_argument("--to", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"VMC receiver (default: 127.0.0.1:{DEFAULT_PORT}, the receivers' default port)")
    p.add_argument("--track", type=int, default=None, metavar="N",
                   help="drive the avatar with track N (default: the first track with a pose, switching when it "
                        "has sent none for a second)")
    p.add_argument("--no-upper-chest", action="store_true",
                   help="fold SMPL's spine3 into Chest, for avatars without an UpperChest bone")
    p.add_argument("--count", type=int, default=None, metavar="N", help="stop after N stream messages")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop after S seconds without a stream message")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.count is not None and args.count < 1:
        p.error("--count must be >= 1")
    try:
        sender = VmcSender(args.to, track=args.track, upper_chest=not args.no_upper_chest)
    except ValueError as exc:
        p.error(f"--to: {exc}")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    received = undecodable = 0
    try:
        with sender, Subscriber(args.sub) as sub:
            while args.count is None or received < args.count:
                try:
                    got = sub.recv(args.timeout)
                except ValueError as exc:
                    undecodable += 1
                    print(f"skipping undecodable message: {exc}", file=sys.stderr)
                    continue
                if got is None:
                    break
                received += 1
                sender.write(got.msg)
    except KeyboardInterrupt:
        pass
    summary = {"received": received, "undecodable": undecodable, "bundles": sender.sent, "poses": sender.poses,
               "track": sender.follower.current, "to": sender.address, "errors": sender.errors,
               "last_error": sender.last_error}
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"{received} stream messages -> {sender.sent} VMC bundles ({sender.poses} with a pose, track "
              f"{summary['track']}) to {sender.address}; {sender.errors} errors"
              + (f" (first: {sender.last_error})" if sender.last_error else ""), flush=True)
    return 0 if sender.poses else 1


if __name__ == "__main__":
    sys.exit(main())
