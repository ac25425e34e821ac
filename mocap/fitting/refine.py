"""Causal test-time refinement of one person-frame: a few Levenberg-Marquardt steps that fit the network's body
to the detected 2D keypoints (issue 11, after Tung et al. 2017's "fit the evidence").

Unknowns (75, or 85 with the betas): the 23 body joints' local axis-angles (started at the network's), a
camera-frame root rotation offset d0 (R_root = exp(d0) R_root_net), the camera-frame root translation. Energy:

    sum_k c_k GM(|proj(P_k) - u_k| / box)                      robust reprojection, bbox units (resolution-free)
  + w_prior |x - x_net|^2                                       the network's prediction is the prior
  + w_temp |x - (x_net + c_prev)|^2                             temporal: the previous refined frame's correction
                                                                c_prev = x_ref(t-1) - x_net(t-1), carried along
                                                                the network's own motion (no lag on fast motion)
  + w_limit |hinge(a, lo, hi)|^2                                soft joint limits (`limits.py`)

Shape moves slowly: betas are held at a running per-track mean of the network's own betas. Fitting them to the 2D
keypoints as well (`fit_betas`, with w_beta |beta - beta_track|^2 toward a running estimate of the fitted ones)
lets bone lengths absorb pose and depth errors: on the synthetic eval that cost 7 mm of MPJPE.

Translation terms are measured as image shift in bbox units and as relative depth, so every weight is unitless.
Jacobians are analytic: a world-frame rotation increment d at joint j moves every point p it carries by
d x (p - p_j); a local axis-angle step da maps to d = R_parent J_l(a) da. Everything is numpy float64 on one
person-frame (no torch on the frame path); the per-track state (`TrackState`) lives with the caller.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np
from scipy.linalg import lapack

from mocap.camera import CONF_THRESHOLD
from mocap.fitting import so3
from mocap.fitting.body_numpy import BodyTables, body_tables, keypoint_beta_jacobian, posed, shape_map
from mocap.fitting.limits import LIMIT_HI, LIMIT_LO
from mocap.skeleton import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS

N_BODY = 3 * (NUM_JOINTS - 1)            # 69 body axis-angle components
I_ROOT = slice(0, 3)                      # parameter layout: root offset, body joints 1..23, translation, betas
I_BODY = slice(3, 3 + N_BODY)
I_TRANS = slice(3 + N_BODY, 6 + N_BODY)
I_BETA = slice(6 + N_BODY, 6 + N_BODY + NUM_BETAS)
N_PARAMS = 6 + N_BODY + NUM_BETAS        # 85


@dataclass(frozen=True)
class RefineConfig:
    """Weights of the energy (unitless, see the module doc) and solver settings."""

    iterations: int = 3            # Gauss-Newton / LM steps per frame (warm-started: 3 do as well as 6)
    sigma: float = 0.05            # Geman-McClure scale, bbox units: residuals past ~5 % of the box saturate
    pose_prior: float = 0.02       # per rad^2, body joints, toward the network
    root_prior: float = 0.02       # per rad^2, camera-frame root orientation
    shift_prior: float = 0.05      # per (bbox unit)^2 of image shift of the root
    depth_prior: float = 0.05      # per (relative depth change)^2
    pose_temporal: float = 2.0     # toward the previous refined frame's correction
    root_temporal: float = 5.0
    shift_temporal: float = 0.2
    depth_temporal: float = 0.2
    reference_fps: float = 30.0    # temporal weights are per 1/reference_fps s: a frame dt apart scales them by
                                   # ((1/reference_fps)/dt)^2 (clipped to [1/16, 16]): a correction drifting at
                                   # one speed then costs the same per second, so the smoothing is the same in time
    motion_scale: float = 0.0      # network keypoint speed (bbox units / frame) at which temporal weights halve
    innovation_scale: float = 0.03  # reprojection error of the carried correction at which they halve
    limit: float = 10.0            # per rad^2 outside the box
    fit_betas: bool = False        # False: betas held at the track's running mean of the network's betas
    beta_track: float = 0.1        # (fit_betas) per beta^2, toward the track's running estimate
    beta_rate: float = 0.1         # running-estimate update rate once past 1 / beta_rate frames (a mean before)
    damping: float = 1e-3          # initial LM damping (relative to the Hessian diagonal)
    min_keypoints: int = 4         # fewer confident keypoints: no fit this frame (see coast_decay)
    coast_decay: float = 0.8       # per frame without evidence, the last correction fades by this factor

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"RefineConfig.{name} must be finite and >= 0, got {value}")
        if self.sigma <= 0 or self.min_keypoints < 1 or self.coast_decay > 1:
            raise ValueError("RefineConfig.sigma must be > 0, min_keypoints >= 1 and coast_decay <= 1")


@dataclass
class TrackState:
    """What one track's refinement carries from frame to frame (owned by the caller, one per tracked person).

    correction: (85,) refined minus network parameters of the previous refined frame (None before the first).
    uv_net: the network's projected keypoints of that frame, to measure how fast the network says the person moves.
    betas: (10,) the track's running shape (mean of the network's betas; of the fitted ones with fit_betas);
    frames: frames folded into it.
    """

    correction: np.ndarray | None = None
    betas: np.ndarray | None = None
    uv_net: np.ndarray | None = None   # (21, 2) the network's keypoints in pixels last frame (NaN: not seen)
    frames: int = 0
    refined: int = 0               # frames fitted to their keypoints
    coasted: int = 0               # frames without evidence that carried the fading correction

    def reset(self) -> None:
        self.correction, self.betas, self.uv_net = None, None, None
        self.frames = self.refined = self.coasted = 0


class Refined(NamedTuple):
    """The refined camera-frame body of one person-frame (float64)."""

    pose_local: np.ndarray      # (24, 3, 3) local rotations, joint 0 = camera-frame root
    betas: np.ndarray           # (10,)
    cam_trans: np.ndarray       # (3,) pelvis in the camera frame
    joints_rel: np.ndarray      # (24, 3) camera-frame joints minus the pelvis
    keypoints_rel: np.ndarray   # (21, 3) camera-frame keypoints minus the pelvis
    cost_start: float           # energy at the start point (network output + the track's last correction)
    cost_end: float
    steps: int                  # accepted LM steps


@dataclass
class _Problem:
    """Per-frame constants of the energy."""

    tables: BodyTables
    uv: np.ndarray              # (n, 2) detected pixels of the visible keypoints
    conf: np.ndarray            # (n,)
    vis: np.ndarray             # (n,) keypoint indices
    K: np.ndarray
    inv_box: float
    root_net: np.ndarray        # (3, 3)
    centre: np.ndarray          # (85,) minimiser of prior + temporal + beta terms
    weight: np.ndarray          # (85,) their combined diagonal weight (in parameter units)
    sigma2: float
    limit: float
    n_free: int = N_PARAMS      # parameters solved for (the first n_free; betas last, held when not fitted)
    smap: np.ndarray | None = None   # (24 + n, 72) rows of the frame's `shape_map` (None: from x's betas)

    def __post_init__(self) -> None:
        # Projection straight to bbox units: rows 0, 1 of K scaled by 1 / box (one product per evaluation).
        self.k_box_t = (self.K * np.array([[self.inv_box], [self.inv_box], [1.0]])).T
        self.uv_box = self.uv * self.inv_box
        self.f_box = np.array([self.K[0, 0], self.K[1, 1]]) * self.inv_box
        self.sqrt_conf = np.sqrt(self.conf)
        self.rows = np.concatenate((np.arange(NUM_JOINTS), NUM_JOINTS + self.vis))   # joints, visible keypoints
        self.lin: dict[str, np.ndarray] = {}


def _visible(kp2d: np.ndarray) -> np.ndarray:
    return np.flatnonzero((kp2d[:, 2] >= CONF_THRESHOLD) & np.isfinite(kp2d).all(axis=1))


def _parameters_of(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Network outputs -> (parameter vector (85,), camera-frame root rotation (3, 3))."""
    x = np.zeros(N_PARAMS)
    x[I_BODY] = so3.log(np.asarray(outputs["pose_rotmat"], np.float64)[1:]).reshape(-1)
    x[I_TRANS] = outputs["cam_trans"]
    x[I_BETA] = outputs["betas"]
    return x, np.asarray(outputs["cam_root_rotmat"], np.float64)


