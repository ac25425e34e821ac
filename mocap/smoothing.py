"""Causal One-Euro smoothing, cutoffs in hertz: `OneEuroFilter` for vectors (the trackers' boxes, the detector's
landmarks) and `OutputSmoother` for a track's published motion (rotations and translations).

Why: the network steps once per frame and leaves about the same noise in every step whatever the frame rate, so
at 60 fps its output shakes about twice as hard per second as at 30 (eval accel, per 30-fps frame: 15.6 against
8.6 mm/f^2 for the v4 model). The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) removes that shake
while a joint is slow and follows fast motion with little lag, because its cutoff rises with the joint's speed.
Cutoffs are in hertz, so the filter means the same thing at 24, 30 or 60 fps and across dropped frames.

It runs after the model step and test-time refinement, on what is published; it never feeds back into the
model's or the refinement's state (a lagged pose must not become the next frame's prior).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .fitting.body_numpy import pose
from .model.state import OUTPUT_SHAPES
from .skeleton import NUM_JOINTS

#: Outputs smoothed as rotations (..., 3, 3) and as translations (..., 3). Joint and keypoint positions are not
#: filtered on their own: they are posed again from the smoothed rotations, shape and translations, so what is
#: published stays one skeleton (an avatar bridge rebuilding bones from joints and rotations sees them agree).
#: Everything else passes through (betas are already slow, contact probabilities are gates, cam_wp is crop
#: bookkeeping).
ROTATION_OUTPUTS: tuple[str, ...] = ("pose_rotmat", "cam_root_rotmat")
POSITION_OUTPUTS: tuple[str, ...] = ("cam_trans", "root_trans")
POSED_OUTPUTS: tuple[str, ...] = ("joints", "kp3d_cam")
POSE_INPUTS: tuple[str, ...] = ("pose_rotmat", "cam_root_rotmat", "betas", "cam_trans", "root_trans")


@dataclass(frozen=True)
class SmoothingConfig:
    """One-Euro parameters (chosen on the validation split: docs in BENCHMARKS.md, "Output smoothing")."""

    min_cutoff_hz: float = 4.0     # cutoff of a joint at rest: lower is smoother and lags slow motion more
    rotation_beta: float = 8.0     # Hz added per rad/s of joint speed: fast motion opens the filter, so little lag
    position_beta: float = 40.0    # Hz added per m/s of pelvis speed, the same for translations
    speed_cutoff_hz: float = 1.0   # the speed estimate's own low-pass (the One-Euro derivative filter)
    max_gap_s: float = 0.5         # a longer gap between frames restarts the filter (no sliding from a stale pose)

    def __post_init__(self) -> None:
        for name in ("min_cutoff_hz", "speed_cutoff_hz", "max_gap_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SmoothingConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.rotation_beta < 0 or self.position_beta < 0:
            raise ValueError("SmoothingConfig betas must be >= 0")


def one_euro_alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Blend factor of a first-order low-pass with this cutoff (Hz) over a step of dt seconds: the One-Euro step."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Causal One-Euro low-pass filter on a vector, per component (the trackers' boxes, the detector's
    landmarks): smooth when slow, responsive when fast.

    min_cutoff (Hz): cutoff at rest; beta: cutoff gain per unit of speed (speed measured in `speed_scale` units
    per second, so a box filter can measure speed in box sizes); d_cutoff (Hz): cutoff of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.5, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("need min_cutoff > 0, d_cutoff > 0, beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float, speed_scale: float = 1.0) -> np.ndarray:
        """x (D,) sample at time t (seconds, increasing) -> filtered (D,)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._dx is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = max(t - self._t, 1e-6)
        dx = (x - self._x) / dt
        self._dx = self._dx + one_euro_alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) * speed_scale
        self._x = self._x + one_euro_alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


def _orthonormalize(m: np.ndarray) -> np.ndarray:
    """Nearest rotation to a blend of nearby rotations, m (..., 3, 3): three Bjorck steps m <- m (3 I - m^T m) / 2
    (the blend is off the rotation group only to second order in the step angle, and each step squares that
    error, so three reach float precision even after a 0.3 rad jump, at a fraction of an SVD's cost)."""
    eye3 = 3.0 * np.eye(3)
    for _ in range(3):
        m = 0.5 * m @ (eye3 - np.swapaxes(m, -1, -2) @ m)
    return m


@dataclass
class _Channel:
    """One One-Euro filter over N items of a track: rotations (..., N, 3, 3) or points (..., N, 3)."""

    beta: float
    rotation: bool
    value: np.ndarray | None = None
    speed: np.ndarray | None = None

    def __call__(self, x: np.ndarray, dt: float | None, cfg: SmoothingConfig) -> np.ndarray:
        if dt is None or self.value is None or self.speed is None or self.value.shape != x.shape:
            self.value, self.speed = x, np.zeros(x.shape[:-2] if self.rotation else x.shape[:-1])
            return x
        # 1. speed of the raw signal against the last output: m/s, or rad/s (|R1 - R2|_F = sqrt(2) angle, small)
        delta = x - self.value
        axes = (-2, -1) if self.rotation else (-1,)
        raw_speed = np.sqrt((delta * delta).sum(axis=axes)) * ((0.5 ** 0.5 if self.rotation else 1.0) / dt)
        self.speed = self.speed + one_euro_alpha(cfg.speed_cutoff_hz, dt) * (raw_speed - self.speed)
        # 2. a cutoff that opens with speed, then one low-pass step (back onto the rotation group for rotations)
        a = np.asarray(one_euro_alpha(cfg.min_cutoff_hz + self.beta * self.speed, dt))
        out = self.value + (a[..., None, None] if self.rotation else a[..., None]) * delta
        self.value = _orthonormalize(out) if self.rotation else out
        return self.value


