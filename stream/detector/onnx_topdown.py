"""A user-supplied top-down ONNX pose model (RTMPose-style SimCC, or heatmaps) as a 21-keypoint detector.

Top-down models estimate one person inside a box. Without a separate person detector the box comes from the
previous frame's keypoints (enlarged), or the whole frame when there is none; an explicit box may be passed.
The crop is an axis-aligned affine warp (scale + shift) to the model's input size at the model's aspect
ratio, so decoding maps back to the image with the exact inverse.

Decoding:
- two outputs (1, K, Lx) and (1, K, Ly): SimCC; argmax bin / split ratio (Lx / input width) = input pixel;
  confidence = min of the two maxima, clipped to [0, 1].
- one output (1, K, Hh, Wh): heatmaps; argmax refined by a 1D parabola through the peak and its neighbours,
  times the stride (input / heatmap size, the usual `keypoint * stride` convention); confidence = peak value
  clipped to [0, 1].
Foot points come from COCO-WholeBody (23 or 133 keypoints) or Halpe-26 layouts when the model has them,
otherwise they get confidence 0 (missing, never guessed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from mocap.camera import bbox_from_keypoints
from mocap.skeleton import COCO17_NAMES, NUM_KEYPOINTS
from stream.detector.base import Detection, Detector, bbox_of_visible, check_image

#: Model keypoint index of (L heel, L toe, R heel, R toe) for known layouts, keyed by keypoint count.
FOOT_INDICES_BY_LAYOUT: dict[int, tuple[int, int, int, int]] = {
    23: (19, 17, 22, 20),  # COCO-WholeBody body + feet (big toe = toe)
    133: (19, 17, 22, 20),  # COCO-WholeBody
    26: (24, 20, 25, 21),  # Halpe-26
}
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


def crop_transform(box_xyxy: np.ndarray, input_size: tuple[int, int], scale: float) -> np.ndarray:
    """(4,) box -> (2, 3) affine image->input: the box, enlarged by `scale` and widened to the input aspect,
    mapped onto the (W, H) input. Pixel centres are at integer coordinates on both sides (OpenCV's convention)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"crop box must be finite with x1 > x0 and y1 > y0, got {box_xyxy}")
    in_w, in_h = input_size
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = (x1 - x0) * scale, (y1 - y0) * scale
    aspect = in_w / in_h
    if bw / bh > aspect:
        bh = bw / aspect
    else:
        bw = bh * aspect
    s = in_w / bw
    return np.array([[s, 0.0, in_w / 2 - s * cx], [0.0, s, in_h / 2 - s * cy]])


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """simcc_x (K, Lx), simcc_y (K, Ly) -> (K, 3) input pixels + confidence."""
    ratio_x, ratio_y = simcc_x.shape[1] / input_size[0], simcc_y.shape[1] / input_size[1]
    ix, iy = simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)
    conf = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    return np.stack([ix / ratio_x, iy / ratio_y, np.clip(conf, 0.0, 1.0)], axis=1)


