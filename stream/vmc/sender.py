"""Pose messages -> one VMC OSC bundle per frame over UDP (python-osc), for VSeeFace, EVMC4U, VMC4B, Warudo, ...

Each bundle holds, in this order: ``/VMC/Ext/Root/Pos "root" px py pz qx qy qz qw``, one
``/VMC/Ext/Bone/Pos NAME px py pz qx qy qz qw`` per HumanBodyBones bone mapped from SMPL (`convert.HUMAN_BONES`),
``/VMC/Ext/T time`` (seconds since the first message this sender saw) and ``/VMC/Ext/OK 1 3 0 tracking``
(loaded, calibrated, normal calibration mode, tracking 1/0). Frames without a pose (status ``lost``, or ``init``
before the first pose) send only T and OK with tracking 0, so receivers hold the last pose and know why.
Values are Unity humanoid local transforms; the conversion and its conventions are in `stream/vmc/convert.py`.

One avatar per receiver: a sender follows one track. ``track=None`` follows the first track that delivers a
pose and moves to another one only after ``switch_after_s`` seconds without a pose from it.
"""
from __future__ import annotations

import logging
import socket

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from stream.protocol import ARRAY_LENGTHS, PoseMessage
from stream.vmc.convert import HumanoidConverter, UnityPose

log = logging.getLogger("livemocap.vmc")

DEFAULT_PORT = 39539  # what VMC receivers (VSeeFace, EVMC4U, VMC4B, Warudo) listen on by default


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' / 'PORT' for 127.0.0.1) -> (host, port); ValueError with a one-line reason."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = "", text.strip()
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port in 1..65535 (VMC receivers default to {DEFAULT_PORT}), "
                         f"got {text!r}")
    return host, int(port_text)


def _message(address: str, *args: str | float | int) -> OscMessage:
    builder = OscMessageBuilder(address=address)
    for value in args:
        builder.add_arg(value, "s" if isinstance(value, str) else "i" if isinstance(value, int) else "f")
    return builder.build()


def build_bundle(pose: UnityPose | None, t: float) -> bytes:
    """The OSC bundle of one frame (see the module docstring); pose None = no pose this frame."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    if pose is not None:
        bundle.add_content(_message("/VMC/Ext/Root/Pos", "root", *map(float, pose.root_pos),
                                    *map(float, pose.root_quat)))
        for name, p, q in zip(pose.bones, pose.bone_pos.tolist(), pose.bone_quat.tolist()):
            bundle.add_content(_message("/VMC/Ext/Bone/Pos", name, *p, *q))
    bundle.add_content(_message("/VMC/Ext/T", float(t)))
    bundle.add_content(_message("/VMC/Ext/OK", 1, 3, 0, 1 if pose is not None else 0))
    return bundle.build().dgram


class TrackFollower:
    """Which track drives the avatar: a fixed id, or (None) the first with a pose until it goes quiet."""

    def __init__(self, track: int | None = None, switch_after_s: float = 1.0) -> None:
        self.fixed = track
        self.current: int | None = track
        self.switch_after_s = switch_after_s
        self._last_pose_t: float | None = None

    def accept(self, msg: PoseMessage, has_pose: bool) -> bool:
        """True if this message belongs to the followed track (after switching, if it is time to)."""
        if self.fixed is not None:
            return msg.track == self.fixed
        if msg.track != self.current:
            quiet = self._last_pose_t is None or msg.t_capture - self._last_pose_t > self.switch_after_s
            if not (has_pose and quiet):
                return False
            if self.current is not None:
                log.info("VMC: following track %d (track %d sent no pose for %.1f s)", msg.track, self.current,
                         self.switch_after_s)
            self.current = msg.track
        if has_pose:
            self._last_pose_t = msg.t_capture
        return True


class VmcSender:
    """A pose-message sink (``write(msg)`` / ``close()``, like the recorders) that sends VMC over UDP.

    ``write`` never raises: a receiver that is not running or a message that cannot be converted is counted in
    ``errors`` (first reason in ``last_error``), so the live loop is never stopped by the avatar side.
    """

    def __init__(self, address: str, *, track: int | None = None, upper_chest: bool = True,
                 switch_after_s: float = 1.0) -> None:
        self.host, self.port = parse_address(address)
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve VMC receiver host {self.host!r}: {exc}") from None
        self._sock: socket.socket | None = socket.socket(info[0], socket.SOCK_DGRAM)
        self._target = info[4]
        self.converter = HumanoidConverter(upper_chest=upper_chest)
        self.follower = TrackFollower(track, switch_after_s)
        self.sent = 0
        self.poses = 0
        self.errors = 0
        self.last_error: str | None = None
        self._t0: float | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _fail(self, reason: str) -> bool:
        if self.errors == 0:
            log.warning("VMC to %s: %s", self.address, reason)
        self.errors += 1
        self.last_error = self.last_error or reason
        return False

    def write(self, msg: PoseMessage) -> bool:
        """Send the frame of `msg` if it is the followed track's; False if skipped or failed."""
        if self._sock is None:
            return False
        has_pose = len(msg.pose_quat) == ARRAY_LENGTHS["pose_quat"] and len(msg.joints) == ARRAY_LENGTHS["joints"]
        if not self.follower.accept(msg, has_pose):
            return False
        self._t0 = msg.t_capture if self._t0 is None else self._t0
        try:
            pose = None
            if has_pose:
                pose = self.converter.convert(np.asarray(msg.pose_quat), np.asarray(msg.joints))
                if not (np.isfinite(pose.bone_quat).all() and np.isfinite(pose.bone_pos).all()):
                    return self._fail(f"seq {msg.seq}: non-finite pose, not sent")
            data = build_bundle(pose, msg.t_capture - self._t0)
        except ValueError as exc:
            return self._fail(f"seq {msg.seq}: cannot convert: {exc}")
        try:
            self._sock.sendto(data, self._target)
        except OSError as exc:  # e.g. no route, message too long, ICMP refusal reported on a later send
            return self._fail(f"send failed: {exc}")
        self.sent += 1
        self.poses += pose is not None
        return True

    def close(self) -> None:
        """Close the socket; idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "VmcSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_PORT", "TrackFollower", "VmcSender", "build_bundle", "parse_address"]
