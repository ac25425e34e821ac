"""Self-supervised losses for test-time adaptation: what the network's output must agree with when no ground
truth exists (Tung et al. 2017; VideoPose3D's back-projection): the 2D evidence, a body that keeps its bones,
smooth motion, planted feet while in contact, a plausible pose, and weights that stay near the pretrained ones.

Every term takes `CausalMocap.forward_sequence` outputs on (B, T) windows and returns a scalar; `gate_metrics`
gives the same quantities without gradients for accepting or refusing a candidate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..camera import CONF_THRESHOLD
from ..losses import _project_bbox_units, second_difference
from ..model.refiner import contact_weights
from ..model.state import X_FRAME_INTERVAL
from ..skeleton import NUM_KEYPOINTS, SMPL_PARENTS

#: Ankle and toe-base joints stand for the 4 contact points (L heel, L toe, R heel, R toe), as in mocap.eval.
FOOT_JOINTS = (7, 10, 8, 11)

#: Loose anatomical bound on each joint's local rotation angle (degrees); beyond it a pose is implausible.
#: Order: SMPL-24 (mocap/skeleton.py); the root (joint 0) is unbounded.
JOINT_MAX_DEG: tuple[float, ...] = (
    360.0, 120.0, 120.0, 60.0, 150.0, 150.0, 45.0, 60.0, 60.0, 45.0, 45.0, 45.0,
    60.0, 45.0, 45.0, 60.0, 150.0, 150.0, 160.0, 160.0, 90.0, 90.0, 45.0, 45.0,
)


@dataclass(frozen=True)
class AdaptWeights:
    """Loss weights; each term is a per-frame mean, so the weights read as trade-offs."""

    reproj: float = 1.0         # robust 2D error, bbox half-size units
    reproj_sigma: float = 0.1   # Geman-McClure scale (bbox half-size units): residuals far above it count ~1
    bone: float = 1.0           # bone-length coefficient of variation over the window
    smooth: float = 2.0         # joint acceleration, m per 30-fps frame^2 (pelvis-relative, camera axes)
    foot: float = 2.0           # world foot-point speed while predicted in contact, m per 30-fps frame
    prior: float = 0.05         # squared rotation distance to the pretrained model's prediction
    limits: float = 1.0         # joint angles beyond JOINT_MAX_DEG, radians
    anchor: float = 1.0         # L2-SP: summed squared deviation of the adapted weights from the pretrained ones


def keypoint_targets(x: torch.Tensor, conf: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, T, D) network input -> detected keypoints (B, T, 21, 2) in bbox units and weights (B, T, 21).

    The weight is the detector confidence where the keypoint is visible in x (conf >= threshold), else 0;
    without conf the visible flag alone weights.
    """
    kp = x[..., : 3 * NUM_KEYPOINTS].reshape(x.shape[:-1] + (NUM_KEYPOINTS, 3))
    visible = kp[..., 2]
    w = visible if conf is None else visible * conf.clamp(0.0, 1.0) * (conf >= CONF_THRESHOLD)
    return kp[..., :2], w


