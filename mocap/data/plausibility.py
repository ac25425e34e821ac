"""How human do training poses stay after augmentation? Raw windows vs augmented ones, same clips and seeds.

    python -m mocap.data.plausibility --data cache/bandai --batches 20 --json

Three proxies, each a percentage of frames: a joint beyond its anatomical range by more than 5 degrees
(`augment.JOINT_LIMITS`), the lowest foot more than 3 cm below the clip's floor, and a self-intersection proxy
(a hand inside the trunk: wrist or hand joint within 8 cm of the pelvis-neck segment; or the legs through each
other: knees within 8 cm or ankles within 6 cm). Plus stance-foot slide: how far (mm per 30-fps frame, horizontal)
the foot points that are planted in the raw window move (0 would be a perfect plant). Prints ONE JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..body import BuiltinBody
from ..rotations import matrix_to_axis_angle
from ..skeleton import FOOT_KEYPOINT_IDS, NUM_JOINTS, SMPL_JOINT_NAMES
from .augment import Augment, augment_motion, limit_violation_deg
from .contacts import foot_contacts
from .motion_bank import MotionBank, MotionWindows

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points p (..., 3) to segments a-b (..., 3)."""
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def plausibility(motion: MotionWindows, body: BuiltinBody, floor: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """Percentages of frames failing each proxy, and the stance slide; floor: (B,) each window's floor height (m);
    planted: (B, T, 4) the foot points planted in the raw window."""
    b, t = motion.pose_rotmat.shape[:2]
    with torch.no_grad():
        out = body(motion.pose_rotmat.reshape(b * t, NUM_JOINTS, 3, 3), motion.betas.repeat_interleave(t, 0),
                   motion.trans.reshape(b * t, 3))
    joints = out.joints.numpy().reshape(b, t, NUM_JOINTS, 3)
    lowest = out.keypoints[:, list(FOOT_KEYPOINT_IDS), 1].numpy().reshape(b, t, 4).min(-1)       # (B, T)
    beyond = (limit_violation_deg(matrix_to_axis_angle(motion.pose_rotmat)) > 5.0).numpy()   # (B, T, 24)
    trunk_a, trunk_b = joints[..., _J["pelvis"], :], joints[..., _J["neck"], :]
    hands = [_J[n] for n in ("l_wrist", "r_wrist", "l_hand", "r_hand")]
    hand_in_trunk = np.stack([_segment_distance(joints[..., j, :], trunk_a, trunk_b) < 0.08 for j in hands]).any(0)
    knees = np.linalg.norm(joints[..., _J["l_knee"], :] - joints[..., _J["r_knee"], :], axis=-1) < 0.08
    ankles = np.linalg.norm(joints[..., _J["l_ankle"], :] - joints[..., _J["r_ankle"], :], axis=-1) < 0.06
    feet = out.keypoints[:, list(FOOT_KEYPOINT_IDS)].numpy().reshape(b, t, 4, 3)
    dt = (motion.dt.numpy() if motion.dt is not None else np.full((b, t), 1 / 30))[:, 1:, None]
    step = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=1), axis=-1) / (dt * 30)      # (B, T-1, 4) m / 30-fps frame
    held = planted[:, 1:] & planted[:, :-1]
    swapped = held[..., [2, 3, 0, 1]]                                  # a mirrored window plants the other foot
    per_window = lambda m: (step * m).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1)  # noqa: E731
    held = np.where((per_window(swapped) < per_window(held))[:, None, None], swapped, held)
    pct = lambda m: round(100.0 * float(np.mean(m)), 3)  # noqa: E731
    return {
        "frames": int(b * t),
        "joint_limit_violation_pct": pct(beyond.any(-1)),
        "joint_limit_violation_joint_pct": pct(beyond[..., 1:]),
        "foot_below_floor_pct": pct(lowest < floor[:, None] - 0.03),
        "self_intersection_pct": pct(hand_in_trunk | knees | ankles),
        "stance_slide_mm": round(1000.0 * float(step[held].mean()) if held.any() else 0.0, 3),
    }


def compare(bank: MotionBank, batches: int, batch: int, window: int, seed: int, cfg: Augment) -> dict:
    """Raw vs augmented windows (the same draws), summed over `batches` batches."""
    body = BuiltinBody()
    totals: dict[str, list[dict[str, float]]] = {"raw": [], "augmented": []}
    for i in range(batches):
        rng = np.random.default_rng([seed, i])
        raw = bank.sample(rng, batch, window)
        with torch.no_grad():
            kp = body(raw.pose_rotmat.reshape(-1, NUM_JOINTS, 3, 3), raw.betas.repeat_interleave(window, 0),
                      raw.trans.reshape(-1, 3)).keypoints
        feet = kp[:, list(FOOT_KEYPOINT_IDS)].reshape(batch, window, 4, 3)
        floor = np.percentile(feet[..., 1].numpy().min(-1), 5, axis=1)
        dt = raw.dt if raw.dt is not None else torch.full((batch, window), 1 / 30)
        planted = foot_contacts(feet, dt).numpy()
        totals["raw"].append(plausibility(raw, body, floor, planted))
        totals["augmented"].append(plausibility(augment_motion(raw, rng, cfg, body), body, floor, planted))
    report: dict = {}
    for name, rows in totals.items():
        frames = sum(r["frames"] for r in rows)
        report[name] = {"frames": frames, **{k: round(sum(r[k] * r["frames"] for r in rows) / frames, 3)
                                             for k in rows[0] if k != "frames"}}
    return report


def main(argv: list[str] | None = None) -> None:
    from . import load_cache

    p = argparse.ArgumentParser(prog="python -m mocap.data.plausibility", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("cache/bandai"), help="cache folder (train.npz)")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="compact JSON")
    args = p.parse_args(argv)
    try:
        bank = MotionBank(load_cache(args.data / "train.npz"))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    torch.set_num_threads(1)
    report = compare(bank, args.batches, args.batch, args.window, args.seed, Augment())
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
