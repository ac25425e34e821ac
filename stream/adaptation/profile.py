"""Adapted weights kept per user profile: `<dir>/<name>.safetensors` (the adapted parameters only) + `<name>.json`
(generation, the base model they adapt, the last gate reports). No pickle; written atomically, so a crash mid-save
leaves the previous profile intact.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT = 1


def default_profile_dir() -> Path:
    """$XDG_CACHE_HOME/livemocap/profiles (default ~/.cache/livemocap/profiles)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livemocap" / "profiles"


class ProfileError(ValueError):
    """A profile name is invalid, or its files do not fit the running model."""


@dataclass(frozen=True)
class LoadedProfile:
    generation: int
    weights: dict[str, torch.Tensor]
    meta: dict[str, Any]


class ProfileStore:
    def __init__(self, root: str | Path, name: str) -> None:
        if not _NAME.match(name):
            raise ProfileError(f"profile name {name!r}: use letters, digits, '_', '-', '.' (at most 64, no '/')")
        self.root, self.name = Path(root).expanduser(), name
        self.weights_path = self.root / f"{name}.safetensors"
        self.meta_path = self.root / f"{name}.json"

    def exists(self) -> bool:
        return self.weights_path.is_file() and self.meta_path.is_file()

    def load(self, base_sha256: str, names: list[str], shapes: Mapping[str, tuple[int, ...]]) -> LoadedProfile | None:
        """The saved generation for this base model; None when there is no profile yet. ProfileError when it was
        adapted from other base weights or does not fit (the caller starts from the base model instead)."""
        if not self.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            weights = load_file(str(self.weights_path))
        except Exception as exc:  # unreadable JSON or safetensors
            raise ProfileError(f"profile {self.name!r} in {self.root} is unreadable: {exc}") from None
        if meta.get("base_sha256") != base_sha256:
            raise ProfileError(f"profile {self.name!r} was adapted from other base weights "
                               f"({str(meta.get('base_sha256'))[:12]}), not the running model ({base_sha256[:12]})")
        if sorted(weights) != sorted(names) or any(tuple(weights[n].shape) != tuple(shapes[n]) for n in names):
            raise ProfileError(f"profile {self.name!r} holds other parameters than this adaptation trains")
        return LoadedProfile(int(meta.get("generation", 0)), weights, meta)

    def save(self, weights: Mapping[str, torch.Tensor], generation: int, base_sha256: str, model_id: str,
             extra: Mapping[str, Any] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp_w = self.weights_path.with_suffix(".safetensors.tmp")
        tmp_m = self.meta_path.with_suffix(".json.tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp_w))
        meta = {"format": FORMAT, "profile": self.name, "generation": int(generation), "base_sha256": base_sha256,
                "model_id": model_id, "saved_unix": time.time(), **(extra or {})}
        tmp_m.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_w, self.weights_path)
        os.replace(tmp_m, self.meta_path)


__all__ = ["LoadedProfile", "ProfileError", "ProfileStore", "default_profile_dir"]
