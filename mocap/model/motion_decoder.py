"""Motion decoder: context -> body pose (camera-frame root), shape, weak-perspective camera, foot contact."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..rotations import IDENTITY_6D, rot6d_to_matrix
from ..skeleton import NUM_BETAS, NUM_JOINTS
from .state import NUM_CONTACTS


class MotionOutput(NamedTuple):
    pose_cam_rotmat: torch.Tensor   # (..., 24, 3, 3), joint 0 = root orientation in the camera frame
    betas: torch.Tensor             # (..., 10)
    cam_wp: torch.Tensor            # (..., 3) (s > 0, tx, ty)
    contact_logits: torch.Tensor    # (..., 4)


# 6D of a root rotated 180 deg about X: an upright body seen by an OpenCV camera (Y down).
_UPRIGHT_ROOT_6D = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


class MotionDecoder(nn.Module):
    """Per-frame heads on the motion context; residual on a rest prior so training starts from a standing body."""

    def __init__(self, context_dim: int, hidden: int, num_joints: int = NUM_JOINTS, num_betas: int = NUM_BETAS) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.trunk = nn.Sequential(nn.Linear(context_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.pose_head = nn.Linear(hidden, num_joints * 6)
        self.betas_head = nn.Linear(hidden, num_betas)
        self.cam_head = nn.Linear(hidden, 3)
        self.contact_head = nn.Linear(hidden, NUM_CONTACTS)
        for head in (self.pose_head, self.betas_head, self.cam_head):
            nn.init.zeros_(head.bias)
            head.weight.data.mul_(0.01)
        prior = torch.tensor([_UPRIGHT_ROOT_6D] + [IDENTITY_6D] * (num_joints - 1))
        self.register_buffer("pose_prior_6d", prior.reshape(-1), persistent=False)

    def forward(self, context: torch.Tensor) -> MotionOutput:
        h = self.trunk(context)
        pose6d = self.pose_head(h) + self.pose_prior_6d
        pose = rot6d_to_matrix(pose6d.reshape(h.shape[:-1] + (self.num_joints, 6)))
        cam_raw = self.cam_head(h)
        # s = exp(.) keeps the scale positive; s ~ 1 for a standing adult filling the square bbox.
        cam = torch.cat((torch.exp(cam_raw[..., :1]), cam_raw[..., 1:]), dim=-1)
        return MotionOutput(pose, self.betas_head(h), cam, self.contact_head(h))
