"""Render a retarget check: a few frames of the source skeleton beside the retargeted SMPL skeleton (PNG).

Left side is drawn red, right side blue, midline black. SMPL joints also get short green ticks along their local
rest-forward axis (+Z of the T-pose): a limb twisted by a bad rest correction shows ticks pointing sideways or back.
    python -m mocap.plot_retarget FILE.bvh[.xz] --out check.png [--frames 4] [--preset auto]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

from mocap.body import BuiltinBody
from mocap.bvh import read_bvh
from mocap.retarget import retarget, source_from_bvh
from mocap.retarget_presets import get_mapping
from mocap.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'livemocap[dev]' (or: pip install matplotlib)"
                          ) from exc
    return plt


_LEFT = re.compile(r"^(?:[Ll]_|[Ll]eft|l(?=[A-Z]))|[_.][Ll]$")
_RIGHT = re.compile(r"^(?:[Rr]_|[Rr]ight|r(?=[A-Z]))|[_.][Rr]$")


def _side_color(name: str) -> str:
    """Red for left, blue for right, black for the midline, from SMPL, CMU, Bandai or Poser-style names."""
    name = name.rsplit(":", 1)[-1]
    if _LEFT.search(name):
        return "tab:red"
    if _RIGHT.search(name):
        return "tab:blue"
    return "black"


def _draw(ax, joints: np.ndarray, parents: list[int] | tuple[int, ...], names: list[str] | tuple[str, ...],
          centre: np.ndarray, radius: float) -> None:
    """joints (J, 3) world Y-up; matplotlib's 3D axes are Z-up, so plot (x, z, y)."""
    for j, p in enumerate(parents):
        if p < 0:
            continue
        seg = joints[[p, j]]
        ax.plot(seg[:, 0], seg[:, 2], seg[:, 1], color=_side_color(names[j]), lw=2)
    ax.scatter(joints[:, 0], joints[:, 2], joints[:, 1], s=6, color="k")
    ax.set_xlim(centre[0] - radius, centre[0] + radius)
    ax.set_ylim(centre[2] - radius, centre[2] + radius)
    ax.set_zlim(0.0, 2 * radius)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.set_zlabel("y (up)")
    ax.view_init(elev=10, azim=-60)


def _subtree(parents: list[int], root: int) -> tuple[list[int], list[int]]:
    """Joints under (and including) root, and their parents re-indexed into that list (root's parent -1).

    Drops helper roots such as Bandai's joint_Root, which sits at the world origin and would draw a long line.
    """
    keep: list[int] = []
    for j, p in enumerate(parents):
        if j == root or p in keep:
            keep.append(j)
    where = {j: i for i, j in enumerate(keep)}
    return keep, [-1 if j == root else where[parents[j]] for j in keep]


def plot_retarget(path: str | Path, out: str | Path, frames: int = 4, preset: str = "auto",
                  mapping_file: str | Path | None = None) -> Path:
    """Retarget `path` and save a 2 x frames grid (top: source, bottom: SMPL) to `out`; returns out."""
    plt = _import_pyplot()
    bvh = read_bvh(path)
    label, mapping = get_mapping(bvh.names, preset, mapping_file)
    src = source_from_bvh(bvh, mapping)
    res = retarget(src, mapping, preset=label)
    body = BuiltinBody()
    with torch.no_grad():
        smpl = body(torch.from_numpy(res.pose_aa), torch.from_numpy(res.betas)[None].expand(res.num_frames, -1),
                    torch.from_numpy(res.trans))
    joints, glob = smpl.joints.numpy(), smpl.global_rotmats.numpy()
    keep, src_parents = _subtree(src.parents, src.index(mapping["pelvis"]))
    picks = np.unique(np.linspace(0, res.num_frames - 1, max(frames, 1)).round().astype(int))
    fig = plt.figure(figsize=(4.5 * len(picks), 9.5))
    radius = 0.9
    for c, f in enumerate(picks):
        centre = src.positions[f, src.index(mapping["pelvis"])]
        ax = fig.add_subplot(2, len(picks), c + 1, projection="3d")
        _draw(ax, src.positions[f][keep], src_parents, [src.names[j] for j in keep], centre, radius)
        ax.set_title(f"source frame {f}")
        ax = fig.add_subplot(2, len(picks), len(picks) + c + 1, projection="3d")
        _draw(ax, joints[f], SMPL_PARENTS, SMPL_JOINT_NAMES, centre, radius)
        ticks = joints[f] + 0.1 * glob[f, :, :, 2]  # local +Z (rest forward) of each joint
        for j in range(len(SMPL_PARENTS)):
            seg = np.stack((joints[f, j], ticks[j]))
            ax.plot(seg[:, 0], seg[:, 2], seg[:, 1], color="tab:green", lw=1.5)
        ax.set_title(f"SMPL frame {f}")
    fig.suptitle(f"{Path(path).name}  preset={label}  mean error {100 * res.mean_error:.2f} cm")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mocap.plot_retarget", description=__doc__.splitlines()[0])
    ap.add_argument("path", help="a .bvh/.bvh.xz file")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--mapping", help="JSON file {smpl_joint: source_joint}")
    args = ap.parse_args(argv)
    print(plot_retarget(args.path, args.out, args.frames, args.preset, args.mapping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
