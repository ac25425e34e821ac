"""Model memory of every tracked person, advanced by one batched engine step per frame.

Why: the engines are batch-first, and one step for B people costs far less than B steps (the fixed per-call
cost dominates a sub-millisecond step). The people's states live as one batch (row i = `tracks[i]`), so the
usual frame, where everyone followed is stepped, hands the engine's returned state straight back with no
gathering or splitting. People who enter get a fresh `initial_state(1)` row, people who leave lose theirs;
nobody else's memory is touched by either, and a person whose outputs are non-finite loses only their own.

Arrays are never written in place: a state handed out (to refinement, to the adaptation buffer) stays as it
was when handed out, even after later frames.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np

from stream.loop.memory import CHECKED_OUTPUTS, engine_inputs, finite_rows

Arrays = dict[str, np.ndarray]


class PeopleModel:
    """Per-person engine states keyed by track id; `step` advances any subset of them as one batch."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tracks: list[int] = []      # row order of the batch state
        self._state: Arrays = {}         # name -> (len(tracks), ...) arrays

    def __contains__(self, track: object) -> bool:
        return track in self.tracks

    def __len__(self) -> int:
        return len(self.tracks)

    def start(self, track: int) -> None:
        """A fresh model memory for `track` (a new person, or one whose memory was dropped)."""
        track = int(track)
        self.drop(track)
        fresh = self.engine.initial_state(1)
        self._state = fresh if not self.tracks else {k: np.concatenate([v, fresh[k]]) for k, v in self._state.items()}
        self.tracks.append(track)

    def drop(self, track: int) -> None:
        if track not in self.tracks:
            return
        i = self.tracks.index(track)
        self.tracks.pop(i)
        self._state = {k: np.delete(v, i, axis=0) for k, v in self._state.items()} if self.tracks else {}

    def clear(self) -> None:
        self.tracks, self._state = [], {}

    def state_of(self, track: int) -> Arrays:
        """The person's state as batch-1 arrays (views; never modified afterwards)."""
        i = self.tracks.index(track)
        return {k: v[i:i + 1] for k, v in self._state.items()}

    def set_states(self, states: Mapping[int, Mapping[str, np.ndarray]]) -> None:
        """Replace some people's states (e.g. the refined feet and root fed back), one copy per array."""
        rows = [(self.tracks.index(t), s) for t, s in states.items() if t in self.tracks]
        if not rows:
            return
        new = {k: v.copy() for k, v in self._state.items()}
        for i, s in rows:
            for k in new:
                new[k][i] = np.asarray(s[k])[0]
        self._state = new

    def step(self, xs: Mapping[int, np.ndarray], omega: np.ndarray
             ) -> tuple[dict[int, Arrays], dict[int, Arrays], list[int]]:
        """xs {track: x (D,)} for tracks that have a state, omega (6,) shared by everyone (one camera).

        Returns (outputs {track: batch-1 arrays}, states_before {track: batch-1 arrays}, failed tracks whose
        `CHECKED_OUTPUTS` were non-finite; their state is dropped). Raises what the engine raises, and KeyError for
        outputs without `CHECKED_OUTPUTS` (nobody's state changes then).
        """
        tracks = [int(t) for t in xs]
        if not tracks:
            return {}, {}, []
        missing = [t for t in tracks if t not in self.tracks]
        if missing:
            raise KeyError(f"no model state for tracks {missing}: call start() first")
        everyone = tracks == self.tracks
        rows = None if everyone else np.array([self.tracks.index(t) for t in tracks])
        batch_state = self._state if rows is None else {k: v[rows] for k, v in self._state.items()}
        x = np.stack([np.asarray(xs[t], np.float32) for t in tracks])
        outputs, state = self.engine.step(engine_inputs(x, omega), batch_state)
        ok = finite_rows(outputs, len(tracks))
        before = {t: {k: v[i:i + 1] for k, v in batch_state.items()} for i, t in enumerate(tracks)}
        if rows is None:
            self._state = dict(state)
        else:
            merged = {k: v.copy() for k, v in self._state.items()}
            for k in merged:
                merged[k][rows] = state[k]
            self._state = merged
        failed = [t for t, good in zip(tracks, ok) if not good]
        per_out = {t: {k: v[i:i + 1] for k, v in outputs.items()} for i, t in enumerate(tracks) if ok[i]}
        for t in failed:
            self.drop(t)
        return per_out, before, failed


def bench_batched_step(engine: Any, batches: tuple[int, ...] = (1, 2, 4), steps: int = 300,
                       clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """p50 ms of one `PeopleModel.step` (stacking + engine + splitting) for each number of people, on `clock`
    (wall by default; `time.thread_time` gives its CPU, which a busy machine inflates far less: the engines
    step on the calling thread)."""
    rng = np.random.default_rng(0)
    groups = {}
    for b in batches:
        people = PeopleModel(engine)
        for t in range(b):
            people.start(t)
        groups[b] = (people, {t: (0.1 * rng.standard_normal(engine.input_shapes["x"][0])).astype(np.float32)
                              for t in range(b)})
    times: dict[int, list[float]] = {b: [] for b in batches}
    omega = np.zeros(6, np.float32)
    for _ in range(steps):  # the sizes take turns, so a change in the machine's load hits them alike
        for b, (people, xs) in groups.items():
            tic = clock()
            people.step(xs, omega)
            times[b].append((clock() - tic) * 1e3)
    return {str(b): float(np.median(t[steps // 5:])) for b, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    """python -m stream.pipeline_people [--engine auto] [--steps 2000]: the batched step's cost, JSON."""
    parser = argparse.ArgumentParser(prog="python -m stream.pipeline_people", description=main.__doc__)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--engine", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    parser.add_argument("--people", default="1,2,4,8", help="comma-separated numbers of people (default 1,2,4,8)")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        batches = tuple(int(v) for v in args.people.split(","))
    except ValueError:
        parser.error(f"--people must be comma-separated integers, got {args.people!r}")
    if args.steps < 10 or min(batches) < 1:
        parser.error("need --steps >= 10 and people >= 1")
    import engines

    engine = engines.load(args.checkpoint, prefer=None if args.engine == "auto" else [args.engine])
    ms = bench_batched_step(engine, batches, args.steps)
    cpu = bench_batched_step(engine, batches, args.steps, time.thread_time)
    print(json.dumps({"engine": engine.name, "steps": args.steps, "step_ms_p50": ms,
                      "relative_to_first": {k: v / ms[str(batches[0])] for k, v in ms.items()},
                      "step_cpu_ms_p50": cpu,
                      "cpu_relative_to_first": {k: v / cpu[str(batches[0])] for k, v in cpu.items()}}))
    return 0


__all__ = ["CHECKED_OUTPUTS", "PeopleModel", "bench_batched_step"]

if __name__ == "__main__":
    sys.exit(main())
