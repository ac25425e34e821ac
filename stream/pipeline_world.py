"""One world frame for everyone the camera sees.

Why: the model integrates each person's trajectory in that person's own world frame (origin under their
pelvis at their first frame, Y up, floor at y = 0, axes from the camera's heading then, see docs/design.md),
so two people's `root_trans` are not comparable. They share one camera, though, and each person's outputs
say where that camera is in their frame: the world root rotation is R_wc @ the root's rotation in the
camera, and the world root position is R_wc @ cam_trans + t_wc. So person j's frame maps into the reference
frame (that of the first person ever followed) by the rigid motion that makes both see the same camera:
A_j = T_ref<-cam o T_cam<-j. Both frames are Y up, so A_j keeps only the heading (rotation about Y) of that
motion; it is averaged over the person's first `align_frames` frames and then held fixed (a moving
alignment would make the trajectory jump). The camera's pose in the reference frame is kept current from any
aligned person in view, so people who arrive after the first one has left still land in the same frame, and a
moving camera is followed. The reference person's outputs are unchanged (single-person users see no change);
relative positions are as good as the depth of each person's `cam_trans`. When the reference person's state is
dropped (they left, or their id was re-identified and starts a fresh state in a fresh frame) the reference
frame stays, held by the camera's last pose in it, and that id is aligned into it like anyone else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from mocap.rotations import axis_rotation


def camera_pose(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(R_wc (3, 3), t_wc (3,)): the camera in the person's world frame from one step's batch-1 outputs."""
    try:
        # the rows first, then float64 (the same values; not a float64 copy of every joint's rotation)
        r_world = np.asarray(np.asarray(outputs["pose_rotmat"])[0, 0], np.float64)
        r_cam = np.asarray(np.asarray(outputs["cam_root_rotmat"])[0], np.float64)
        root = np.asarray(np.asarray(outputs["root_trans"])[0], np.float64)
        cam_trans = np.asarray(np.asarray(outputs["cam_trans"])[0], np.float64)
    except (KeyError, IndexError):
        return None
    r_wc = r_world @ r_cam.T
    pose = (r_wc, root - r_wc @ cam_trans)
    return pose if np.all(np.isfinite(pose[0])) and np.all(np.isfinite(pose[1])) else None


def heading(r: np.ndarray) -> float:
    """The rotation about Y (radians) closest to r (3, 3)."""
    return math.atan2(r[0, 2] - r[2, 0], r[0, 0] + r[2, 2])


@dataclass
class _Alignment:
    yaws: list[float] = field(default_factory=list)
    shifts: list[np.ndarray] = field(default_factory=list)
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(3))


class SharedWorld:
    """Maps each person's outputs into the reference frame (see the module doc)."""

    def __init__(self, align_frames: int = 5) -> None:
        if align_frames < 1:
            raise ValueError(f"align_frames must be >= 1, got {align_frames}")
        self.align_frames = align_frames
        self.reference: int | None = None
        self._camera: tuple[np.ndarray, np.ndarray] | None = None   # camera pose in the reference frame
        self._align: dict[int, _Alignment] = {}

    def drop(self, track: int) -> None:
        """Forget `track`'s alignment; its next state (a fresh frame) is aligned again. The reference frame
        outlives its person: a fresh state of that id must not redefine it under everyone aligned to it."""
        track = int(track)
        self._align.pop(track, None)
        if track == self.reference:
            self.reference = None

    def reset(self) -> None:
        self.reference, self._camera = None, None
        self._align.clear()

    def to_shared(self, track: int, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batch-1 outputs of `track` with root_trans, joints and the root rotation in the reference frame."""
        track = int(track)
        cam = camera_pose(outputs)
        out = dict(outputs)
        if self.reference is None and self._camera is None and cam is not None:
            self.reference = track  # the first person ever followed (since a reset) defines the frame
        if track == self.reference:
            if cam is not None:
                self._camera = cam
            return out
        a = self._align.get(track)
        if a is None:
            a = self._align[track] = _Alignment()
        if cam is not None and self._camera is not None and len(a.yaws) < self.align_frames:
            r_ref, t_ref = self._camera
            rel = r_ref @ cam[0].T                       # person frame -> reference frame, rotation part
            yaw = heading(rel)
            rot = np.asarray(axis_rotation(np.array(yaw), "y")).reshape(3, 3)
            a.yaws.append(yaw)
            a.shifts.append(t_ref - rot @ cam[1])
            mean_yaw = math.atan2(np.mean(np.sin(a.yaws)), np.mean(np.cos(a.yaws)))
            a.rotation = np.asarray(axis_rotation(np.array(mean_yaw), "y")).reshape(3, 3)
            a.shift = np.mean(a.shifts, axis=0)
        elif cam is not None and len(a.yaws) >= self.align_frames:
            # an aligned person keeps the camera's pose in the reference frame current (moving cameras,
            # the reference person gone)
            self._camera = (a.rotation @ cam[0], a.rotation @ cam[1] + a.shift)
        rot, shift = a.rotation.astype(np.float32), a.shift.astype(np.float32)
        if "root_trans" in out:
            out["root_trans"] = (np.asarray(out["root_trans"], np.float32) @ rot.T + shift).astype(np.float32)
        if "joints" in out:
            out["joints"] = (np.asarray(out["joints"], np.float32) @ rot.T + shift).astype(np.float32)
        if "pose_rotmat" in out:
            pose = np.array(out["pose_rotmat"], np.float32, copy=True)
            pose[:, 0] = rot @ pose[:, 0]
            out["pose_rotmat"] = pose
        return out


__all__ = ["SharedWorld", "camera_pose", "heading"]
