"""The causal model: encoder -> motion decoder -> trajectory decoder -> contact-aware refinement.

One set of weights and one path (VideoPose3D's pattern), written once in `_path` against a `TimeAxis`:
- `step` runs it on (B, ...) tensors, one frame per call with explicit state: the streaming graph that the live
  loop and the ONNX export run;
- `sequence` runs it on a (B, T) window: the encoder GRU and every memory-free function see all frames at once
  (the batched ops are what make CPU training fast), the two recurrences loop frame by frame.
Training-only outputs come back apart from the step's outputs (`Sequence.training`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..body import BuiltinBody
from ..camera import cam_crop_to_full
from ..rotations import matrix_to_rot6d
from ..skeleton import FOOT_KEYPOINT_IDS, NUM_KEYPOINTS
from .config import ModelConfig
from .encoder import FrameEncoder, MotionEncoder
from .motion_decoder import MotionDecoder
from .refiner import contact_blend, integrate, root_velocity, start_position
from .state import INPUT_DIM_NO_INTERVAL, X_BBOX, X_FRAME_INTERVAL, state_shapes
from .time_axis import FRAME, WINDOW, Tensors, TimeAxis
from .trajectory import TrajectoryDecoder

# world_from_camera for a level camera: world Y up, world Z towards the camera, X = camera right.
_LEVEL_CAMERA_TO_WORLD = (1.0, -1.0, -1.0)
#: The 4 foot points (L heel, L toe, R heel, R toe) are the last 4 keypoints: a slice exports as one node.
FOOT_SLICE = slice(FOOT_KEYPOINT_IDS[0], FOOT_KEYPOINT_IDS[-1] + 1)
assert tuple(range(NUM_KEYPOINTS)[FOOT_SLICE]) == FOOT_KEYPOINT_IDS

State = dict[str, torch.Tensor]


class Sequence(NamedTuple):
    """Outputs with the time layout of the input ((B, T, ...) from `sequence`) and the state after the last frame."""
    outputs: dict[str, torch.Tensor]    # the names of OUTPUT_SHAPES: what `step` returns per frame
    training: dict[str, torch.Tensor]   # the names of state.TRAINING_OUTPUT_SHAPES
    state: State


class CausalMocap(nn.Module):
    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        encoder_cls = MotionEncoder if c.kind == "causal" else FrameEncoder
        self.encoder = encoder_cls(c.input_dim, c.encoder_hidden, c.encoder_layers)
        self.motion_decoder = MotionDecoder(self.encoder.out_dim, c.decoder_hidden)
        self.trajectory = TrajectoryDecoder(self.encoder.out_dim, c.traj_hidden, c.traj_layers)
        self.body = BuiltinBody()
        self.register_buffer("_flip", torch.tensor(_LEVEL_CAMERA_TO_WORLD)[:, None], persistent=False)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return {
            name: torch.zeros((batch,) + shape, device=device) for name, shape in state_shapes(self.config).items()
        }

    # ----------------------------------------------------------------- the two ways to run the path
    def step(self, x: torch.Tensor, omega: torch.Tensor, state: State) -> tuple[dict[str, torch.Tensor], State]:
        """x: (B, input_dim), omega: (B, 6), state from `initial_state` or the previous step -> (B, ...) outputs
        (`OUTPUT_SHAPES`) and the new state. The streaming graph (exported to ONNX)."""
        out = self._path(x, omega, state, FRAME)
        return out.outputs, out.state

    def sequence(self, x: torch.Tensor, omega: torch.Tensor, state: State | None = None) -> Sequence:
        """x: (B, T, input_dim), omega: (B, T, 6) -> (B, T, ...) outputs, equal to T calls of `step`."""
        return self._path(x, omega, state if state is not None else self.initial_state(x.shape[0], x.device), WINDOW)

    def forward_sequence(
        self, x: torch.Tensor, omega: torch.Tensor, state: State | None = None
    ) -> tuple[dict[str, torch.Tensor], State]:
        """The losses' flat view of `sequence`: (outputs and training outputs in one dict, the state after T-1)."""
        out = self.sequence(x, omega, state)
        return {**out.outputs, **out.training}, out.state

    # ----------------------------------------------------------------- the path, written once
    def _path(self, x: torch.Tensor, omega: torch.Tensor, state: State, time: TimeAxis) -> Sequence:
        """x: (B, [T,] input_dim), omega: (B, [T,] 6); every line below is the same maths for a frame or a window."""
        context, h_motion = time.encode(self.encoder, x, state["h_motion"])
        motion = self.motion_decoder(context)
        cam_joints, cam_kp = self._camera_body(motion.pose_cam_rotmat, motion.betas)
        cam_root = motion.pose_cam_rotmat[..., 0, :, :]
        # World root orientation: the trajectory decoder feeds on its own previous output, frame by frame.
        level_root6d = matrix_to_rot6d(self._flip * cam_root)
        (root, vel_local), (root6d, h_traj, _) = time.scan(
            self._orient, (context, omega, matrix_to_rot6d(cam_root), level_root6d),
            (state["prev_root6d"], state["h_traj"], state["initialized"]),
        )
        vel_net = (root @ vel_local[..., None])[..., 0] * self._interval_scale(x)
        # The world body is the camera-frame body re-oriented about the pelvis (only the root differs): one FK.
        cam_to_world = root @ cam_root.transpose(-1, -2)
        feet_rel = (cam_to_world[..., None, :, :] @ cam_kp[..., FOOT_SLICE, :, None])[..., 0]
        contact = torch.sigmoid(motion.contact_logits)
        vel = root_velocity(feet_rel, time.previous(state["prev_feet"], feet_rel), vel_net,
                            contact_blend(contact, self.config.contact_threshold))
        (trans,), (prev_trans, initialized) = time.scan(
            _integrate, (vel, start_position(feet_rel)), (state["prev_trans"], state["initialized"])
        )
        cam_trans = self._cam_trans(motion.cam_wp, x)
        outputs = {
            "pose_rotmat": torch.cat((root[..., None, :, :], motion.pose_cam_rotmat[..., 1:, :, :]), dim=-3),
            "cam_root_rotmat": cam_root,
            "betas": motion.betas,
            "cam_wp": motion.cam_wp,
            "cam_trans": cam_trans,
            "contact": contact,
            "root_trans": trans,
            "joints": (cam_to_world[..., None, :, :] @ cam_joints[..., None])[..., 0] + trans[..., None, :],
            "kp3d_cam": cam_kp + cam_trans[..., None, :],
        }
        training = {
            "pose_cam_rotmat": motion.pose_cam_rotmat,
            "contact_logits": motion.contact_logits,
            "root_vel_net": vel_net,
            "joints_cam_rel": cam_joints,
        }
        new_state = {"h_motion": h_motion, "h_traj": h_traj, "prev_root6d": root6d,
                     "prev_feet": time.last(feet_rel), "prev_trans": prev_trans, "initialized": initialized}
        return Sequence(outputs, training, new_state)

    def _orient(self, frame: Tensors, carry: Tensors) -> tuple[Tensors, Tensors]:
        """One trajectory-decoder frame: (context, omega, cam_root6d, level_root6d), carry (prev_root6d, h_traj,
        initialized) -> (world root (B, 3, 3), root-frame velocity (B, 3)) and the carry after this frame."""
        context, omega, cam_root6d, level_root6d = frame
        prev_root6d, h_traj, init = carry
        # A fresh track has no previous world orientation: the level-camera guess stands in for it.
        prev_root6d = init * prev_root6d + (1.0 - init) * level_root6d
        root, root6d, vel_local, h_traj = self.trajectory(context, omega, cam_root6d, prev_root6d, h_traj)
        return (root, vel_local), (root6d, h_traj, torch.ones_like(init))

    # ----------------------------------------------------------------- helpers
    def _camera_body(self, pose: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pose (..., 24, 3, 3), betas (..., 10) -> camera-frame joints (..., 24, 3) and keypoints (..., 21, 3),
        pelvis at the origin. The body takes one batch dim: a window is flattened, a frame's (B,) passes as it is."""
        lead = pose.shape[:-3]
        if len(lead) == 1:
            body = self.body(pose, betas)
            return body.joints, body.keypoints
        body = self.body(pose.reshape((-1,) + pose.shape[-3:]), betas.reshape(-1, betas.shape[-1]))
        return body.joints.reshape(lead + body.joints.shape[1:]), body.keypoints.reshape(lead + body.keypoints.shape[1:])

    def _interval_scale(self, x: torch.Tensor) -> torch.Tensor | float:
        """(..., 1) frame interval in reference frames: the decoder predicts velocity per reference frame
        (1/30 s), so the distance moved scales exactly with the time that passed (any fps, dropped frames)."""
        if self.config.input_dim <= INPUT_DIM_NO_INTERVAL:
            return 1.0
        return 1.0 + x[..., X_FRAME_INTERVAL]

    @staticmethod
    def _cam_trans(cam_wp: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """CLIFF crop camera -> camera-frame pelvis, from the input's bbox terms ((cx-px)/f, (cy-py)/f, size/f):
        the pixel formula of `cam_crop_to_full` with f = 1 and the principal point at 0."""
        return cam_crop_to_full(cam_wp, x[..., X_BBOX], 1.0, torch.zeros(2, dtype=x.dtype, device=x.device))


def _integrate(frame: Tensors, carry: Tensors) -> tuple[Tensors, Tensors]:
    """One frame of the world-translation recurrence: (vel, start), carry (prev_trans, initialized)."""
    (vel, start), (prev_trans, init) = frame, carry
    trans = integrate(vel, start, prev_trans, init)
    return (trans,), (trans, torch.ones_like(init))
