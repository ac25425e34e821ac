"""Body models: BuiltinBody geometry, shape basis, keypoints, ONNX export; SmplBody against smplx."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from smplx.lbs import batch_rigid_transform

from mocap import builtin_body as tables
from mocap.body import (
    BodyOutput, BuiltinBody, SmplBody, bone_length_jacobian, fit_betas_to_bone_lengths, load_body,
)
from mocap.rotations import axis_angle_to_matrix
from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS

try:
    from smpl_fixture import write_fake_smpl
except ImportError:  # tests/ collected as a package
    from tests.smpl_fixture import write_fake_smpl

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
K = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
PARENT_IDX = [max(p, 0) for p in SMPL_PARENTS]


def _mirror_name(name: str) -> str:
    swap = {"l_": "r_", "r_": "l_"}
    return swap[name[:2]] + name[2:] if name[:2] in swap else name


@pytest.fixture(scope="module")
def body() -> BuiltinBody:
    return BuiltinBody()


def _bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """joints (B, 24, 3) -> (B, 24) length of bone parent(j) -> j (entry 0 = 0)."""
    return (joints - joints[:, PARENT_IDX]).norm(dim=-1)


def _random_pose(batch: int, scale: float = 0.6, seed: int = 0) -> torch.Tensor:
    return scale * torch.randn(batch, 24, 3, generator=torch.Generator().manual_seed(seed))


# --- BuiltinBody ------------------------------------------------------------------------------------------------


def test_rest_layout_symmetric_pelvis_at_origin(body: BuiltinBody) -> None:
    rest = body.rest_joints()[0]
    assert rest.shape == (24, 3) and rest.dtype == torch.float32
    assert torch.equal(rest[0], torch.zeros(3))
    for name, i in J.items():
        torch.testing.assert_close(rest[J[_mirror_name(name)]], rest[i] * torch.tensor([-1.0, 1.0, 1.0]))
        if name.startswith("l_"):
            assert rest[i, 0] > 0, name  # left side at +x
    # Y up: head above neck above spine above pelvis above knees above ankles.
    ys = [rest[J[n], 1] for n in ("head", "neck", "spine3", "spine1", "pelvis", "l_knee", "l_ankle")]
    assert all(a > b for a, b in zip(ys, ys[1:]))


def test_zero_pose_equals_rest_and_trans_is_pelvis(body: BuiltinBody) -> None:
    betas = torch.randn(5, 10)
    trans = torch.randn(5, 3)
    out = body(torch.zeros(5, 24, 3), betas, trans)
    assert isinstance(out, BodyOutput) and out.vertices is None
    torch.testing.assert_close(out.joints, body.rest_joints(betas) + trans[:, None])
    torch.testing.assert_close(out.global_rotmats, torch.eye(3).expand(5, 24, 3, 3))
    posed = body(_random_pose(5), betas, trans)
    torch.testing.assert_close(posed.joints[:, 0], trans)  # pelvis rests at the origin: trans is its position


def test_fk_matches_smplx_rigid_transform(body: BuiltinBody) -> None:
    pose, betas, trans = _random_pose(16), torch.randn(16, 10), torch.randn(16, 3)
    out = body(pose, betas, trans)
    rotmats = axis_angle_to_matrix(pose)
    ref, _ = batch_rigid_transform(rotmats, body.rest_joints(betas), torch.tensor(SMPL_PARENTS))
    torch.testing.assert_close(out.joints, ref + trans[:, None], atol=1e-5, rtol=0)
    # Global rotations are the chained locals.
    expected = rotmats[:, 0] @ rotmats[:, J["l_hip"]] @ rotmats[:, J["l_knee"]]
    torch.testing.assert_close(out.global_rotmats[:, J["l_knee"]], expected, atol=1e-5, rtol=0)


def test_pose_as_matrices_same_and_lengths_rigid(body: BuiltinBody) -> None:
    pose, betas = _random_pose(8, 1.5), torch.randn(8, 10)
    a = body(pose, betas)
    b = body(axis_angle_to_matrix(pose), betas)
    torch.testing.assert_close(a.joints, b.joints)
    torch.testing.assert_close(a.keypoints, b.keypoints)
    torch.testing.assert_close(_bone_lengths(a.joints), _bone_lengths(body.rest_joints(betas)), atol=1e-5, rtol=0)


def test_keypoints_at_zero_pose_plausible(body: BuiltinBody) -> None:
    kp = body(torch.zeros(1, 24, 3)).keypoints[0]
    joints = body.rest_joints()[0]
    assert kp.shape == (21, 3)
    y = lambda n: float(kp[K[n], 1])  # noqa: E731
    assert y("nose") > y("l_shoulder") and y("l_eye") > y("nose") and y("l_shoulder") > y("l_elbow") - 0.1
    assert kp[K["nose"], 2] > joints[J["head"], 2] + 0.05  # nose in front of the face
    assert kp[K["l_ear"], 2] < kp[K["l_eye"], 2]  # ears behind the eyes
    for side in ("l", "r"):
        heel, toe, ankle = kp[K[f"{side}_heel"]], kp[K[f"{side}_toe"]], kp[K[f"{side}_ankle"]]
        assert heel[2] < ankle[2] < toe[2]  # heel behind, toe ahead (+z is forward)
        assert heel[1] < ankle[1] and toe[1] < ankle[1]
        assert 0.20 < float(toe[2] - heel[2]) < 0.30  # adult foot length
    for name, i in K.items():
        if name.startswith("l_"):
            assert kp[i, 0] > 0, name
            torch.testing.assert_close(kp[K["r_" + name[2:]]], kp[i] * torch.tensor([-1.0, 1.0, 1.0]))
    # COCO hips: lateral to and below the SMPL hip centres.
    assert kp[K["l_hip"], 0] > joints[J["l_hip"], 0] and kp[K["l_hip"], 1] < joints[J["l_hip"], 1]
    # Eye height of a ~1.70 m adult above the heel's floor contact.
    assert 1.50 < float(kp[K["l_eye"], 1] - kp[K["l_heel"], 1]) < 1.65


def test_keypoints_follow_their_bones(body: BuiltinBody) -> None:
    """Turning the head moves the nose about the head joint; flexing the ankle moves the heel, not the nose."""
    pose = torch.zeros(2, 24, 3)
    pose[1, J["head"]] = torch.tensor([0.0, 1.2, 0.0])  # look to the side
    pose[1, J["l_ankle"]] = torch.tensor([0.7, 0.0, 0.0])
    kp = body(pose).keypoints
    head = body.rest_joints()[0, J["head"]]
    r_head = axis_angle_to_matrix(pose[1, J["head"]])
    torch.testing.assert_close(kp[1, K["nose"]], head + r_head @ (kp[0, K["nose"]] - head))
    assert not torch.allclose(kp[0, K["l_heel"]], kp[1, K["l_heel"]])
    torch.testing.assert_close(kp[0, K["l_ankle"]], kp[1, K["l_ankle"]])
    torch.testing.assert_close(kp[0, K["r_heel"]], kp[1, K["r_heel"]])


def test_betas_scale_bones_as_documented(body: BuiltinBody) -> None:
    base = _bone_lengths(body.rest_joints())[0]
    eye = torch.eye(10)
    lengths = _bone_lengths(body.rest_joints(eye))  # (10, 24), one unit beta each
    rel = lengths[:, 1:] / base[1:] - 1.0  # (10, 23)
    torch.testing.assert_close(rel, torch.as_tensor(tables.SHAPE_BASIS[1:].T, dtype=torch.float32), atol=1e-5, rtol=0)
    # b0 grows every bone by ~4 %; b8 lengthens the shin and shortens the thigh; b2 leaves legs alone.
    assert torch.all((rel[0] > 0.03) & (rel[0] < 0.05))
    assert rel[8, J["l_ankle"] - 1] > 0 > rel[8, J["l_knee"] - 1]
    assert rel[2, J["l_elbow"] - 1] > 0 and rel[2, J["l_knee"] - 1] == 0
    assert torch.all(rel.abs() < 0.1)  # one unit is a plausible 1-sd change, not a caricature
    # Keypoint offsets scale too: the heel-to-ankle distance follows the foot (b9).
    kp = body(torch.zeros(2, 24, 3), torch.stack((torch.zeros(10), 2 * eye[9]))).keypoints
    d = (kp[:, K["l_heel"]] - kp[:, K["l_ankle"]]).norm(dim=-1)
    assert d[1] / d[0] == pytest.approx(1.0 + 2 * tables.SHAPE_BASIS[J["l_foot"], 9], rel=1e-5)


def test_fit_betas_recovers_bone_lengths(body: BuiltinBody) -> None:
    betas = np.random.default_rng(3).standard_normal(10)
    joints = body.rest_joints(torch.from_numpy(betas)[None])
    target = _bone_lengths(joints)[0].numpy()
    # Tables are float32 in the body, float64 in the jacobian: agreement to ~1e-7 m, betas to ~1e-4.
    np.testing.assert_allclose(fit_betas_to_bone_lengths(target, ridge=0.0), betas, atol=1e-4)
    rest, jac = bone_length_jacobian()
    np.testing.assert_allclose(rest + jac @ betas, target, atol=1e-6)
    fitted = fit_betas_to_bone_lengths(target)  # default prior: lengths still match to a millimetre
    assert np.abs(rest + jac @ fitted - target).max() < 1e-3
    partial = target.copy()
    partial[[J["l_hand"], J["r_hand"], J["l_foot"]]] = np.nan  # bones a source skeleton lacks
    fitted = fit_betas_to_bone_lengths(partial)
    observed = np.isfinite(partial)
    assert np.abs((rest + jac @ fitted - target)[observed]).max() < 1e-3
    with pytest.raises(ValueError, match="target_lengths"):
        fit_betas_to_bone_lengths(target[:10])
    with pytest.raises(ValueError, match="no finite"):
        fit_betas_to_bone_lengths(np.full(24, np.nan))


def test_bad_inputs_raise(body: BuiltinBody) -> None:
    with pytest.raises(ValueError, match="pose"):
        body(torch.zeros(2, 23, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        body(np.zeros((2, 24, 3)))
    with pytest.raises(ValueError, match="betas"):
        body(torch.zeros(2, 24, 3), torch.zeros(2, 9))
    with pytest.raises(ValueError, match="trans"):
        body(torch.zeros(2, 24, 3), None, torch.zeros(3, 3))


def test_float64_and_no_persistent_state(body: BuiltinBody) -> None:
    out = body(_random_pose(3).double(), torch.randn(3, 10, dtype=torch.float64))
    assert out.joints.dtype == torch.float64 and out.keypoints.dtype == torch.float64
    assert body.state_dict() == {}  # tables are code, so checkpoints never carry stale copies


def test_builtin_body_exports_to_onnx(body: BuiltinBody, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = BuiltinBody()
            self.head = torch.nn.Linear(8, 24 * 3 + 10)

        def forward(self, x: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.head(x)
            out = self.body(h[:, :72].reshape(-1, 24, 3), h[:, 72:], trans)
            return out.joints, out.keypoints

    model = Tiny().eval()
    x, trans = torch.randn(2, 8), torch.randn(2, 3)
    path = tmp_path / "body.onnx"
    names = ("x", "trans", "joints", "keypoints")
    torch.onnx.export(
        model, (x, trans), str(path), dynamo=False, opset_version=17, input_names=list(names[:2]),
        output_names=list(names[2:]), dynamic_axes={n: {0: "batch"} for n in names},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x5, t5 = torch.randn(5, 8), torch.randn(5, 3)  # another batch size than exported with
    joints, keypoints = sess.run(None, {"x": x5.numpy(), "trans": t5.numpy()})
    with torch.no_grad():
        ref_j, ref_k = model(x5, t5)
    np.testing.assert_allclose(joints, ref_j.numpy(), atol=1e-5)
    np.testing.assert_allclose(keypoints, ref_k.numpy(), atol=1e-5)


# --- SmplBody through smplx -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smpl_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("smpl")
    return {
        "plain": write_fake_smpl(root / "plain.pkl"),
        "chumpy": write_fake_smpl(root / "chumpy.pkl", chumpy=True),
        "npz": write_fake_smpl(root / "model.npz"),
    }


def _smplx_reference(path: Path, pose: torch.Tensor, betas: torch.Tensor, pelvis: torch.Tensor):
    """smplx's own SMPL (reads the .pkl itself) placed so its pelvis lands at `pelvis`."""
    import smplx

    model = smplx.SMPL(model_path=str(path), batch_size=len(pose))
    with torch.no_grad():
        rest = model(betas=betas).joints[:, 0]  # zero pose: pelvis at its shaped rest position
        return model(
            betas=betas, global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(len(pose), -1), transl=pelvis - rest
        )


