"""CURVE key files for the pose stream: make a key pair, read public / secret keys and client allow-lists.

    python -m stream.keys new NAME [--dir DIR]     # writes DIR/NAME.key (public) and DIR/NAME.key_secret (0600)

Files use ZeroMQ's certificate format (the one ``zmq.auth.load_certificate`` reads and ``zmq.auth`` tools
write), so keys made elsewhere work here. A public key may also be given inline as its 40-character Z85 text.
A clients file (``--curve-allow``) is a folder of ``*.key`` files, or a text file with one Z85 public key or one
``.key`` path per line (``#`` starts a comment).
"""
from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from pathlib import Path

import zmq
import zmq.auth

__all__ = ["KeyFileError", "load_allowed", "load_public", "load_secret", "write_keypair"]

log = logging.getLogger(__name__)


class KeyFileError(ValueError):
    """A key file is missing, malformed, or (for a secret) not secret; the message names the file."""


def _is_z85_key(text: str) -> bool:
    if len(text) != 40:
        return False
    try:
        return len(zmq.utils.z85.decode(text.encode())) == 32
    except (ValueError, KeyError, TypeError):
        return False


def _certificate(path: Path) -> tuple[bytes | None, bytes | None]:
    if not path.is_file():
        raise KeyFileError(f"key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: not a CURVE key file ({exc})") from None
    return public, secret


def load_public(spec: str | bytes) -> bytes:
    """A Z85 public key from inline text or a key file (``.key`` or ``.key_secret``: its public half)."""
    text = spec.decode() if isinstance(spec, bytes) else str(spec)
    if _is_z85_key(text.strip()):
        return text.strip().encode()
    public, _ = _certificate(Path(text).expanduser())
    if not public or not _is_z85_key(public.decode()):
        raise KeyFileError(f"{text}: holds no valid public key")
    return public


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file; refuses a file others can read."""
    path = Path(path).expanduser()
    public, secret = _certificate(path)
    if not secret or not _is_z85_key(secret.decode()):
        raise KeyFileError(f"{path}: holds no secret key (pass the NAME.key_secret file, not NAME.key)")
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: secret key is readable by other users (mode {stat.filemode(mode)}); "
                        f"run chmod 600 {path}")
    derived = zmq.curve_public(secret)
    if public and public != derived:
        raise KeyFileError(f"{path}: public and secret keys do not belong together")
    return derived, secret


def load_allowed(path: str | Path) -> list[bytes]:
    """Client public keys from a folder of ``*.key`` files or a text file of keys / key paths; at least one."""
    path = Path(path).expanduser()
    keys: list[bytes] = []
    if path.is_dir():
        keys = [load_public(str(p)) for p in sorted(path.glob("*.key"))]
    elif path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if entry.startswith("public-key") or entry in ("curve", "metadata"):  # a certificate file itself
                return [load_public(str(path))]
            try:
                keys.append(load_public(entry if _is_z85_key(entry) else str(path.parent / entry)))
            except KeyFileError as exc:
                raise KeyFileError(f"{path}:{number}: {exc}") from None
    else:
        raise KeyFileError(f"clients file or folder not found: {path}")
    if not keys:
        raise KeyFileError(f"{path}: lists no client public keys (an empty allow-list would refuse everyone)")
    return keys


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)  # the umask may have narrowed it further; never wider


def write_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public, 0644) and NAME.key_secret (0600) into ``folder``; never overwrites."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"key name {name!r}: use a plain file name such as 'server' or 'unity-client'")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise KeyFileError(f"folder not found: {folder}")
    public_path, secret_path = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (public_path, secret_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists (remove it first; keys are never overwritten)")
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq was built without CURVE support")
    public, secret = zmq.curve_keypair()
    head = "#   livemocap CURVE {kind} key ({name}); made by python -m stream.keys\n"
    public_text = f"{head.format(kind='public', name=name)}curve\n    public-key = \"{public.decode()}\"\n"
    secret_text = (f"{head.format(kind='SECRET', name=name)}#   Keep this file private.\ncurve\n"
                   f"    public-key = \"{public.decode()}\"\n    secret-key = \"{secret.decode()}\"\n")
    _write(secret_path, secret_text, 0o600)
    _write(public_path, public_text, 0o644)
    return public_path, secret_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.keys", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write NAME.key and NAME.key_secret")
    new.add_argument("name", help="key name, e.g. server or unity-client")
    new.add_argument("--dir", default=".", help="folder to write into (default: current)")
    show = sub.add_parser("public", help="print the public key of a key file")
    show.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            public_path, secret_path = write_keypair(args.dir, args.name)
            print(f"wrote {public_path} (public: give it to the other side) and {secret_path} (secret, mode 0600)")
            print(f"public key: {load_public(str(public_path)).decode()}")
        else:
            print(load_public(args.file).decode())
    except KeyFileError as exc:
        print(f"python -m stream.keys: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
