"""Source-skeleton -> SMPL-24 joint-name mappings: named presets, auto-detection, user JSON files.

A preset is an ordered list of (SMPL joint, candidate source names). Candidates are tried in order and a source
joint is used at most once, so one preset covers close variants (CMU's Spine/Spine1 and Mixamo's
Spine/Spine1/Spine2). Names compare case-insensitively with any namespace prefix ("mixamorig:Hips") dropped.
SMPL joints left unmapped are filled in by the retargeter (see mocap/retarget.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from mocap.skeleton import SMPL_JOINT_NAMES

Preset = tuple[tuple[str, tuple[str, ...]], ...]


def _sided(left: dict[str, tuple[str, ...]], to_right: Callable[[str], str]) -> list[tuple[str, tuple[str, ...]]]:
    """Expand left-side entries into left and right ones; to_right turns a left source name into its twin."""
    out = []
    for smpl, cands in left.items():
        out.append((smpl, cands))
        out.append(("r_" + smpl[2:], tuple(to_right(c) for c in cands)))
    return out


#: Bandai-Namco-Research-Motiondataset skeleton. Its Chest carries the neck and shoulders like SMPL's spine3, and
#: Hips->Chest matches SMPL's pelvis->spine3 proportions, so spine1/spine2 are left for the retargeter to bend.
BANDAI: Preset = (
    ("pelvis", ("Hips",)),
    ("spine3", ("Chest",)),
    ("neck", ("Neck",)),
    ("head", ("Head",)),
    *_sided(
        {
            "l_hip": ("UpperLeg_L",), "l_knee": ("LowerLeg_L",), "l_ankle": ("Foot_L",), "l_foot": ("Toes_L",),
            "l_collar": ("Shoulder_L",), "l_shoulder": ("UpperArm_L",), "l_elbow": ("LowerArm_L",),
            "l_wrist": ("Hand_L",),
        },
        lambda c: c[:-2] + "_R",
    ),
)

#: CMU conversions (cgspeed / Motionbuilder-style) and Mixamo: Hips, Spine, Spine1[, Spine2], LeftUpLeg, ...
CMU: Preset = (
    ("pelvis", ("Hips",)),
    ("spine3", ("Spine2", "Spine1", "Chest")),
    ("spine1", ("Spine",)),
    ("spine2", ("Spine1",)),
    ("neck", ("Neck",)),
    ("head", ("Head",)),
    *_sided(
        {
            "l_hip": ("LeftUpLeg", "LeftThigh"), "l_knee": ("LeftLeg", "LeftShin"), "l_ankle": ("LeftFoot",),
            "l_foot": ("LeftToeBase", "LeftToe"), "l_collar": ("LeftShoulder",), "l_shoulder": ("LeftArm",),
            "l_elbow": ("LeftForeArm",), "l_wrist": ("LeftHand",),
        },
        lambda c: c.replace("Left", "Right"),
    ),
)

#: Poser / DAZ style: hip, abdomen, chest, neck, head, lThigh, lShin, lFoot, lToe, lCollar, lShldr, lForeArm, lHand.
POSER: Preset = (
    ("pelvis", ("hip",)),
    ("spine1", ("abdomen", "abdomenLower")),
    ("spine2", ("abdomen2", "abdomenUpper", "chestLower")),
    ("spine3", ("chest", "chestUpper")),
    ("neck", ("neck", "neckLower")),
    ("head", ("head",)),
    *_sided(
        {
            "l_hip": ("lThigh", "lThighBend"), "l_knee": ("lShin",), "l_ankle": ("lFoot",), "l_foot": ("lToe",),
            "l_collar": ("lCollar",), "l_shoulder": ("lShldr", "lShldrBend"), "l_elbow": ("lForeArm", "lForearmBend"),
            "l_wrist": ("lHand",),
        },
        lambda c: "r" + c[1:],
    ),
)

PRESETS: dict[str, Preset] = {"bandai": BANDAI, "cmu": CMU, "poser": POSER}

#: Joints every preset must find for auto-detection to accept it (the retarget needs limbs, trunk and head).
REQUIRED: tuple[str, ...] = (
    "pelvis", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "head",
    "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
)


def normalize_name(name: str) -> str:
    """Case-insensitive key with any namespace prefix ("mixamorig:Hips", "Armature|Hips") removed."""
    for sep in (":", "|"):
        name = name.rsplit(sep, 1)[-1]
    return name.strip().lower()


def resolve_preset(preset: Preset, source_names: Sequence[str]) -> dict[str, str]:
    """Preset + the source's joint names -> {smpl_joint: source_joint} (only joints found)."""
    by_key: dict[str, str] = {}
    for n in source_names:
        by_key.setdefault(normalize_name(n), n)
    used: set[str] = set()
    mapping: dict[str, str] = {}
    for smpl, cands in preset:
        for c in cands:
            src = by_key.get(normalize_name(c))
            if src is not None and src not in used:
                mapping[smpl] = src
                used.add(src)
                break
    return mapping


