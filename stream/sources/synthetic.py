"""The built-in demo source: a procedural person walking a circle and waving, seen by a virtual camera.

It lets the live loop, previews and tests run with no webcam and no detector: every frame carries exact
2D keypoints (plus a little noise), a rendered image, and the ground truth (pose, translation, camera).
The motion is one seamless cycle (start walking, one lap, stop, turn to the camera, wave, turn back),
precomputed once with the network's body (in numpy, `mocap.fitting.body_numpy`: the demo needs no torch) and
replayed forever; the camera may pan, and its angular velocity `true_omega` follows the omega convention of
docs/design.md.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from mocap.camera import camera_omega, default_intrinsics, frame_rotation, look_at, project
from mocap.fitting.body_numpy import pose
from mocap.model.state import OMEGA_DIM
from mocap.rotations import axis_angle_to_matrix, axis_rotation, matrix_to_axis_angle
from mocap.skeleton import FOOT_KEYPOINT_IDS, KEYPOINT_EDGES, KEYPOINT_NAMES, NUM_BETAS, NUM_JOINTS, SMPL_JOINT_NAMES
from stream.sources.base import Frame, Pacer, Source

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
_DEG = math.pi / 180.0


def _rx(deg: np.ndarray) -> np.ndarray:
    return axis_rotation(deg * _DEG, "X")


def _ry(deg: np.ndarray) -> np.ndarray:
    return axis_rotation(deg * _DEG, "Y")


def _rz(deg: np.ndarray) -> np.ndarray:
    return axis_rotation(deg * _DEG, "Z")


def _blend(ra: np.ndarray, rb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Geodesic interpolation of rotations ra -> rb (..., 3, 3) by weight w (...,) in [0, 1]."""
    rel = matrix_to_axis_angle(np.swapaxes(ra, -1, -2) @ rb)
    return ra @ axis_angle_to_matrix(rel * w[..., None])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class WalkWaveMotion:
    """One seamless motion cycle sampled at `fps`: pose_aa (N, 24, 3), trans (N, 3) world pelvis, Y up, floor y = 0.

    The person walks one lap of a circle of `radius` around the world origin (counter-clockwise seen from
    above, passing +Z, the side the camera is on), stops at +Z, turns to face +Z, waves the right hand, and
    turns back. Feet are kept on the floor by lifting the pelvis so the lowest foot point touches y = 0.
    """

    def __init__(self, fps: float = 30.0, radius: float = 0.8, speed: float = 1.0, wave_s: float = 3.0,
                 strides_per_lap: int = 4, ramp_s: float = 0.6) -> None:
        if radius <= 0 or speed <= 0 or wave_s < 0 or strides_per_lap < 1 or ramp_s <= 0:
            raise ValueError("radius, speed, ramp_s must be > 0, wave_s >= 0, strides_per_lap >= 1")
        lap = 2.0 * math.pi * radius
        walk_s = lap / speed + ramp_s  # the two cosine ramps together cost one ramp of distance
        n = int(round((walk_s + wave_s) * fps))
        u = np.arange(n) / fps
        up = _smoothstep(u / ramp_s)
        down = _smoothstep((walk_s - u) / ramp_s)
        self.speed = np.where(u < walk_s, np.minimum(up, down), 0.0)  # (N,) in [0, 1]
        in_wave = (u - walk_s) / max(wave_s, 1e-9)
        edge = 0.25  # fraction of the wave phase spent turning to / from the camera
        self.wave = np.where(u >= walk_s, np.minimum(_smoothstep(in_wave / edge), _smoothstep((1 - in_wave) / edge)),
                             0.0)
        travelled = np.concatenate([[0.0], np.cumsum(self.speed)[:-1]]) / self.speed.sum()  # (N,) lap fraction
        self.theta = 2.0 * math.pi * travelled  # position angle on the circle
        self.gait = 2.0 * math.pi * strides_per_lap * travelled  # stride phase, integer cycles per lap
        self.fps, self.radius, self.num_frames = float(fps), radius, n
        self.wave_phase = 2.0 * math.pi * 1.5 * u  # 1.5 Hz hand oscillation
        self.pose_aa = self._pose()

    def _pose(self) -> np.ndarray:
        s, w, g = self.speed, self.wave, self.gait
        n = len(s)
        rot = np.broadcast_to(np.eye(3), (n, NUM_JOINTS, 3, 3)).copy()
        sin_g = np.sin(g)
        hip = 25.0 * s * sin_g  # left thigh forward when > 0 (flexion is a negative X rotation)
        rot[:, _J["l_hip"]] = _rx(-hip)
        rot[:, _J["r_hip"]] = _rx(hip)
        rot[:, _J["l_knee"]] = _rx(s * (5.0 + 50.0 * np.maximum(0.0, np.cos(g)) ** 2))
        rot[:, _J["r_knee"]] = _rx(s * (5.0 + 50.0 * np.maximum(0.0, -np.cos(g)) ** 2))
        rot[:, _J["l_ankle"]] = _rx(8.0 * s * sin_g)
        rot[:, _J["r_ankle"]] = _rx(-8.0 * s * sin_g)
        rot[:, _J["spine2"]] = _ry(-5.0 * s * sin_g)  # torso counter-rotates against the pelvis
        rot[:, _J["l_shoulder"]] = _rx(20.0 * s * sin_g) @ _rz(np.full(n, -75.0))
        rot[:, _J["l_elbow"]] = _ry(-(10.0 + 15.0 * s))
        walk_r_sh = _rx(-20.0 * s * sin_g) @ _rz(np.full(n, 75.0))
        walk_r_el = _ry(10.0 + 15.0 * s)
        wave_r_sh = _rz(np.full(n, -20.0)) @ _ry(np.full(n, -20.0))  # raised to the side, a little forward
        wave_r_el = _rz(-70.0 + 25.0 * np.sin(self.wave_phase))  # forearm up, hand swinging side to side
        rot[:, _J["r_shoulder"]] = _blend(walk_r_sh, wave_r_sh, w)
        rot[:, _J["r_elbow"]] = _blend(walk_r_el, wave_r_el, w)
        rot[:, _J["head"]] = _rx(-8.0 * w)  # looks slightly up at the camera while waving
        # Root: face the walking direction (tangent), turning to face +Z (the camera) while waving.
        tangent = np.degrees(self.theta) + 90.0
        to_camera = (0.0 - tangent + 180.0) % 360.0 - 180.0
        rot[:, 0] = _ry(tangent + w * to_camera) @ _ry(4.0 * s * sin_g)
        return matrix_to_axis_angle(rot).astype(np.float32)

    def trans_and_keypoints(self, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """betas (10,) -> trans (N, 3) world pelvis and keypoints (N, 21, 3) world, with feet on the floor."""
        kp = pose(axis_angle_to_matrix(self.pose_aa), betas).keypoints  # (N, 21, 3) float64, pelvis at the origin
        lowest = kp[:, list(FOOT_KEYPOINT_IDS), 1].min(axis=1)  # (N,)
        trans = np.stack([self.radius * np.sin(self.theta), -lowest, self.radius * np.cos(self.theta)], -1)
        return trans, kp + trans[:, None, :]


class SyntheticSource(Source):
    """Procedural walk + wave of the built-in body seen by a virtual camera; deterministic for a given seed.

    size: image (W, H); intrinsics default to `mocap.camera.default_intrinsics` (f = sqrt(W^2 + H^2)).
    camera_distance/camera_height: camera position on +Z looking at the circle's centre at pelvis height
    (the person passes 4 m away with the defaults).
    pan_deg/pan_period_s: sinusoidal yaw of the camera (0 = static camera, true_omega = 0); up to about 10 deg
        keeps the person in frame at the default distance.
    noise_px: std of Gaussian pixel noise on the keypoints; n_frames: stop after this many (None = endless).
    realtime: pace frames at `fps`; render: draw an image (False: image = None, keypoints only).
    """

    def __init__(self, *, fps: float = 30.0, size: tuple[int, int] = (640, 480), seed: int = 0,
                 betas: np.ndarray | None = None, camera_distance: float = 5.0, camera_height: float = 1.2,
                 pan_deg: float = 0.0, pan_period_s: float = 12.0, noise_px: float = 1.0,
                 n_frames: int | None = None, realtime: bool = True, render: bool = True) -> None:
        super().__init__()
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"size must be positive (W, H), got {size}")
        if noise_px < 0 or pan_period_s <= 0:
            raise ValueError("noise_px must be >= 0 and pan_period_s > 0")
        self._fps, self._size = float(fps), (int(size[0]), int(size[1]))
        self.seed, self.noise_px, self.n_frames, self.render = int(seed), float(noise_px), n_frames, render
        rng = np.random.default_rng(self.seed)
        self.betas = (np.clip(rng.normal(0.0, 0.7, NUM_BETAS), -2.0, 2.0) if betas is None
                      else np.asarray(betas, dtype=np.float64).reshape(NUM_BETAS))
        self.motion = WalkWaveMotion(fps=self._fps)
        self._trans, self._kp_world = self.motion.trans_and_keypoints(self.betas)
        self.K = np.asarray(default_intrinsics(*self._size), dtype=np.float64)
        self.cam_position = np.array([0.0, camera_height, camera_distance])
        pelvis_height = float(self._trans[:, 1].mean())
        self._r0 = look_at(self.cam_position, np.array([0.0, pelvis_height, 0.0]))
        self.pan_deg, self.pan_period_s = float(pan_deg), float(pan_period_s)
        self._pacer = Pacer(self._fps, enabled=realtime)
        self._index = 0
        self.true_omega = np.zeros(OMEGA_DIM)
        self.status = f"synthetic walk+wave, seed {self.seed}, pan {self.pan_deg:g} deg"

    def rotation(self, index: int) -> np.ndarray:
        """World->camera rotation (3, 3) at frame `index`: the base view yawed about world Y by the pan angle."""
        alpha = self.pan_deg * math.sin(2.0 * math.pi * index / (self._fps * self.pan_period_s))
        return self._r0 @ _ry(np.array(-alpha))

    def omega(self, index: int) -> np.ndarray:
        """(6,) camera angular velocity at `index` (`mocap.camera.camera_omega` of R_t R_{t-1}^T at fps)."""
        return camera_omega(frame_rotation(self.rotation(index), self.rotation(index - 1)), rate=self._fps)

    def frame_data(self, index: int) -> tuple[np.ndarray, dict]:
        """Keypoints (21, 3) pixels + conf for frame `index` and the ground-truth meta; random access, seeded."""
        i = index % self.motion.num_frames
        rot = self.rotation(index)
        pts_cam = (self._kp_world[i] - self.cam_position) @ rot.T  # (21, 3)
        exact = np.asarray(project(pts_cam, self.K), dtype=np.float64)  # (21, 2)
        rng = np.random.default_rng([self.seed, index])
        noisy = exact + rng.normal(0.0, self.noise_px, exact.shape) if self.noise_px > 0 else exact
        conf = np.clip(0.9 + 0.04 * rng.standard_normal(len(KEYPOINT_NAMES)), 0.6, 1.0)
        keypoints = np.concatenate([noisy, conf[:, None]], axis=1).astype(np.float32)
        meta = {
            "pose_aa": self.motion.pose_aa[i].copy(), "trans": self._trans[i].astype(np.float32),
            "betas": self.betas.copy(), "keypoints_world": self._kp_world[i].astype(np.float32),
            "keypoints_exact": exact.astype(np.float32), "R_world_to_cam": rot,
            "cam_position": self.cam_position.copy(), "K": self.K.copy(), "omega": self.omega(index),
        }
        return keypoints, meta

    def read(self, timeout: float = 0.1) -> Frame | None:
        """The next frame (paced at fps when realtime), None after `n_frames`."""
        if self.finished or (self.n_frames is not None and self._index >= self.n_frames):
            self.finished = True
            return None
        keypoints, meta = self.frame_data(self._index)
        image = self._draw(meta) if self.render else None
        self._pacer.wait(self._index)
        self.true_omega = meta["omega"]
        frame = Frame(image, self._index, time.monotonic(), keypoints=keypoints, meta=meta)
        self._index += 1
        return frame

    # ------------------------------------------------------------------ rendering
    def _to_pixels(self, pts_world: np.ndarray, rot: np.ndarray) -> np.ndarray:
        return np.asarray(project((pts_world - self.cam_position) @ rot.T, self.K))

    def _draw(self, meta: dict) -> np.ndarray:
        """Grey background, a floor grid (so camera motion is visible) and the skeleton, 8-bit BGR."""
        w, h = self._size
        image = np.full((h, w, 3), 110, np.uint8)
        rot = meta["R_world_to_cam"]
        ticks = np.arange(-3.0, 3.01, 0.5)
        for a in ticks:
            for seg in (np.array([[a, 0.0, -3.0], [a, 0.0, 3.0]]), np.array([[-3.0, 0.0, a], [3.0, 0.0, a]])):
                p = self._to_pixels(seg, rot)
                cv2.line(image, _pt(p[0]), _pt(p[1]), (135, 135, 135), 1, cv2.LINE_AA)
        kp = meta["keypoints_exact"]
        depth = float(((meta["keypoints_world"][0] - self.cam_position) @ rot.T)[2])
        thick = max(2, int(round(0.05 * self.K[0, 0] / depth)))
        for a, b in KEYPOINT_EDGES:
            cv2.line(image, _pt(kp[a]), _pt(kp[b]), _side_colour(a, b), thick, cv2.LINE_AA)
        for j, p in enumerate(kp):
            cv2.circle(image, _pt(p), max(2, thick // 2 + 1), _side_colour(j, j), -1, cv2.LINE_AA)
        head_r = max(3, int(round(0.09 * self.K[0, 0] / depth)))
        cv2.circle(image, _pt(kp[0]), head_r, (200, 200, 200), thick // 2 + 1, cv2.LINE_AA)
        return image


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(np.clip(p[0], -1e5, 1e5)))), int(round(float(np.clip(p[1], -1e5, 1e5))))


def _side_colour(a: int, b: int) -> tuple[int, int, int]:
    """BGR: person's left blue, right orange, midline green."""
    names = KEYPOINT_NAMES[a] + KEYPOINT_NAMES[b]
    if names.count("l_") == 2:
        return (230, 140, 40)
    if names.count("r_") == 2:
        return (40, 140, 240)
    return (90, 200, 90)
