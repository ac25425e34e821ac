"""Test-time refinement (mocap/fitting, issue 11): numpy maths against the torch originals, the solver on frames
with a known answer, bad input, world/trajectory consistency, and the live loop with refinement on and off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocap.body import BuiltinBody
from mocap.fitting import RefineConfig, TrackState, refine_person, refine_step, so3
from mocap.fitting import refine as R
from mocap.fitting.body_numpy import body_tables, keypoint_beta_jacobian, pose
from mocap.fitting.limits import LIMIT_HI, LIMIT_LO
from mocap.fitting.reprojection import reprojection_error
from mocap.fitting.world import contact_weights, reintegrate_trans, world_outputs
from mocap.kinematics import forward_kinematics_offsets, forward_kinematics_offsets_numpy
from mocap.model.refiner import contact_weights as torch_contact_weights, refine_and_integrate_step
from mocap.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from mocap.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
K = np.array([[1000.0, 0.0, 640.0], [0.0, 1000.0, 360.0], [0.0, 0.0, 1.0]])


def _natural_pose(rng: np.random.Generator) -> np.ndarray:
    """(24, 3) local axis-angle of a plausible standing body facing the camera (OpenCV frame), inside the limits."""
    aa = rng.normal(scale=0.15, size=(24, 3))
    aa[1:] = np.clip(aa[1:], LIMIT_LO + 0.05, LIMIT_HI - 0.05)
    aa[J["l_knee"], 0] = aa[J["r_knee"], 0] = 0.4
    aa[J["l_shoulder"], 2], aa[J["r_shoulder"], 2] = -1.0, 1.0
    aa[0] = matrix_to_axis_angle(axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0])) @ axis_angle_to_matrix(aa[0]))
    return aa


def _outputs(aa: np.ndarray, betas: np.ndarray, trans: np.ndarray) -> dict[str, np.ndarray]:
    """Engine-like outputs of one person (no batch) for a camera-frame pose; world root = a level camera's."""
    rot = so3.exp(aa)
    body = pose(rot, betas)
    world_root = np.diag([1.0, -1.0, -1.0]) @ rot[0]
    kp = body.keypoints + trans
    pose_world = rot.copy()
    pose_world[0] = world_root
    c2w = world_root @ rot[0].T
    return {"pose_rotmat": pose_world, "cam_root_rotmat": rot[0], "betas": betas, "cam_trans": trans,
            "kp3d_cam": kp, "joints": body.joints @ c2w.T + np.array([0.0, 1.0, 0.0]),
            "root_trans": np.array([0.0, 1.0, 0.0]), "contact": np.array([0.9, 0.8, 0.1, 0.0]),
            "cam_wp": np.array([1.0, 0.0, 0.0])}


def _detect(kp3d: np.ndarray, conf: float = 0.9) -> np.ndarray:
    hom = kp3d @ K.T
    return np.concatenate((hom[:, :2] / hom[:, 2:], np.full((len(kp3d), 1), conf)), axis=1)


@pytest.fixture()
def frame() -> dict:
    rng = np.random.default_rng(3)
    aa = _natural_pose(rng)
    betas = np.zeros(10)
    trans = np.array([0.1, 0.05, 4.0])
    truth = _outputs(aa, betas, trans)
    wrong = aa.copy()
    wrong[1:] += rng.normal(scale=0.12, size=(23, 3))
    wrong[0] = matrix_to_axis_angle(axis_angle_to_matrix(rng.normal(scale=0.08, size=3)) @ axis_angle_to_matrix(aa[0]))
    net = _outputs(wrong, betas, trans + np.array([0.05, -0.03, 0.25]))
    return {"truth": truth, "net": net, "kp2d": _detect(truth["kp3d_cam"])}


