"""The causal model: encoder -> motion decoder -> trajectory decoder -> contact-aware refinement.

One set of weights, two graphs (checked equal by tests): `forward_sequence` for training on (B, T) windows and
`step` for streaming one frame per call with explicit state (the ONNX export wraps `step`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..body import BuiltinBody
from ..camera import cam_crop_to_full
from ..rotations import matrix_to_rot6d
from ..skeleton import FOOT_KEYPOINT_IDS
from .config import ModelConfig
from .encoder import FrameEncoder, MotionEncoder
from .motion_decoder import MotionDecoder
from .refiner import refine_and_integrate, refine_and_integrate_step
from .state import INPUT_DIM_NO_INTERVAL, X_BBOX, X_FRAME_INTERVAL, state_shapes
from .trajectory import TrajectoryDecoder

# world_from_camera for a level camera: world Y up, world Z towards the camera, X = camera right.
_LEVEL_CAMERA_TO_WORLD = (1.0, -1.0, -1.0)
#: The 4 foot points (L heel, L toe, R heel, R toe) are the last 4 keypoints: a slice exports as one node.
FOOT_SLICE = slice(FOOT_KEYPOINT_IDS[0], FOOT_KEYPOINT_IDS[-1] + 1)
assert tuple(range(21)[FOOT_SLICE]) == FOOT_KEYPOINT_IDS


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

    # ----------------------------------------------------------------- state
    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        return {
            name: torch.zeros((batch,) + shape, device=device) for name, shape in state_shapes(self.config).items()
        }

    # ----------------------------------------------------------------- graphs
    def forward_sequence(
        self, x: torch.Tensor, omega: torch.Tensor, state: dict[str, torch.Tensor] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """x: (B, T, input_dim), omega: (B, T, 6) -> outputs with (B, T, ...) shapes, and the state after frame T-1."""
        b, t = x.shape[:2]
        state = state if state is not None else self.initial_state(b, x.device)
        context, h_motion = self.encoder(x, state["h_motion"])
        motion = self.motion_decoder(context)
        cam_root6d = matrix_to_rot6d(motion.pose_cam_rotmat[..., 0, :, :])            # (B, T, 6)

        init = state["initialized"]
        # Before the first frame, the previous world orientation is the level-camera guess.
        guess6d = matrix_to_rot6d(self._flip * motion.pose_cam_rotmat[:, 0, 0])
        prev6d = init * state["prev_root6d"] + (1.0 - init) * guess6d
        h_traj = state["h_traj"]
        roots, vels = [], []
        for i in range(t):
            root, prev6d, vel_local, h_traj = self.trajectory(context[:, i], omega[:, i], cam_root6d[:, i], prev6d, h_traj)
            roots.append(root)
            vels.append(vel_local)
        root_world = torch.stack(roots, dim=1)                                          # (B, T, 3, 3)
        vel_net = (root_world @ torch.stack(vels, dim=1)[..., None])[..., 0] * self._interval_scale(x)  # (B, T, 3)

        pose_world = torch.cat((root_world[:, :, None], motion.pose_cam_rotmat[:, :, 1:]), dim=2)
        flat = lambda a: a.reshape((b * t,) + a.shape[2:])  # noqa: E731
        cam = self.body(flat(motion.pose_cam_rotmat), flat(motion.betas))
        cam_joints = cam.joints.reshape(b, t, 24, 3)
        cam_kp = cam.keypoints.reshape(b, t, 21, 3)
        # The world body is the camera-frame body re-oriented about the pelvis (only the root differs): one FK.
        cam_to_world = root_world @ motion.pose_cam_rotmat[:, :, 0].transpose(-1, -2)   # (B, T, 3, 3)
        joints_rel = (cam_to_world[:, :, None] @ cam_joints[..., None])[..., 0]
        kp_world = (cam_to_world[:, :, None] @ cam_kp[..., None])[..., 0]
        feet_rel = kp_world[:, :, FOOT_SLICE]
        contact = torch.sigmoid(motion.contact_logits)
        trans = refine_and_integrate(
            feet_rel, vel_net, contact, state["prev_feet"], state["prev_trans"], init, self.config.contact_threshold
        )
        cam_trans = self._cam_trans(motion.cam_wp, x)
        outputs = {
            "pose_rotmat": pose_world,
            "cam_root_rotmat": motion.pose_cam_rotmat[:, :, 0],
            "betas": motion.betas,
            "cam_wp": motion.cam_wp,
            "cam_trans": cam_trans,
            "contact": contact,
            "root_trans": trans,
            "joints": joints_rel + trans[:, :, None],
            "kp3d_cam": cam_kp + cam_trans[:, :, None],
            # Training-only extras (not part of the step/ONNX outputs):
            "pose_cam_rotmat": motion.pose_cam_rotmat,
            "contact_logits": motion.contact_logits,
            "root_vel_net": vel_net,
            "joints_cam_rel": cam_joints,
        }
        new_state = {
            "h_motion": h_motion,
            "h_traj": h_traj,
            "prev_root6d": prev6d,
            "prev_feet": feet_rel[:, -1],
            "prev_trans": trans[:, -1],
            "initialized": torch.ones_like(init),
        }
        return outputs, new_state

    def step(
        self, x: torch.Tensor, omega: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """x: (B, input_dim), omega: (B, 6), state from `initial_state` or the previous step -> (B, ...) outputs.

        The streaming graph (exported to ONNX): same weights and maths as `forward_sequence`, written without a
        time axis so it stays small; tests check the two agree frame by frame.
        """
        context, h_motion = self.encoder(x[:, None], state["h_motion"])
        context = context[:, 0]                                                        # (B, C)
        motion = self.motion_decoder(context)
        cam_root = motion.pose_cam_rotmat[:, 0]                                        # (B, 3, 3)
        init = state["initialized"]
        guess6d = matrix_to_rot6d(self._flip * cam_root)
        prev6d = init * state["prev_root6d"] + (1.0 - init) * guess6d
        root, root6d, vel_local, h_traj = self.trajectory(
            context, omega, matrix_to_rot6d(cam_root), prev6d, state["h_traj"]
        )
        vel_net = (root @ vel_local[..., None])[..., 0] * self._interval_scale(x)      # (B, 3)
        cam = self.body(motion.pose_cam_rotmat, motion.betas)
        cam_to_world = root @ cam_root.transpose(-1, -2)
        joints_rel = (cam_to_world[:, None] @ cam.joints[..., None])[..., 0]           # (B, 24, 3)
        feet_rel = (cam_to_world[:, None] @ cam.keypoints[:, FOOT_SLICE, :, None])[..., 0]  # (B, 4, 3)
        contact = torch.sigmoid(motion.contact_logits)
        trans = refine_and_integrate_step(
            feet_rel, vel_net, contact, state["prev_feet"], state["prev_trans"], init, self.config.contact_threshold
        )
        cam_trans = self._cam_trans(motion.cam_wp, x)
        outputs = {
            "pose_rotmat": torch.cat((root[:, None], motion.pose_cam_rotmat[:, 1:]), dim=1),
            "cam_root_rotmat": cam_root,
            "betas": motion.betas,
            "cam_wp": motion.cam_wp,
            "cam_trans": cam_trans,
            "contact": contact,
            "root_trans": trans,
            "joints": joints_rel + trans[:, None],
            "kp3d_cam": cam.keypoints + cam_trans[:, None],
        }
        new_state = {
            "h_motion": h_motion,
            "h_traj": h_traj,
            "prev_root6d": root6d,
            "prev_feet": feet_rel,
            "prev_trans": trans,
            "initialized": torch.ones_like(init),
        }
        return outputs, new_state

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
