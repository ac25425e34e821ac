"""2D detectors: BlazePose on a real frame, and the ONNX top-down decoder/affine mapping on tiny built models."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stream.detector import Detection, OnnxTopDownDetector, create_detector
from stream.detector.onnx_topdown import crop_transform, decode_heatmaps

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRAME = DATA / "images" / "sports2d_demo_middle_f0115.png"
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(not HAS_MEDIAPIPE, reason='mediapipe not installed (pip install "livemocap[live]")')

# Three pure-colour blobs (RGB channel 0, 1, 2) at known image positions; the tiny models below find them.
BLOBS_XY = {0: (130.0, 70.0), 1: (60.0, 110.0), 2: (160.0, 130.0)}
IMAGE_WH = (200, 160)
INPUT_WH = (48, 64)


def _blob_image() -> np.ndarray:
    w, h = IMAGE_WH
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.zeros((h, w, 3))
    for channel, (x, y) in BLOBS_XY.items():
        rgb[..., channel] = 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2))
    return np.ascontiguousarray(rgb[..., ::-1].round().astype(np.uint8))  # BGR


class _HeatmapNet(nn.Module):
    """Keypoint k's heatmap = colour channel k % 3 average-pooled by 2 (stride-2 heatmaps, peak at the blob)."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.register_buffer("pick", torch.tensor([k % 3 for k in range(num_keypoints)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2).index_select(1, self.pick)


