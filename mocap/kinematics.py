"""Forward kinematics as pure batched functions (any tree, SMPL included)."""
from __future__ import annotations

from typing import Sequence

import torch


def offsets_from_rest_joints(rest_joints: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """rest_joints: (..., J, 3) -> (..., J, 3) parent-relative offsets; joint 0 keeps its absolute position."""
    parent_idx = [max(p, 0) for p in parents]
    rel = rest_joints - rest_joints[..., parent_idx, :]
    return torch.cat((rest_joints[..., :1, :], rel[..., 1:, :]), dim=-2)


def forward_kinematics_offsets(
    local_rotmats: torch.Tensor,
    offsets: torch.Tensor,
    parents: Sequence[int],
    root_trans: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain local rotations down a tree.

    local_rotmats: (B, J, 3, 3) rotation of each joint relative to its parent (joint 0: global).
    offsets: (B or 1, J, 3) joint position in its parent's frame at rest; offsets[:, 0] is the root's rest position.
    parents: J parent indices, parents[j] < j, -1 for the root.
    root_trans: (B, 3) added to every joint (world translation of the root's rest position).
    Returns joints (B, J, 3) and global_rotmats (B, J, 3, 3).
    """
    batch = local_rotmats.shape[0]
    offsets = offsets.expand(batch, -1, -1)
    glob: list[torch.Tensor] = []
    pos: list[torch.Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            glob.append(local_rotmats[:, j])
            pos.append(offsets[:, j])
        else:
            glob.append(glob[p] @ local_rotmats[:, j])
            pos.append(pos[p] + (glob[p] @ offsets[:, j, :, None])[..., 0])
    joints = torch.stack(pos, dim=1)
    if root_trans is not None:
        joints = joints + root_trans[:, None, :]
    return joints, torch.stack(glob, dim=1)


def forward_kinematics(
    local_rotmats: torch.Tensor,
    rest_joints: torch.Tensor,
    parents: Sequence[int],
    root_trans: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL-style FK: rest_joints (B or 1, J, 3) are rest-pose joint positions; rotations about each joint.

    The root rotates about its own rest position (as in SMPL), then root_trans (B, 3) is added.
    Returns joints (B, J, 3), global_rotmats (B, J, 3, 3).
    """
    return forward_kinematics_offsets(local_rotmats, offsets_from_rest_joints(rest_joints, parents), parents, root_trans)
