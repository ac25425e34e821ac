"""Writes a random but well-formed SMPL model file (SMPL's layout, none of its data) for tests.

The mesh is a cloud of 6890 vertices clustered around a skeleton (BuiltinBody's rest joints moved so the pelvis
is *not* at the origin, as in SMPL), skinned mostly to the joint each vertex clusters around, with a joint
regressor that averages each cluster. Real SMPL files must never be committed; this stands in for them.
"""
from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

from mocap.builtin_body import REST_JOINTS
from mocap.skeleton import SMPL_PARENTS

NUM_VERTICES = 6890
NUM_FACES = 13776
#: Where the fake model's pelvis sits at rest (SMPL's template has it below the origin too).
PELVIS_REST = np.array([0.002, -0.22, 0.028])


def fake_smpl_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays with SMPL's keys, shapes and dtypes; J_regressor is scipy.sparse as in the distributed .pkl."""
    rng = np.random.default_rng(seed)
    joints = REST_JOINTS + PELVIS_REST
    owner = np.arange(NUM_VERTICES) % len(SMPL_PARENTS)  # every joint gets ~287 vertices
    v_template = joints[owner] + 0.04 * rng.standard_normal((NUM_VERTICES, 3))
    logits = rng.standard_normal((NUM_VERTICES, len(SMPL_PARENTS)))
    logits[np.arange(NUM_VERTICES), owner] += 4.0
    weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    regressor = np.zeros((len(SMPL_PARENTS), NUM_VERTICES))
    regressor[owner, np.arange(NUM_VERTICES)] = 1.0
    regressor /= regressor.sum(1, keepdims=True)
    parents = np.array(SMPL_PARENTS, dtype=np.int64)
    parents[0] = 4294967295  # as in the distributed files (uint32 -1)
    return {
        "v_template": v_template,
        "shapedirs": 0.01 * rng.standard_normal((NUM_VERTICES, 3, 10)),
        "posedirs": 0.002 * rng.standard_normal((NUM_VERTICES, 3, 207)),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "weights": weights,
        "kintree_table": np.stack((parents, np.arange(len(SMPL_PARENTS)))).astype(np.uint32),
        "f": rng.integers(0, NUM_VERTICES, size=(NUM_FACES, 3)).astype(np.uint32),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }


def _with_fake_chumpy(arrays: dict, keys: tuple[str, ...]) -> dict:
    """Wrap arrays in a stand-in `chumpy.ch.Ch` class (pickled the way chumpy pickles: its __dict__ with 'x')."""
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x: np.ndarray) -> None:
            self.x = x
            self._dirty_vars: set = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    pkg.ch = mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    return {k: Ch(v) if k in keys else v for k, v in arrays.items()}


def write_fake_smpl(path: Path, seed: int = 0, chumpy: bool = False) -> Path:
    """Write the fake model as .pkl (protocol 2, like SMPL's Python 2 files) or .npz (dense), by suffix.

    chumpy=True stores shapedirs and v_template as chumpy objects (as in SMPL's .pkl) without needing chumpy.
    """
    arrays = fake_smpl_arrays(seed)
    path = Path(path)
    if path.suffix == ".npz":
        dense = {k: (v.toarray() if scipy.sparse.issparse(v) else v) for k, v in arrays.items()}
        np.savez(path, **dense)
        return path
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    try:
        if chumpy:
            arrays = _with_fake_chumpy(arrays, ("shapedirs", "v_template"))
        with path.open("wb") as fh:
            pickle.dump(arrays, fh, protocol=2)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path