@pytest.mark.parametrize("kind", ["chumpy", "npz"])
def test_smpl_body_matches_smplx(smpl_files: dict[str, Path], kind: str) -> None:
    body = load_body(smpl_files[kind])
    assert isinstance(body, SmplBody)
    pose, betas, trans = _random_pose(4, seed=1), torch.randn(4, 10), torch.randn(4, 3)
    with torch.no_grad():
        out = body(pose, betas, trans)
        ref = _smplx_reference(smpl_files["plain"], pose, betas, trans)
    assert out.vertices.shape == (4, 6890, 3) and out.keypoints.shape == (4, 21, 3)
    torch.testing.assert_close(out.joints, ref.joints[:, :24], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints[:, 0], trans, atol=1e-5, rtol=0)
    # Face and foot keypoints are smplx's own landmark vertices (its extra joints: nose, r/l eye, r/l ear, ...).
    extra = ref.joints[:, 24:]
    torch.testing.assert_close(out.keypoints[:, [0, 2, 1, 4, 3]], extra[:, :5], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.keypoints[:, [18, 17, 20, 19]], extra[:, [5, 7, 8, 10]], atol=1e-5, rtol=0)
    # Body keypoints sit on the regressed joints (elbow/knee offsets are zero).
    torch.testing.assert_close(out.keypoints[:, K["l_knee"]], out.joints[:, J["l_knee"]])
    torch.testing.assert_close(out.global_rotmats, BuiltinBody()(pose).global_rotmats, atol=1e-5, rtol=0)