# ------------------------------------------------------------------------------------------ numpy maths
def test_so3_maps_agree_with_the_rotation_module_and_the_left_jacobian_with_finite_differences() -> None:
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(200, 3))
    aa[:3] *= 1e-7
    aa[3:6] = aa[3:6] / np.linalg.norm(aa[3:6], axis=1, keepdims=True) * (np.pi - 1e-4)
    m = so3.exp(aa)
    np.testing.assert_allclose(m, axis_angle_to_matrix(aa), atol=1e-12)
    np.testing.assert_allclose(so3.exp(so3.log(m)), m, atol=1e-7)
    np.testing.assert_allclose(so3.log(m[6:]), matrix_to_axis_angle(m[6:]), atol=1e-6)
    d = rng.normal(size=3) * 1e-6
    for a in aa[[0, 10, 11]]:
        np.testing.assert_allclose(so3.exp(a + d), so3.exp(so3.left_jacobian(a) @ d) @ so3.exp(a), atol=1e-11)


def test_numpy_fk_and_body_match_the_torch_body() -> None:
    rng = np.random.default_rng(1)
    aa, betas = rng.normal(scale=0.5, size=(4, 24, 3)), rng.normal(size=(4, 10))
    rot = axis_angle_to_matrix(aa)
    off = rng.normal(size=(24, 3))
    joints, glob = forward_kinematics_offsets_numpy(rot, off, SMPL_PARENTS)
    jt, gt = forward_kinematics_offsets(torch.from_numpy(rot), torch.from_numpy(off)[None], SMPL_PARENTS)
    np.testing.assert_allclose(joints, jt.numpy(), atol=1e-12)
    np.testing.assert_allclose(glob, gt.numpy(), atol=1e-12)
    ref = BuiltinBody().double()(torch.from_numpy(rot), torch.from_numpy(betas))
    for i in range(4):
        mine = pose(rot[i], betas[i])
        np.testing.assert_allclose(mine.joints, ref.joints[i].numpy(), atol=1e-6)
        np.testing.assert_allclose(mine.keypoints, ref.keypoints[i].numpy(), atol=1e-6)


def test_beta_jacobian_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    rot, betas = so3.exp(rng.normal(scale=0.4, size=(24, 3))), rng.normal(size=10)
    jac = keypoint_beta_jacobian(pose(rot, betas).glob)
    eps = 1e-6
    fd = np.stack([(pose(rot, betas + eps * e).keypoints - pose(rot, betas - eps * e).keypoints) / (2 * eps)
                   for e in np.eye(10)], axis=-1)
    np.testing.assert_allclose(jac, fd, atol=1e-8)


def test_analytic_jacobian_matches_finite_differences(frame: dict) -> None:
    net, kp2d = frame["net"], frame["kp2d"]
    x, root = R._parameters_of(net)
    x[R.I_ROOT] = [0.05, -0.1, 0.2]                       # a non-zero root offset exercises J_l(d0) too
    vis = np.arange(21)
    prob = R._Problem(body_tables(), kp2d[:, :2], kp2d[:, 2], vis, K, 1 / 300.0, root, x, np.zeros(R.N_PARAMS),
                      0.05**2, 0.0)
    ev = R._evaluate(x, prob)
    R._linearize_at(prob, ev)
    jac = R._jacobian(ev, prob)
    eps = 1e-6
    fd = np.empty_like(jac)
    for i in range(R.N_PARAMS):
        d = np.zeros(R.N_PARAMS)
        d[i] = eps
        fd[:, i] = (R._evaluate(x + d, prob)["r"] - R._evaluate(x - d, prob)["r"]).reshape(-1) / (2 * eps)
    np.testing.assert_allclose(jac, fd, atol=1e-6 * np.abs(fd).max())


