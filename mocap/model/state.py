"""Names and shapes of the step model's inputs, state and outputs: one table for torch, ONNX and engines.

Shapes exclude the leading batch dim (number of tracked people). Everything is float32. Torch-free (so is its
package's import, `mocap/model/__init__.py`): the live loop and `export.metadata.contract()` import it without
torch.
"""
from __future__ import annotations

from typing import Any

from .config import ModelConfig

INPUT_NAMES: tuple[str, ...] = ("x", "omega")
#: Width of omega: the camera's angular velocity as 6D of R_t R_{t-1}^T minus the identity's, per second.
OMEGA_DIM = 6

#: Layout of the input vector x: 21 keypoints x (u, v, visible) in bbox half-size units, the CLIFF terms that
#: place the box in the camera's field of view ((cx - px) / f, (cy - py) / f, size / f), then (models with
#: input_dim 67) the frame interval feature. Every layer slices x through these names.
X_KEYPOINTS = slice(0, 63)
X_BBOX = slice(63, 66)
X_BBOX_CENTRE = slice(63, 65)
X_BBOX_SIZE = slice(65, 66)
X_FRAME_INTERVAL = slice(66, 67)
INPUT_DIM_NO_INTERVAL = 66
INPUT_DIM = 67
#: The frame rate the motion prior was built at: frame-interval features and per-frame velocities refer to it.
REFERENCE_FPS = 30.0


def frame_interval_feature(dt: Any) -> Any:  # float, numpy array or torch tensor in, same out
    """Seconds since the previous processed frame -> the x feature: 0 at REFERENCE_FPS, -0.5 at 60 fps, +1 for a
    frame that follows one dropped frame at 30 fps. Works on floats, numpy arrays and torch tensors."""
    return dt * REFERENCE_FPS - 1.0

#: Per-frame outputs of `CausalMocap.step` (and of the ONNX graph), in order.
OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "pose_rotmat": (24, 3, 3),      # local rotations, joint 0 = world root orientation (Y up)
    "cam_root_rotmat": (3, 3),      # root orientation in the camera frame (OpenCV)
    "betas": (10,),
    "cam_wp": (3,),                 # weak-perspective (s, tx, ty) in the bbox crop
    "cam_trans": (3,),              # pelvis position in the camera frame, metres
    "contact": (4,),                # P(contact): L heel, L toe, R heel, R toe
    "root_trans": (3,),             # world pelvis position, metres, Y up
    "joints": (24, 3),              # world joint positions, metres
    "kp3d_cam": (21, 3),            # the 21 keypoints in the camera frame, metres (for reprojection)
}
OUTPUT_NAMES: tuple[str, ...] = tuple(OUTPUT_SHAPES)


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """State carried between steps; ONNX inputs are named `<name>` and outputs `<name>_out`."""
    return {
        "h_motion": (config.encoder_layers, config.encoder_hidden),
        "h_traj": (config.traj_layers, config.traj_hidden),
        "prev_root6d": (6,),        # previous world root orientation (6D)
        "prev_feet": (4, 3),        # previous foot points relative to the pelvis, world axes
        "prev_trans": (3,),         # previous world pelvis position
        "initialized": (1,),        # 0 before the first frame of a track, 1 after
    }


def state_output_name(name: str) -> str:
    return f"{name}_out"
