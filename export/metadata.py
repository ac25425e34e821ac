"""What an exported artifact says about itself (ONNX `metadata_props`, and the JSON beside a TensorRT engine).

Torch-free on import so `engines/` can read it without loading torch. Values are strings (ONNX's rule);
lists and maps are JSON-encoded and `parse_metadata` decodes them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from mocap.camera import CONF_THRESHOLD
from mocap.model import state
from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES

#: Bumped when the meaning of a key changes; readers refuse newer formats they do not know.
FORMAT_VERSION = 1

#: Keys whose values are JSON (everything else is a plain string).
_JSON_KEYS = ("joint_names", "keypoint_names", "input_names", "state_names", "state_outputs", "output_names")

INPUT_NORMALIZATION = (
    "x (B, {width}): for each of the 21 keypoints ((u - cx) / (size / 2), (v - cy) / (size / 2), visible), the two "
    "coordinates zeroed where conf < {threshold}; then ((cx - px) / f, (cy - py) / f, size / f). "
    "[cx, cy, size] is the square person box (mocap.camera.bbox_from_keypoints), f/px/py the camera intrinsics "
    "(default f = sqrt(W^2 + H^2), principal point at the image centre); a 67-wide x ends with the frame interval "
    "feature dt * 30 - 1 (dt = seconds since the previous step; mocap.model.state.frame_interval_feature). "
    "omega (B, 6): camera angular velocity, 6D of R_t R_(t-1)^T minus the identity's 6D, divided by dt "
    "(times fps); zeros for a static camera. "
    "See mocap.camera.normalize_keypoints."
)


def livemocap_version() -> str:
    """The installed package version, else the source tree's pyproject.toml (a plain checkout)."""
    try:
        return importlib_metadata.version("livemocap")
    except importlib_metadata.PackageNotFoundError:
        pass
    try:
        import tomllib  # Python >= 3.11

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


def build_metadata(
    *,
    model_id: str,
    fps: float,
    input_names: Sequence[str],
    state_outputs: Mapping[str, str],
    output_names: Sequence[str],
    normalized_dim: int,
    conf_threshold: float,
    checkpoint_sha256: str | None = None,
) -> dict[str, str]:
    """state_outputs: {state input name: state output name}, in graph order; checkpoint_sha256: of the weights
    file exported (lets `engines.load` tell a current export from a stale one)."""
    values: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "livemocap_version": livemocap_version(),
        "model_id": model_id,
        "fps": float(fps),
        "joint_names": list(SMPL_JOINT_NAMES),
        "keypoint_names": list(KEYPOINT_NAMES),
        "input_normalization": INPUT_NORMALIZATION.format(threshold=conf_threshold, width=int(normalized_dim)),
        "normalized_dim": int(normalized_dim),
        "input_names": list(input_names),
        "state_names": list(state_outputs),
        "state_outputs": dict(state_outputs),
        "output_names": list(output_names),
    }
    if checkpoint_sha256:
        values["checkpoint_sha256"] = checkpoint_sha256
    return {k: json.dumps(v) if k in _JSON_KEYS else str(v) for k, v in values.items()}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """String props -> typed values (lists/maps decoded, numbers converted); unknown keys pass through.

    Raises ValueError for a malformed value or a format newer than this reader.
    """
    out: dict[str, Any] = dict(props)
    try:
        for key in _JSON_KEYS:
            if key in out:
                out[key] = json.loads(out[key])
        if "fps" in out:
            out["fps"] = float(out["fps"])
        for key in ("normalized_dim", "format_version"):
            if key in out:
                out[key] = int(out[key])
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"malformed livemocap metadata: {exc}") from None
    if out.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(
            f"metadata format {out['format_version']} is newer than this livemocap understands ({FORMAT_VERSION})"
        )
    return out


# ---------------------------------------------------------------------------------------------------- contract
@dataclass(frozen=True)
class Contract:
    """What a step model must look like for the live loop (shapes exclude the batch dim)."""

    input_names: tuple[str, ...]
    x_widths: tuple[int, ...]                  # accepted widths of x (with / without the frame-interval column)
    omega_width: int
    output_shapes: dict[str, tuple[int, ...]]
    fps: float
    keypoint_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    conf_threshold: float


