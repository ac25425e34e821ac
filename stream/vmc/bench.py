"""Time the VMC bridge per frame: SMPL -> Unity conversion, OSC bundle encoding, UDP send.

    python -m stream.vmc.bench [--frames 2000] [--json]

Poses are random (every joint rotated up to ~40 degrees about a random axis, the body anywhere on a 4 m floor)
through the built-in body's rest joints, so no data is needed. Sends go to a local UDP socket that this command
binds and drains. Prints medians / p99 in microseconds and the bundle size.
"""
from __future__ import annotations

import argparse
import json
import socket
import time

import numpy as np
from scipy.spatial.transform import Rotation

from mocap.builtin_body import REST_JOINTS
from mocap.skeleton import NUM_JOINTS, SMPL_PARENTS
from stream.vmc.convert import HumanoidConverter
from stream.vmc.sender import build_bundle


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(pose_quat (24, 4), joints (24, 3)) of a random pose of the built-in body's rest skeleton."""
    rotvec = rng.normal(size=(NUM_JOINTS, 3))
    rotvec *= rng.uniform(0, 0.7, size=(NUM_JOINTS, 1)) / np.linalg.norm(rotvec, axis=1, keepdims=True)
    local = Rotation.from_rotvec(rotvec).as_matrix()
    world = np.empty_like(local)
    joints = np.empty((NUM_JOINTS, 3))
    for j, p in enumerate(SMPL_PARENTS):
        if p < 0:
            world[j], joints[j] = local[j], (rng.uniform(-2, 2), 0.95, rng.uniform(-2, 2))
        else:
            world[j] = world[p] @ local[j]
            joints[j] = joints[p] + world[p] @ (REST_JOINTS[j] - REST_JOINTS[p])
    return Rotation.from_rotvec(rotvec).as_quat(), joints


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.vmc.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.frames < 10:
        p.error("--frames must be >= 10")
    rng = np.random.default_rng(0)
    poses = [random_pose(rng) for _ in range(args.frames)]
    converter = HumanoidConverter()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    times: dict[str, list[float]] = {"convert": [], "bundle": [], "send": []}
    size = 0
    for k, (quat, joints) in enumerate(poses):
        t0 = time.perf_counter()
        pose = converter.convert(quat, joints)
        t1 = time.perf_counter()
        data = build_bundle(pose, k / 30)
        t2 = time.perf_counter()
        out.sendto(data, sink.getsockname())
        t3 = time.perf_counter()
        try:
            while True:
                sink.recv(65536)
        except BlockingIOError:
            pass
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(dt * 1e6)
        size = len(data)
    total = np.sum([times[k] for k in times], axis=0)
    result = {"frames": args.frames, "bundle_bytes": size, "bones": len(converter.bones),
              **{f"{k}_us": {"p50": round(float(np.median(v)), 1), "p99": round(float(np.percentile(v, 99)), 1)}
                 for k, v in {**times, "total": total}.items()}}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