def detect_preset(source_names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Pick the preset that maps the most SMPL joints and covers REQUIRED; ValueError if none does."""
    best: tuple[int, str, dict[str, str]] | None = None
    report = []
    for name, preset in PRESETS.items():
        mapping = resolve_preset(preset, source_names)
        missing = [j for j in REQUIRED if j not in mapping]
        report.append(f"{name}: missing {missing}" if missing else f"{name}: ok")
        if not missing and (best is None or len(mapping) > best[0]):
            best = (len(mapping), name, mapping)
    if best is None:
        raise ValueError(
            "no retarget preset fits this skeleton (" + "; ".join(report) + "); pass a mapping JSON "
            f"{{smpl_joint: source_joint}}. Source joints: {list(source_names)}"
        )
    return best[1], best[2]


def validate_mapping(mapping: dict[str, str], source_names: Sequence[str], where: str = "mapping") -> dict[str, str]:
    """Check a {smpl_joint: source_joint} mapping against SMPL names and the source's joints."""
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{where}: must be a JSON object of strings {{smpl_joint: source_joint}}")
    bad = [k for k in mapping if k not in SMPL_JOINT_NAMES]
    if bad:
        raise ValueError(f"{where}: unknown SMPL joints {bad}; valid names are {list(SMPL_JOINT_NAMES)}")
    absent = [v for v in mapping.values() if v not in source_names]
    if absent:
        raise ValueError(f"{where}: source joints {absent} not in the skeleton {list(source_names)}")
    dup = sorted({v for v in mapping.values() if list(mapping.values()).count(v) > 1})
    if dup:
        raise ValueError(f"{where}: source joints {dup} are mapped to more than one SMPL joint")
    if "pelvis" not in mapping:
        raise ValueError(f"{where}: 'pelvis' must be mapped (it gives the root orientation and translation)")
    return dict(mapping)


def load_mapping_file(path: str | Path, source_names: Sequence[str]) -> dict[str, str]:
    """Read and validate a user mapping JSON file {smpl_joint: source_joint}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read mapping JSON ({exc})") from exc
    return validate_mapping(data, source_names, str(path))


def get_mapping(source_names: Sequence[str], preset: str = "auto", mapping_file: str | Path | None = None
                ) -> tuple[str, dict[str, str]]:
    """The mapping for a skeleton: from a file, a named preset, or auto-detected. Returns (label, mapping)."""
    if mapping_file is not None:
        return str(mapping_file), load_mapping_file(mapping_file, source_names)
    if preset == "auto":
        return detect_preset(source_names)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {['auto', *PRESETS]}")
    mapping = resolve_preset(PRESETS[preset], source_names)
    return preset, validate_mapping(mapping, source_names, f"preset {preset!r}")