# ------------------------------------------------------------------------------------------ the solver
def test_refinement_lowers_reprojection_and_recovers_a_perturbed_pose(frame: dict) -> None:
    net, truth, kp2d = frame["net"], frame["truth"], frame["kp2d"]
    track, cfg = TrackState(), RefineConfig()
    before = reprojection_error(net["kp3d_cam"], kp2d, K)
    rel = lambda o: pose(np.concatenate((o["cam_root_rotmat"][None], o["pose_rotmat"][1:])), o["betas"]).joints  # noqa: E731
    err_net = np.linalg.norm(rel(net) - rel(truth), axis=1).mean()
    errs = []
    for _ in range(4):  # the same evidence on consecutive frames: the correction carries and tightens
        out = refine_person(net, kp2d, K, track, cfg)
        assert out is not None and out.steps > 0 and out.cost_end < out.cost_start
        errs.append(reprojection_error(out.keypoints_rel + out.cam_trans, kp2d, K))
    assert before > 0.03 and errs[0] < 0.5 * before and errs[-1] < 0.01
    err_ref = np.linalg.norm(out.joints_rel - rel(truth), axis=1).mean()
    assert err_ref < 0.6 * err_net                         # 3D: most of the perturbation is undone
    assert abs(out.cam_trans[2] - truth["cam_trans"][2]) < abs(net["cam_trans"][2] - truth["cam_trans"][2])


def test_joint_limits_pull_an_impossible_knee_back() -> None:
    rng = np.random.default_rng(4)
    aa = _natural_pose(rng)
    aa[J["l_knee"]] = [-0.6, 0.0, 0.0]                    # hyper-extended: bends forwards
    net = _outputs(aa, np.zeros(10), np.array([0.0, 0.0, 4.0]))
    kp2d = _detect(net["kp3d_cam"])                       # the evidence agrees with the impossible pose
    free = refine_person(net, kp2d, K, TrackState(), RefineConfig(limit=0.0))
    held = refine_person(net, kp2d, K, TrackState(), RefineConfig())
    knee = lambda r: so3.log(r.pose_local[J["l_knee"]])[0]  # noqa: E731
    assert knee(free) == pytest.approx(-0.6, abs=0.02)
    assert knee(held) > -0.3 and knee(held) > knee(free) + 0.25


def test_too_little_evidence_or_bad_numbers_keep_the_network_output(frame: dict) -> None:
    net, kp2d = frame["net"], frame["kp2d"]
    few = kp2d.copy()
    few[3:, 2] = 0.1                                      # 3 confident keypoints
    nan_kp = kp2d.copy()
    nan_kp[:, :2] = np.nan
    low = kp2d.copy()
    low[:, 2] = 0.2
    bad_net = dict(net, cam_trans=np.array([np.nan, 0.0, 4.0]))
    behind = dict(net, cam_trans=np.array([0.0, 0.0, -2.0]))
    for outputs, kp in ((net, few), (net, nan_kp), (net, low), (bad_net, kp2d), (behind, kp2d)):
        track = TrackState()
        assert refine_person(outputs, kp, K, track) is None
        assert track.correction is None
    assert refine_person(net, kp2d, np.full((3, 3), np.nan), TrackState()) is None
    with pytest.raises(ValueError):
        refine_person(net, kp2d[:5], K, TrackState())
    # through the loop's hook: the batch comes back as it went in
    batched = {k: v[None].astype(np.float32) for k, v in net.items()}
    state = {"initialized": np.ones((1, 1), np.float32), "prev_feet": np.zeros((1, 4, 3), np.float32),
             "prev_trans": np.zeros((1, 3), np.float32)}
    res = refine_step(batched, state, state, few, K, TrackState())
    assert res.refined is None
    for k in batched:
        np.testing.assert_array_equal(res.outputs[k], batched[k])


def test_a_frame_without_evidence_fades_the_last_correction_instead_of_jumping(frame: dict) -> None:
    net, kp2d = frame["net"], frame["kp2d"]
    track = TrackState()
    fitted = refine_person(net, kp2d, K, track)
    carried = track.correction.copy()
    coast = refine_person(net, np.zeros((21, 3)), K, track)
    assert coast is not None and track.coasted == 1
    np.testing.assert_allclose(track.correction, RefineConfig().coast_decay * carried)
    gap_net = abs(coast.cam_trans[2] - net["cam_trans"][2])
    gap_fit = abs(fitted.cam_trans[2] - net["cam_trans"][2])
    assert 0 < gap_net < gap_fit                             # between the fit and the raw network output
    assert np.isfinite(coast.joints_rel).all()


