"""Recent model steps per tracked person, for the background adaptation (filled from the live loop's frame path).

`append` is O(1) under a lock held for microseconds: the frame path only hands over references to arrays it
already made (engines return fresh arrays every step), nothing is copied there. The worker takes a snapshot
and cuts it into `mocap.adapt.Window`s of consecutive steps: two buffered frames belong to one window only when
the second step started from exactly the state the first one returned (the same dict, or equal arrays: the
multi-person loop hands each person's state out as fresh views of its batched state), so a model reset, a
masked step during a short loss, or a new track always starts a new window.
"""
from __future__ import annotations

import collections
import threading
from typing import Any

import numpy as np

from mocap.adapt.cycle import Window
from stream.loop import ModelStep


#: One buffered model step: the loop's record of it (stream.loop.ModelStep).
BufferedStep = ModelStep


class StepRing:
    """A bounded ring of steps per track (the `max_tracks` most recently seen tracks are kept)."""

    def __init__(self, capacity: int = 600, max_tracks: int = 4) -> None:
        if capacity < 1 or max_tracks < 1:
            raise ValueError(f"capacity and max_tracks must be >= 1, got {capacity}, {max_tracks}")
        self.capacity, self.max_tracks = int(capacity), int(max_tracks)
        self._lock = threading.Lock()
        self._tracks: collections.OrderedDict[int, collections.deque[BufferedStep]] = collections.OrderedDict()
        self.appended = 0

    def append(self, step: BufferedStep) -> None:
        with self._lock:
            ring = self._tracks.get(step.track)
            if ring is None:
                ring = self._tracks[step.track] = collections.deque(maxlen=self.capacity)
                while len(self._tracks) > self.max_tracks:
                    self._tracks.popitem(last=False)
            else:
                self._tracks.move_to_end(step.track)
            ring.append(step)
            self.appended += 1

    def __len__(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._tracks.values())

    def snapshot(self) -> dict[int, list[BufferedStep]]:
        """Track id -> its steps, oldest first; the most recently seen track last."""
        with self._lock:
            return {track: list(ring) for track, ring in self._tracks.items()}

    def clear(self) -> None:
        with self._lock:
            self._tracks.clear()


def continues(state_after: Any, state_before: Any) -> bool:
    """Whether a step started from the state an earlier step returned: the same dict, or the same names with
    equal arrays (runs in the adaptation worker, never on the frame path)."""
    if state_after is state_before:
        return True
    if state_after is None or state_before is None or state_after.keys() != state_before.keys():
        return False
    return all(np.array_equal(state_after[k], state_before[k]) for k in state_after)


def runs(steps: list[BufferedStep]) -> list[list[BufferedStep]]:
    """Split steps into runs of consecutive model steps (each started from the state the previous returned)."""
    out: list[list[BufferedStep]] = []
    for step in steps:
        if out and continues(out[-1][-1].state_after, step.state_before):
            out[-1].append(step)
        else:
            out.append([step])
    return out


def to_window(run: list[BufferedStep]) -> Window:
    """A run of steps -> `Window` (x (T, D), omega (T, 6), conf (T, 21), state before each step (T, ...))."""
    names = list(run[0].state_before)
    return Window(
        x=np.stack([s.x for s in run]).astype(np.float32),
        omega=np.stack([s.omega for s in run]).astype(np.float32),
        conf=np.stack([np.nan_to_num(s.kp2d[:, 2]) for s in run]).astype(np.float32),
        state={n: np.stack([np.asarray(s.state_before[n])[0] for s in run]).astype(np.float32) for n in names},
    )


def windows(snapshot: dict[int, list[BufferedStep]], min_len: int = 3, current_s: float = 1.0) -> list[Window]:
    """Every run of at least `min_len` steps as a Window. Last comes the longest of the runs still going (ended
    within `current_s` of the newest step), since the gate holds back the last window's newest frames: with
    several people in view, "the most recently appended" would be whoever the loop happened to step last."""
    all_runs = [r for steps in snapshot.values() for r in runs(steps) if len(r) >= min_len]
    if not all_runs:
        return []
    newest = max(r[-1].t_capture for r in all_runs)
    current = [i for i, r in enumerate(all_runs) if r[-1].t_capture >= newest - current_s]
    last = max(current, key=lambda i: (len(all_runs[i]), all_runs[i][-1].t_capture))
    ordered = [r for i, r in enumerate(all_runs) if i != last] + [all_runs[last]]
    return [to_window(r) for r in ordered]


__all__ = ["BufferedStep", "StepRing", "continues", "runs", "to_window", "windows"]
