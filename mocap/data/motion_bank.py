"""Random windows of real motion from a cached dataset: any frame rate, dropped frames, speed warps (a spline
through the cached frames)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import axis_angle_to_quaternion, quaternion_to_matrix


@dataclass
class MotionWindows:
    pose_rotmat: torch.Tensor   # (B, T, 24, 3, 3) local rotations, joint 0 = world root (Y up)
    trans: torch.Tensor         # (B, T, 3) world pelvis, metres
    betas: torch.Tensor         # (B, 10)
    dt: torch.Tensor | None = None  # (B, T) seconds since the previous frame (frame 0: the nominal interval)


@dataclass(frozen=True)
class Timing:
    """How a window is played back. The motion prior is cached at CACHE_FPS; live cameras deliver 24-60 fps and
    the loop drops late frames, so training sees the same: a frame rate per window, random drops, and a speed
    factor that may drift within the window (people speed up and slow down)."""

    fps_choices: tuple[float, ...] = (30.0,)
    drop_prob: tuple[float, float] = (0.0, 0.0)   # per-window probability that a frame is dropped, uniform range
    speed: tuple[float, float] = (0.8, 1.25)      # playback speed factor, log-uniform range
    warp: float = 0.0                              # amplitude of a slow sinusoidal speed change (0.3 = +-30 %)

    def sample_times(self, rng: np.random.Generator, batch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (times (B, T) seconds from the window start, dt (B, T) seconds since the previous kept frame)."""
        fps = rng.choice(np.asarray(self.fps_choices, dtype=np.float64), size=batch)
        drop = rng.uniform(*self.drop_prob, size=batch)
        # Frame k is the n-th camera frame; each step skips a geometric number of dropped frames (at most 3).
        skips = 1 + np.minimum(rng.geometric(1 - np.clip(drop, 0, 0.9)[:, None], size=(batch, window)) - 1, 3)
        skips[:, 0] = 1
        dt = skips / fps[:, None]
        times = np.cumsum(dt, axis=1) - dt[:, :1]
        return times, dt