def test_temporal_weights_scale_with_the_square_of_the_frame_rate(frame: dict) -> None:
    """At 60 fps a correction drifting at one speed moves half as far per frame: its per-frame temporal weight
    is 4x the 30-fps one, so the smoothing per second is the same at any frame rate."""
    import dataclasses

    net, kp2d = frame["net"], frame["kp2d"]
    cfg = RefineConfig()
    four = dataclasses.replace(cfg, **{f: 4 * getattr(cfg, f) for f in
                                       ("pose_temporal", "root_temporal", "shift_temporal", "depth_temporal")})
    own = _detect(net["kp3d_cam"])  # the second frame's evidence agrees with the network: no correction wanted
    results = []
    for config, dt in ((cfg, 1 / 60), (four, 1 / 30), (cfg, 1 / 30)):
        track = TrackState()
        refine_person(net, kp2d, K, track, config, dt=1 / 30)
        out = refine_person(net, own, K, track, config, dt=dt)
        assert out is not None
        results.append(track.correction.copy())
    np.testing.assert_allclose(results[0], results[1], atol=1e-9)
    assert np.linalg.norm(results[0]) > np.linalg.norm(results[2])  # more of the correction carried at 60 fps


# ------------------------------------------------------------------------------------------ consistency
def test_world_reintegration_equals_the_models_contact_aware_step() -> None:
    rng = np.random.default_rng(5)
    for init in (0.0, 1.0):
        feet_net, feet_new = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
        prev_feet, prev_trans, vel = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=3) * 0.02
        contact = np.array([0.9, 0.7, 0.2, 0.55])
        t = lambda a: torch.from_numpy(np.asarray(a, np.float64))[None]  # noqa: E731
        step = lambda feet: refine_and_integrate_step(t(feet), t(vel), t(contact), t(prev_feet), t(prev_trans),  # noqa: E731
                                                      t([init]), 0.5)[0].numpy()
        np.testing.assert_allclose(reintegrate_trans(step(feet_net), feet_net, feet_new, contact, init, 0.5),
                                   step(feet_new), atol=1e-12)
    np.testing.assert_allclose(contact_weights(contact, 0.5), torch_contact_weights(t(contact), 0.5)[0].numpy())


def test_an_unchanged_body_reproduces_the_models_world_outputs_and_state() -> None:
    """world_outputs fed the network's own body must give back the network's world joints, trans and feet."""
    from mocap.model import load_model

    model = load_model("default")
    torch.manual_seed(0)
    state = model.initial_state(1)
    x = torch.zeros(1, model.config.input_dim)
    x[0, :63] = torch.rand(63) * 0.5
    x[0, 63:66] = torch.tensor([0.0, 0.0, 0.4])
    with torch.no_grad():
        for i in range(3):
            out, new_state = model.step(x, torch.zeros(1, 6), state)
            person = {k: v[0].double().numpy() for k, v in out.items()}
            local = np.concatenate((person["cam_root_rotmat"][None], person["pose_rotmat"][1:]))
            body = pose(local, person["betas"])
            same = R.Refined(local, person["betas"], person["cam_trans"], body.joints, body.keypoints, 0.0, 0.0, 0)
            new, feet = world_outputs(person, same, float(state["initialized"][0, 0]), model.config.contact_threshold)
            np.testing.assert_allclose(new["joints"], person["joints"], atol=2e-5)
            np.testing.assert_allclose(new["root_trans"], person["root_trans"], atol=2e-5)
            np.testing.assert_allclose(new["kp3d_cam"], person["kp3d_cam"], atol=2e-5)
            np.testing.assert_allclose(feet, new_state["prev_feet"][0].numpy(), atol=2e-5)
            state = new_state


