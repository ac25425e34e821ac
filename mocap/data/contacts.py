"""Which foot points are planted: the one rule that labels contacts in training data and anchors stance feet
when augmentation edits the legs."""
from __future__ import annotations

import torch

#: m/s: a foot point slower than this ...
CONTACT_SPEED = 0.25
#: m above the window's lowest foot point ... is in contact.
CONTACT_HEIGHT = 0.08


def foot_speed(feet: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """feet: (B, T, F, 3) world (m), dt: (B, T) s since the previous frame -> (B, T, F) speed (m/s), central
    differences inside the window and one-sided ones at its ends."""
    vel = torch.zeros_like(feet)
    span = dt[:, 1:-1] + dt[:, 2:]                                                  # (B, T-2) s
    vel[:, 1:-1] = (feet[:, 2:] - feet[:, :-2]) / span[..., None, None]
    vel[:, 0] = (feet[:, 1] - feet[:, 0]) / dt[:, 1, None, None]
    vel[:, -1] = (feet[:, -1] - feet[:, -2]) / dt[:, -1, None, None]
    return vel.norm(dim=-1)


def foot_contacts(feet: torch.Tensor, dt: torch.Tensor, max_speed: float = CONTACT_SPEED,
                  max_height: float = CONTACT_HEIGHT) -> torch.Tensor:
    """feet: (B, T, F, 3) world, dt (B, T) s -> (B, T, F) bool: slow and near the window's floor."""
    floor = feet[..., 1].amin(dim=(1, 2), keepdim=True)
    return (foot_speed(feet, dt) < max_speed) & (feet[..., 1] - floor < max_height)
