"""Contact-aware root velocity and world-translation integration, shared by the step and the training graph.

Everything but the integration is memory-free and takes any leading dims; `integrate` is one frame of the
recurrence, which the training graph scans over its window.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


def contact_weights(contact: torch.Tensor, threshold: float) -> torch.Tensor:
    """contact: (..., 4) probabilities -> (..., 4) weights in [0, 1]: 0 below threshold, 1 when certain."""
    return ((contact - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)


class ContactBlend(NamedTuple):
    """How a frame's root velocity mixes the network's with the feet's."""
    keep: torch.Tensor   # (..., 1) weight of the network velocity: 1 - the strongest contact weight
    pull: torch.Tensor   # (..., 4) weight of each foot's pinned velocity: that strength x the foot's share


def contact_blend(contact: torch.Tensor, threshold: float) -> ContactBlend:
    """contact: (..., 4) probabilities."""
    w = contact_weights(contact, threshold)
    strength = w.max(-1, keepdim=True).values
    return ContactBlend(1.0 - strength, strength * w / w.sum(-1, keepdim=True).clamp_min(1e-6))


def root_velocity(
    feet_rel: torch.Tensor,      # (..., 4, 3) foot points minus pelvis, world axes
    prev_feet: torch.Tensor,     # (..., 4, 3) the same one frame earlier
    vel_net: torch.Tensor,       # (..., 3) network root velocity, world axes, m/frame
    blend: ContactBlend,
) -> torch.Tensor:
    """(..., 3): a foot in contact stays put, so the root moves by prev_feet - feet_rel; the network velocity fills
    in when no foot is in contact, blended by the strongest contact weight."""
    return blend.keep * vel_net + (blend.pull[..., None] * (prev_feet - feet_rel)).sum(-2)


def start_position(feet_rel: torch.Tensor) -> torch.Tensor:
    """(..., 4, 3) -> (..., 3): where a track's first frame is placed, (0, h, 0) with the lowest foot point on the
    floor (y = 0)."""
    height = -feet_rel[..., 1].min(-1, keepdim=True).values
    return torch.cat((torch.zeros_like(height), height, torch.zeros_like(height)), dim=-1)


def integrate(
    vel: torch.Tensor,           # (B, 3) this frame's root velocity
    start: torch.Tensor,         # (B, 3) `start_position` of this frame
    prev_trans: torch.Tensor,    # (B, 3) state: previous world pelvis position
    initialized: torch.Tensor,   # (B, 1) state: 1 once a frame has been integrated
) -> torch.Tensor:
    """World pelvis position (B, 3) after this frame: moved by vel, or placed at `start` on a track's first frame."""
    return initialized * (prev_trans + vel) + (1.0 - initialized) * start


def refine_and_integrate_step(
    feet_rel: torch.Tensor, vel_net: torch.Tensor, contact: torch.Tensor, prev_feet: torch.Tensor,
    prev_trans: torch.Tensor, initialized: torch.Tensor, threshold: float,
) -> torch.Tensor:
    """The whole refiner for one frame: feet (B, 4, 3), vel_net (B, 3), contact (B, 4) and state -> (B, 3)."""
    vel = root_velocity(feet_rel, prev_feet, vel_net, contact_blend(contact, threshold))
    return integrate(vel, start_position(feet_rel), prev_trans, initialized)
