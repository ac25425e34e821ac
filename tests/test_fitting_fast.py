"""The per-frame refinement's fast paths (mocap/fitting, issue 13) against their plain forms: the level-by-level
FK and shape map against the general batched FK, the Woodbury LM solve against the dense Cholesky one, and the
so3 maps on the float32 rotations engines return."""
from __future__ import annotations

import numpy as np

from mocap.fitting import refine as R, so3
from mocap.fitting.body_numpy import body_tables, fk_levels, pose, shape_map, shaped
from mocap.kinematics import forward_kinematics_offsets_numpy
from mocap.rotations import matrix_to_axis_angle
from mocap.skeleton import NUM_JOINTS, SMPL_PARENTS


def test_fk_levels_cover_every_joint_once_parents_first() -> None:
    levels = fk_levels(SMPL_PARENTS)
    assert levels is not None
    done = {0}
    for child, parent in levels:
        kids = range(child.start, child.stop)
        pars = [parent] * len(kids) if isinstance(parent, int) else list(range(parent.start, parent.stop))
        assert [SMPL_PARENTS[j] for j in kids] == pars and set(pars) <= done
        done |= set(kids)
    assert done == set(range(NUM_JOINTS))
    assert fk_levels((-1, 0, 1, 0)) is None          # not numbered level by level


def test_one_frame_pose_equals_the_batched_fk_for_any_shape() -> None:
    rng = np.random.default_rng(0)
    t = body_tables()
    for _ in range(3):
        rot, betas = so3.exp(rng.normal(scale=0.6, size=(NUM_JOINTS, 3))), rng.normal(size=10)
        one = pose(rot, betas)
        batched = pose(rot[None], betas)
        for a, b in zip(one, batched):
            np.testing.assert_allclose(a, b[0], atol=1e-12)
        offsets, delta = shaped(betas)
        joints, glob = forward_kinematics_offsets_numpy(rot, offsets, SMPL_PARENTS)
        np.testing.assert_allclose(one.joints, joints, atol=1e-12)
        np.testing.assert_allclose(one.keypoints, joints[t.kp_anchor] + (glob[t.kp_frame] @ delta[:, :, None])[..., 0],
                                   atol=1e-12)
        assert shape_map(betas).shape == (NUM_JOINTS + len(t.kp_anchor), 3 * NUM_JOINTS)


def test_log_keeps_small_rotations_of_float32_matrices() -> None:
    """float32 rounds the trace of a 1e-5 rad rotation to exactly 3 (theta 0): the skew part must still carry it."""
    rng = np.random.default_rng(1)
    aa = rng.normal(size=(50, 3)) * np.logspace(-7, 0.5, 50)[:, None]
    m = so3.exp(aa).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(so3.log(m), matrix_to_axis_angle(m), atol=1e-6)
    np.testing.assert_allclose(so3.log(m)[:20], aa[:20], atol=1e-6)


def _normal(rng: np.random.Generator, rows: int, cols: int, prior: float) -> R._Normal:
    js = rng.normal(size=(rows, cols)) * (rng.random(cols) > 0.1)   # some columns no residual depends on
    return R._Normal(js, rng.normal(size=cols), np.full(cols, prior) + rng.random(cols), np.add.reduce(js * js, 0))


def test_woodbury_solve_equals_the_dense_damped_solve() -> None:
    rng = np.random.default_rng(2)
    for rows, cols in ((42, 75), (8, 75), (42, 85), (90, 75)):
        for lam in (1e-7, 1e-3, 10.0):
            nrm = _normal(rng, rows, cols, 0.02)
            h = nrm.js.T @ nrm.js + np.diag(nrm.prior)
            damped = h + lam * np.diag(np.diag(h)) + 1e-9 * np.eye(cols)
            dx = R._solve(nrm, lam)
            assert dx is not None
            np.testing.assert_allclose(dx, np.linalg.solve(damped, -nrm.g), rtol=1e-8, atol=1e-10)


def test_solve_falls_back_to_the_dense_cholesky_without_priors() -> None:
    rng = np.random.default_rng(3)
    nrm = _normal(rng, 42, 75, 0.0)._replace(prior=np.zeros(75))
    dx = R._solve(nrm, 1e-3)
    h = nrm.js.T @ nrm.js
    damped = h + 1e-3 * np.diag(np.diag(h)) + 1e-9 * np.eye(75)
    assert dx is not None and np.isfinite(dx).all()
    np.testing.assert_allclose(damped @ dx, -nrm.g, atol=1e-6 * np.abs(nrm.g).max())
