"""Motion encoder: normalized 2D keypoints -> motion context, carrying an RNN state so it streams."""
from __future__ import annotations

import torch
from torch import nn


class MotionEncoder(nn.Module):
    """Unidirectional GRU over per-frame features (WHAM's motion encoder, causal by construction).

    x: (B, T, input_dim) -> context (B, T, hidden); h: (B, layers, hidden) batch-first state. Training runs a
    whole window through the GRU at once, the streaming step a window of one frame: the same weights and op.
    """

    def __init__(self, input_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.rnn = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.embed(x)
        ctx, h_new = self.rnn(feat, h.transpose(0, 1).contiguous())
        return ctx + feat, h_new.transpose(0, 1)


class FrameEncoder(nn.Module):
    """Per-frame MLP with no memory: the single-frame lifter baseline (same interface, state passes through)."""

    def __init__(self, input_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Linear(input_dim, hidden), nn.GELU()]
        for _ in range(layers + 1):
            blocks += [nn.Linear(hidden, hidden), nn.GELU()]
        self.mlp = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlp(x), h