@functools.lru_cache(maxsize=1)
def contract() -> Contract:
    """The step-model contract as `mocap.model.state` (layout, names, shapes) and `mocap.camera` (confidence
    threshold) state it; both are torch-free, so engines read it without loading torch."""
    return Contract(
        input_names=tuple(state.INPUT_NAMES), x_widths=tuple(sorted({state.INPUT_DIM_NO_INTERVAL, state.INPUT_DIM})),
        omega_width=state.OMEGA_DIM, output_shapes=dict(state.OUTPUT_SHAPES), fps=float(state.REFERENCE_FPS),
        keypoint_names=tuple(KEYPOINT_NAMES), joint_names=tuple(SMPL_JOINT_NAMES), conf_threshold=float(CONF_THRESHOLD),
    )


_REQUIRED_KEYS = ("format_version", "model_id", "fps", "joint_names", "keypoint_names", "input_normalization",
                  "normalized_dim")


def _first_difference(got: Sequence[Any], want: Sequence[Any]) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"entry {i} is {a!r}, expected {b!r}"
    return f"{len(got)} entries, expected {len(want)}"


def check_step_model(meta: Mapping[str, Any], x_width: int, outputs: Mapping[str, tuple[tuple[Any, ...], str]]
                     ) -> None:
    """ValueError (one line, the first problem) unless an artifact meets ``contract()``.

    meta: parsed metadata (``parse_metadata``); x_width: the graph's x input width; outputs: graph output name ->
    (shape without batch, dtype name such as "float32") for the model outputs (state outputs may be included).
    """
    c = contract()
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"no livemocap metadata ({', '.join(missing)} missing): not exported by "
                         "`python -m export onnx`, or stripped")
    if not isinstance(meta["model_id"], str) or not meta["model_id"].strip():
        raise ValueError(f"metadata model_id must be a non-empty string, got {meta['model_id']!r}")
    for key, want in (("keypoint_names", c.keypoint_names), ("joint_names", c.joint_names)):
        got = meta[key]
        if not isinstance(got, list) or tuple(got) != want:
            detail = _first_difference(got, want) if isinstance(got, list) else f"a {type(got).__name__}"
            raise ValueError(f"metadata {key} differ from the live loop's order ({detail})")
    if not (isinstance(meta["fps"], float) and math.isclose(meta["fps"], c.fps)):
        raise ValueError(f"metadata fps is {meta['fps']}, the live loop feeds the model at {c.fps:g} fps")
    # The normalization text is prose (its wording may change between versions); what must agree is the x
    # width it describes and the confidence threshold below which keypoints are zeroed.
    text = str(meta["input_normalization"])
    width = re.match(r"x \(B, (\d+)\)", text)
    threshold = re.search(r"conf < ([0-9.]+)", text)
    if width is None or threshold is None or "normalize_keypoints" not in text:
        raise ValueError("metadata input_normalization does not describe the live loop's normalization "
                         "(mocap.camera.normalize_keypoints; export/metadata.py INPUT_NORMALIZATION)")
    if not math.isclose(float(threshold[1].rstrip(".")), c.conf_threshold):
        raise ValueError(f"metadata input_normalization zeroes keypoints below conf {threshold[1].rstrip('.')}, "
                         f"the live loop uses {c.conf_threshold:g}")
    if meta["normalized_dim"] != x_width or int(width[1]) != x_width:
        raise ValueError(f"metadata normalized_dim {meta['normalized_dim']} (normalization text: {width[1]}) != "
                         f"the graph's x width {x_width}")
    if x_width not in c.x_widths:
        raise ValueError(f"x is {x_width} wide; the contract allows {' or '.join(map(str, c.x_widths))}")
    for name, shape in c.output_shapes.items():
        if name not in outputs:
            raise ValueError(f"output {name!r} missing (graph outputs: {sorted(outputs)})")
        got_shape, dtype = outputs[name]
        if tuple(got_shape) != shape or dtype != "float32":
            raise ValueError(f"output {name!r} is {dtype} {tuple(got_shape)}, expected float32 {shape}")