# ------------------------------------------------------------------------------------------ the live loop
def _run_loop(refine: RefineConfig | None, engine) -> tuple[list, dict]:
    from stream.camera_motion import make_camera_motion
    from stream.loop import LiveLoop
    from stream.sources import SyntheticSource
    from stream.tracker import Tracker

    class Collect:
        def __init__(self) -> None:
            self.messages: list = []

        def publish(self, msg) -> bool:
            self.messages.append(msg)
            return True

    pub = Collect()
    source = SyntheticSource(realtime=False, render=False, n_frames=60)
    loop = LiveLoop(source, None, Tracker(), make_camera_motion("static"), engine, pub, refine=refine)
    stats = loop.run()
    return [m for m in pub.messages if m.status in ("init", "tracking")], stats


def test_loop_with_refinement_publishes_finite_poses_that_reproject_better() -> None:
    import engines

    engine = engines.load("default", prefer=["onnxruntime"])
    plain, stats_plain = _run_loop(None, engine)
    refined, stats_ref = _run_loop(RefineConfig(), engine)
    assert len(refined) == len(plain) >= 50
    for m in refined:
        assert np.isfinite(m.pose_aa).all() and np.isfinite(m.joints).all() and np.isfinite(m.root_trans).all()
    assert "refine" in stats_ref["stages_ms"] and stats_ref["stages_ms"]["refine"]["n"] >= 50
    assert "refine" not in stats_plain["stages_ms"]
    assert stats_ref["reproj_err_rel"]["p50"] < 0.8 * stats_plain["reproj_err_rel"]["p50"]
    assert not stats_ref["errors"]


def test_eval_refines_each_step_and_keeps_the_trajectory_continuous() -> None:
    from mocap.eval import run_model_causally, sample_intrinsics
    from mocap.fitting.bench import synthetic_sample
    from mocap.model import load_model

    model = load_model("default")
    sample = synthetic_sample(45, seed=1)
    plain = run_model_causally(model, sample)
    refined = run_model_causally(model, sample, RefineConfig())
    K = sample_intrinsics(sample)
    kp2d = sample["kp2d"].numpy()
    err = lambda out: np.nanmedian([reprojection_error(out["kp3d_cam"][t], kp2d[t], K) or np.nan  # noqa: E731
                                    for t in range(len(kp2d))])
    assert err(refined) < 0.8 * err(plain)
    for key in ("pose_rotmat", "joints", "root_trans", "kp3d_cam"):
        assert np.isfinite(refined[key]).all()
    step = np.linalg.norm(np.diff(refined["root_trans"], axis=0), axis=1)
    assert step.max() < 0.2                                   # metres per frame: integrated, not jumping


def test_the_adaptation_replay_refines_each_frame_exactly_as_the_plain_replay() -> None:
    """With a gate that never accepts, `--adapt --refine` must publish what `--refine` does, frame for frame, at
    any frame rate: both replay the live loop's frame (`mocap.replay`), the refinement's temporal terms scaled by
    each frame's interval (a copy that ignored the interval made 60-fps refinement 65 % jerkier under --adapt)."""
    import torch

    from mocap.adapt.cycle import AdaptConfig
    from mocap.adapt.simulate import EvalAdaptation, ReplayConfig
    from mocap.eval import run_model_causally
    from mocap.fitting.bench import synthetic_sample
    from mocap.model import load_model

    model = load_model("default")
    sample = synthetic_sample(70, seed=2)
    sample["dt"] = torch.full((70,), 1 / 60.0)                 # 60 fps: temporal weights x 4
    plain = run_model_causally(model, sample, RefineConfig())
    never = EvalAdaptation(AdaptConfig(steps=1, window=8, batch=1, holdout=10, min_train_frames=10, min_gain=1.0),
                           ReplayConfig(every=30))
    replayed = never.run(model, sample, RefineConfig())
    assert never.summary()["cycles"] >= 1 and never.summary()["accepted"] == 0
    for key in ("pose_rotmat", "cam_root_rotmat", "joints", "kp3d_cam", "root_trans"):
        np.testing.assert_allclose(replayed[key], plain[key], atol=1e-6, err_msg=key)
    at_30 = run_model_causally(model, {k: v for k, v in sample.items() if k != "dt"}, RefineConfig())
    assert not np.allclose(at_30["kp3d_cam"], plain["kp3d_cam"], atol=1e-4)   # the interval does matter