@dataclass
class OutputSmoother:
    """Per-track causal smoother of step outputs (any leading batch shape): one per tracked person, reset with
    the person's model state. ``__call__`` returns new arrays; the inputs are not modified. All rotations go
    through one filter and all points through another, so a frame costs a few dozen small numpy operations."""

    config: SmoothingConfig = field(default_factory=SmoothingConfig)
    _rotations: _Channel = field(init=False)
    _points: _Channel = field(init=False)

    def __post_init__(self) -> None:
        self._rotations = _Channel(self.config.rotation_beta, rotation=True)
        self._points = _Channel(self.config.position_beta, rotation=False)

    def reset(self) -> None:
        self._rotations.value = self._points.value = None

    def __call__(self, outputs: Mapping[str, np.ndarray], dt: float | None) -> dict[str, np.ndarray]:
        """outputs: step outputs (`mocap.model.state.OUTPUT_SHAPES`, any subset, each (..., *shape)); dt: seconds
        since this track's previous smoothed frame (None, <= 0 or over `max_gap_s`: restart from this frame)."""
        if dt is None or not dt > 0 or dt > self.config.max_gap_s:
            dt = None
        out = dict(outputs)
        for names, channel, item_ndim in ((ROTATION_OUTPUTS, self._rotations, 2), (POSITION_OUTPUTS, self._points, 1)):
            present = [n for n in names if n in outputs]
            if not present:
                continue
            item = (3, 3) if item_ndim == 2 else (3,)
            lead = np.shape(outputs[present[0]])[: np.ndim(outputs[present[0]]) - len(OUTPUT_SHAPES[present[0]])]
            # every output as (*lead, N_i, *item): one rotation or one point is N_i = 1
            parts = [np.asarray(outputs[n], dtype=np.float64).reshape(*lead, -1, *item) for n in present]
            sizes = [p.shape[-item_ndim - 1] for p in parts]
            smoothed = channel(np.concatenate(parts, axis=-item_ndim - 1), dt, self.config)
            bounds = np.cumsum([0] + sizes)
            for n, lo, hi in zip(present, bounds[:-1], bounds[1:]):
                piece = smoothed[..., lo:hi, :, :] if item_ndim == 2 else smoothed[..., lo:hi, :]
                out[n] = piece.reshape(np.shape(outputs[n])).astype(np.asarray(outputs[n]).dtype, copy=False)
        wanted = [n for n in POSED_OUTPUTS if n in outputs]
        if wanted:
            missing = [n for n in POSE_INPUTS if n not in outputs]
            if missing:
                raise ValueError(f"smoothing {wanted} poses them from {list(POSE_INPUTS)}; missing {missing}")
            posed = _posed_points(out)
            for n in wanted:
                out[n] = posed[n].reshape(np.shape(outputs[n])).astype(np.asarray(outputs[n]).dtype, copy=False)
        return out


def _posed_points(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """World joints (P, 24, 3) and camera-frame keypoints (P, 21, 3) of each person P in outputs (any leading
    shape), posed from their rotations, betas and pelvis positions as the network's own outputs are."""
    world_rot = np.asarray(outputs["pose_rotmat"], np.float64).reshape(-1, NUM_JOINTS, 3, 3)
    cam_root = np.asarray(outputs["cam_root_rotmat"], np.float64).reshape(-1, 3, 3)
    betas = np.asarray(outputs["betas"], np.float64).reshape(len(world_rot), -1)
    root_trans = np.asarray(outputs["root_trans"], np.float64).reshape(-1, 1, 3)
    cam_trans = np.asarray(outputs["cam_trans"], np.float64).reshape(-1, 1, 3)
    joints, keypoints = [], []
    for p in range(len(world_rot)):
        body = pose(world_rot[p], betas[p])                   # pelvis at the origin, world axes
        cam_from_world = cam_root[p] @ world_rot[p, 0].T      # the camera's view of the world root
        joints.append(body.joints + root_trans[p])
        keypoints.append(body.keypoints @ cam_from_world.T + cam_trans[p])
    return {"joints": np.stack(joints), "kp3d_cam": np.stack(keypoints)}


def smooth_sequence(outputs: Mapping[str, np.ndarray], dt: np.ndarray,
                    config: SmoothingConfig | None = None) -> dict[str, np.ndarray]:
    """Causal smoothing of a whole clip, frame by frame as the live loop does: outputs (T, ...), dt (T,) seconds
    since the previous frame (dt[0] is ignored)."""
    smoother = OutputSmoother(config or SmoothingConfig())
    frames = [smoother({k: v[t] for k, v in outputs.items()}, None if t == 0 else float(dt[t]))
              for t in range(len(dt))]
    return {k: np.stack([f[k] for f in frames]) for k in outputs}