class _SimccNet(nn.Module):
    """SimCC with split ratio 2: x/y profiles (max over the other axis) of colour channel k % 3, each bin doubled."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.register_buffer("pick", torch.tensor([k % 3 for k in range(num_keypoints)]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.index_select(1, self.pick)
        return x.amax(2).repeat_interleave(2, dim=-1), x.amax(3).repeat_interleave(2, dim=-1)


def _export(model: nn.Module, path: Path, outputs: list[str]) -> Path:
    dummy = torch.zeros(1, 3, INPUT_WH[1], INPUT_WH[0])
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is legacy; it is what we want here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=outputs,
                          opset_version=17, dynamo=False)
    return path


def _expected(num_keypoints: int) -> np.ndarray:
    return np.array([BLOBS_XY[k % 3] for k in range(num_keypoints)])


# ----------------------------------------------------------------------------------------------- ONNX top-down
@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_onnx_topdown_decodes_and_maps_back_to_image(tmp_path: Path, kind: str) -> None:
    if kind == "heatmap":
        path = _export(_HeatmapNet(17), tmp_path / "hm.onnx", ["heatmaps"])
    else:
        path = _export(_SimccNet(17), tmp_path / "simcc.onnx", ["simcc_x", "simcc_y"])
    det = OnnxTopDownDetector(path, providers=["CPUExecutionProvider"])
    assert det.input_size == INPUT_WH
    image = _blob_image()
    # First frame: no previous person, the crop is the whole frame (1 input px = ~4 image px).
    (first,) = det.detect(image)
    np.testing.assert_allclose(first.keypoints[:17, :2], _expected(17), atol=4.0)
    assert (first.keypoints[:17, 2] > 0.5).all()
    np.testing.assert_array_equal(first.keypoints[17:, 2], 0.0)  # a COCO-17 model has no feet
    np.testing.assert_allclose(first.bbox, [60.0, 70.0, 160.0, 130.0], atol=4.0)  # tight box of the keypoints
    assert first.score > 0.7
    # Next frame: the crop follows the previous keypoints (tighter box, finer resolution).
    (second,) = det.detect(image)
    np.testing.assert_allclose(second.keypoints[:17, :2], _expected(17), atol=3.0)
    # An explicit box wins over the previous keypoints.
    (third,) = det.detect(image, bbox=np.array([40.0, 50.0, 180.0, 150.0]))
    np.testing.assert_allclose(third.keypoints[:17, :2], _expected(17), atol=3.0)


def test_onnx_topdown_wholebody_layout_gives_feet(tmp_path: Path) -> None:
    det = OnnxTopDownDetector(_export(_SimccNet(23), tmp_path / "wb.onnx", ["x", "y"]))
    (found,) = det.detect(_blob_image())
    feet = _expected(23)[[19, 17, 22, 20]]  # COCO-WholeBody: L heel, L big toe, R heel, R big toe
    np.testing.assert_allclose(found.keypoints[17:, :2], feet, atol=4.0)
    assert (found.keypoints[17:, 2] > 0.9).all()


def test_onnx_topdown_black_frame_and_bad_input(tmp_path: Path) -> None:
    det = OnnxTopDownDetector(_export(_HeatmapNet(17), tmp_path / "hm.onnx", ["heatmaps"]))
    assert det.detect(np.zeros((120, 90, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="BGR uint8"):
        det.detect(np.zeros((120, 90), np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxTopDownDetector(tmp_path / "missing.onnx")


def test_crop_transform_keeps_aspect_and_centre() -> None:
    m = crop_transform(np.array([10.0, 20.0, 50.0, 100.0]), (48, 64), scale=1.25)
    assert m[0, 0] == pytest.approx(m[1, 1])  # no distortion
    np.testing.assert_allclose(m[:, :2] @ [30.0, 60.0] + m[:, 2], [24.0, 32.0])  # box centre -> input centre
    assert 64 / m[1, 1] == pytest.approx(80 * 1.25)  # the taller side, enlarged, fills the input height
    with pytest.raises(ValueError):
        crop_transform(np.array([5.0, 5.0, 5.0, 9.0]), (48, 64), 1.0)


def test_heatmap_subpixel_refinement() -> None:
    xs = np.arange(16.0)
    hm = np.exp(-((xs[None, :] - 6.3) ** 2) / 4.0)[None].repeat(8, 1)  # (1, 8, 16), peak at x = 6.3
    (x, _, conf), = decode_heatmaps(hm, (64, 32))  # stride 4
    assert x == pytest.approx(6.3 * 4, abs=0.4)  # the bare argmax would say 24
    assert conf == pytest.approx(hm[0, 0, 6])  # confidence = peak sample


def test_detection_validates_shapes_and_factory() -> None:
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        Detection(np.zeros((17, 3)), np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector("yolo")


# ----------------------------------------------------------------------------------------------- MediaPipe
@needs_mediapipe
@pytest.mark.skipif(not FRAME.is_file(), reason=f"shared data not found at {FRAME}")
def test_mediapipe_finds_the_person_in_a_real_frame() -> None:
    image = cv2.imread(str(FRAME))
    h, w = image.shape[:2]
    with create_detector("mediapipe") as det:
        dets = det.detect(image)
        assert len(dets) == 1
        kp = dets[0].keypoints
        assert kp.shape == (21, 3) and ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all()
        visible = kp[:, 2] > 0.5
        assert visible.sum() >= 15
        assert ((kp[visible, 0] >= 0) & (kp[visible, 0] < w) & (kp[visible, 1] >= 0) & (kp[visible, 1] < h)).all()
        shoulders, hips, knees, ankles = (kp[[i, i + 1], 1].mean() for i in (5, 11, 13, 15))
        assert kp[0, 1] < shoulders < hips < knees < ankles
        assert kp[17:, 1].min() > knees  # heels and toes sit below the knees
        x0, y0, x1, y1 = dets[0].bbox
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and (y1 - y0) > 0.1 * h
        det.reset()
        assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_detector_bench_options_parse_as_their_types() -> None:
    from stream.detector.bench import parse_option

    assert parse_option("full_res_crops=false") == ("full_res_crops", False)
    assert parse_option("max_people=2") == ("max_people", 2)
    assert parse_option("same_person=0.3") == ("same_person", 0.3)
    assert parse_option("detector_model=a.tflite") == ("detector_model", "a.tflite")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_option("full_res_crops")
