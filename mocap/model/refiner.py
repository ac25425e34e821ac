"""Contact-aware root velocity and world-translation integration (causal, stateful)."""
from __future__ import annotations

import torch


def contact_weights(contact: torch.Tensor, threshold: float) -> torch.Tensor:
    """contact: (..., 4) probabilities -> (..., 4) weights in [0, 1]: 0 below threshold, 1 when certain."""
    return ((contact - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)


def refine_and_integrate(
    feet_rel: torch.Tensor,      # (B, T, 4, 3) foot points minus pelvis, world axes
    vel_net: torch.Tensor,       # (B, T, 3) network root velocity, world axes, m/frame
    contact: torch.Tensor,       # (B, T, 4) contact probabilities
    prev_feet: torch.Tensor,     # (B, 4, 3) state: feet_rel of the previous frame
    prev_trans: torch.Tensor,    # (B, 3) state: previous world pelvis position
    initialized: torch.Tensor,   # (B, 1) state: 1 once a frame has been integrated
    threshold: float,
) -> torch.Tensor:
    """World pelvis positions (B, T, 3).

    A foot in contact stays put: the root moves by feet_rel(t-1) - feet_rel(t). The network velocity fills in
    when no foot is in contact, blended by the strongest contact weight. The first frame of a track starts at
    (0, h, 0) with h putting the lowest foot point on the floor (y = 0).
    """
    feet_prev = torch.cat((prev_feet[:, None], feet_rel[:, :-1]), dim=1)       # (B, T, 4, 3)
    pinned = feet_prev - feet_rel                                                # (B, T, 4, 3)
    w = contact_weights(contact, threshold)                                     # (B, T, 4)
    w_sum = w.sum(-1, keepdim=True)                                             # (B, T, 1)
    vel_contact = (w[..., None] * pinned).sum(-2) / w_sum.clamp_min(1e-6)       # (B, T, 3)
    strength = w.max(-1, keepdim=True).values
    vel = (1.0 - strength) * vel_net + strength * vel_contact                   # (B, T, 3)

    height0 = -feet_rel[:, 0, :, 1].min(-1, keepdim=True).values                # (B, 1)
    start = torch.cat((torch.zeros_like(height0), height0, torch.zeros_like(height0)), dim=-1)
    # Frame 0 of a fresh track has no previous frame: it is placed, not moved.
    first = initialized * (prev_trans + vel[:, 0]) + (1.0 - initialized) * start  # (B, 3)
    rest = torch.cumsum(vel[:, 1:], dim=1)                                       # (B, T-1, 3)
    return torch.cat((first[:, None], first[:, None] + rest), dim=1)


def refine_and_integrate_step(
    feet_rel: torch.Tensor,      # (B, 4, 3)
    vel_net: torch.Tensor,       # (B, 3)
    contact: torch.Tensor,       # (B, 4)
    prev_feet: torch.Tensor,     # (B, 4, 3)
    prev_trans: torch.Tensor,    # (B, 3)
    initialized: torch.Tensor,   # (B, 1)
    threshold: float,
) -> torch.Tensor:
    """One frame of `refine_and_integrate` (the streaming graph: no time axis, no cumsum). Returns (B, 3)."""
    pinned = prev_feet - feet_rel                                               # (B, 4, 3)
    w = contact_weights(contact, threshold)                                     # (B, 4)
    vel_contact = (w[..., None] * pinned).sum(-2) / w.sum(-1, keepdim=True).clamp_min(1e-6)
    strength = w.max(-1, keepdim=True).values
    vel = (1.0 - strength) * vel_net + strength * vel_contact
    height0 = -feet_rel[:, :, 1].min(-1, keepdim=True).values
    start = torch.cat((torch.zeros_like(height0), height0, torch.zeros_like(height0)), dim=-1)
    return initialized * (prev_trans + vel) + (1.0 - initialized) * start