def _evaluate(x: np.ndarray, prob: _Problem) -> dict[str, Any]:
    """Pose the body at x; residuals, robust weights and energy. About 40 numpy calls (`body_numpy.posed`)."""
    smap = prob.smap if prob.smap is not None else shape_map(x[I_BETA], prob.tables)[prob.rows]
    rot = so3.exp(x[: 3 * NUM_JOINTS].reshape(NUM_JOINTS, 3))       # rot[0] = exp(d0); glob[0] = exp(d0) R_net
    points, glob = posed(rot, smap, prob.tables, prob.root_net)
    q = points[NUM_JOINTS:]                                         # (n, 3) visible keypoints, pelvis-relative
    p = q + x[I_TRANS]                                              # (n, 3) camera frame
    if p[:, 2].min() <= 1e-3:
        return {"cost": np.inf}
    hom = p @ prob.k_box_t
    r = hom[:, :2] / hom[:, 2:] - prob.uv_box                       # (n, 2) bbox units
    e2 = np.add.reduce(r * r, axis=1)
    ratio = prob.sigma2 / (e2 + prob.sigma2)
    data = float(prob.conf @ (e2 * ratio))                          # sum c sigma^2 e^2 / (e^2 + sigma^2)
    dev = x - prob.centre
    quad = float(prob.weight @ (dev * dev))
    aa = x[I_BODY].reshape(NUM_JOINTS - 1, 3)
    over = aa - np.minimum(np.maximum(aa, LIMIT_LO), LIMIT_HI)       # (23, 3) hinge
    lim = prob.limit * float(np.vdot(over, over))
    return {"cost": data + quad + lim, "data": data, "lim": lim, "x": x, "rot": rot, "glob": glob,
            "joints": points[:NUM_JOINTS], "q": q, "p": p, "r": r, "e2": e2,
            "sw": prob.sqrt_conf * ratio,                            # sqrt of the IRLS weights (n,)
            "over": over, "dev": dev}


