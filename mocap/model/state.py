"""Names and shapes of the step model's inputs, state and outputs: one table for torch, ONNX, engines and the wire.

The one place the model's layout is stated; every other layer (network, losses, export, engines, the live loop,
`stream.protocol`) imports it. Counts come from `mocap.skeleton` (Joint / Keypoint). Shapes exclude the leading
batch dim (number of tracked people). Everything is float32. Torch-free (so is its package's import,
`mocap/model/__init__.py`): the live loop and `export.metadata.contract()` import it without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..skeleton import FOOT_KEYPOINT_IDS, NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS

if TYPE_CHECKING:
    from .config import ModelConfig

INPUT_NAMES: tuple[str, ...] = ("x", "omega")
#: Width of omega: the camera's angular velocity as 6D of R_t R_{t-1}^T minus the identity's, per second.
OMEGA_DIM = 6

#: Layout of the input vector x: 21 keypoints x (u, v, visible) in bbox half-size units, the CLIFF terms that
#: place the box in the camera's field of view ((cx - px) / f, (cy - py) / f, size / f), then (models with
#: input_dim 67) the frame interval feature. Every layer slices x through these names.
X_KEYPOINTS = slice(0, 3 * NUM_KEYPOINTS)                       # 0:63
X_BBOX = slice(X_KEYPOINTS.stop, X_KEYPOINTS.stop + 3)           # 63:66
X_BBOX_CENTRE = slice(X_BBOX.start, X_BBOX.start + 2)            # 63:65
X_BBOX_SIZE = slice(X_BBOX.start + 2, X_BBOX.stop)               # 65:66
X_FRAME_INTERVAL = slice(X_BBOX.stop, X_BBOX.stop + 1)           # 66:67
INPUT_DIM_NO_INTERVAL = X_BBOX.stop                              # 66
INPUT_DIM = X_FRAME_INTERVAL.stop                                # 67
#: The frame rate the motion prior was built at: frame-interval features and per-frame velocities refer to it.
REFERENCE_FPS = 30.0


def frame_interval_feature(dt: Any) -> Any:  # float, numpy array or torch tensor in, same out
    """Seconds since the previous processed frame -> the x feature: 0 at REFERENCE_FPS, -0.5 at 60 fps, +1 for a
    frame that follows one dropped frame at 30 fps. Works on floats, numpy arrays and torch tensors."""
    return dt * REFERENCE_FPS - 1.0


#: Foot contact points (L heel, L toe, R heel, R toe): the width of `contact` and of the feet state.
NUM_CONTACTS = len(FOOT_KEYPOINT_IDS)

#: Per-frame outputs of `CausalMocap.step` (and of the ONNX graph), in order.
OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "pose_rotmat": (NUM_JOINTS, 3, 3),      # local rotations, joint 0 = world root orientation (Y up)
    "cam_root_rotmat": (3, 3),              # root orientation in the camera frame (OpenCV)
    "betas": (NUM_BETAS,),
    "cam_wp": (3,),                         # weak-perspective (s, tx, ty) in the bbox crop
    "cam_trans": (3,),                      # pelvis position in the camera frame, metres
    "contact": (NUM_CONTACTS,),             # P(contact): L heel, L toe, R heel, R toe
    "root_trans": (3,),                     # world pelvis position, metres, Y up
    "joints": (NUM_JOINTS, 3),              # world joint positions, metres
    "kp3d_cam": (NUM_KEYPOINTS, 3),         # the 21 keypoints in the camera frame, metres (for reprojection)
}
OUTPUT_NAMES: tuple[str, ...] = tuple(OUTPUT_SHAPES)

#: Outputs only the losses need (`CausalMocap.sequence(...).training`), never part of the step / ONNX graph.
TRAINING_OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "pose_cam_rotmat": (NUM_JOINTS, 3, 3),  # local rotations, joint 0 = root orientation in the camera frame
    "contact_logits": (NUM_CONTACTS,),      # `contact` before its sigmoid (the BCE loss takes logits)
    "root_vel_net": (3,),                   # the network's root velocity before contact refinement, world axes, m/frame
    "joints_cam_rel": (NUM_JOINTS, 3),      # camera-frame joints, pelvis at the origin
}


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """State carried between steps; ONNX inputs are named `<name>` and outputs `<name>_out`."""
    return {
        "h_motion": (config.encoder_layers, config.encoder_hidden),
        "h_traj": (config.traj_layers, config.traj_hidden),
        "prev_root6d": (6,),        # previous world root orientation (6D)
        "prev_feet": (NUM_CONTACTS, 3),  # previous foot points relative to the pelvis, world axes
        "prev_trans": (3,),         # previous world pelvis position
        "initialized": (1,),        # 0 before the first frame of a track, 1 after
    }


def state_output_name(name: str) -> str:
    return f"{name}_out"
