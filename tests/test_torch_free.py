"""The live path never loads torch: `run_live.py` with the onnxruntime engine (or `auto`, which picks it) runs
frames end to end, refinement on, single- and multi-person, and afterwards no `torch` module is loaded.

Each run is a fresh interpreter (a test process has torch loaded already) that executes run_live.py as a user
does, with a finder on sys.meta_path that only notes who imports torch first, so a failure names the culprit.
A control run with `--engine torch` shows the probe does see torch when it is imported.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video" / "sports2d_demo.mp4"
FRAMES = ["--fast", "--max-frames", "8", "--publish", "tcp://127.0.0.1:*", "--json-stats"]

#: Runs run_live.py (argv[2:]) and writes {"torch": loaded torch modules, "first_import": stack} to argv[1].
PROBE = r"""
import atexit, json, runpy, sys, traceback

out, argv = sys.argv[1], sys.argv[2:]
first = []


class Witness:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first:
            first.append("".join(traceback.format_stack(limit=14)))
        return None


def report():
    torch = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    with open(out, "w") as fh:
        json.dump({"torch": torch, "first_import": first[0] if first else None}, fh)


sys.meta_path.insert(0, Witness())
atexit.register(report)
sys.argv = [argv[0], *argv[1:]]
runpy.run_path(argv[0], run_name="__main__")
"""


def _run_live(tmp_path: Path, *args: str) -> tuple[dict, dict]:
    """-> (the probe's report, run_live's --json-stats summary)."""
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), str(REPO / "run_live.py"), *args, *FRAMES],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), json.loads(proc.stdout.strip().splitlines()[-1])


def _needs_video() -> None:
    if not VIDEO.is_file():
        pytest.skip(f"shared data not found at {VIDEO}")


@pytest.mark.parametrize("source, extra", [
    ("synthetic", ["--engine", "onnxruntime", "--max-people", "1"]),
    ("synthetic", ["--engine", "auto", "--camera-motion", "visual", "--record", "{tmp}/take.bvh"]),
    ("video", ["--engine", "onnxruntime"]),
    ("video", ["--engine", "auto", "--max-people", "1", "--record", "{tmp}/take.npz"]),
], ids=["synthetic-single", "synthetic-multi-auto", "video-multi", "video-single-auto"])
def test_the_live_loop_with_onnxruntime_never_imports_torch(tmp_path: Path, source: str, extra: list[str]) -> None:
    if source == "video":
        _needs_video()
    src = str(VIDEO) if source == "video" else source
    probe, stats = _run_live(tmp_path, "--source", src, *(a.format(tmp=tmp_path) for a in extra))
    assert stats["engine"] == "onnxruntime" and stats["published"] > 0
    assert stats["stages_ms"]["refine"]["n"] > 0, "refinement (the default) did not run"
    assert probe["torch"] == [], f"torch was imported; first import:\n{probe['first_import']}"


def test_the_probe_sees_torch_when_the_torch_engine_loads_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    probe, stats = _run_live(tmp_path, "--source", "synthetic", "--engine", "torch")
    assert stats["engine"] == "torch"
    assert "torch" in probe["torch"] and "torch_engine" in probe["first_import"]
