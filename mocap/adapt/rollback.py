"""Keep the last good weights and go back to them when the live error says a swap made things worse.

The gate judges a candidate on a few seconds of past frames; the frames after the swap are the real test.
`RegressionMonitor` compares the live reprojection error after a swap with the error just before it, and
`WeightHistory` numbers the generations and hands back the previous good one.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Generation:
    number: int
    weights: Weights


class WeightHistory:
    """Generations in acceptance order; the newest is live. Numbers only grow, so a label names one set of
    weights (a rollback republishes the older number)."""

    def __init__(self, initial: Mapping[str, torch.Tensor], generation: int = 0, keep: int = 4) -> None:
        if keep < 2:
            raise ValueError(f"keep must be >= 2 (the live generation and one to roll back to), got {keep}")
        self._stack: collections.deque[Generation] = collections.deque(maxlen=keep)
        self._stack.append(Generation(int(generation), dict(initial)))
        self._next = int(generation) + 1

    @property
    def current(self) -> Generation:
        return self._stack[-1]

    @property
    def can_roll_back(self) -> bool:
        return len(self._stack) > 1

    @property
    def numbers(self) -> list[int]:
        """Generations held, oldest first (the live one last)."""
        return [g.number for g in self._stack]

    def accept(self, weights: Mapping[str, torch.Tensor], number: int | None = None) -> Generation:
        """Make WEIGHTS live as the next generation (or as NUMBER, e.g. a saved profile's, if not taken yet)."""
        if number is not None and number < self._next:
            number = self._next
        gen = Generation(self._next if number is None else int(number), dict(weights))
        self._next = gen.number + 1
        self._stack.append(gen)
        return gen

    def roll_back(self) -> Generation:
        """Drop the live generation; the previous good one becomes live (ValueError when there is none)."""
        if not self.can_roll_back:
            raise ValueError("no earlier generation to roll back to")
        self._stack.pop()
        return self._stack[-1]


class RegressionMonitor:
    """Watches a per-frame error (lower is better) around swaps.

    `record(err)` every frame; `swapped()` right after a swap: the median of the last `frames` errors becomes the
    baseline. Once `frames` errors arrived after it, `verdict()` says "regressed" when their median exceeds the
    baseline by more than `tolerance` (relative), else "kept"; until then None.
    """

    def __init__(self, frames: int = 60, tolerance: float = 0.15, min_baseline: int = 15) -> None:
        if frames < 1 or tolerance < 0:
            raise ValueError(f"frames must be >= 1 and tolerance >= 0, got {frames}, {tolerance}")
        self.frames, self.tolerance, self.min_baseline = int(frames), float(tolerance), int(min_baseline)
        self._recent: collections.deque[float] = collections.deque(maxlen=self.frames)
        self._baseline: float | None = None
        self._after: list[float] = []
        self.last: dict | None = None  # the latest verdict with its medians

    @property
    def watching(self) -> bool:
        return self._baseline is not None

    def record(self, err: float | None) -> None:
        if err is None or not np.isfinite(err):
            return
        self._recent.append(float(err))
        if self._baseline is not None:
            self._after.append(float(err))

    def swapped(self) -> None:
        """A new generation went live: watch it (no baseline yet = nothing to compare with: not watched)."""
        self._after = []
        self._baseline = float(np.median(self._recent)) if len(self._recent) >= self.min_baseline else None

    def verdict(self) -> str | None:
        if self._baseline is None or len(self._after) < self.frames:
            return None
        after = float(np.median(self._after))
        result = "regressed" if after > self._baseline * (1.0 + self.tolerance) else "kept"
        self.last = {"baseline": self._baseline, "after": after, "verdict": result}
        self._baseline, self._after = None, []
        return result


__all__ = ["Generation", "RegressionMonitor", "WeightHistory"]
