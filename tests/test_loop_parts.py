"""The live loop's parts on their own (`stream/loop/`): the reset rule's per-person verdict, the engine inputs and
finite check both loops share, frame geometry, detections, camera motion that fails."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mocap.camera import default_intrinsics
from mocap.model.state import OMEGA_DIM
from mocap.skeleton import NUM_KEYPOINTS
from stream.loop.inputs import FrameGeometry, detections
from stream.loop.memory import CHECKED_OUTPUTS, Person, ResetRule, engine_inputs, finite_rows
from stream.loop.motion import Motion
from stream.loop.stats import LoopStats
from stream.sources.base import Frame


def test_person_verdict_follows_the_reset_rule() -> None:
    rule, person = ResetRule(lost_reset_frames=3), Person()
    assert person.unseen(rule) == "wait"  # no input yet: nothing to step on
    person.seen(np.ones(4, np.float32))
    assert [person.unseen(rule) for _ in range(3)] == ["masked", "masked", "drop"]
    person.seen(np.ones(4, np.float32))
    assert person.lost_run == 0 and person.unseen(rule) == "masked"
    assert rule.fresh_needed(False, "tracking") and rule.fresh_needed(True, "init")
    assert rule.fresh_needed(True, "tracking", same_track=False) and not rule.fresh_needed(True, "tracking")


def test_engine_inputs_and_finite_rows() -> None:
    x = np.zeros((3, 67), np.float64)
    inputs = engine_inputs(x, np.arange(OMEGA_DIM))
    assert inputs["x"].dtype == np.float32 and inputs["omega"].shape == (3, OMEGA_DIM)
    assert np.all(inputs["omega"] == np.arange(OMEGA_DIM, dtype=np.float32))  # one camera for everyone
    outputs = {k: np.zeros((3, 2)) for k in CHECKED_OUTPUTS}
    outputs[CHECKED_OUTPUTS[1]][1, 0] = np.nan
    assert finite_rows(outputs, 3).tolist() == [True, False, True]
    with pytest.raises(KeyError):
        finite_rows({}, 1)


def test_frame_geometry() -> None:
    source = SimpleNamespace(size=(640, 480))
    frame = Frame(np.zeros((240, 320, 3), np.uint8), 0, 0.0)
    size, K = FrameGeometry(source).of(frame)
    assert size == (320, 240) and np.array_equal(K, default_intrinsics(320, 240))
    assert FrameGeometry(source).size(Frame(None, 0, 0.0)) == (640, 480)  # keypoint-only frames: the source's
    user = default_intrinsics(100, 100)
    assert FrameGeometry(source, user).of(frame)[1] is not None
    with pytest.raises(ValueError, match="positive focal"):
        FrameGeometry(source, np.zeros((3, 3)))


def test_detections_from_frame_keypoints_and_failures() -> None:
    stats = LoopStats()
    kp = np.full((NUM_KEYPOINTS, 3), 10.0, np.float32)
    kp[:, 2] = 0.9
    kp[0, :2] = 50.0
    (det,) = detections(Frame(None, 0, 0.0, keypoints=kp), None, stats)
    assert det.score == pytest.approx(0.9) and det.bbox.tolist() == [10.0, 10.0, 50.0, 50.0]
    assert detections(Frame(None, 1, 0.0, keypoints=kp[:17]), None, stats) == []
    assert stats.n.errors["detector"] == 1

    class Broken:
        def detect(self, image: np.ndarray) -> list:
            raise RuntimeError("no")

    assert detections(Frame(np.zeros((8, 8, 3), np.uint8), 2, 0.0), Broken(), stats) == []
    assert stats.n.errors["detector"] == 2


def test_motion_never_raises() -> None:
    stats = LoopStats()

    class Provider:
        status = "ok"

        def __init__(self, value: object) -> None:
            self.value = value

        def update(self, t: float, image: object, bbox: object) -> object:
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    motion = Motion(Provider(np.full(OMEGA_DIM, 0.5)), stats)
    assert np.all(motion.update(0.0, None, None) == 0.5) and motion.used == "visual"
    for bad in (np.full(OMEGA_DIM, np.nan), RuntimeError("gyro gone")):
        motion = Motion(Provider(bad), stats)
        omega = motion.update(0.0, None, None)
        assert omega.shape == (OMEGA_DIM,) and np.all(omega == 0) and motion.used == "none"
    assert stats.n.errors["camera_motion"] == 1
