"""Training losses of the causal model; every term is a per-frame mean so weights read as trade-offs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model.state import REFERENCE_FPS, X_BBOX_CENTRE, X_BBOX_SIZE


def second_difference(x: torch.Tensor, interval: torch.Tensor | None) -> torch.Tensor:
    """x: (B, T, ...) -> (B, T-2, ...) acceleration per reference frame^2; interval (B, T): each frame's distance
    from the previous one in reference frames (any fps, drops). The same definition as metrics.accel_error."""
    if interval is None:
        return x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]
    r = interval.reshape(interval.shape + (1,) * (x.dim() - 2)).clamp_min(1e-3)
    v_next = (x[:, 2:] - x[:, 1:-1]) / r[:, 2:]
    v_prev = (x[:, 1:-1] - x[:, :-2]) / r[:, 1:-1]
    return (v_next - v_prev) * 2 / (r[:, 1:-1] + r[:, 2:])

LOSS_WEIGHTS: dict[str, float] = {
    "joints3d": 5.0,      # camera-frame, pelvis-relative joints + keypoints (m)
    "reproj": 3.0,        # 2D keypoints in bbox half-size units (raised from 1: real footage judges agreement with the 2D)
    "rot": 1.0,           # squared Frobenius of local rotations (camera-frame root)
    "betas": 0.05,
    "contact": 0.3,
    "cam": 1.0,           # camera-frame pelvis: x, y (m) and log depth
    "root_world": 1.0,    # world root orientation
    "vel": 10.0,          # network root velocity (m/frame)
    "traj": 0.5,          # integrated world trajectory (m)
    "smooth": 5.0,        # joint acceleration error (m per 30-fps frame^2: jitter at 60 fps costs what it shows)
}


def _project_bbox_units(kp_cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """kp_cam (B, T, K, 3) -> (B, T, K, 2) in the same bbox-normalized units as the input keypoints."""
    z = kp_cam[..., 2:3].clamp_min(0.1)
    uv = kp_cam[..., :2] / z                                       # focal-normalized image coords
    centre = x[..., None, X_BBOX_CENTRE]                                   # (cx - px) / f, (cy - py) / f
    half = x[..., None, X_BBOX_SIZE] / 2                                 # size / f / 2
    return (uv - centre) / half


def compute_losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """out: `CausalMocap.forward_sequence` outputs; batch: `SyntheticGenerator` sample. Returns unweighted terms."""
    losses: dict[str, torch.Tensor] = {}
    losses["joints3d"] = F.smooth_l1_loss(out["joints_cam_rel"], batch["gt_joints_cam_rel"], beta=0.05) + F.smooth_l1_loss(
        out["kp3d_cam"] - out["cam_trans"][..., None, :], batch["gt_kp_cam_rel"], beta=0.05
    )
    pred_2d = _project_bbox_units(out["kp3d_cam"], batch["x"])
    vis = batch["gt_kp_in_view"].float()[..., None]
    err2d = (pred_2d - batch["gt_kp2d_norm"]).abs().clamp_max(1.0) * vis
    losses["reproj"] = err2d.sum() / vis.sum().clamp_min(1.0) / 2
    losses["rot"] = (out["pose_cam_rotmat"] - batch["gt_pose_cam"]).square().sum((-1, -2)).mean()
    losses["betas"] = (out["betas"] - batch["gt_betas"][:, None]).square().mean()
    losses["contact"] = F.binary_cross_entropy_with_logits(out["contact_logits"], batch["gt_contact"])
    pred_c, gt_c = out["cam_trans"], batch["gt_cam_trans"]
    losses["cam"] = (pred_c[..., :2] - gt_c[..., :2]).abs().mean() + (
        torch.log(pred_c[..., 2].clamp_min(0.05)) - torch.log(gt_c[..., 2].clamp_min(0.05))
    ).abs().mean()
    losses["root_world"] = (out["pose_rotmat"][:, :, 0] - batch["gt_root_world"]).square().sum((-1, -2)).mean()
    gt_vel = batch["gt_trans_world"][:, 1:] - batch["gt_trans_world"][:, :-1]
    losses["vel"] = F.smooth_l1_loss(out["root_vel_net"][:, 1:], gt_vel, beta=0.01)
    gt_traj = batch["gt_trans_world"] - batch["gt_trans_world"][:, :1]
    pred_traj = out["root_trans"] - out["root_trans"][:, :1]
    losses["traj"] = (pred_traj - gt_traj).norm(dim=-1).mean() + (
        out["root_trans"][:, 0, 1] - batch["gt_trans_world"][:, 0, 1]
    ).abs().mean()
    interval = batch["dt"] * REFERENCE_FPS if "dt" in batch else None
    losses["smooth"] = (second_difference(out["joints_cam_rel"], interval)
                        - second_difference(batch["gt_joints_cam_rel"], interval)).norm(dim=-1).mean()
    return losses


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    weights = weights or LOSS_WEIGHTS
    return sum(weights[k] * v for k, v in losses.items())  # type: ignore[return-value]