def _recost(ev: dict[str, Any], prob: _Problem) -> None:
    """Refresh an evaluation's quadratic terms after prob.centre / prob.weight changed (geometry unchanged)."""
    ev["dev"] = ev["x"] - prob.centre
    ev["cost"] = ev["data"] + ev["lim"] + float(np.dot(prob.weight, ev["dev"] * ev["dev"]))


@functools.lru_cache(maxsize=64)
def _rotation_mask(vis_key: bytes) -> np.ndarray:
    """(2n, 75) 1 where a residual row depends on a root / joint / translation column (visible keypoints vis)."""
    moves = body_tables().moves[np.frombuffer(vis_key, dtype=np.int64)]                     # (n, 24)
    mask = np.ones((moves.shape[0], 2, NUM_JOINTS + 1, 3))
    mask[:, :, :NUM_JOINTS] = moves[:, None, :, None]
    out = mask.reshape(2 * moves.shape[0], 3 * NUM_JOINTS + 3)
    out.flags.writeable = False
    return out


#: d residual / d point of a pinhole, per unit f / z: row r = e_r - (u, v)_r e_z.
_PIXEL_ROWS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_E_Z = np.array([0.0, 0.0, 1.0])
#: p (3,) @ _LIFT_MAP + _LIFT_REST = (I; [p]x) (6, 3), flattened.
_LIFT_REST = np.concatenate((np.eye(3), np.zeros((3, 3)))).reshape(-1)
_LIFT_MAP = np.concatenate((np.zeros((3, 9)), so3.HAT9), axis=1)


