"""Synthetic training/evaluation samples: real motion, random body, virtual camera, detector-like 2D.

The WHAM / VideoPose3D recipe, vectorized over a batch of windows. Every random draw comes from one
`np.random.Generator`, so a seed fixes a sample exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body import BuiltinBody
from ..camera import CONF_THRESHOLD, bbox_from_keypoints, normalize_keypoints
from ..model.state import frame_interval_feature
from ..rotations import axis_rotation
from ..skeleton import FOOT_KEYPOINT_IDS, NUM_JOINTS, NUM_KEYPOINTS
from .augment import Augment, augment_motion
from .contacts import CONTACT_HEIGHT, CONTACT_SPEED, foot_contacts
from .detector_noise import DetectorNoise, corrupt_keypoints
from .motion_bank import MotionWindows
from .virtual_camera import CameraRanges, angular_velocity_6d, sample_camera_track


@dataclass(frozen=True)
class SynthConfig:
    fps: float = 30.0
    moving_prob: float = 0.75
    random_yaw: bool = True
    random_betas: float = 0.8           # probability of replacing the clip's betas by random ones
    noise: float = 1.0                  # detector noise strength (0 = clean keypoints)
    contact_speed: float = CONTACT_SPEED    # m/s: a foot point slower than this ...
    contact_height: float = CONTACT_HEIGHT  # m above the window's lowest foot point ... is in contact
    bbox_scale_jitter: float = 0.06
    bbox_shift_jitter: float = 0.03
    min_visible: int = 6                # fewer confident keypoints = no person (as the live tracker decides)
    cameras: CameraRanges = CameraRanges()        # where cameras are put (elevation, roll, fov, portrait, distance)
    detector: DetectorNoise = DetectorNoise()     # how the 2D detector errs (fitted to BlazePose on real video)
    augment: Augment | None = None                # motion-prior widening (training only; None = the data as is)
    view_margin: float = 0.02                     # a point this far (of the image size) outside the frame is unseen


def _hold_forward(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values: (B, T, D), valid: (B, T) -> each invalid frame takes the last valid one (first valid before it)."""
    b, t = valid.shape
    idx = torch.where(valid, torch.arange(t)[None].expand(b, t), torch.zeros_like(valid, dtype=torch.long))
    idx = torch.cummax(idx, dim=1).values
    first_valid = torch.argmax(valid.to(torch.int64), dim=1)                       # (B,)
    idx = torch.where(valid[torch.arange(b)[:, None], idx], idx, first_valid[:, None].expand(b, t))
    return torch.gather(values, 1, idx[..., None].expand(values.shape))