def test_smpl_rest_joints_and_matrix_pose(smpl_files: dict[str, Path]) -> None:
    body = load_body(smpl_files["npz"])
    betas = torch.randn(3, 10)
    rest = body.rest_joints(betas)
    assert rest.shape == (3, 24, 3)
    torch.testing.assert_close(rest[:, 0], torch.zeros(3, 3))
    with torch.no_grad():
        zero = body(torch.zeros(3, 24, 3), betas)
        torch.testing.assert_close(zero.joints, rest, atol=1e-5, rtol=0)
        pose = _random_pose(3, seed=2)
        torch.testing.assert_close(body(pose).vertices, body(axis_angle_to_matrix(pose)).vertices)


def test_load_body_errors_name_the_file(tmp_path: Path) -> None:
    assert isinstance(load_body(None), BuiltinBody)
    missing = tmp_path / "SMPL_NEUTRAL.pkl"
    with pytest.raises(FileNotFoundError, match="SMPL_NEUTRAL.pkl"):
        load_body(missing)
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00")  # truncated pickle
    with pytest.raises(ValueError, match="corrupt.pkl"):
        load_body(corrupt)
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_body(bad_npz)
    wrong = tmp_path / "wrong.npz"
    buf = io.BytesIO()
    np.savez(buf, v_template=np.zeros((100, 3)))
    wrong.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=r"wrong.npz.*lacks"):
        load_body(wrong)


