"""The rescue of a lost BlazePose crop (issue 13): turning a ROI maps the landmark network's points back to the
same image pixels, and the retries are bounded, turn the way the crop was turning, and skip fresh or leaving
people."""
from __future__ import annotations

import importlib.util
import math

import cv2
import numpy as np
import pytest

from stream.detector.blazepose_multi_ops import LANDMARK_INPUT, Landmarks, Roi, crop_affine, crop_to_image, turned

HAS_RUNTIME = all(importlib.util.find_spec(m) is not None for m in ("mediapipe", "ai_edge_litert"))
needs_runtime = pytest.mark.skipif(not HAS_RUNTIME,
                                   reason='needs mediapipe + ai-edge-litert (pip install "livemocap[live]")')


def _about_centre(points: np.ndarray, angle: float) -> np.ndarray:
    """Crop-normalized points turned by angle about the crop's centre (0.5, 0.5), screen convention (y down)."""
    c, s = math.cos(angle), math.sin(angle)
    local = points - 0.5
    return np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], axis=1) + 0.5


@pytest.mark.parametrize("angle_deg", [90.0, -90.0, 180.0, 30.0, -120.0])
def test_turned_roi_maps_points_to_the_same_image_pixels_and_back(angle_deg: float) -> None:
    roi = Roi((412.5, 187.25), 203.0, math.radians(79.0))
    angle = math.radians(angle_deg)
    t = turned(roi, angle)
    assert t.centre == roi.centre and t.side == roi.side and -math.pi <= t.rotation < math.pi
    back = turned(t, -angle)
    assert math.isclose(math.cos(back.rotation - roi.rotation), 1.0, abs_tol=1e-12)
    points = np.random.default_rng(0).uniform(0.0, 1.0, (39, 2))
    # a point seen at u in the original crop is seen at R(-angle) u in the turned one: same image pixel
    np.testing.assert_allclose(crop_to_image(_about_centre(points, -angle), t), crop_to_image(points, roi),
                               atol=1e-9)


@pytest.mark.parametrize(("angle_deg", "k"), [(180.0, 2), (90.0, 1), (-90.0, -1)])
def test_crop_of_a_quarter_turned_roi_is_the_crop_turned(angle_deg: float, k: int) -> None:
    """cv2 cuts the turned crop pixel for pixel as np.rot90 of the original one (half-pixel convention kept)."""
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (400, 600), np.uint8), (0, 0), 3.0)
    roi = Roi((300.0, 210.0), 180.0, math.radians(20.0))

    def cut(r: Roi) -> np.ndarray:
        return cv2.warpAffine(image.astype(np.float32), crop_affine(r), (LANDMARK_INPUT, LANDMARK_INPUT),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

    np.testing.assert_allclose(cut(turned(roi, math.radians(angle_deg))), np.rot90(cut(roi), k), atol=0.5)  # cv2: 1/32-step weights


def _lm(score: float) -> Landmarks:
    z = np.zeros(39)
    return Landmarks(np.zeros((39, 2)), z, z, score)


@needs_runtime
def test_rescue_is_bounded_turns_the_way_the_crop_turned_and_skips_fresh_or_leaving_people() -> None:
    from stream.detector.blazepose_multi import RESCUE_TURNS, BlazePoseMultiDetector, _Slot

    det = BlazePoseMultiDetector(max_people=2)
    tried: list[float] = []

    def fake(image: np.ndarray, roi: Roi, scale: float = 1.0, bgr: bool = False) -> Landmarks:
        tried.append(round(math.degrees(roi.rotation)))
        return _lm(0.9 if tried[-1] == 60 else 0.1)  # only the crop turned to +60 degrees finds the person

    det._landmarks = fake  # type: ignore[method-assign]
    image = np.zeros((360, 640, 3), np.uint8)
    slot = _Slot(0, Roi((320.0, 180.0), 100.0, 0.0), age=10, spin=0.1)
    lm, tries = det._rescue(image, slot, 1.0, _lm(0.2))
    assert lm.score == 0.9 and tries == 2 and tried == [30, 60]
    tried.clear()
    slot.spin = -0.1  # turning the other way: the negative turns first, +60 is the 5th try
    lm, tries = det._rescue(image, slot, 1.0, _lm(0.2))
    assert lm.score == 0.9 and tries == 5 and tried == [-30, -60, -90, 30, 60]
    tried.clear()
    slot.roi = Roi((320.0, 180.0), 100.0, math.radians(10.0))  # never at +60: gives up after every turn
    lm, tries = det._rescue(image, slot, 1.0, _lm(0.2))
    assert lm.score == 0.2 and tries == len(RESCUE_TURNS) == len(tried)
    assert det._rescuable(slot, (640, 360))
    assert not det._rescuable(_Slot(1, slot.roi, age=1), (640, 360))  # a fresh detection: maybe a ghost
    assert not det._rescuable(_Slot(2, Roi((10.0, 180.0), 100.0, 0.0), age=10), (640, 360))  # leaving the frame
    assert not BlazePoseMultiDetector(max_people=1, rescue_turns=())._rescuable(slot, (640, 360))


@needs_runtime
def test_a_rescued_person_is_held_back_until_upright_again() -> None:
    from stream.detector.blazepose_multi import MAX_HELD_S, BlazePoseMultiDetector, _Slot

    held = BlazePoseMultiDetector._held
    slot = _Slot(0, Roi((320.0, 180.0), 100.0, math.radians(150.0)), age=10, rescued=True, rescued_t=5.0)
    assert held(slot, 5.1)  # upside down: followed, not published
    slot.roi = Roi((320.0, 180.0), 100.0, math.radians(-20.0))
    assert not held(slot, 5.2) and not slot.rescued  # upright: published, and no longer held
    slot.roi = Roi((320.0, 180.0), 100.0, math.radians(150.0))
    assert not held(slot, 5.3)  # a person never rescued is published at any angle (as before)
    down = _Slot(1, Roi((320.0, 180.0), 100.0, math.radians(90.0)), age=10, rescued=True, rescued_t=5.0)
    assert held(down, 5.0 + MAX_HELD_S) and not held(down, 5.0 + MAX_HELD_S + 0.04)  # stays down: published again