class SyntheticGenerator:
    """Turns windows of world motion into model inputs and every ground truth the losses and metrics need."""

    def __init__(self, config: SynthConfig | None = None, body: BuiltinBody | None = None) -> None:
        self.config = config or SynthConfig()
        self.body = body or BuiltinBody()

    @torch.no_grad()
    def __call__(self, motion: MotionWindows, rng: np.random.Generator, camera: str | None = None) -> dict[str, torch.Tensor]:
        """camera: None (random per config), "static" or "moving". Returns a dict of (B, T, ...) tensors."""
        cfg = self.config
        if cfg.augment is not None:
            motion = augment_motion(motion, rng, cfg.augment, self.body)
        rot, trans, betas = motion.pose_rotmat.float(), motion.trans.float(), motion.betas.float()
        b, t = rot.shape[:2]
        dt = motion.dt.float() if motion.dt is not None else torch.full((b, t), 1.0 / cfg.fps)   # (B, T) seconds
        times = torch.cumsum(dt, dim=1) - dt[:, :1]

        # --- body: random proportions; the path scales with leg length so feet still meet the ground.
        if cfg.random_betas > 0:
            new = torch.as_tensor(rng.normal(0, 1, size=(b, 10)).clip(-2.5, 2.5), dtype=torch.float32)
            swap = torch.as_tensor(rng.uniform(size=(b, 1)) < cfg.random_betas)
            new_betas = torch.where(swap, new, betas)
            ratio = self._leg_height(new_betas) / self._leg_height(betas)             # (B,)
            trans = trans * ratio[:, None, None]
            betas = new_betas
        # --- random heading, and start the path at the origin (horizontally).
        if cfg.random_yaw:
            yaw = axis_rotation(torch.as_tensor(rng.uniform(0, 2 * np.pi, size=b), dtype=torch.float32), 1)  # (B, 3, 3)
            rot = torch.cat((yaw[:, None, None] @ rot[:, :, :1], rot[:, :, 1:]), dim=2)
            trans = (yaw[:, None] @ trans[..., None])[..., 0]
        trans = trans - trans[:, :1] * torch.tensor([1.0, 0.0, 1.0])

        flat = lambda a: a.reshape((b * t,) + a.shape[2:])  # noqa: E731
        world = self.body(flat(rot), betas.repeat_interleave(t, 0), flat(trans))
        joints_w = world.joints.reshape(b, t, NUM_JOINTS, 3)
        kp_w = world.keypoints.reshape(b, t, NUM_KEYPOINTS, 3)
        contact = self._contact_labels(kp_w[:, :, list(FOOT_KEYPOINT_IDS)], dt)

        # --- camera and projection.
        force = None if camera is None else camera == "moving"
        cam = sample_camera_track(rng, trans, cfg.fps, cfg.moving_prob, force_moving=force, ranges=cfg.cameras,
                                  times=times)
        kp_c = (cam.rotation[:, :, None] @ (kp_w - cam.centre[:, :, None])[..., None])[..., 0]   # (B, T, 21, 3)
        depth = kp_c[..., 2:3]
        kp_px = cam.focal[:, None, None, None] * kp_c[..., :2] / depth.clamp_min(1e-3) + cam.principal[:, None, None]
        margin = cfg.view_margin * cam.image_size[:, None, None]
        in_view = (depth[..., 0] > 0.2) & (kp_px > -margin).all(-1) & (kp_px < cam.image_size[:, None, None] + margin).all(-1)

        person_px = (cam.focal * 1.7 / (cam.rotation[:, 0] @ (trans[:, 0] - cam.centre[:, 0])[..., None])[:, 2, 0].clamp_min(0.5))
        if cfg.noise > 0:
            kp_noisy, conf = corrupt_keypoints(rng, kp_px, person_px, in_view, cfg.noise, times, cfg.detector)
        else:
            kp_noisy, conf = kp_px.clone(), in_view.float()
        too_few = (conf >= CONF_THRESHOLD).sum(-1, keepdim=True) < cfg.min_visible      # (B, T, 1)
        conf = torch.where(too_few, conf.clamp_max(CONF_THRESHOLD * 0.5), conf)
        kp2d = torch.cat((kp_noisy, conf[..., None]), dim=-1)                         # (B, T, 21, 3)

        bbox = bbox_from_keypoints(kp2d)                                                # (B, T, 3)
        valid = torch.isfinite(bbox).all(-1)
        bbox = self._jitter_bbox(rng, bbox)
        bbox = _hold_forward(bbox, valid)
        bbox = torch.nan_to_num(bbox, nan=1.0)
        principal = cam.principal[:, None].expand(b, t, 2)
        focal = cam.focal[:, None].expand(b, t)
        x = normalize_keypoints(kp2d, bbox, focal, principal)
        x = torch.cat((torch.nan_to_num(x), frame_interval_feature(dt)[..., None]), dim=-1)

        pelvis_c = (cam.rotation @ (trans - cam.centre)[..., None])[..., 0]           # (B, T, 3)
        cam_root = cam.rotation @ rot[:, :, 0]
        rel_c = (cam.rotation[:, :, None] @ (joints_w - trans[:, :, None])[..., None])[..., 0]
        kp_rel_c = (cam.rotation[:, :, None] @ (kp_w - trans[:, :, None])[..., None])[..., 0]
        half = bbox[..., 2:3, None] / 2
        kp_clean_norm = (kp_px - bbox[..., None, :2]) / half

        # Canonical world frame: Y up, Z towards the first camera (on the ground), X = its right; origin at the start.
        fwd = cam.rotation[:, 0, 2] * torch.tensor([1.0, 0.0, 1.0])
        z_axis = -fwd / fwd.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        y_axis = torch.tensor([0.0, 1.0, 0.0]).expand_as(z_axis)
        canon = torch.stack((torch.linalg.cross(y_axis, z_axis), y_axis, z_axis), dim=-2)[:, None]  # (B, 1, 3, 3)
        root_world = canon @ rot[:, :, 0]
        trans_world = (canon @ trans[..., None])[..., 0]
        joints_world = (canon[:, :, None] @ joints_w[..., None])[..., 0]

        pose_cam = torch.cat((cam_root[:, :, None], rot[:, :, 1:]), dim=2)
        return {
            "x": x,                                          # (B, T, 67) model input (state.py layout)
            "omega": angular_velocity_6d(cam.rotation, dt=dt),  # (B, T, 6) model input
            "dt": dt,                                        # (B, T) seconds since the previous frame
            "kp2d": kp2d,                                    # (B, T, 21, 3) noisy pixels + confidence
            "bbox": bbox,                                    # (B, T, 3)
            "focal": cam.focal,                              # (B,)
            "principal": cam.principal,                      # (B, 2)
            "image_size": cam.image_size,                    # (B, 2)
            "camera_moving": cam.moving,                     # (B,)
            "cam_rotation": cam.rotation,                    # (B, T, 3, 3) world(mocap) -> camera
            "gt_pose_cam": pose_cam,                         # (B, T, 24, 3, 3) joint 0 in the camera frame
            "gt_root_world": root_world,                     # (B, T, 3, 3) canonical world
            "gt_betas": betas,                               # (B, 10)
            "gt_cam_trans": pelvis_c,                        # (B, T, 3)
            "gt_trans_world": trans_world,                   # (B, T, 3) canonical world pelvis
            "gt_joints_world": joints_world,                 # (B, T, 24, 3) canonical world
            "gt_joints_cam_rel": rel_c,                      # (B, T, 24, 3) camera axes, pelvis-relative
            "gt_kp_cam_rel": kp_rel_c,                       # (B, T, 21, 3)
            "gt_kp2d_norm": kp_clean_norm,                   # (B, T, 21, 2) clean keypoints in bbox units
            "gt_kp_in_view": in_view,                        # (B, T, 21)
            "gt_contact": contact,                           # (B, T, 4) float 0/1
        }

    def _leg_height(self, betas: torch.Tensor) -> torch.Tensor:
        """Pelvis height above the lowest foot point at rest, (B,) metres."""
        zero = torch.zeros(betas.shape[0], NUM_JOINTS, 3)
        kp = self.body(zero, betas).keypoints
        return -kp[:, list(FOOT_KEYPOINT_IDS), 1].min(-1).values

    def _contact_labels(self, feet: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """feet: (B, T, 4, 3) world, dt (B, T) s -> (B, T, 4) 1 where the foot point is slow and near the floor."""
        return foot_contacts(feet, dt, self.config.contact_speed, self.config.contact_height).float()

    def _jitter_bbox(self, rng: np.random.Generator, bbox: torch.Tensor) -> torch.Tensor:
        b, t = bbox.shape[:2]
        cfg = self.config
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        scale = 1 + f32(rng.normal(0, cfg.bbox_scale_jitter, size=(b, t, 1)))
        shift = f32(rng.normal(0, cfg.bbox_shift_jitter, size=(b, t, 2))) * bbox[..., 2:3]
        return torch.cat((bbox[..., :2] + shift, bbox[..., 2:3] * scale), dim=-1)


def benchmark(batch: int = 64, window: int = 64, repeats: int = 10, seed: int = 0) -> dict[str, float]:
    """Frames/s of the generator on real-shaped data (a procedural walk stands in for the cache)."""
    import time

    from ..rotations import axis_angle_to_matrix
    from .motion_bank import MotionWindows

    t = torch.arange(window, dtype=torch.float32) / 30
    aa = torch.zeros(batch, window, NUM_JOINTS, 3)
    aa[:, :, 1, 0], aa[:, :, 2, 0] = 0.5 * torch.sin(6.28 * t), -0.5 * torch.sin(6.28 * t)
    trans = torch.zeros(batch, window, 3)
    trans[..., 1], trans[..., 2] = 0.92, t
    motion = MotionWindows(axis_angle_to_matrix(aa), trans, torch.zeros(batch, 10))
    gen = SyntheticGenerator()
    rng = np.random.default_rng(seed)
    gen(motion, rng)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gen(motion, rng)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"batch": batch, "window": window, "threads": torch.get_num_threads(),
            "median_ms_per_batch": round(med * 1000, 2), "frames_per_s": round(batch * window / med)}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m mocap.data.synth", description="Benchmark the synthetic generator.")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(benchmark(args.batch, args.window, args.repeats)))
