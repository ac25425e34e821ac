"""The live loops' XNNPACK thread count: two on the loop's own thread, one when pipelined; speed only."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.detector import blazepose_multi
from stream.detector.blazepose_multi import loop_threads

VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video" / "pose2sim_single_cam1.mp4"
HAS_RUNTIME = all(importlib.util.find_spec(m) is not None for m in ("mediapipe", "ai_edge_litert"))


def test_two_threads_on_the_loop_thread_one_when_pipelined_or_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blazepose_multi.os, "cpu_count", lambda: 2)
    assert loop_threads(pipelined=False) == 2 and loop_threads(pipelined=True) == 1
    monkeypatch.setattr(blazepose_multi.os, "cpu_count", lambda: 1)
    assert loop_threads(pipelined=False) == 1
    monkeypatch.setattr(blazepose_multi.os, "cpu_count", lambda: None)  # unknown: assume one core
    assert loop_threads(pipelined=False) == 1


@pytest.mark.skipif(not HAS_RUNTIME or not VIDEO.is_file(), reason="needs mediapipe + ai-edge-litert and the shared video")
def test_a_second_thread_changes_speed_not_landmarks() -> None:
    cap = cv2.VideoCapture(str(VIDEO))
    frames = [cap.read()[1] for _ in range(6)]
    cap.release()
    runs = []
    for threads in (1, 2):
        det = blazepose_multi.BlazePoseMultiDetector(1, num_threads=threads)
        try:
            runs.append([np.asarray(d[0].keypoints) for d in (det.detect(f, t=i / 60) for i, f in enumerate(frames))])
        finally:
            det.close()
    assert len(runs[0]) == len(runs[1]) == 6
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, atol=0.05)  # pixels; XNNPACK splits the work, not the arithmetic
