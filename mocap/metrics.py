"""Evaluation metrics for monocular motion capture (pure numpy, batched over frames).

Conventions shared by every function:
- inputs are positions in **metres**, outputs in **millimetres** (or % / unitless where stated);
- arrays are ``(T, J, 3)`` (frames, joints, xyz) unless stated; world frame is Y up (docs/design.md, "Conventions");
- the per-frame result is averaged into one float; NaN is returned only where a metric is undefined
  (documented per function), never for bad input, which raises ``ValueError``.

Definitions follow the WHAM / SLAHMR evaluation protocol so numbers are comparable with the literature:
MPJPE / PA-MPJPE / Accel on camera-frame joints, W-MPJPE100 / WA-MPJPE100 / RTE on world joints.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mocap.rotations import kabsch, kabsch_svd

M_TO_MM = 1000.0
_EPS = 1e-12


# --------------------------------------------------------------------------------------------- helpers
def _as_points(name: str, x: np.ndarray, ndim: int = 3) -> np.ndarray:
    """Validate a float array whose last dim is xyz; returns float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {'(T, J, 3)' if ndim == 3 else '(T, 3)'}, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _pair(pred: np.ndarray, gt: np.ndarray, ndim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_points("pred", pred, ndim), _as_points("gt", gt, ndim)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    if pred.shape[0] == 0:
        raise ValueError("need at least one frame")
    return pred, gt


def align_procrustes(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> np.ndarray:
    """Best similarity (or rigid) transform of ``src`` onto ``dst``, per batch element (Umeyama 1991).

    src, dst: (B, N, 3). Solves min_{s,R,t} sum_n ||s R src_n + t - dst_n||^2 with det(R) = +1
    (reflections are excluded by flipping the smallest singular direction). ``scale=False`` fixes s = 1
    (rigid). Returns the transformed src, (B, N, 3). A degenerate src (all points equal) gets s = 0, i.e.
    it collapses onto dst's centroid rather than producing NaN.
    """
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 3:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must both be (B, N, 3)")
    mu_s, mu_d = src.mean(axis=1, keepdims=True), dst.mean(axis=1, keepdims=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = np.einsum("bni,bnj->bij", xd, xs)  # (B, 3, 3) = sum dst_c src_c^T
    rot, signed_sig = kabsch_svd(cov)  # (B, 3, 3), maps centred src to centred dst
    if scale:
        var_s = (xs**2).sum(axis=(1, 2))
        s = signed_sig.sum(axis=1) / np.maximum(var_s, _EPS)
    else:
        s = np.ones(src.shape[0])
    return s[:, None, None] * np.einsum("bij,bnj->bni", rot, xs) + mu_d


def _mean_norm_mm(diff: np.ndarray) -> float:
    return float(np.linalg.norm(diff, axis=-1).mean() * M_TO_MM)


# ------------------------------------------------------------------------------------ camera-frame
def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int = 0) -> float:
    """Mean per-joint position error after subtracting each frame's root joint (pelvis), mm.

    pred, gt: (T, J, 3) metres. Removing the root per frame ignores global translation (depth ambiguity).
    """
    pred, gt = _pair(pred, gt)
    if not -pred.shape[1] <= root < pred.shape[1]:
        raise ValueError(f"root {root} out of range for {pred.shape[1]} joints")
    return _mean_norm_mm((pred - pred[:, root : root + 1]) - (gt - gt[:, root : root + 1]))


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after per-frame similarity Procrustes (rotation + uniform scale + translation, no reflection), mm.

    pred, gt: (T, J, 3) metres. Measures articulated pose only: global orientation, size and position are free.
    """
    pred, gt = _pair(pred, gt)
    return _mean_norm_mm(align_procrustes(pred, gt, scale=True) - gt)


def _second_difference(x: np.ndarray, interval: np.ndarray | None) -> np.ndarray:
    """x: (T, ...) -> (T-2, ...) second difference per frame^2; with `interval` (T,) (frame i's distance from
    frame i-1, in reference frames) the non-uniform one, per reference frame^2 (equal to the plain one at 1)."""
    if interval is None:
        return x[2:] - 2 * x[1:-1] + x[:-2]
    r = np.asarray(interval, dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    v_next = (x[2:] - x[1:-1]) / r[2:]
    v_prev = (x[1:-1] - x[:-2]) / r[1:-1]
    return (v_next - v_prev) * 2 / (r[1:-1] + r[2:])


def accel_error(pred: np.ndarray, gt: np.ndarray, root: int | None = 0, interval: np.ndarray | None = None) -> float:
    """Mean norm of (pred second difference - gt second difference) of the joints, mm/frame^2.

    pred, gt: (T, J, 3) metres, T >= 3. Joints are root-aligned per frame first (``root=0``, as WHAM and VIBE
    do on 3DPW), so the metric measures pose jitter, not trajectory jitter; ``root=None`` uses raw positions.
    Units are per frame (not per second), so it depends on the frame rate (30 fps in WHAM's tables); pass
    ``interval`` (T,) (each frame's time since the previous one, in 1/30 s) to get it per 30-fps frame at any
    frame rate or with dropped frames, comparable with the 30 fps figure.
    """
    pred, gt = _pair(pred, gt)
    if pred.shape[0] < 3:
        raise ValueError(f"accel_error needs at least 3 frames, got {pred.shape[0]}")
    if root is not None:
        pred, gt = pred - pred[:, root : root + 1], gt - gt[:, root : root + 1]
    return _mean_norm_mm(_second_difference(pred, interval) - _second_difference(gt, interval))


# ----------------------------------------------------------------------------------------- world
def _chunks(n: int, chunk: int, min_len: int) -> list[slice]:
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2 frames, got {chunk}")
    out = [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    out = [c for c in out if c.stop - c.start >= min_len]
    if not out:
        raise ValueError(f"sequence of {n} frames is shorter than the {min_len} frames a chunk needs")
    return out


def w_mpjpe(pred_world: np.ndarray, gt_world: np.ndarray, chunk: int = 100) -> float:
    """W-MPJPE: world joint error over ``chunk``-frame segments aligned on their first two frames, mm.

    pred_world, gt_world: (T, J, 3) metres. Each segment gets the rigid transform (rotation + translation,
    no scale) that best maps the pred joints of its first two frames onto the GT ones, then the mean joint
    error over all its frames is taken; segments are averaged with equal weight. The last partial segment
    counts if it has >= 2 frames. Measures drift of the global trajectory and orientation from a known start.
    """
    pred, gt = _pair(pred_world, gt_world)
    errs = []
    for c in _chunks(pred.shape[0], chunk, 2):
        p, g = pred[c], gt[c]
        rot, trans = _rigid_params(p[:2].reshape(-1, 3), g[:2].reshape(-1, 3))  # fit on frames 0-1 only
        aligned = p @ rot.T + trans  # ... applied to the whole segment
        errs.append(_mean_norm_mm(aligned - g))
    return float(np.mean(errs))


def wa_mpjpe(pred_world: np.ndarray, gt_world: np.ndarray, chunk: int = 100, scale: bool = True) -> float:
    """WA-MPJPE: world joint error over ``chunk``-frame segments, each aligned as a whole, mm.

    pred_world, gt_world: (T, J, 3) metres. Each segment's joints (all frames together) are aligned with one
    similarity transform (rotation + uniform scale + translation, as WHAM/SLAHMR do); ``scale=False`` makes
    it rigid. Segments are averaged with equal weight; a last partial segment counts if it has >= 2 frames.
    """
    pred, gt = _pair(pred_world, gt_world)
    errs = []
    for c in _chunks(pred.shape[0], chunk, 2):
        p, g = pred[c], gt[c]
        flat_p, flat_g = p.reshape(1, -1, 3), g.reshape(1, -1, 3)
        errs.append(_mean_norm_mm(align_procrustes(flat_p, flat_g, scale=scale) - flat_g))
    return float(np.mean(errs))


def _rigid_params(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3), (N, 3) -> rotation (3, 3), translation (3,) with dst ~= src @ R^T + t (Kabsch, no reflection)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    rot = kabsch((dst - mu_d).T @ (src - mu_s))
    return rot, mu_d - rot @ mu_s


def rte_pct(pred_root: np.ndarray, gt_root: np.ndarray) -> float:
    """Root trajectory error as a percentage of the distance travelled.

    pred_root, gt_root: (T, 3) metres. The whole predicted trajectory is rigidly aligned (rotation +
    translation, no scale) to the GT; the mean per-frame root distance is divided by the GT path length
    (sum of frame-to-frame displacement norms) and multiplied by 100.
    Returns NaN when the GT path length is below 1 mm: a person standing still has no distance travelled to
    normalize by, and an epsilon would turn sub-millimetre noise into arbitrarily large percentages.
    """
    pred, gt = _pair(pred_root, gt_root, ndim=2)
    if pred.shape[0] < 2:
        raise ValueError("rte_pct needs at least 2 frames")
    path = float(np.linalg.norm(np.diff(gt, axis=0), axis=-1).sum())
    if path < 1e-3:
        return float("nan")
    rot, trans = _rigid_params(pred, gt)
    err = np.linalg.norm(pred @ rot.T + trans - gt, axis=-1).mean()
    return float(100.0 * err / path)


def foot_slide(feet_world: np.ndarray, contact_gt: np.ndarray, interval: np.ndarray | None = None) -> float:
    """Mean horizontal displacement of foot points between consecutive frames while in GT contact, mm.

    feet_world: (T, F, 3) metres, world frame with Y up (e.g. the 4 foot keypoints L heel, L toe, R heel,
    R toe); contact_gt: (T, F) bool. A (frame pair, foot) counts when the GT says contact in both frames; its
    (x, z) displacement norm is averaged over all counted pairs. Returns NaN when no pair is in contact
    (there is nothing that should stay still).
    """
    feet = _as_points("feet_world", feet_world)
    contact = np.asarray(contact_gt)
    if contact.shape != feet.shape[:2]:
        raise ValueError(f"contact_gt {contact.shape} must be (T, F) = {feet.shape[:2]}")
    if contact.dtype != bool:
        raise ValueError(f"contact_gt must be bool, got {contact.dtype}")
    if feet.shape[0] < 2:
        raise ValueError("foot_slide needs at least 2 frames")
    both = contact[1:] & contact[:-1]  # (T-1, F)
    if not both.any():
        return float("nan")
    step = np.diff(feet[..., [0, 2]], axis=0)  # (T-1, F, 2)
    if interval is not None:  # per 30-fps frame (interval: (T,) in 1/30 s)
        step = step / np.asarray(interval, dtype=np.float64)[1:, None, None]
    return float(np.linalg.norm(step, axis=-1)[both].mean() * M_TO_MM)


def contact_f1(pred_prob: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """F1 score of foot contact, pooled over all frames and feet (micro average), unitless in [0, 1].

    pred_prob: (T, F) probabilities in [0, 1]; gt: (T, F) bool. Prediction is ``pred_prob >= threshold``.
    Returns NaN when neither prediction nor GT has any contact (F1 is 0/0 there).
    """
    prob, gt = np.asarray(pred_prob, dtype=np.float64), np.asarray(gt)
    if prob.shape != gt.shape or prob.ndim != 2:
        raise ValueError(f"pred_prob {prob.shape} and gt {gt.shape} must both be (T, F)")
    if gt.dtype != bool:
        raise ValueError(f"gt must be bool, got {gt.dtype}")
    if np.isnan(prob).any():
        raise ValueError("pred_prob contains NaN")
    pred = prob >= threshold
    tp = int((pred & gt).sum())
    fp = int((pred & ~gt).sum())
    fn = int((~pred & gt).sum())
    if tp + fp + fn == 0:
        return float("nan")
    return 2.0 * tp / (2.0 * tp + fp + fn)


# ------------------------------------------------------------------------------------- aggregation
def sequence_metrics(
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    *,
    pred_world: np.ndarray | None = None,
    gt_world: np.ndarray | None = None,
    pred_feet_world: np.ndarray | None = None,
    contact_gt: np.ndarray | None = None,
    contact_prob: np.ndarray | None = None,
    root: int = 0,
    chunk: int = 100,
    interval: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric the given arrays allow, for one sequence, as a dict of floats.

    pred_joints, gt_joints: (T, J, 3) camera-frame joints (m) -> ``mpjpe``, ``pa_mpjpe``, ``accel`` (T >= 3).
    pred_world, gt_world: (T, J, 3) world joints (m) -> ``w_mpjpe``, ``wa_mpjpe``, ``rte`` (root = joint ``root``).
    pred_feet_world (T, F, 3) + contact_gt (T, F) bool -> ``foot_slide``; contact_prob (T, F) -> ``contact_f1``.
    Also returns ``frames`` (T) so :func:`summarize` can weight sequences by length.
    interval (T,): each frame's time since the previous one in 1/30 s (any frame rate, drops): accel and foot
    slide are then per 30-fps frame, and the world chunks span `chunk` 30-fps frames, so figures compare with 30 fps.
    """
    if interval is not None:
        chunk = max(int(round(chunk / float(np.mean(np.asarray(interval)[1:])))), 2)
    out: dict[str, float] = {
        "frames": float(np.shape(pred_joints)[0]),
        "mpjpe": mpjpe(pred_joints, gt_joints, root),
        "pa_mpjpe": pa_mpjpe(pred_joints, gt_joints),
    }
    if out["frames"] >= 3:
        out["accel"] = accel_error(pred_joints, gt_joints, root, interval)
    if (pred_world is None) != (gt_world is None):
        raise ValueError("pred_world and gt_world must be given together")
    if pred_world is not None and gt_world is not None:
        out["w_mpjpe"] = w_mpjpe(pred_world, gt_world, chunk)
        out["wa_mpjpe"] = wa_mpjpe(pred_world, gt_world, chunk)
        out["rte"] = rte_pct(np.asarray(pred_world)[:, root], np.asarray(gt_world)[:, root])
    if pred_feet_world is not None:
        if contact_gt is None:
            raise ValueError("foot_slide needs contact_gt")
        out["foot_slide"] = foot_slide(pred_feet_world, contact_gt, interval)
    if contact_prob is not None:
        if contact_gt is None:
            raise ValueError("contact_f1 needs contact_gt")
        out["contact_f1"] = contact_f1(contact_prob, contact_gt)
    return out


def summarize(results: Sequence[Mapping[str, float]], weight_by_frames: bool = True) -> dict[str, float]:
    """Average per-sequence metric dicts into one dict of floats.

    Each key is averaged over the sequences that have it and a finite value (NaN = undefined there, e.g. RTE
    of a standing clip), weighted by ``frames`` when ``weight_by_frames`` (closest to the per-frame average
    the papers report). ``frames`` in the output is the total frame count; ``sequences`` the count.
    """
    if not results:
        raise ValueError("summarize needs at least one result")
    keys = sorted({k for r in results for k in r if k != "frames"})
    out: dict[str, float] = {}
    for key in keys:
        vals, wts = [], []
        for r in results:
            v = r.get(key)
            if v is not None and np.isfinite(v):
                vals.append(float(v))
                wts.append(float(r.get("frames", 1.0)) if weight_by_frames else 1.0)
        out[key] = float(np.average(vals, weights=wts)) if vals and sum(wts) > 0 else float("nan")
    out["frames"] = float(sum(float(r.get("frames", 0.0)) for r in results))
    out["sequences"] = float(len(results))
    return out
