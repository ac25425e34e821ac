"""What an exported artifact says about itself (ONNX `metadata_props`, and the JSON beside a TensorRT engine).

Torch-free on import so `engines/` can read it without loading torch. Values are strings (ONNX's rule);
lists and maps are JSON-encoded and `parse_metadata` decodes them.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from mocap.skeleton import KEYPOINT_NAMES, SMPL_JOINT_NAMES

#: Bumped when the meaning of a key changes; readers refuse newer formats they do not know.
FORMAT_VERSION = 1

#: Keys whose values are JSON (everything else is a plain string).
_JSON_KEYS = ("joint_names", "keypoint_names", "input_names", "state_names", "state_outputs", "output_names")

INPUT_NORMALIZATION = (
    "x (B, 66): for each of the 21 keypoints ((u - cx) / (size / 2), (v - cy) / (size / 2), visible), the two "
    "coordinates zeroed where conf < {threshold}; then ((cx - px) / f, (cy - py) / f, size / f). "
    "[cx, cy, size] is the square person box (mocap.camera.bbox_from_keypoints), f/px/py the camera intrinsics "
    "(default f = sqrt(W^2 + H^2), principal point at the image centre). omega (B, 6): camera angular velocity, "
    "6D of R_t R_(t-1)^T minus the identity's 6D, times fps; zeros for a static camera. "
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
        "input_normalization": INPUT_NORMALIZATION.format(threshold=conf_threshold),
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
