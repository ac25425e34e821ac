"""Trajectory decoder: motion context + camera angular velocity + previous world root orientation -> world root."""
from __future__ import annotations

import torch
from torch import nn

from ..rotations import rot6d_to_matrix


class TrajectoryDecoder(nn.Module):
    """One recurrent step per frame: it consumes its own previous output, so both time layouts scan it frame by frame.

    Returns world root orientation (B, 3, 3) / 6D (B, 6) and root velocity in the root frame (B, 3) in m/frame.
    """

    def __init__(self, context_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        if layers != 1:
            raise ValueError("the trajectory decoder is a single GRU cell (traj_layers=1)")
        self.rnn = nn.GRUCell(context_dim + 6 + 6 + 6, hidden)
        out = nn.Linear(hidden, 6 + 3)
        nn.init.zeros_(out.bias)
        out.weight.data.mul_(0.01)   # starts near "keep the previous orientation, stand still"
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), out)

    def forward(
        self,
        context: torch.Tensor,      # (B, C)
        omega: torch.Tensor,        # (B, 6)
        cam_root6d: torch.Tensor,   # (B, 6) camera-frame root orientation from the motion decoder
        prev_root6d: torch.Tensor,  # (B, 6)
        h: torch.Tensor,            # (B, layers, hidden)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        inp = torch.cat((context, omega, cam_root6d, prev_root6d), dim=-1)
        h_new = self.rnn(inp, h[:, 0])
        raw = self.head(h_new)
        root6d = prev_root6d + raw[:, :6]  # residual on the previous orientation: smooth by default
        root = rot6d_to_matrix(root6d)
        root6d = torch.cat((root[..., :, 0], root[..., :, 1]), dim=-1)  # re-orthonormalized feedback
        return root, root6d, raw[:, 6:], h_new[:, None]
