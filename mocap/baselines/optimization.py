"""The 'Optimization' baseline (Tung et al. 2017, Table 1): fit the body to each frame's 2D keypoints alone.

Every frame is an independent problem (no temporal term), but all T frames are solved together as one torch
batch. Per frame we minimise, with Adam for a fixed number of iterations,

    E = E_2d + w_pose E_pose + w_limit E_limit + w_beta |beta|^2 + w_depth E_depth

- E_2d: confidence-weighted Geman-McClure reprojection error of the 21 keypoints, measured in bbox units
  (pixels / bbox size) so the weights do not depend on resolution or distance; keypoints below
  ``conf_threshold`` get weight 0 (masked, as docs/design.md's keypoint convention asks).
- E_pose: L2 of the 23 body-joint axis-angles from the standing start pose (:func:`standing_pose`, an A-pose:
  on synthetic walking it gives ~20 % lower PA-MPJPE than starting from and pulling toward the T-pose).
- E_limit: squared hinge on knees / elbows bending the anatomically wrong way.
- E_depth: squared log-ratio of the root depth to the bbox-size guess ``f * height * bbox_scale / size``.

Root orientation is a 6D rotation (no singularity near the initial 180-degree rotation); the camera-frame
root translation is ``z * (u, v, 1)`` with ``z = exp(log_z)``, which conditions depth and image position alike.
Because a single view cannot tell a person facing the camera from one facing away early in a local fit, each
frame is solved from two starts (facing the camera, facing away) and the lower final energy wins.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from mocap.body import Body, BuiltinBody
from mocap.camera import project
from mocap.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from mocap.skeleton import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS, SMPL_JOINT_NAMES

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
#: (joint, axis, sign): sign * angle < 0 is the anatomically wrong direction (body rest frame: Y up, facing +Z,
#: left at +X). Knee flexion is +x (shin swings back); left elbow flexion is -y, right elbow flexion +y.
_LIMITS: tuple[tuple[int, int, float], ...] = (
    (_J["l_knee"], 0, 1.0), (_J["r_knee"], 0, 1.0),
    (_J["l_elbow"], 1, -1.0), (_J["r_elbow"], 1, 1.0),
)


ARM_DROP = 0.8  # rad


@dataclass(frozen=True)
class FitWeights:
    """Energy weights (data term in squared bbox units, priors in squared radians / betas)."""

    pose: float = 5e-6
    limit: float = 1e-2
    beta: float = 1e-5
    depth: float = 1e-4
    gm_sigma: float = 0.1  # Geman-McClure scale, bbox units: residuals well past 10 % of the box saturate


def standing_pose(arm_drop: float = ARM_DROP) -> np.ndarray:
    """(24, 3) local axis-angle of the start pose: upright, legs straight, arms lowered ``arm_drop`` rad from
    the T-pose (an A-pose, closer than the T-pose to how people usually hold their arms). Root left at zero."""
    pose = np.zeros((NUM_JOINTS, 3))
    pose[_J["l_shoulder"], 2] = -arm_drop
    pose[_J["r_shoulder"], 2] = arm_drop
    return pose


def root_facing_camera(yaw: float = 0.0) -> np.ndarray:
    """(3,) axis-angle of a body standing upright in the OpenCV camera frame, turned ``yaw`` rad about its up.

    The body's rest frame is Y up facing +Z; the camera's is Y down, Z forward (away from the camera). A
    180-degree turn about X maps up to -Y (image up) and the facing direction to -Z (toward the camera).
    """
    rx = axis_angle_to_matrix(np.array([math.pi, 0.0, 0.0]))
    ry = axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
    return matrix_to_axis_angle(rx @ ry)


class OptimizationBaseline:
    """Per-frame SMPLify-style fit of ``body`` to 2D keypoints, all frames batched.

    body: any :class:`mocap.body.Body` (default :class:`BuiltinBody`); K: (3, 3) intrinsics in pixels.
    iters: Adam iterations (fixed, so cost per frame is predictable); lr: Adam step size.
    conf_threshold: keypoints with lower confidence are ignored.
    height_m, bbox_scale: the depth guess assumes the box spans ``height_m * bbox_scale`` metres
    (a 1.7 m person inside :func:`mocap.camera.bbox_from_keypoints`'s 1.2x margin).
    two_starts: also start facing away and keep the better fit per frame (twice the cost).
    num_threads: torch intra-op threads during :meth:`fit` (restored after); the per-iteration ops are tiny,
    so for short clips 1 thread is fastest (extra threads only add synchronisation). None leaves torch's setting.
    """

    def __init__(
        self,
        body: Body | None = None,
        K: np.ndarray | None = None,
        iters: int = 150,
        lr: float = 0.05,
        conf_threshold: float = 0.3,
        weights: FitWeights = FitWeights(),
        height_m: float = 1.7,
        bbox_scale: float = 1.2,
        two_starts: bool = True,
        num_threads: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if K is None:
            raise ValueError("OptimizationBaseline needs the camera intrinsics K (3, 3)")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be (3, 3), got {K.shape}")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        self.body = body if body is not None else BuiltinBody()
        self.K = K
        self.iters = iters
        self.lr = lr
        self.conf_threshold = conf_threshold
        self.w = weights
        self.bbox_metres = height_m * bbox_scale
        self.two_starts = two_starts
        self.num_threads = num_threads
        self.dtype = dtype
        self.last_seconds_per_frame = float("nan")

    # ------------------------------------------------------------------------------------------ public
    def fit(self, kp2d: np.ndarray, bbox: np.ndarray) -> dict[str, np.ndarray]:
        """Fit every frame independently.

        kp2d: (T, 21, 3) pixels (u, v) + confidence; bbox: (T, 3) square box [cx, cy, size] in pixels.
        Returns float32 arrays: ``pose_aa (T, 24, 3)`` local axis-angle, joint 0 = root orientation in the
        camera frame; ``betas (T, 10)``; ``cam_trans (T, 3)`` the body's ``trans`` (pelvis for BuiltinBody)
        in the camera frame, metres; ``joints_cam (T, 24, 3)``; ``kp2d_fit (T, 21, 2)`` reprojected keypoints;
        ``energy (T,)`` final energy. ``self.last_seconds_per_frame`` holds the wall time per frame.
        """
        kp, box = self._check_inputs(kp2d, bbox)  # float tensors
        t0 = time.perf_counter()
        starts = (0.0, math.pi) if self.two_starts else (0.0,)
        prev_threads = torch.get_num_threads()
        if self.num_threads is not None and self.num_threads >= 1:
            torch.set_num_threads(self.num_threads)
        try:
            results = [self._fit_from(kp, box, yaw) for yaw in starts]
        finally:
            torch.set_num_threads(prev_threads)
        energy = torch.stack([r["energy"] for r in results])  # (S, T)
        best = energy.argmin(0)  # (T,)
        out = {k: torch.stack([r[k] for r in results])[best, torch.arange(len(best))] for k in results[0]}
        self.last_seconds_per_frame = (time.perf_counter() - t0) / kp.shape[0]
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in out.items()}

    # ----------------------------------------------------------------------------------------- helpers
    def _check_inputs(self, kp2d: np.ndarray, bbox: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        kp2d, bbox = np.asarray(kp2d, dtype=np.float64), np.asarray(bbox, dtype=np.float64)
        if kp2d.ndim != 3 or kp2d.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ValueError(f"kp2d must be (T, {NUM_KEYPOINTS}, 3) pixels + confidence, got {kp2d.shape}")
        if bbox.shape != (kp2d.shape[0], 3):
            raise ValueError(f"bbox must be (T, 3) = ({kp2d.shape[0]}, 3) [cx, cy, size], got {bbox.shape}")
        if kp2d.shape[0] == 0:
            raise ValueError("kp2d has no frames")
        if not np.all(np.isfinite(bbox)) or np.any(bbox[:, 2] <= 0):
            raise ValueError("bbox must be finite with size > 0 in every frame (drop frames without a person)")
        conf = kp2d[..., 2]
        if np.any(~np.isfinite(conf)):
            raise ValueError("kp2d confidence contains NaN or inf")
        visible = conf >= self.conf_threshold
        if np.any(~np.isfinite(kp2d[..., :2][visible])):
            raise ValueError("kp2d has NaN/inf coordinates on keypoints with confidence >= threshold")
        if np.any(visible.sum(1) < 2):
            raise ValueError(f"every frame needs >= 2 keypoints with confidence >= {self.conf_threshold}")
        kp2d = np.where(visible[..., None], kp2d, 0.0)  # masked coordinates may be NaN: never let them in
        return torch.as_tensor(kp2d, dtype=self.dtype), torch.as_tensor(bbox, dtype=self.dtype)

    def _init_translation(self, bbox: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bbox (T, 3) -> log depth (T, 1) and normalized image offset (T, 2) of the root from the box."""
        f = float(math.sqrt(self.K[0, 0] * self.K[1, 1]))
        z = f * self.bbox_metres / bbox[:, 2:3]
        uv = torch.stack(
            ((bbox[:, 0] - self.K[0, 2]) / self.K[0, 0], (bbox[:, 1] - self.K[1, 2]) / self.K[1, 1]), dim=-1
        )
        return torch.log(z), uv

    def _fit_from(self, kp2d: torch.Tensor, bbox: torch.Tensor, yaw: float) -> dict[str, torch.Tensor]:
        n = kp2d.shape[0]
        root0 = axis_angle_to_matrix(torch.as_tensor(root_facing_camera(yaw), dtype=self.dtype))
        root6d = matrix_to_rot6d(root0).expand(n, 6).clone().requires_grad_(True)
        stand = torch.as_tensor(standing_pose()[1:], dtype=self.dtype)  # (23, 3): start and prior mean
        body_aa = stand.expand(n, -1, -1).clone().requires_grad_(True)
        betas = torch.zeros(n, NUM_BETAS, dtype=self.dtype, requires_grad=True)
        log_z0, uv0 = self._init_translation(bbox)
        log_z = log_z0.clone().requires_grad_(True)
        uv = uv0.clone().requires_grad_(True)
        K = torch.as_tensor(self.K, dtype=self.dtype)

        weight = kp2d[..., 2] * (kp2d[..., 2] >= self.conf_threshold)  # (T, 21)
        weight = weight / weight.sum(-1, keepdim=True)
        size = bbox[:, None, 2:3]  # (T, 1, 1)

        def energy(full: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            rot = torch.cat((rot6d_to_matrix(root6d)[:, None], axis_angle_to_matrix(body_aa)), dim=1)
            z = torch.exp(log_z)
            trans = torch.cat((uv * z, z), dim=-1)
            out = self.body(rot, betas=betas, trans=trans)
            uv_fit = project(out.keypoints, K)  # (T, 21, 2)
            s2 = self.w.gm_sigma**2
            # A keypoint behind the camera projects to NaN: count it as a saturated outlier, never as a NaN.
            finite = torch.isfinite(uv_fit).all(-1)
            uv_safe = torch.where(finite[..., None], uv_fit, kp2d[..., :2])
            r2 = torch.where(finite, (((uv_safe - kp2d[..., :2]) / size) ** 2).sum(-1), 1e6 * s2)
            e = (weight * s2 * r2 / (r2 + s2)).sum(-1)  # (T,)
            e = e + self.w.depth * ((log_z - log_z0) ** 2).sum(-1)
            if full:
                e = e + self.w.pose * ((body_aa - stand) ** 2).sum((-1, -2)) + self.w.beta * (betas**2).sum(-1)
                lim = torch.stack([torch.relu(-s * body_aa[:, j - 1, a]) for j, a, s in _LIMITS], -1)
                e = e + self.w.limit * (lim**2).sum(-1)
            extras = {"rot": rot, "trans": trans, "joints": out.joints, "kp": uv_fit}
            return e, extras

        # Stage 1 (first fifth): place and orient the standing body; stage 2: everything.
        stage1 = max(1, self.iters // 5)
        opt = torch.optim.Adam([root6d, log_z, uv], lr=self.lr)
        for _ in range(stage1):
            opt.zero_grad(set_to_none=True)
            energy(full=False)[0].sum().backward()
            opt.step()
        opt = torch.optim.Adam([root6d, log_z, uv, body_aa, betas], lr=self.lr)
        for _ in range(self.iters - stage1):
            opt.zero_grad(set_to_none=True)
            energy(full=True)[0].sum().backward()
            opt.step()
        with torch.no_grad():
            e, ex = energy(full=True)
            pose_aa = torch.cat((matrix_to_axis_angle(ex["rot"][:, :1]), body_aa), dim=1)
        return {
            "pose_aa": pose_aa, "betas": betas.detach(), "cam_trans": ex["trans"], "joints_cam": ex["joints"],
            "kp2d_fit": ex["kp"], "energy": e,
        }


# ------------------------------------------------------------------------------------------- benchmark
def walking_poses(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 24, 3) mild walking-like local axis-angles (body rest frame), root left at zero.

    Legs swing +-0.4 rad in antiphase with knees bending 0.1-0.6 rad, arms hang (shoulders lowered ~1.2 rad)
    and swing against the legs with slightly bent elbows; a little random jitter makes frames differ.
    """
    rng = np.random.default_rng(seed)
    phase = np.linspace(0.0, 2 * math.pi, frames, endpoint=False) + rng.uniform(0, 2 * math.pi)
    pose = np.zeros((frames, NUM_JOINTS, 3))
    swing = 0.4 * np.sin(phase)
    pose[:, _J["l_hip"], 0] = -swing
    pose[:, _J["r_hip"], 0] = swing
    pose[:, _J["l_knee"], 0] = 0.35 + 0.25 * np.sin(phase + 1.0)
    pose[:, _J["r_knee"], 0] = 0.35 - 0.25 * np.sin(phase + 1.0)
    pose[:, _J["l_shoulder"], 2] = -1.2
    pose[:, _J["r_shoulder"], 2] = 1.2
    pose[:, _J["l_shoulder"], 1] = -0.3 * swing
    pose[:, _J["r_shoulder"], 1] = -0.3 * swing
    pose[:, _J["l_elbow"], 1] = -0.3
    pose[:, _J["r_elbow"], 1] = 0.3
    pose[:, _J["spine1"], 0] = 0.05
    pose[:, 1:] += rng.normal(scale=0.03, size=(frames, NUM_JOINTS - 1, 3))
    return pose


def synthetic_views(
    body: Body, K: np.ndarray, frames: int, depth: float = 4.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Project ``walking_poses`` through K at ``depth`` metres, yaw in [-0.6, 0.6] rad: the test/benchmark data.

    Returns ``pose_aa (T, 24, 3)`` camera-frame, ``trans (T, 3)``, ``betas (T, 10)``, ``joints_cam (T, 24, 3)``,
    ``kp2d (T, 21, 3)`` pixels with confidence 1.
    """
    rng = np.random.default_rng(seed + 1)
    pose = walking_poses(frames, seed)
    yaw = rng.uniform(-0.6, 0.6, size=frames)
    pose[:, 0] = np.stack([root_facing_camera(y) for y in yaw])
    trans = np.stack([rng.uniform(-0.3, 0.3, frames), rng.uniform(-0.1, 0.1, frames), np.full(frames, depth)], -1)
    betas = rng.normal(scale=0.5, size=(frames, NUM_BETAS))
    with torch.no_grad():
        out = body(torch.as_tensor(pose, dtype=torch.float32), betas=torch.as_tensor(betas, dtype=torch.float32),
                   trans=torch.as_tensor(trans, dtype=torch.float32))
        uv = project(out.keypoints, torch.as_tensor(K, dtype=torch.float32))
    kp2d = np.concatenate([np.asarray(uv, dtype=np.float64), np.ones((frames, NUM_KEYPOINTS, 1))], -1)
    return {"pose_aa": pose, "trans": trans, "betas": betas, "joints_cam": out.joints.numpy().astype(np.float64),
            "kp2d": kp2d}


def _benchmark(frames: int, iters: int, seed: int, threads: int | None) -> dict[str, float]:
    """Fit synthetic 1280x720 views of BuiltinBody and report accuracy and speed.

    An iteration costs about the same for 64 or 256 frames (small-op overhead), so ms per frame falls with the
    batch size; the figure is for one batch of ``frames`` after a warm-up fit.
    """
    from mocap import metrics
    from mocap.camera import bbox_from_keypoints, default_intrinsics

    torch.manual_seed(seed)
    body = BuiltinBody()
    K = np.asarray(default_intrinsics(1280, 720), dtype=np.float64)
    data = synthetic_views(body, K, frames, seed=seed)
    bbox = np.asarray(bbox_from_keypoints(data["kp2d"]), dtype=np.float64)
    fitter = OptimizationBaseline(body=body, K=K, iters=iters, num_threads=threads)
    OptimizationBaseline(body=body, K=K, iters=2, num_threads=threads).fit(data["kp2d"][:2], bbox[:2])  # warm-up
    fit = fitter.fit(data["kp2d"], bbox)
    reproj = np.linalg.norm(fit["kp2d_fit"] - data["kp2d"][..., :2], axis=-1).mean()
    return {
        "frames": frames,
        "iters": iters,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "ms_per_frame": 1000.0 * fitter.last_seconds_per_frame,
        "reproj_px": float(reproj),
        "mpjpe_mm": metrics.mpjpe(fit["joints_cam"], data["joints_cam"]),
        "pa_mpjpe_mm": metrics.pa_mpjpe(fit["joints_cam"], data["joints_cam"]),
        "root_depth_err_mm": float(np.abs(fit["cam_trans"][:, 2] - data["trans"][:, 2]).mean() * 1000.0),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Optimization baseline on synthetic BuiltinBody views (1280x720, 4 m).")
    ap.add_argument("--frames", type=int, default=256, help="frames fitted as one batch (cost is per batch)")
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads during the fit (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    res = _benchmark(args.frames, args.iters, args.seed, args.threads or None)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>20}: {v:.3f}" if isinstance(v, float) else f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
