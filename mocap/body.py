"""Body models behind one interface: pose + shape + translation -> joints, 21 keypoints, global rotations.

`BuiltinBody` is a skeleton-only, SMPL-compatible body shipped with the project (tables and their derivation in
`mocap/builtin_body.py`); its forward is pure torch so networks call it inside their ONNX graph.
`SmplBody` wraps a user-supplied SMPL model file through `smplx` and adds the mesh. Both take `trans` as the
world position of the pelvis, so data, networks and the wire protocol mean the same thing by it.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from mocap import builtin_body as tables
from mocap.kinematics import forward_kinematics, forward_kinematics_offsets
from mocap.rotations import axis_angle_to_matrix
from mocap.safe_pickle import ChumpyStub, safe_load
from mocap.skeleton import NUM_BETAS, NUM_JOINTS, SMPL_PARENTS

SMPL_NUM_VERTICES = 6890


class BodyOutput(NamedTuple):
    joints: Tensor  # (B, 24, 3) SMPL joints, metres
    keypoints: Tensor  # (B, 21, 3) COCO-17 + L heel, L toe, R heel, R toe, metres
    global_rotmats: Tensor  # (B, 24, 3, 3) joint rotations in the body's parent frame
    vertices: Tensor | None  # (B, 6890, 3) SmplBody only


def pose_to_rotmats(pose: Tensor) -> Tensor:
    """pose: (B, 24, 3) axis-angle or (B, 24, 3, 3) matrices -> (B, 24, 3, 3).

    Only the rank picks the branch, so a traced/exported graph is fixed by its example input; the full shape
    check runs eagerly (skipped while tracing, where shapes are symbolic).
    """
    if not isinstance(pose, Tensor):
        raise TypeError(f"pose must be a torch.Tensor, got {type(pose).__name__}")
    if not torch.jit.is_tracing() and tuple(pose.shape[1:]) not in ((NUM_JOINTS, 3), (NUM_JOINTS, 3, 3)):
        raise ValueError(f"pose must be (B, 24, 3) axis-angle or (B, 24, 3, 3) matrices, got {tuple(pose.shape)}")
    return axis_angle_to_matrix(pose) if pose.dim() == 3 else pose


def _check_betas_trans(betas: Tensor | None, trans: Tensor | None, batch: int) -> None:
    if torch.jit.is_tracing():
        return
    if betas is not None and (betas.dim() != 2 or betas.shape[1] != NUM_BETAS or betas.shape[0] not in (1, batch)):
        raise ValueError(f"betas must be (B, {NUM_BETAS}) or (1, {NUM_BETAS}) with B={batch}, got {tuple(betas.shape)}")
    if trans is not None and (trans.dim() != 2 or trans.shape[1] != 3 or trans.shape[0] not in (1, batch)):
        raise ValueError(f"trans must be (B, 3) or (1, 3) with B={batch}, got {tuple(trans.shape)}")


class Body(nn.Module, ABC):
    """`body(pose, betas=None, trans=None) -> BodyOutput`; `trans` is the pelvis position (see module doc)."""

    num_betas: int = NUM_BETAS
    parents: tuple[int, ...] = SMPL_PARENTS

    @abstractmethod
    def forward(self, pose: Tensor, betas: Tensor | None = None, trans: Tensor | None = None) -> BodyOutput:
        """pose (B, 24, 3) axis-angle or (B, 24, 3, 3); betas (B, 10); trans (B, 3) pelvis position."""

    @abstractmethod
    def rest_joints(self, betas: Tensor | None = None) -> Tensor:
        """betas (B, 10) or None -> (B, 24, 3) T-pose joints with the pelvis at the origin (B = 1 for None)."""


def _keypoints_from_joints(joints: Tensor, glob: Tensor, delta: Tensor, anchor: Tensor, frame: Tensor) -> Tensor:
    """joints (B, 24, 3), glob (B, 24, 3, 3), delta (B or 1, K, 3) -> (B, K, 3) = joint[anchor] + R[frame] @ delta."""
    rotated = (glob.index_select(1, frame) @ delta[..., None])[..., 0]
    return joints.index_select(1, anchor) + rotated


class BuiltinBody(Body):
    """SMPL-compatible skeleton with a 10-dim bone-length shape basis; pure torch, ONNX-exportable forward.

    Tables are non-persistent buffers: they are code, not weights, so checkpoints never carry stale copies.
    """

    # Buffers registered in __init__ (mocap.builtin_body.posing_tables), declared for the type checker.
    rest_offsets: Tensor
    shape_basis: Tensor
    kp_delta: Tensor
    kp_shape_basis: Tensor
    kp_anchor: Tensor
    kp_frame: Tensor

    def __init__(self) -> None:
        super().__init__()
        batched = ("rest_offsets", "kp_delta")  # (1, ...): broadcast against the batch
        for name, value in tables.posing_tables().items():
            buffer = torch.tensor(value)  # a copy: module tables stay untouched
            self.register_buffer(name, buffer[None] if name in batched else buffer, persistent=False)

    def bone_offsets(self, betas: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """betas (B, 10) or None -> (B or 1, 24, 3) parent-relative rest offsets; offsets[:, 0] = 0 (pelvis)."""
        offsets = self.rest_offsets.to(dtype)
        if betas is None:
            return offsets
        scale = 1.0 + betas.to(dtype) @ self.shape_basis.to(dtype).T  # (B, 24)
        return offsets * scale[..., None]

    def _keypoint_deltas(self, betas: Tensor | None, dtype: torch.dtype) -> Tensor:
        delta = self.kp_delta.to(dtype)
        if betas is None:
            return delta
        return delta * (1.0 + betas.to(dtype) @ self.kp_shape_basis.to(dtype).T)[..., None]

    def forward(self, pose: Tensor, betas: Tensor | None = None, trans: Tensor | None = None) -> BodyOutput:
        rotmats = pose_to_rotmats(pose)
        _check_betas_trans(betas, trans, rotmats.shape[0])
        dtype = rotmats.dtype
        offsets = self.bone_offsets(betas, dtype)
        joints, glob = forward_kinematics_offsets(rotmats, offsets, SMPL_PARENTS, trans)
        delta = self._keypoint_deltas(betas, dtype)
        keypoints = _keypoints_from_joints(joints, glob, delta, self.kp_anchor, self.kp_frame)
        return BodyOutput(joints, keypoints, glob, None)

    def rest_joints(self, betas: Tensor | None = None) -> Tensor:
        offsets = self.bone_offsets(betas, torch.float32 if betas is None else betas.dtype)
        eye = torch.eye(3, dtype=offsets.dtype, device=offsets.device).expand(offsets.shape[0], NUM_JOINTS, 3, 3)
        return forward_kinematics_offsets(eye, offsets, SMPL_PARENTS)[0]


# --- betas from bone lengths (retargeting) ----------------------------------------------------------------------


def bone_length_jacobian() -> tuple[np.ndarray, np.ndarray]:
    """BuiltinBody bone lengths are exactly linear in beta: lengths(b) = L0 + jac @ b.

    Returns L0 (24,) rest length of the bone parent(j) -> j (entry 0 = 0) and jac (24, 10), float64.
    """
    offsets = tables.REST_JOINTS - tables.REST_JOINTS[[max(p, 0) for p in SMPL_PARENTS]]
    rest_lengths = np.linalg.norm(offsets, axis=-1)
    return rest_lengths, rest_lengths[:, None] * tables.SHAPE_BASIS


def fit_betas_to_bone_lengths(
    target_lengths: np.ndarray, weights: np.ndarray | None = None, ridge: float = 1e-6
) -> np.ndarray:
    """Least-squares betas whose BuiltinBody bone lengths best match target_lengths (24,) metres.

    Entry j is the length of bone parent(j) -> j; entry 0 and NaN entries are ignored (bones the source lacks).
    weights (24,) optional per-bone weights. `ridge` (m^2 per beta^2) is a prior pulling betas to 0: the default
    costs as much as a 1 mm length residual per unit beta, which bounds the weakly observed directions (b0
    stature is told apart from b1-b9 mainly by the short hand bones) without visibly hurting the fit. Use 0
    for the plain (minimum-norm) least-squares solution. Returns betas (10,) float64.
    """
    target = np.asarray(target_lengths, dtype=np.float64)
    if target.shape != (NUM_JOINTS,):
        raise ValueError(f"target_lengths must be ({NUM_JOINTS},), got {target.shape}")
    w = np.ones(NUM_JOINTS) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (NUM_JOINTS,) or not np.all(w >= 0):
        raise ValueError(f"weights must be ({NUM_JOINTS},) and non-negative, got shape {w.shape}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    observed = np.isfinite(target) & (np.arange(NUM_JOINTS) > 0) & (w > 0)
    if not observed.any():
        raise ValueError("no finite bone length to fit betas to")
    rest, jac = bone_length_jacobian()
    sw = np.sqrt(w[observed])
    a = np.concatenate((jac[observed] * sw[:, None], np.sqrt(ridge) * np.eye(NUM_BETAS)))
    r = np.concatenate(((target[observed] - rest[observed]) * sw, np.zeros(NUM_BETAS)))
    return np.linalg.lstsq(a, r, rcond=None)[0]


# --- SMPL through smplx -----------------------------------------------------------------------------------------

#: SMPL vertex ids of the face points (COCO nose, l_eye, r_eye, l_ear, r_ear) and the foot points (L heel, L toe,
#: R heel, R toe), taken from smplx's own SMPL/SMPL-H table (`smplx.vertex_ids`, keys nose/leye/reye/lear/rear and
#: LHeel/LBigToe/RHeel/RBigToe). SMPL's left side is +x; those ids sit on the left for the "L" names.
_SMPL_FACE_KEYS = ("nose", "leye", "reye", "lear", "rear")
_SMPL_FOOT_KEYS = ("LHeel", "LBigToe", "RHeel", "RBigToe")
_SMPL_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


def _to_array(value: Any, key: str, path: Path) -> np.ndarray:
    if isinstance(value, ChumpyStub):
        if not isinstance(value.state, dict) or "x" not in value.state:
            raise ValueError(f"{path}: '{key}' is a chumpy expression, not a plain array; install chumpy and re-save")
        value = value.state["x"]
    if hasattr(value, "toarray"):  # scipy.sparse (SMPL's J_regressor)
        value = value.toarray()
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        return _to_array(value.item(), key, path)
    return np.asarray(value)


def _read_smpl_file(path: Path) -> dict[str, np.ndarray]:
    """SMPL model file (.pkl as distributed, or .npz) -> the arrays smplx needs, dense numpy."""
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:  # object arrays would be unrestricted pickles
                raw = {k: npz[k] for k in npz.files if k in _SMPL_REQUIRED}
        else:
            with path.open("rb") as fh:
                raw = safe_load(fh)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError, ImportError, AttributeError,
            IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable SMPL model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of SMPL arrays, got {type(raw).__name__}")
    missing = [k for k in _SMPL_REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"{path}: SMPL model lacks {missing}")
    arrays = {k: _to_array(raw[k], k, path) for k in _SMPL_REQUIRED}
    _check_smpl_arrays(arrays, path)
    return arrays


def _check_smpl_arrays(a: dict[str, np.ndarray], path: Path) -> None:
    v, j = SMPL_NUM_VERTICES, NUM_JOINTS
    expected = {
        "v_template": (v, 3), "J_regressor": (j, v), "weights": (v, j), "kintree_table": (2, j),
    }
    for key, shape in expected.items():
        if a[key].shape != shape:
            raise ValueError(f"{path}: SMPL '{key}' must be {shape}, got {a[key].shape}")
    sd, pd, f = a["shapedirs"], a["posedirs"], a["f"]
    if sd.ndim != 3 or sd.shape[:2] != (v, 3) or sd.shape[2] < NUM_BETAS:
        raise ValueError(f"{path}: SMPL 'shapedirs' must be ({v}, 3, >={NUM_BETAS}), got {sd.shape}")
    if pd.shape != (v, 3, (j - 1) * 9):
        raise ValueError(f"{path}: SMPL 'posedirs' must be ({v}, 3, {(j - 1) * 9}), got {pd.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{path}: SMPL 'f' must be (F, 3), got {f.shape}")
    if tuple(int(p) for p in a["kintree_table"][0, 1:]) != SMPL_PARENTS[1:]:
        raise ValueError(f"{path}: kintree_table is not SMPL's 24-joint tree")
    if not all(np.isfinite(a[k]).all() for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")):
        raise ValueError(f"{path}: SMPL arrays contain NaN or inf")


class SmplBody(Body):
    """SMPL through smplx: mesh vertices, its regressed joints, and the 21 keypoints.

    Face and foot keypoints are mesh vertices (ids from smplx's table); COCO body keypoints come from the joints
    with BuiltinBody's anatomical offsets, so both bodies define keypoints alike. `trans` is the pelvis position:
    smplx's `transl` is `trans - rest_pelvis(betas)`.
    """

    # Buffers registered in __init__, declared for the type checker.
    j_template: Tensor
    j_dirs: Tensor
    face_vids: Tensor
    foot_vids: Tensor
    kp_delta: Tensor
    kp_anchor: Tensor
    kp_frame: Tensor

    def __init__(self, layer: Any) -> None:  # smplx.SMPLLayer (smplx ships no types)
        super().__init__()
        from smplx.vertex_ids import vertex_ids

        self.layer = layer
        ids = vertex_ids["smplh"]
        jreg = layer.J_regressor.double()  # (24, V)
        # Rest joints are linear in betas: J(b) = J_template + J_dirs @ b.
        j_template = jreg @ layer.v_template.double()  # (24, 3)
        j_dirs = torch.einsum("jv,vcb->jcb", jreg, layer.shapedirs.double())  # (24, 3, 10)
        self.register_buffer("j_template", j_template.float(), persistent=False)
        self.register_buffer("j_dirs", j_dirs.float(), persistent=False)
        self.register_buffer("face_vids", torch.tensor([ids[k] for k in _SMPL_FACE_KEYS]), persistent=False)
        self.register_buffer("foot_vids", torch.tensor([ids[k] for k in _SMPL_FOOT_KEYS]), persistent=False)
        self.register_buffer("kp_delta", torch.as_tensor(tables.KP_DELTA, dtype=torch.float32)[None], persistent=False)
        self.register_buffer("kp_anchor", torch.as_tensor(tables.KP_ANCHOR), persistent=False)
        self.register_buffer("kp_frame", torch.as_tensor(tables.KP_FRAME), persistent=False)

    @classmethod
    def from_smpl(cls, path: str | Path) -> "SmplBody":
        """path: SMPL model file (.pkl as distributed, chumpy not required, or .npz with the same keys)."""
        import smplx
        from smplx.utils import Struct

        path = Path(path)
        arrays = _read_smpl_file(path)
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-beta files
            layer = smplx.SMPLLayer(model_path=str(path), data_struct=Struct(**arrays), num_betas=NUM_BETAS)
        return cls(layer)

    def _shaped_joints(self, betas: Tensor) -> Tensor:
        """betas (B, 10) -> (B, 24, 3) rest joints in SMPL's own frame (pelvis not at the origin)."""
        return self.j_template.to(betas.dtype) + torch.einsum("jcb,nb->njc", self.j_dirs.to(betas.dtype), betas)

    def rest_joints(self, betas: Tensor | None = None) -> Tensor:
        if betas is None:
            betas = self.j_template.new_zeros(1, NUM_BETAS)
        joints = self._shaped_joints(betas)
        return joints - joints[:, :1]

    def forward(self, pose: Tensor, betas: Tensor | None = None, trans: Tensor | None = None) -> BodyOutput:
        rotmats = pose_to_rotmats(pose).to(self.j_template.dtype)
        batch = rotmats.shape[0]
        _check_betas_trans(betas, trans, batch)
        dtype = rotmats.dtype
        betas = rotmats.new_zeros(batch, NUM_BETAS) if betas is None else betas.to(dtype).expand(batch, -1)
        trans = rotmats.new_zeros(batch, 3) if trans is None else trans.to(dtype).expand(batch, -1)
        rest = self._shaped_joints(betas)  # (B, 24, 3)
        out = self.layer(
            betas=betas, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:], transl=trans - rest[:, 0]
        )
        joints, vertices = out.joints[:, :NUM_JOINTS], out.vertices
        glob = forward_kinematics(rotmats, rest, SMPL_PARENTS)[1]
        from_joints = _keypoints_from_joints(joints, glob, self.kp_delta.to(dtype), self.kp_anchor, self.kp_frame)
        face = vertices.index_select(1, self.face_vids)
        feet = vertices.index_select(1, self.foot_vids)
        keypoints = torch.cat((face, from_joints[:, 5:17], feet), dim=1)  # COCO order, see skeleton.py
        return BodyOutput(joints, keypoints, glob, vertices)


def load_body(path: str | Path | None = None) -> Body:
    """None -> BuiltinBody; otherwise the SMPL model file at `path` (FileNotFoundError / ValueError naming it)."""
    if path is None:
        return BuiltinBody()
    return SmplBody.from_smpl(path)