def test_load_body_rejects_wrong_shapes(tmp_path: Path, smpl_files: dict[str, Path]) -> None:
    with np.load(smpl_files["npz"]) as npz:
        arrays = dict(npz)
    arrays["posedirs"] = arrays["posedirs"][..., :100]
    path = tmp_path / "short_posedirs.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"short_posedirs.npz.*posedirs"):
        load_body(path)


def test_fk_graph_and_eager_implementations_agree() -> None:
    """The ONNX-export FK (one gather per level) equals the eager FK (per-joint tensors)."""
    from mocap.kinematics import _fk_eager, _fk_graph
    from mocap.skeleton import SMPL_PARENTS

    gen = torch.Generator().manual_seed(0)
    rot = torch.linalg.qr(torch.randn(7, 24, 3, 3, generator=gen))[0]
    offsets = torch.randn(7, 24, 3, generator=gen)
    trans = torch.randn(7, 3, generator=gen)
    j_eager, g_eager = _fk_eager(rot, offsets, SMPL_PARENTS, trans)
    j_graph, g_graph = _fk_graph(rot, offsets, SMPL_PARENTS, trans)
    assert torch.allclose(j_eager, j_graph, atol=1e-5)
    assert torch.allclose(g_eager, g_graph, atol=1e-5)