def _linearize_at(prob: _Problem, ev: dict[str, Any]) -> None:
    """Fix the Jacobian's slowly varying factors at an evaluated start point (see `_jacobian`), and its buffers."""
    lin = prob.lin
    lin["mask"] = _rotation_mask(np.ascontiguousarray(prob.vis, dtype=np.int64).tobytes())
    lin["jl"] = so3.left_jacobian(ev["x"][: 3 * NUM_JOINTS].reshape(NUM_JOINTS, 3))
    cols = np.zeros((6, NUM_JOINTS + 1, 3))             # (B; C) per joint, then the translation block (0; I)
    cols[3:, NUM_JOINTS] = np.eye(3)
    lin["cols"] = cols
    if prob.n_free > I_BETA.start:
        lin["dkb"] = keypoint_beta_jacobian(ev["glob"], prob.tables)[prob.vis]


def _jacobian(ev: dict[str, Any], prob: _Problem) -> np.ndarray:
    """d residuals (2n, flattened (n, 2)) / d parameters (n_free) at an evaluated point, analytic.

    A world rotation increment d at joint j moves keypoint q_k by d x (q_k - p_j), so with a_kr = d residual_kr /
    d point, row kr of joint j's block is a_kr^T ([p_j]x - [q_k]x) B_j = (q_k x a_kr)^T B_j + a_kr^T C_j, where
    B_j = R_parent(j) J_l(a_j) maps the local step to d and C_j = [p_j]x B_j: all 72 rotation columns and the
    translation are one (2n, 6) @ (6, 75) product, masked where joint j does not carry keypoint k.
    The left Jacobians of the axis-angles and the beta Jacobian are taken at the frame's start point (they vary
    slowly over a few small steps; the LM acceptance test keeps the iteration honest): exact there.
    """
    lin = prob.lin
    q, p = ev["q"], ev["p"]
    n = p.shape[0]
    iz = 1.0 / p[:, 2]
    a = np.multiply.outer(iz, prob.f_box)[:, :, None] * (_PIXEL_ROWS - (p[:, :2] * iz[:, None])[:, :, None] * _E_Z)
    qa = a @ (q @ -so3.HAT9).reshape(n, 3, 3)                                    # (q x a)^T = a^T [q]x^T
    rows = np.concatenate((qa, a), axis=2).reshape(2 * n, 6)
    jl, cols = lin["jl"], lin["cols"]
    basis = ev["glob"][prob.tables.parents] @ jl                                 # (24, 3, 3) B_j
    basis[0] = jl[0]                                                             # root: d = J_l(d0) dd0
    lift = (ev["joints"] @ _LIFT_MAP + _LIFT_REST).reshape(NUM_JOINTS, 6, 3)
    cols[:, :NUM_JOINTS] = np.swapaxes(lift @ basis, 0, 1)                       # (6, 24, 3)
    jac = rows @ cols.reshape(6, -1)
    jac *= lin["mask"]
    if prob.n_free > I_BETA.start:
        jac = np.concatenate((jac, (a @ lin["dkb"]).reshape(2 * n, NUM_BETAS)), axis=1)
    return jac


class _Normal(NamedTuple):
    """The Gauss-Newton normal equations J^T W J + diag(prior) at an evaluated point, kept factored."""

    js: np.ndarray       # (2n, n_free) sqrt(W) J
    g: np.ndarray        # (n_free,) gradient
    prior: np.ndarray    # (n_free,) the diagonal terms (prior, temporal, active limits)
    jdiag: np.ndarray    # (n_free,) diag(J^T W J)


def _step(ev: dict[str, Any], prob: _Problem) -> _Normal:
    """Gauss-Newton normal equations at an evaluated point (IRLS-weighted data term)."""
    nf = prob.n_free
    sw2 = ev["sw"].repeat(2)
    js = _jacobian(ev, prob) * sw2[:, None]
    g = js.T @ (sw2 * ev["r"].reshape(-1))
    prior = prob.weight[:nf]
    g += prior * ev["dev"][:nf]
    if ev["lim"] > 0:  # some joint outside its box
        over = ev["over"].reshape(-1)
        idx = over.nonzero()[0]
        if idx.size:
            prior = prior.copy()
            prior[idx + I_BODY.start] += prob.limit
            g[idx + I_BODY.start] += prob.limit * over[idx]
    return _Normal(js, g, prior, np.add.reduce(js * js, axis=0))


