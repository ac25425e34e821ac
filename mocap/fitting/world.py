"""Keep the world outputs and the engine's trajectory state consistent with a refined camera-frame body.

The network places its camera-frame body in the world with one rotation, cam_to_world = R_world_root R_cam_root^T
(`mocap/model/network.py`), and integrates the world pelvis with the contact-aware step of
`mocap/model/refiner.py`: a foot in contact stays put, so the root moves by prev_feet - feet_rel. Both are
linear in the body, so the refined body is put through the same maths in numpy after the engine step (any
engine): the world root is cam_to_world applied to the refined camera root, the world translation is re-integrated
from the refined feet, and the state's prev_feet / prev_trans are replaced so the next step integrates from the
refined body. Tests check this against the torch `refine_and_integrate_step`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mocap.fitting.refine import Refined
from mocap.skeleton import FOOT_KEYPOINT_IDS

FEET = np.asarray(FOOT_KEYPOINT_IDS, dtype=np.int64)


def contact_weights(contact: np.ndarray, threshold: float) -> np.ndarray:
    """Numpy twin of `mocap.model.refiner.contact_weights`: (4,) probabilities -> weights in [0, 1]."""
    return np.clip((contact - threshold) / (1.0 - threshold), 0.0, 1.0)


def reintegrate_trans(
    trans_net: np.ndarray, feet_net: np.ndarray, feet_new: np.ndarray, contact: np.ndarray, initialized: float,
    threshold: float,
) -> np.ndarray:
    """World pelvis (3,) the engine's contact-aware step would have produced with feet_new (4, 3) instead of
    feet_net (4, 3) (both pelvis-relative, world axes), given its output trans_net (3,) from the same state."""
    if initialized < 0.5:
        # A track's first frame is placed with the lowest foot point on the floor.
        return np.array([0.0, -float(feet_new[:, 1].min()), 0.0])
    w = contact_weights(contact, threshold)
    # vel_contact is a w-weighted mean of (prev_feet - feet): swapping the feet shifts it by mean(feet_net - feet_new).
    shift = (w[:, None] * (feet_net - feet_new)).sum(0) / max(float(w.sum()), 1e-6)
    return trans_net + float(w.max()) * shift


def world_outputs(
    outputs: Mapping[str, np.ndarray], refined: Refined, initialized: float, threshold: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One person's refined outputs (unbatched, float64) and its new pelvis-relative world feet (4, 3).

    outputs: the engine's outputs for this person (pose_rotmat, cam_root_rotmat, cam_trans, kp3d_cam, root_trans,
    contact, ...); initialized: the state's `initialized` flag before the step (0 on a track's first frame).
    Fields the refinement does not touch (contact, cam_wp) are copied as they are.
    """
    world_root_net = np.asarray(np.asarray(outputs["pose_rotmat"])[0], np.float64)
    cam_root_net = np.asarray(outputs["cam_root_rotmat"], np.float64)
    cam_to_world = world_root_net @ cam_root_net.T
    kp_rel_net = np.asarray(outputs["kp3d_cam"], np.float64) - np.asarray(outputs["cam_trans"], np.float64)
    feet_net = kp_rel_net[FEET] @ cam_to_world.T
    feet_new = refined.keypoints_rel[FEET] @ cam_to_world.T
    contact = np.asarray(outputs["contact"], np.float64)
    trans = reintegrate_trans(np.asarray(outputs["root_trans"], np.float64), feet_net, feet_new, contact,
                              initialized, threshold)
    pose_world = refined.pose_local.copy()
    pose_world[0] = cam_to_world @ refined.pose_local[0]
    new = {k: np.asarray(v) for k, v in outputs.items()}
    new.update(
        pose_rotmat=pose_world,
        cam_root_rotmat=refined.pose_local[0],
        betas=refined.betas,
        cam_trans=refined.cam_trans,
        kp3d_cam=refined.keypoints_rel + refined.cam_trans,
        root_trans=trans,
        joints=refined.joints_rel @ cam_to_world.T + trans,
    )
    return new, feet_new
