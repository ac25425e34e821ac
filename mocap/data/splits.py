"""Train/validation split of mocap clips by file name, so every build (and every machine) agrees.

Bandai-Namco-Research-Motiondataset names follow `dataset-{1|2}_{content}_{style}_{take}`:
- dataset-1: style `sad` is validation (an unseen style);
- dataset-2: walk / walk-turn-left / walk-turn-right / run takes whose number ends in 9 are validation;
  every other dataset-2 file (raise-up, wave) trains.
Any other source: a stable hash of the file name puts about 10 % of clips in validation.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

VAL_FRACTION_OTHER = 0.10
_BANDAI = re.compile(r"^dataset-(?P<set>[12])_(?P<content>[^_]+)_(?P<style>[^_]+)_(?P<take>\d+)$")
_BANDAI_2_VAL_CONTENTS = frozenset({"walk", "walk-turn-left", "walk-turn-right", "run"})


def clip_stem(path: str | Path) -> str:
    """File name without directories and without `.bvh` / `.bvh.xz`."""
    name = Path(path).name
    for ext in (".xz", ".bvh"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def is_validation(path: str | Path) -> bool:
    """True when the clip belongs to the validation split (rules in the module doc)."""
    stem = clip_stem(path)
    m = _BANDAI.match(stem)
    if m:
        if m["set"] == "1":
            return m["style"] == "sad"
        return m["content"] in _BANDAI_2_VAL_CONTENTS and m["take"].endswith("9")
    digest = hashlib.sha1(stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < VAL_FRACTION_OTHER


def split_of(path: str | Path) -> str:
    """'val' or 'train'."""
    return "val" if is_validation(path) else "train"