def reprojection_residual(out: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(B, T, 21) distance between the projected model keypoints and the detected ones, bbox half-size units."""
    target, _ = keypoint_targets(x)
    return (_project_bbox_units(out["kp3d_cam"], x) - target).norm(dim=-1)


def reprojection_loss(out: Mapping[str, torch.Tensor], x: torch.Tensor, conf: torch.Tensor,
                      sigma: float = 0.1) -> torch.Tensor:
    """Confidence-weighted Geman-McClure of the 2D residual: an outlier keypoint costs at most 1."""
    _, w = keypoint_targets(x, conf)
    r2 = reprojection_residual(out, x).square()
    rho = r2 / (r2 + sigma**2)
    return (w * rho).sum() / w.sum().clamp_min(1.0)


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """joints (..., 24, 3) -> (..., 23) lengths of the SMPL bones (child minus parent)."""
    child = list(range(1, len(SMPL_PARENTS)))
    parent = [SMPL_PARENTS[c] for c in child]
    return (joints[..., child, :] - joints[..., parent, :]).norm(dim=-1)


def bone_consistency_loss(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over bones of std / mean of the bone length across each window: one body, one skeleton."""
    lengths = bone_lengths(out["joints_cam_rel"])                           # (B, T, 23)
    return (lengths.std(dim=1) / lengths.mean(dim=1).clamp_min(1e-3)).mean()


def frame_intervals(x: torch.Tensor) -> torch.Tensor | None:
    """x: (B, T, D) network input -> (B, T) each frame's time since the previous one in 30-fps frames (0.5 at
    60 fps, 2 after a dropped 30-fps frame), read from the frame-interval feature; None for a model without it.

    Why: per-frame differences shrink with the frame rate (a 60-fps jitter's second difference is a quarter of the
    same jitter per 30-fps frame), so without this the smoothness and foot terms, and the gate's plausibility,
    would barely see jitter at 60 fps. The same units as the training loss and `mocap.metrics.accel_error`."""
    if x.shape[-1] < X_FRAME_INTERVAL.stop:
        return None
    return (x[..., X_FRAME_INTERVAL.start] + 1.0).clamp_min(1e-3)


def acceleration(seq: torch.Tensor, interval: torch.Tensor | None = None) -> torch.Tensor:
    """seq (B, T, ..., 3) -> second differences (B, T-2, ...) as norms, per 30-fps frame^2 given `interval`
    (B, T) (`frame_intervals`), else per frame^2."""
    return second_difference(seq, interval).norm(dim=-1)


def smoothness_loss(out: Mapping[str, torch.Tensor], interval: torch.Tensor | None = None) -> torch.Tensor:
    """Mean joint acceleration (pelvis-relative, camera axes) plus the pelvis' camera-frame acceleration;
    interval (B, T) as in `acceleration`."""
    if out["joints_cam_rel"].shape[1] < 3:
        return out["joints_cam_rel"].sum() * 0.0
    return (acceleration(out["joints_cam_rel"], interval).mean()
            + acceleration(out["cam_trans"][:, :, None], interval).mean())


def foot_slide_loss(out: Mapping[str, torch.Tensor], threshold: float = 0.5,
                    interval: torch.Tensor | None = None) -> torch.Tensor:
    """World speed of the foot points weighted by their predicted contact (the weights are not trained here);
    per 30-fps frame given `interval` (B, T), else per frame."""
    if out["joints"].shape[1] < 2:
        return out["joints"].sum() * 0.0
    feet = out["joints"][:, :, list(FOOT_JOINTS)]                          # (B, T, 4, 3)
    speed = (feet[:, 1:] - feet[:, :-1]).norm(dim=-1)                       # (B, T-1, 4)
    if interval is not None:
        speed = speed / interval[:, 1:, None]
    w = contact_weights(out["contact"][:, 1:].detach(), threshold)
    return (w * speed).sum() / w.sum().clamp_min(1.0)


def joint_limit_loss(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean excess of local joint angles over JOINT_MAX_DEG, as 1 - cos (no arccos: its gradient is infinite at
    the identity rotation)."""
    rot = out["pose_cam_rotmat"][..., 1:, :, :]                             # (B, T, 23, 3, 3)
    cos = (rot[..., 0, 0] + rot[..., 1, 1] + rot[..., 2, 2] - 1.0) / 2.0
    limit = torch.cos(torch.deg2rad(torch.tensor(JOINT_MAX_DEG[1:], dtype=rot.dtype, device=rot.device)))
    return (limit - cos).clamp_min(0.0).mean()


def prior_loss(out: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Squared Frobenius distance of the local rotations (joints 1..23) to the pretrained model's prediction
    on the same input (`ref`, no gradient): the network's own prior of what a body looks like."""
    return (out["pose_cam_rotmat"][..., 1:, :, :] - ref["pose_cam_rotmat"][..., 1:, :, :]).square().sum((-1, -2)).mean()


def anchor_loss(params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """L2-SP (Li et al. 2018): squared distance of the adapted weights to the pretrained ones (summed, so the
    pull on each weight does not depend on how many adapt)."""
    return sum(((p - anchor[n]).square().sum() for n, p in params.items()), torch.zeros(()))


def self_supervised_losses(out: Mapping[str, torch.Tensor], x: torch.Tensor, conf: torch.Tensor,
                           ref: Mapping[str, torch.Tensor], contact_threshold: float = 0.5,
                           sigma: float = 0.1) -> dict[str, torch.Tensor]:
    """Every data term (the anchor is added by the optimizer, which knows the parameters)."""
    interval = frame_intervals(x)
    return {
        "reproj": reprojection_loss(out, x, conf, sigma),
        "bone": bone_consistency_loss(out),
        "smooth": smoothness_loss(out, interval),
        "foot": foot_slide_loss(out, contact_threshold, interval),
        "prior": prior_loss(out, ref),
        "limits": joint_limit_loss(out),
    }


def weighted_total(losses: Mapping[str, torch.Tensor], weights: AdaptWeights) -> torch.Tensor:
    return sum((getattr(weights, k) * v for k, v in losses.items()), torch.zeros(()))


@torch.no_grad()
def gate_metrics(out: Mapping[str, torch.Tensor], x: torch.Tensor, conf: torch.Tensor,
                 contact_threshold: float = 0.5) -> dict[str, float]:
    """What the gate compares on a held-back window: `reproj` (confidence-weighted mean 2D error, bbox half-size
    units, each keypoint capped at 0.5 so a detector outlier cannot decide) and `plausibility` (lower is better:
    bone-length variation + joint acceleration + foot sliding + joint-limit excess, in their natural units; motion
    per 30-fps frame, as `frame_intervals` says why)."""
    _, w = keypoint_targets(x, conf)
    interval = frame_intervals(x)
    r = reprojection_residual(out, x).clamp_max(0.5)
    reproj = float((w * r).sum() / w.sum().clamp_min(1.0))
    parts = {
        "bone": float(bone_consistency_loss(out)),
        "accel": float(smoothness_loss(out, interval)),
        "foot": float(foot_slide_loss(out, contact_threshold, interval)),
        "limits": float(joint_limit_loss(out)),
    }
    return {"reproj": reproj, "plausibility": sum(parts.values()), **parts}


__all__ = [
    "AdaptWeights", "FOOT_JOINTS", "JOINT_MAX_DEG", "acceleration", "frame_intervals", "anchor_loss", "bone_consistency_loss",
    "bone_lengths", "foot_slide_loss", "gate_metrics", "joint_limit_loss", "keypoint_targets", "prior_loss",
    "reprojection_loss", "reprojection_residual", "self_supervised_losses", "smoothness_loss", "weighted_total",
]
