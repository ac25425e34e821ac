"""The engine-agnostic post-step hook: refine person `index` of a batch-first engine step, in numpy.

Used by the live loop (`stream/loop/memory.py`, `stream/pipeline_loop.py`) and the evaluation (`mocap/eval.py`) alike: it sees only the step's
numpy outputs and state dicts, so onnxruntime, torch and TensorRT engines all get the same refinement.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from mocap.fitting.refine import Refined, RefineConfig, TrackState, refine_person
from mocap.fitting.world import world_outputs
from mocap.model.config import ModelConfig

#: The model's contact threshold (the same default the network's contact-aware step uses).
DEFAULT_CONTACT_THRESHOLD = ModelConfig.contact_threshold
#: Outputs the refinement replaces (the rest, contact and cam_wp, pass through as the engine gave them).
_REFINED_OUTPUTS = ("pose_rotmat", "cam_root_rotmat", "betas", "cam_trans", "kp3d_cam", "root_trans", "joints")


class StepResult(NamedTuple):
    outputs: dict[str, np.ndarray]   # batch-first, the refined person replaced (dtypes kept)
    state: dict[str, np.ndarray]     # the step's new state, prev_feet / prev_trans from the refined body
    refined: Refined | None          # None: the network output was kept (too little evidence)


def refine_step(
    outputs: Mapping[str, np.ndarray],
    state_before: Mapping[str, np.ndarray],
    state_after: Mapping[str, np.ndarray],
    kp2d: np.ndarray,
    K: np.ndarray,
    track: TrackState,
    config: RefineConfig | None = None,
    index: int = 0,
    contact_threshold: float = DEFAULT_CONTACT_THRESHOLD,
    dt: float | None = None,
) -> StepResult:
    """outputs / state_after: what `engine.step` returned; state_before: the state it was given (for the
    track's `initialized` flag); kp2d (21, 3) pixels + confidence of person `index`; K (3, 3); dt: seconds
    since the previous frame (scales the temporal terms; None = the reference frame rate).

    Returns new dicts (the inputs are not modified); on too little evidence, the inputs as they were.
    """
    person = {k: np.asarray(v)[index] for k, v in outputs.items()}
    refined = refine_person(person, kp2d, K, track, config, dt)
    if refined is None:
        return StepResult(dict(outputs), dict(state_after), None)
    init = float(np.asarray(state_before["initialized"]).reshape(-1)[index]) if "initialized" in state_before else 1.0
    new_person, feet = world_outputs(person, refined, init, contact_threshold)
    new_outputs = dict(outputs)
    for k in _REFINED_OUTPUTS:
        if k in outputs:
            arr = np.array(outputs[k], copy=True)
            arr[index] = new_person[k]
            new_outputs[k] = arr
    new_state = dict(state_after)
    if "prev_feet" in new_state and "prev_trans" in new_state:
        for name, value in (("prev_feet", feet), ("prev_trans", new_person["root_trans"])):
            arr = np.array(new_state[name], copy=True)
            arr[index] = value
            new_state[name] = arr
    return StepResult(new_outputs, new_state, refined)
