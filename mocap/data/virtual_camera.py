"""Virtual cameras around a moving person: static or smoothly moving (rotation + translation), OpenCV frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import matrix_to_rot6d

_IMAGE_SIZES = np.array([(1280, 720), (1920, 1080), (640, 480), (1080, 1920), (720, 1280)], dtype=np.float64)
_EYE6 = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


@dataclass
class CameraTrack:
    rotation: torch.Tensor     # (B, T, 3, 3) world -> camera
    centre: torch.Tensor       # (B, T, 3) camera centre, world
    focal: torch.Tensor        # (B,) pixels
    principal: torch.Tensor    # (B, 2) pixels
    image_size: torch.Tensor   # (B, 2) (W, H)
    moving: torch.Tensor       # (B,) bool


def look_at(centre: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """World->camera rotation (..., 3, 3) of an OpenCV camera at `centre` looking at `target`, no roll (Y up)."""
    z = target - centre
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    down = torch.tensor([0.0, -1.0, 0.0], dtype=z.dtype).expand_as(z)
    y = down - (down * z).sum(-1, keepdim=True) * z
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    x = torch.linalg.cross(y, z)
    return torch.stack((x, y, z), dim=-2)


def _axis_rot(angle: torch.Tensor, axis: int) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        m = (o, z, z, z, c, -s, z, s, c)
    elif axis == 1:
        m = (c, z, s, z, o, z, -s, z, c)
    else:
        m = (c, -s, z, s, c, z, z, z, o)
    return torch.stack(m, -1).reshape(angle.shape + (3, 3))


def angular_velocity_6d(rotation: torch.Tensor, fps: float) -> torch.Tensor:
    """rotation: (B, T, 3, 3) world->camera -> omega (B, T, 6) = (6D(R_t R_{t-1}^T) - 6D(I)) * fps; frame 0 = 0."""
    rel = rotation[:, 1:] @ rotation[:, :-1].transpose(-1, -2)
    omega = (matrix_to_rot6d(rel) - _EYE6.to(rotation.dtype)) * fps
    return torch.cat((torch.zeros_like(omega[:, :1]), omega), dim=1)


def sample_camera_track(
    rng: np.random.Generator,
    pelvis: torch.Tensor,                 # (B, T, 3) world pelvis path the camera films
    fps: float,
    moving_prob: float = 0.75,
    distance: tuple[float, float] = (2.0, 12.0),
    height: tuple[float, float] = (0.3, 2.5),
    force_moving: bool | None = None,
    min_depth: float = 1.5,
) -> CameraTrack:
    """Random camera per window: initial pose around the person, then (maybe) smooth rotation + translation."""
    b, t = pelvis.shape[:2]
    dt = torch.arange(t, dtype=torch.float32)[None, :] / fps                       # (1, T) seconds
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    moving = rng.uniform(size=b) < moving_prob if force_moving is None else np.full(b, force_moving)
    # Distances log-uniform: near views are common in webcams, far ones in sports footage.
    dist = np.exp(rng.uniform(np.log(distance[0]), np.log(distance[1]), size=b))
    azim = rng.uniform(0, 2 * np.pi, size=b)
    cam_h = rng.uniform(*height, size=b)
    p0 = pelvis[:, 0]
    centre0 = torch.stack(
        (p0[:, 0] + f32(dist * np.sin(azim)), f32(cam_h), p0[:, 2] + f32(dist * np.cos(azim))), dim=-1
    )  # (B, 3)
    aim_noise = f32(rng.normal(0, 0.15, size=(b, 3))) * f32(dist / 4)[:, None]
    target0 = p0 + aim_noise

    m = f32(moving.astype(np.float32))[:, None, None]                              # (B, 1, 1)
    # Translation: a drift velocity plus a slow sway, both zero for a static camera.
    vel = f32(rng.normal(0, 1, size=(b, 3)) * np.array([1.0, 0.15, 1.0])) * f32(rng.uniform(0, 0.8, size=b))[:, None]
    sway_amp = f32(rng.uniform(0, 0.3, size=(b, 3)))
    sway_f = f32(rng.uniform(0.1, 0.6, size=(b, 3)))
    sway_ph = f32(rng.uniform(0, 2 * np.pi, size=(b, 3)))
    sway = sway_amp[:, None] * torch.sin(2 * np.pi * sway_f[:, None] * dt[..., None] + sway_ph[:, None])
    centre = centre0[:, None] + m * (vel[:, None] * dt[..., None] + sway - sway[:, :1])

    # Aim: between the starting point and the current pelvis (a pan that follows the person).
    follow = f32(rng.uniform(0, 1, size=b) * moving)[:, None, None]
    target = target0[:, None] * (1 - follow) + (pelvis + aim_noise[:, None]) * follow
    rot = look_at(centre, target)

    # Hand-held style rotation wobble (yaw, pitch, roll), plus a constant roll for every camera.
    amp = f32(np.deg2rad(rng.uniform(0, [12.0, 6.0, 4.0], size=(b, 3))))
    freq = f32(rng.uniform(0.1, 0.7, size=(b, 3)))
    phase = f32(rng.uniform(0, 2 * np.pi, size=(b, 3)))
    wobble = amp[:, None] * (torch.sin(2 * np.pi * freq[:, None] * dt[..., None] + phase[:, None]) - torch.sin(phase[:, None]))
    wobble = wobble * m
    roll0 = f32(np.deg2rad(rng.normal(0, 3.0, size=b)))[:, None]
    offset = _axis_rot(wobble[..., 2] + roll0, 2) @ _axis_rot(wobble[..., 1], 0) @ _axis_rot(wobble[..., 0], 1)
    rot = offset @ rot

    # Keep the person in front of the camera: a window whose path comes closer than `min_depth` (or passes
    # behind) slides the camera back along its own optical axis. Depth rises by the same amount in every frame,
    # and the rotation (so omega) is untouched.
    depth = (rot[..., 2, :] * (pelvis - centre)).sum(-1)                           # (B, T)
    push = (min_depth - depth.amin(dim=1)).clamp_min(0.0)                          # (B,)
    centre = centre - push[:, None, None] * rot[..., 2, :]

    sizes = _IMAGE_SIZES[rng.integers(0, len(_IMAGE_SIZES), size=b)]
    focal = np.sqrt((sizes**2).sum(-1))
    return CameraTrack(
        rotation=rot,
        centre=centre,
        focal=f32(focal),
        principal=f32(sizes / 2),
        image_size=f32(sizes),
        moving=torch.from_numpy(moving),
    )