def _parabola_offset(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-bin offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    denom = left - 2.0 * centre + right
    safe = np.where(np.abs(denom) > 1e-12, denom, -1.0)
    return np.where(np.abs(denom) > 1e-12, np.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)


def decode_heatmaps(heatmaps: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """heatmaps (K, Hh, Wh) -> (K, 3) input pixels + confidence."""
    k, hh, wh = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    idx = flat.argmax(axis=1)
    iy, ix = np.divmod(idx, wh)
    rows = np.arange(k)
    peak = flat[rows, idx]
    at = lambda y, x: heatmaps[rows, np.clip(y, 0, hh - 1), np.clip(x, 0, wh - 1)]  # noqa: E731
    dx = np.where((ix > 0) & (ix < wh - 1), _parabola_offset(at(iy, ix - 1), peak, at(iy, ix + 1)), 0.0)
    dy = np.where((iy > 0) & (iy < hh - 1), _parabola_offset(at(iy - 1, ix), peak, at(iy + 1, ix)), 0.0)
    stride_x, stride_y = input_size[0] / wh, input_size[1] / hh
    return np.stack([(ix + dx) * stride_x, (iy + dy) * stride_y, np.clip(peak, 0.0, 1.0)], axis=1)


class OnnxTopDownDetector(Detector):
    """Run a top-down pose model with onnxruntime.

    model_path: .onnx file with one image input (1, 3, H, W) and SimCC (2 outputs) or heatmap (1 output) outputs.
    providers: onnxruntime execution providers in preference order (default CPU).
    input_size: (W, H) when the model's input shape is dynamic; otherwise read from the model.
    mean/std: per-channel normalization in the model's channel order (`rgb=True`: RGB, else BGR), 0-255 scale.
    bbox_scale: how much the person box is enlarged before cropping (context for the model).
    foot_indices: model indices of (L heel, L toe, R heel, R toe); default from the keypoint count, else none.
    min_score: mean COCO-17 confidence below which there is no person (and the next crop is the full frame).
    """

    name = "onnx-topdown"

    def __init__(self, model_path: str | Path, *, providers: Sequence[str] | None = None,
                 input_size: tuple[int, int] | None = None, mean: Sequence[float] = IMAGENET_MEAN_RGB,
                 std: Sequence[float] = IMAGENET_STD_RGB, rgb: bool = True, bbox_scale: float = 1.25,
                 foot_indices: tuple[int, int, int, int] | None = None, min_score: float = 0.3,
                 conf_threshold: float = 0.3) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX pose model not found: {path}")
        if bbox_scale <= 0:
            raise ValueError(f"bbox_scale must be > 0, got {bbox_scale}")
        self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{path}: expected one (1, 3, H, W) image input, got {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if input_size is None:
            if not all(isinstance(d, int) for d in shape[2:]):
                raise ValueError(f"{path}: input shape {shape} is dynamic; pass input_size=(W, H)")
            input_size = (int(shape[3]), int(shape[2]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.outputs = [o.name for o in self.session.get_outputs()]
        if len(self.outputs) not in (1, 2):
            raise ValueError(f"{path}: expected 1 (heatmaps) or 2 (SimCC x, y) outputs, got {self.outputs}")
        self._mean = np.asarray(mean, np.float32)
        self._inv_std = 1.0 / np.asarray(std, np.float32)
        self.rgb, self.bbox_scale = rgb, float(bbox_scale)
        self.foot_indices = foot_indices
        self.min_score, self.conf_threshold = float(min_score), float(conf_threshold)
        self._next_box: np.ndarray | None = None

    def _preprocess(self, image: np.ndarray, affine: np.ndarray) -> np.ndarray:
        crop = cv2.warpAffine(image, affine, self.input_size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if self.rgb:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        x = (crop.astype(np.float32) - self._mean) * self._inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # (1, 3, H, W)

    def _decode(self, outputs: list[np.ndarray]) -> np.ndarray:
        """Raw outputs -> (K, 3) input pixels + confidence."""
        if len(outputs) == 2:
            sx, sy = outputs[0][0], outputs[1][0]
            if sx.ndim != 2 or sy.ndim != 2 or sx.shape[0] != sy.shape[0]:
                raise ValueError(f"SimCC outputs must be (1, K, Lx) and (1, K, Ly), got {outputs[0].shape}, "
                                 f"{outputs[1].shape}")
            return decode_simcc(sx, sy, self.input_size)
        hm = outputs[0]
        if hm.ndim != 4 or hm.shape[0] != 1:
            raise ValueError(f"heatmap output must be (1, K, Hh, Wh), got {hm.shape}")
        return decode_heatmaps(hm[0], self.input_size)

    def _to_keypoints(self, kp_model: np.ndarray) -> np.ndarray:
        """(K, 3) model keypoints -> (21, 3): COCO-17 first, feet from the layout or confidence 0."""
        k = kp_model.shape[0]
        coco = len(COCO17_NAMES)
        if k < coco:
            raise ValueError(f"pose model returns {k} keypoints; need at least the {coco} COCO body keypoints")
        out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        out[:coco] = kp_model[:coco]
        feet = self.foot_indices if self.foot_indices is not None else FOOT_INDICES_BY_LAYOUT.get(k)
        if feet is not None:
            out[coco:] = kp_model[list(feet)]
        return out

    def detect(self, image: np.ndarray, bbox: np.ndarray | None = None) -> list[Detection]:
        """image (H, W, 3) BGR uint8; bbox (4,) x0, y0, x1, y1 of the person (None: previous frame's, else full)."""
        check_image(image)
        h, w = image.shape[:2]
        if bbox is not None:
            box, scale = np.asarray(bbox, np.float64), self.bbox_scale
        elif self._next_box is not None:
            box, scale = self._next_box, self.bbox_scale
        else:
            box, scale = np.array([0.0, 0.0, w - 1.0, h - 1.0]), 1.0
        affine = crop_transform(box, self.input_size, scale)
        outputs = self.session.run(self.outputs, {self.input_name: self._preprocess(image, affine)})
        kp_in = self._decode(outputs)
        inv = cv2.invertAffineTransform(affine)
        xy = kp_in[:, :2] @ inv[:, :2].T + inv[:, 2]
        keypoints = self._to_keypoints(np.concatenate([xy, kp_in[:, 2:]], axis=1).astype(np.float32))
        score = float(keypoints[:17, 2].mean())
        square = bbox_from_keypoints(keypoints, conf_threshold=self.conf_threshold, scale=1.0)
        if score < self.min_score or not np.isfinite(square).all():
            self._next_box = None
            return []
        cx, cy, size = (float(v) for v in square)
        self._next_box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
        return [Detection(keypoints, bbox_of_visible(keypoints, self.conf_threshold), score)]

    def reset(self) -> None:
        self._next_box = None
