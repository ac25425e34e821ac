"""Training losses of the causal model; every term is a per-frame mean so weights read as trade-offs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model.state import X_BBOX_CENTRE, X_BBOX_SIZE

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
    "smooth": 5.0,        # joint acceleration error (m/frame^2)
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
    acc = lambda j: j[:, 2:] - 2 * j[:, 1:-1] + j[:, :-2]  # noqa: E731
    losses["smooth"] = (acc(out["joints_cam_rel"]) - acc(batch["gt_joints_cam_rel"])).norm(dim=-1).mean()
    return losses


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    weights = weights or LOSS_WEIGHTS
    return sum(weights[k] * v for k, v in losses.items())  # type: ignore[return-value]
