"""Datasets: cached SMPL clips built from mocap (`python -m mocap.data build`) and the synthetic window generator."""
from mocap.data.build import CACHE_KEYS, load_cache

__all__ = ["CACHE_KEYS", "load_cache"]
