"""Virtual cameras around a moving person: static or smoothly moving (rotation + translation), OpenCV frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..camera import camera_omega, frame_rotation, look_at
from ..rotations import axis_rotation


@dataclass
class CameraTrack:
    rotation: torch.Tensor     # (B, T, 3, 3) world -> camera
    centre: torch.Tensor       # (B, T, 3) camera centre, world
    focal: torch.Tensor        # (B,) pixels
    principal: torch.Tensor    # (B, 2) pixels
    image_size: torch.Tensor   # (B, 2) (W, H)
    moving: torch.Tensor       # (B,) bool


def angular_velocity_6d(rotation: torch.Tensor, fps: float | None = None, dt: torch.Tensor | None = None) -> torch.Tensor:
    """rotation: (B, T, 3, 3) world->camera -> omega (B, T, 6) per frame (`mocap.camera.camera_omega`, the live
    providers' function); frame 0 = 0.

    dt: (B, T) seconds since the previous frame (variable frame rate, dropped frames); or a constant 1 / fps."""
    if dt is None and fps is None:
        raise ValueError("angular_velocity_6d needs fps or dt")
    q = frame_rotation(rotation[:, 1:], rotation[:, :-1])
    omega = camera_omega(q, dt=dt[:, 1:]) if dt is not None else camera_omega(q, rate=fps)
    return torch.cat((torch.zeros_like(omega[:, :1]), omega), dim=1)


@dataclass(frozen=True)
class CameraRanges:
    """Where people put cameras, as ranges to sample from (degrees, metres).

    Webcams sit on monitors roughly level; tripods, phones on shelves, lab and CCTV cameras look down from up to
    60 degrees; phones film portrait; lenses range from tele-ish to wide."""

    distance: tuple[float, float] = (1.0, 8.0)           # horizontal distance to the person, log-uniform
    level_prob: float = 0.35                              # share of near-level cameras ...
    level_elevation: tuple[float, float] = (-5.0, 10.0)   # ... with this elevation (positive = looking down)
    elevation: tuple[float, float] = (10.0, 60.0)         # the others
    roll: tuple[float, float] = (-10.0, 10.0)             # constant camera roll
    hfov: tuple[float, float] = (40.0, 90.0)              # horizontal field of view
    portrait_prob: float = 0.35
    #: Portrait phones: the horizontal (short-side) FOV is narrower; 27 degrees is what the live loop assumes for
    #: an uncalibrated 9:16 camera (focal = image diagonal), so the range covers it.
    portrait_hfov: tuple[float, float] = (25.0, 70.0)
    cut_prob: float = 0.2                                 # aim off-centre vertically so feet or head leave the frame
    min_depth: float = 0.9                                # never closer than this along the optical axis
    height: tuple[float, float] | None = None             # camera height range (m) instead of an elevation
    diagonal_focal: bool = False                          # focal = image diagonal (a fixed ~47-degree lens) instead of hfov


#: Landscape (W, H) sizes; portrait ones are these transposed.
_LANDSCAPE = np.array([(1280, 720), (1920, 1080), (640, 480), (1440, 1080), (960, 540)], dtype=np.float64)
#: The camera ranges of the `shifted` evaluation protocol: from above, portrait, as phones and lab cameras film.
SHIFTED_CAMERAS = CameraRanges(level_prob=0.0, elevation=(30.0, 50.0), portrait_prob=1.0, distance=(2.0, 6.0))
#: The cameras of the first model's training and of the `standard` protocol: 0.3-2.5 m high, 2-12 m away,
#: a ~47-degree lens, small roll, 40 % portrait.
LEGACY_CAMERAS = CameraRanges(distance=(2.0, 12.0), height=(0.3, 2.5), roll=(-5.0, 5.0), diagonal_focal=True,
                              portrait_prob=0.4, cut_prob=0.0, min_depth=1.5)


def sample_camera_track(
    rng: np.random.Generator,
    pelvis: torch.Tensor,                 # (B, T, 3) world pelvis path the camera films
    fps: float = 30.0,
    moving_prob: float = 0.75,
    force_moving: bool | None = None,
    ranges: CameraRanges = CameraRanges(),
    times: torch.Tensor | None = None,    # (B, T) seconds from the window start (default: uniform at fps)
) -> CameraTrack:
    """Random camera per window: initial pose around the person, then (maybe) smooth rotation + translation."""
    b, t = pelvis.shape[:2]
    dt = times.float() if times is not None else torch.arange(t, dtype=torch.float32)[None, :].expand(b, t) / fps
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    moving = rng.uniform(size=b) < moving_prob if force_moving is None else np.full(b, force_moving)
    # Distances log-uniform: near views are common in webcams, far ones in sports footage.
    dist = np.exp(rng.uniform(np.log(ranges.distance[0]), np.log(ranges.distance[1]), size=b))
    azim = rng.uniform(0, 2 * np.pi, size=b)
    level = rng.uniform(size=b) < ranges.level_prob
    elev = np.where(level, rng.uniform(*ranges.level_elevation, size=b), rng.uniform(*ranges.elevation, size=b))
    p0 = pelvis[:, 0]
    cam_h = np.maximum(p0[:, 1].numpy() + dist * np.tan(np.deg2rad(elev)), 0.15)
    if ranges.height is not None:
        cam_h = rng.uniform(*ranges.height, size=b)
    centre0 = torch.stack(
        (p0[:, 0] + f32(dist * np.sin(azim)), f32(cam_h), p0[:, 2] + f32(dist * np.cos(azim))), dim=-1
    )  # (B, 3)
    aim_noise = f32(rng.normal(0, 0.15, size=(b, 3))) * f32(np.minimum(dist, 4.0) / 4)[:, None]
    cut = rng.uniform(size=b) < ranges.cut_prob
    aim_noise[:, 1] += f32(np.where(cut, rng.choice([-1.0, 1.0], size=b) * rng.uniform(0.4, 0.9, size=b), 0.0))
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
    roll0 = f32(np.deg2rad(rng.uniform(*ranges.roll, size=b)))[:, None]
    offset = axis_rotation(wobble[..., 2] + roll0, 2) @ axis_rotation(wobble[..., 1], 0) @ axis_rotation(wobble[..., 0], 1)
    rot = offset @ rot

    # Keep the person in front of the camera: a window whose path comes closer than `min_depth` (or passes
    # behind) slides the camera back along its own optical axis. Depth rises by the same amount in every frame,
    # and the rotation (so omega) is untouched.
    depth = (rot[..., 2, :] * (pelvis - centre)).sum(-1)                           # (B, T)
    push = (ranges.min_depth - depth.amin(dim=1)).clamp_min(0.0)                   # (B,)
    centre = centre - push[:, None, None] * rot[..., 2, :]

    sizes = _LANDSCAPE[rng.integers(0, len(_LANDSCAPE), size=b)]
    portrait = rng.uniform(size=b) < ranges.portrait_prob
    sizes = np.where(portrait[:, None], sizes[:, ::-1], sizes)
    hfov = np.deg2rad(np.where(portrait, rng.uniform(*ranges.portrait_hfov, size=b), rng.uniform(*ranges.hfov, size=b)))
    focal = np.sqrt((sizes**2).sum(-1)) if ranges.diagonal_focal else sizes[:, 0] / (2 * np.tan(hfov / 2))
    return CameraTrack(
        rotation=rot,
        centre=centre,
        focal=f32(focal),
        principal=f32(sizes / 2),
        image_size=f32(sizes),
        moving=torch.from_numpy(moving),
    )