def _catmull_rom(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Uniform Catmull-Rom between p1 (a = 0) and p2 (a = 1), a broadcast against the points."""
    return 0.5 * (2 * p1 + (p2 - p0) * a + (2 * p0 - 5 * p1 + 4 * p2 - p3) * a ** 2
                  + (3 * (p1 - p2) + p3 - p0) * a ** 3)


def _interpolate(quat: np.ndarray, trans: np.ndarray, t: np.ndarray, lo: np.ndarray | int = 0,
                 hi: np.ndarray | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """quat (N, 24, 4), trans (N, 3) at integer frames; t (B, T) fractional frame indices (< N - 1) ->
    rotations (B, T, 24, 3, 3) and pelvis positions (B, T, 3) by a Catmull-Rom spline through the frames
    (quaternion components sign-aligned, then normalised). lo / hi (broadcast to t): the first and last frame of
    each window's clip, so the spline's outer neighbours never reach into another clip.

    Why a spline and not (n)lerp: between 30-fps frames a straight line puts all of the motion's acceleration on
    the frames themselves, so a 60-fps window's truth reads 2a, 0, 2a, 0 ... instead of a, a, a: no body moves
    like that, every smooth prediction is charged |a| of accel error per frame, and training asks the network to
    reproduce the kinks. At integer t the spline is the frame itself (30-fps playback is unchanged).
    """
    hi = len(trans) - 1 if hi is None else hi
    i1 = np.floor(t).astype(np.int64)
    a = (t - i1).astype(np.float32)[..., None]
    i0, i2, i3 = np.maximum(i1 - 1, lo), np.minimum(i1 + 1, hi), np.minimum(i1 + 2, hi)
    q1 = quat[i1]                                                      # (B, T, 24, 4)
    qs = [quat[i0], q1, quat[i2], quat[i3]]
    for k in (0, 2, 3):  # the four neighbours on q1's side of the double cover (q and -q are one rotation)
        ref = qs[1] if k != 3 else qs[2]
        qs[k] = np.where((ref * qs[k]).sum(-1, keepdims=True) < 0, -qs[k], qs[k])
    q = _catmull_rom(qs[0], qs[1], qs[2], qs[3], a[..., None])
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    pos = _catmull_rom(trans[i0], trans[i1], trans[i2], trans[i3], a)
    return quaternion_to_matrix(torch.from_numpy(q.astype(np.float32))), torch.from_numpy(pos.astype(np.float32))


def play_clip(pose_aa: np.ndarray, trans: np.ndarray, betas: np.ndarray, rng: np.random.Generator, timing: Timing,
              source_fps: float = 30.0) -> MotionWindows:
    """A whole clip (pose_aa (N, 24, 3), trans (N, 3) at source_fps) as one window played at real speed with the
    timing's frame rate and drops (its first fps choice): what a camera running at that rate would have seen."""
    n = len(trans)
    if n < 3:
        raise ValueError(f"clip has {n} frames; at least 3 are needed")
    fps = max(timing.fps_choices)
    times, dt = Timing((fps,), timing.drop_prob).sample_times(rng, 1, int((n - 2) / source_fps * fps) + 2)
    keep = times[0] * source_fps <= n - 2
    quat = axis_angle_to_quaternion(pose_aa.astype(np.float32))
    rot, pos = _interpolate(quat, trans.astype(np.float32), times[:, keep] * source_fps)
    return MotionWindows(rot, pos, torch.from_numpy(np.asarray(betas, np.float32))[None],
                         torch.from_numpy(dt[:, keep].astype(np.float32)))


class MotionBank:
    """Holds the clips of one split (cache arrays, see docs/architecture.md) and cuts windows from them."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.quat = axis_angle_to_quaternion(arrays["pose_aa"].astype(np.float32))   # (N, 24, 4)
        self.trans = arrays["trans"].astype(np.float32)                                # (N, 3)
        self.betas = arrays["betas"].astype(np.float32)                                # (N, 10)
        self.clip_start = arrays["clip_start"].astype(np.int64)
        self.clip_len = arrays["clip_len"].astype(np.int64)
        if len(self.clip_start) == 0:
            raise ValueError("motion bank is empty: the cache holds no clips")

    @property
    def frames(self) -> int:
        return int(self.clip_len.sum())

    def sample(self, rng: np.random.Generator, batch: int, window: int, speed: tuple[float, float] = (0.8, 1.25),
               timing: Timing | None = None, source_fps: float = 30.0) -> MotionWindows:
        """`batch` windows of `window` frames, each played back at a random speed factor (and, with `timing`,
        frame rate, drops and a speed warp; the window's `dt` says when each frame was taken)."""
        if timing is None:
            timing = Timing(fps_choices=(source_fps,), speed=speed)
        times, dt = timing.sample_times(rng, batch, window)
        speed_f = np.exp(rng.uniform(np.log(timing.speed[0]), np.log(timing.speed[1]), size=batch))
        if timing.warp > 0:
            amp = rng.uniform(0, timing.warp, size=batch)[:, None]
            freq = rng.uniform(0.1, 0.5, size=batch)[:, None]
            phase = rng.uniform(0, 2 * np.pi, size=batch)[:, None]
            # Integral of speed * (1 + amp sin(2 pi f t + phase)): monotonic because amp < 1.
            warped = times + amp / (2 * np.pi * freq) * (np.cos(phase) - np.cos(2 * np.pi * freq * times + phase))
        else:
            warped = times
        offsets = speed_f[:, None] * source_fps * warped                # (B, T) source frames from the start
        need = offsets[:, -1] + 2                                      # source frames a window spans
        ok_weights = np.maximum(self.clip_len[None, :] - need[:, None], 0).astype(np.float64)  # (B, C)
        short = ok_weights.sum(1) == 0
        if short.any():  # no clip long enough at this speed and rate: one source frame per frame
            offsets[short] = np.arange(window)[None]
            dt[short] = 1.0 / source_fps
            need[short] = window + 1
            ok_weights[short] = np.maximum(self.clip_len[None, :] - need[short, None], 0)
        if (ok_weights.sum(1) == 0).any():
            raise ValueError(f"no clip has {window + 1} frames; use a shorter window")
        probs = ok_weights / ok_weights.sum(1, keepdims=True)
        clip = np.array([rng.choice(len(self.clip_len), p=p) for p in probs])
        start = self.clip_start[clip] + rng.uniform(0, 1, size=batch) * (self.clip_len[clip] - need)
        t = start[:, None] + offsets                                       # (B, T) fractional frame index
        first = self.clip_start[clip][:, None]
        rot, trans = _interpolate(self.quat, self.trans, t, first, first + self.clip_len[clip][:, None] - 1)
        return MotionWindows(rot, trans, torch.from_numpy(self.betas[self.clip_start[clip]]),
                             torch.from_numpy(dt.astype(np.float32)))

    def clip(self, index: int) -> MotionWindows:
        """One whole clip as a batch of 1 (for evaluation)."""
        s, n = self.clip_start[index], self.clip_len[index]
        return MotionWindows(
            pose_rotmat=quaternion_to_matrix(torch.from_numpy(self.quat[s : s + n]))[None],
            trans=torch.from_numpy(self.trans[s : s + n])[None],
            betas=torch.from_numpy(self.betas[s])[None],
        )