@functools.lru_cache(maxsize=8)
def _eye(n: int) -> np.ndarray:
    out = np.eye(n)
    out.flags.writeable = False
    return out


def _solve(normal: _Normal, lam: float) -> np.ndarray | None:
    """LM step: (H + lam diag(H)) dx = -g with H = Js^T Js + D0; None when not positive definite.

    H + lam diag(H) = Js^T Js + D with D diagonal, so with fewer residual rows (2n <= 42) than unknowns (75) the
    Woodbury identity solves it through the (2n, 2n) system I + Js D^-1 Js^T (a third of the Cholesky work);
    the (n_free, n_free) Cholesky is kept for when D is near singular (zero priors) or rows outnumber unknowns.
    """
    js, g = normal.js, normal.g
    d = normal.prior + lam * (normal.prior + normal.jdiag) + 1e-9
    if js.shape[0] < js.shape[1] and d.min() > 1e-6:
        inv = 1.0 / d
        jd = js * inv
        s = jd @ js.T
        s += _eye(s.shape[0])
        y = g * inv
        _, sol, info = lapack.dposv(s, js @ y, lower=False, overwrite_a=True, overwrite_b=True)
        return jd.T @ sol - y if info == 0 else None
    h = js.T @ js
    h.reshape(-1)[:: h.shape[0] + 1] += d
    chol, info = lapack.dpotrf(h, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        return None
    step, info = lapack.dpotrs(chol, -g, lower=False)
    return step if info == 0 else None


def _project_all(outputs: Mapping[str, np.ndarray], K: np.ndarray) -> np.ndarray:
    """The network's 21 keypoints in pixels (21, 2); NaN where missing or behind the camera."""
    kp = np.asarray(outputs.get("kp3d_cam", _MISSING_KP), np.float64)
    if kp.shape != (NUM_KEYPOINTS, 3):
        return np.full((NUM_KEYPOINTS, 2), np.nan)
    hom = kp @ K.T
    front = kp[:, 2:] > 1e-3                      # NaN compares False
    return np.where(front, hom[:, :2] / np.where(front, hom[:, 2:], 1.0), np.nan)


_MISSING_KP = np.full((NUM_KEYPOINTS, 3), np.nan)


def _median(v: np.ndarray) -> float:
    """np.median of a 1-D array without its dispatch (a tenth of the cost on 21 values)."""
    s = v.copy()
    s.sort()
    m = s.size // 2
    return float(s[m]) if s.size % 2 else float((s[m - 1] + s[m]) / 2.0)


def _motion_factor(uv: np.ndarray, uv_prev: np.ndarray | None, inv_box: float, scale: float) -> float:
    """1 / (1 + (v / scale)^2) for the network's median keypoint speed v (bbox units per frame): the temporal
    terms hold the correction steady while the person moves slowly (where jitter shows) and let it follow
    fast motion, as a One-Euro filter adapts its cut-off (scale 0: no adaptation)."""
    if scale <= 0 or uv_prev is None:
        return 1.0
    d = uv - uv_prev
    ok = np.isfinite(d).all(axis=1)
    if not ok.any():
        return 1.0
    v = _median(np.sqrt((d[ok] ** 2).sum(axis=1))) * inv_box
    return 1.0 / (1.0 + (v / scale) ** 2)


def _innovation_factor(e2: np.ndarray, scale: float) -> float:
    """1 / (1 + (e / scale)^2) for the median reprojection error e (bbox units) of the carried correction: while
    it still explains the keypoints the temporal terms hold it steady; when the network's error changes faster
    than the correction follows (fast sport, a new pose), they let go (scale 0: no adaptation)."""
    if scale <= 0 or e2.size == 0:
        return 1.0
    return 1.0 / (1.0 + _median(e2) / scale**2)


@functools.lru_cache(maxsize=16)
def _weight_templates(cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:
    """The config's prior and temporal weights (85,) each, translation entries left for `_weights`."""
    prior, temporal = np.zeros(N_PARAMS), np.zeros(N_PARAMS)
    prior[I_ROOT], temporal[I_ROOT] = cfg.root_prior, cfg.root_temporal
    prior[I_BODY], temporal[I_BODY] = cfg.pose_prior, cfg.pose_temporal
    return prior, temporal


def _weights(cfg: RefineConfig, x_net: np.ndarray, inv_box: float, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-parameter prior and temporal weights (85,) each, in parameter units."""
    z = max(float(x_net[I_TRANS.stop - 1]), 1e-3)
    shift = (focal * inv_box / z) ** 2          # metres of lateral root motion -> bbox units, squared
    prior, temporal = (w.copy() for w in _weight_templates(cfg))
    prior[I_TRANS] = (cfg.shift_prior * shift, cfg.shift_prior * shift, cfg.depth_prior / z**2)
    temporal[I_TRANS] = (cfg.shift_temporal * shift, cfg.shift_temporal * shift, cfg.depth_temporal / z**2)
    return prior, temporal


def _refined(x: np.ndarray, rot: np.ndarray, glob: np.ndarray, smap: np.ndarray, cost_start: float,
             cost_end: float, steps: int) -> Refined:
    """The output at x: rot (24, 3, 3) with rot[0] = exp(d0) (glob[0] is the root), smap the full shape map."""
    pose_local = rot.copy()
    pose_local[0] = glob[0]
    points = smap @ glob.transpose(0, 2, 1).reshape(3 * NUM_JOINTS, 3)
    rel = points - points[0]                      # the pelvis (at the origin for this body; kept general)
    return Refined(pose_local, x[I_BETA].copy(), x[I_TRANS].copy(), rel[:NUM_JOINTS], rel[NUM_JOINTS:],
                   cost_start, cost_end, steps)


def _coast(x_net: np.ndarray, root_net: np.ndarray, track: TrackState, cfg: RefineConfig) -> Refined | None:
    """A frame without usable evidence: the network's output plus the track's last correction, faded by
    `coast_decay` per frame, so the published pose neither jumps back to the raw network output and again to the
    fit when the keypoints return (a jitter spike each way), nor holds a stale correction for long.
    None on a track with no correction yet (the network output as it is)."""
    if track.correction is None:
        return None
    track.correction = track.correction * cfg.coast_decay
    x = x_net + track.correction
    if track.betas is not None:
        x[I_BETA] = track.betas
    track.uv_net = None
    track.coasted += 1
    tables = body_tables()
    smap = shape_map(x[I_BETA], tables)
    rot = so3.exp(x[: 3 * NUM_JOINTS].reshape(NUM_JOINTS, 3))
    _, glob = posed(rot, smap[:0], tables, root_net)
    return _refined(x, rot, glob, smap, float("nan"), float("nan"), 0)


_DEFAULT_CONFIG = RefineConfig()


def refine_person(
    outputs: Mapping[str, np.ndarray],
    kp2d: np.ndarray,
    K: np.ndarray,
    track: TrackState,
    config: RefineConfig | None = None,
    dt: float | None = None,
) -> Refined | None:
    """Refine one person-frame; None (keep the network output) when the evidence cannot support a fit.

    outputs: one person's engine outputs (no batch dim): pose_rotmat (24, 3, 3), cam_root_rotmat (3, 3),
    betas (10,), cam_trans (3,) at least. kp2d: (21, 3) pixels + confidence. K: (3, 3) intrinsics.
    dt: seconds since the track's previous frame (None: 1 / reference_fps).
    Updates `track` (correction, running betas) only when it returns a fit. Never raises on bad numbers: NaN
    inputs, fewer than `min_keypoints` confident keypoints, a root behind the camera all return None.
    """
    cfg = config or _DEFAULT_CONFIG
    kp2d = np.asarray(kp2d, np.float64)
    K = np.asarray(K, np.float64)
    if kp2d.shape != (NUM_KEYPOINTS, 3) or K.shape != (3, 3):
        raise ValueError(f"kp2d must be ({NUM_KEYPOINTS}, 3) and K (3, 3), got {kp2d.shape} and {K.shape}")
    try:
        x_net, root_net = _parameters_of(outputs)
    except (KeyError, ValueError, IndexError):
        return None
    if not np.isfinite(x_net.sum() + root_net.sum()) or x_net[I_TRANS.stop - 1] <= 1e-3:
        return None
    vis = _visible(kp2d)
    uv = kp2d[vis, :2]
    box = float((uv.max(axis=0) - uv.min(axis=0)).max()) if vis.size else 0.0
    if vis.size < cfg.min_keypoints or not box > 0 or not np.isfinite(K.sum()) or K[0, 0] <= 0 or K[1, 1] <= 0:
        return _coast(x_net, root_net, track, cfg)

    inv_box = 1.0 / box
    prior, temporal = _weights(cfg, x_net, inv_box, float(K[0, 0]))
    uv_net = _project_all(outputs, K)
    if cfg.fit_betas:
        beta_track = x_net[I_BETA] if track.betas is None else track.betas
    else:  # the running mean of the network's own betas, this frame included
        rate = max(cfg.beta_rate, 1.0 / (track.frames + 1))
        beta_track = x_net[I_BETA] if track.betas is None else track.betas + rate * (x_net[I_BETA] - track.betas)
    # Start from the network's output carried by the last correction (the temporal term's target).
    target_t = x_net if track.correction is None else x_net + track.correction
    x0 = target_t.copy()
    x0[I_BETA] = beta_track
    tables = body_tables()
    prob = _Problem(tables, uv, kp2d[vis, 2], vis, K, inv_box, root_net, x0, prior, cfg.sigma**2, cfg.limit,
                    N_PARAMS if cfg.fit_betas else I_BETA.start)
    full_map = None
    if not cfg.fit_betas:  # one shape for the whole frame
        full_map = shape_map(beta_track, tables)
        prob.smap = full_map[prob.rows] if vis.size < NUM_KEYPOINTS else full_map
    best = _evaluate(x0, prob)
    if not np.isfinite(best["cost"]):
        return None
    if track.correction is None:
        temporal = np.zeros_like(temporal)
    else:
        temporal *= _motion_factor(uv_net, track.uv_net, inv_box, cfg.motion_scale)
        temporal *= _innovation_factor(best["e2"], cfg.innovation_scale)
        if dt is not None and np.isfinite(dt) and dt > 0 and cfg.reference_fps > 0:
            temporal *= float(np.clip(1.0 / (cfg.reference_fps * dt), 0.25, 4.0)) ** 2  # (see RefineConfig)
    weight = prior + temporal
    centre = np.where(weight > 0, (prior * x_net + temporal * target_t) / np.maximum(weight, 1e-300), x_net)
    centre[I_BETA] = beta_track
    weight[I_BETA] = cfg.beta_track
    prob.centre, prob.weight = centre, weight
    _recost(best, prob)
    _linearize_at(prob, best)
    cost_start = best["cost"]
    lam, steps, normal = cfg.damping, 0, None
    for _ in range(cfg.iterations):
        if normal is None:
            normal = _step(best, prob)
        dx = _solve(normal, lam)
        if dx is None or not np.isfinite(dx.sum()):
            lam *= 10.0
            continue
        x_new = best["x"].copy()
        x_new[: prob.n_free] += dx
        trial = _evaluate(x_new, prob)
        if trial["cost"] < best["cost"]:
            best, normal, steps = trial, None, steps + 1
            lam = max(lam / 10.0, 1e-7)
        else:
            lam *= 10.0
    x = best["x"]
    track.correction = x - x_net
    track.uv_net = uv_net
    track.frames += 1
    track.refined += 1
    if cfg.fit_betas:
        rate = max(cfg.beta_rate, 1.0 / track.frames)
        track.betas = beta_track + rate * (x[I_BETA] - beta_track)
    else:
        track.betas = beta_track
    if full_map is None:
        full_map = shape_map(x[I_BETA], tables)
    return _refined(x, best["rot"], best["glob"], full_map, float(cost_start), float(best["cost"]), steps)
