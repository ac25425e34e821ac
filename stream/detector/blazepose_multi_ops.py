"""The numeric steps around BlazePose's two networks, as pure numpy (no interpreter, testable on made-up tensors).

The parameters are the ones of the pose graph that ships in the mediapipe 0.10.21 wheel
(`mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb`, subgraphs expanded): a 224x224 letterboxed
detector input in [-1, 1] with 2254 SSD anchors (strides 8, 16, 32, 32, 32, two anchors per layer, fixed
size), 12 regression values per anchor (box centre offset, box size, then 4 keypoints: mid-hip, a point on
the full-body circle, mid-shoulder, a point on the upper-body circle), a sigmoid score kept above 0.5, weighted
non-maximum suppression at IoU 0.3. A person's crop is a rotated square: centred on the mid-hip, side 2.5x
the hip-to-circle distance, turned so the body axis points up. The landmark network sees that crop at
256x256 in [0, 1] and returns 39 points (33 landmarks + 2 auxiliary ones that give the next frame's crop +
4 unused), each (x, y, z, visibility logit, presence logit) in input pixels, plus a presence score and
64x64 heatmaps that refine each point (a 7x7 confidence-weighted mean, where the peak is >= 0.5).

Coordinates: image pixels are continuous with pixel i covering [i, i + 1) (MediaPipe's normalized convention
times the image size); ``cv2.warpAffine`` works on pixel centres, so `crop_affine` shifts by half a pixel.
Rotation is in radians, positive turns the crop clockwise on screen (image y points down).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DETECTOR_INPUT = 224
LANDMARK_INPUT = 256
NUM_ANCHORS = 2254
NUM_LANDMARKS = 39            # 33 pose landmarks + 2 auxiliary (crop centre, crop scale point) + 4 unused
POSE_LANDMARKS = 33
ROI_SCALE = 1.25              # crop side = 2 * ROI_SCALE * |centre - scale point|
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5


def ssd_anchor_centres(input_size: int = DETECTOR_INPUT, strides: tuple[int, ...] = (8, 16, 32, 32, 32),
                       anchors_per_layer: int = 2, offset: float = 0.5) -> np.ndarray:
    """(A, 2) anchor centres (x, y) normalized to the detector input, in the network's output order.

    Consecutive layers with the same stride share one feature map, so its cells carry all their anchors
    (here 2 per layer: the layer's scale and the interpolated one); sizes are fixed (1), so only centres matter.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = anchors_per_layer * (j - i)
        side = math.ceil(input_size / strides[i])
        ys, xs = np.meshgrid((np.arange(side) + offset) / side, (np.arange(side) + offset) / side, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


@dataclass
class PersonBox:
    """One detector hit in image pixels: box (4,) x0, y0, x1, y1; keypoints (4, 2); score in (0, 1)."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


@dataclass(frozen=True)
class Letterbox:
    """The image resized to (width, height) pixels and pasted at (pad_x, pad_y) into the square input."""

    width: int
    height: int
    pad_x: int
    pad_y: int
    scale_x: float
    scale_y: float

    def to_image(self, points_norm: np.ndarray, size: int = DETECTOR_INPUT) -> np.ndarray:
        """(..., 2) points normalized to the square input -> (..., 2) image pixels."""
        p = np.asarray(points_norm, np.float64) * size
        return np.stack([(p[..., 0] - self.pad_x) / self.scale_x, (p[..., 1] - self.pad_y) / self.scale_y], -1)


def letterbox(width: int, height: int, size: int = DETECTOR_INPUT) -> Letterbox:
    """Fit a width x height image into a size x size square keeping its aspect, centred (whole-pixel pads)."""
    scale = size / max(width, height)
    w, h = max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))
    return Letterbox(w, h, (size - w) // 2, (size - h) // 2, w / width, h / height)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, box: Letterbox,
                      min_score: float = 0.5, iou_threshold: float = 0.3) -> list[PersonBox]:
    """raw_boxes (A, 12), raw_scores (A,) or (A, 1) logits, anchors (A, 2), the input's letterbox -> people in
    image pixels, best first."""
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(-1, 12)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(-1), -100.0, 100.0)
    if raw_boxes.shape[0] != anchors.shape[0] or logits.shape[0] != anchors.shape[0]:
        raise ValueError(f"detector output has {raw_boxes.shape[0]} boxes / {logits.shape[0]} scores, "
                         f"expected {anchors.shape[0]}")
    scores = sigmoid(logits)
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    reg = raw_boxes[keep] / DETECTOR_INPUT
    centre = reg[:, :2] + anchors[keep]
    half = reg[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)              # normalized letterboxed input
    kps = reg[:, 4:12].reshape(-1, 4, 2) + anchors[keep][:, None, :]
    merged = weighted_nms(boxes, kps, scores[keep], iou_threshold)
    return [PersonBox(box.to_image(b.reshape(2, 2)).reshape(4), box.to_image(kp), float(score))
            for b, kp, score in merged]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) x0, y0, x1, y1 box with each of (N, 4)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
                 ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Weighted NMS: the best box absorbs every box overlapping it by more than `iou_threshold`, and the
    result is their score-weighted mean (box and keypoints) with the best score. boxes (N, 4), keypoints (N, K, 2)."""
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out = []
    while remaining.size:
        best = remaining[0]
        iou = box_iou(boxes[best], boxes[remaining])
        group = remaining[iou > iou_threshold]
        if group.size == 0:  # degenerate (zero-area) best box: keep it alone
            group = remaining[:1]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kp, float(scores[best])))
        remaining = remaining[~np.isin(remaining, group)]
    return out


@dataclass(frozen=True)
class Roi:
    """A rotated square crop of the image: centre (2,) pixels, side pixels, rotation radians."""

    centre: tuple[float, float]
    side: float
    rotation: float

    def box(self) -> np.ndarray:
        """(4,) axis-aligned x0, y0, x1, y1 around the rotated square."""
        half = self.side / 2.0 * (abs(math.cos(self.rotation)) + abs(math.sin(self.rotation)))
        cx, cy = self.centre
        return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def turned(roi: Roi, angle: float) -> Roi:
    """roi turned by `angle` radians about its centre (rotation kept in [-pi, pi)).

    Why: a crop cut at the turned rotation shows the person turned by -angle, and `crop_to_image` of that ROI
    maps the landmark network's points back to the same image pixels, so a retry at another angle needs no
    other bookkeeping."""
    rotation = roi.rotation + angle
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    return Roi(roi.centre, roi.side, rotation)


def roi_from_points(centre: np.ndarray, scale_point: np.ndarray, scale: float = ROI_SCALE) -> Roi | None:
    """The crop MediaPipe derives from two points (detector keypoints 0/1, or auxiliary landmarks 33/34):
    centred on `centre`, side 2 * scale * distance, rotated so that centre -> scale_point points up."""
    c = np.asarray(centre, np.float64)
    p = np.asarray(scale_point, np.float64)
    dx, dy = p - c
    dist = math.hypot(dx, dy)
    if not (np.isfinite([dx, dy]).all() and dist > 1e-3):
        return None
    rotation = math.pi / 2 - math.atan2(-dy, dx)
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))  # to [-pi, pi)
    return Roi((float(c[0]), float(c[1])), 2.0 * scale * dist, rotation)


def crop_affine(roi: Roi, size: int = LANDMARK_INPUT) -> np.ndarray:
    """(2, 3) map crop pixel index -> image pixel index (``cv2.warpAffine(..., WARP_INVERSE_MAP)``).

    Continuous crop point u in [0, size)^2 maps to the image point centre + R(rotation) (u / size - 1/2) side.
    """
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    rot = np.array([[c, -s], [s, c]])
    a = rot * (roi.side / size)
    b = np.asarray(roi.centre) - rot @ np.array([roi.side / 2.0, roi.side / 2.0])
    shift = a @ np.array([0.5, 0.5]) + b - 0.5  # both sides: pixel index = continuous coordinate - 0.5
    return np.concatenate([a, shift[:, None]], axis=1)


def crop_to_image(points_norm: np.ndarray, roi: Roi) -> np.ndarray:
    """(..., 2) points normalized to the crop ([0, 1], continuous) -> (..., 2) image pixels (continuous)."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    local = (np.asarray(points_norm, np.float64) - 0.5) * roi.side
    x = c * local[..., 0] - s * local[..., 1] + roi.centre[0]
    y = s * local[..., 0] + c * local[..., 1] + roi.centre[1]
    return np.stack([x, y], axis=-1)


def refine_from_heatmap(xy_norm: np.ndarray, heatmap_logits: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """xy_norm (L, 2) crop-normalized points, heatmap_logits (Hh, Wh, L) -> refined (L, 2).

    Each point moves to the confidence-weighted mean cell (cell index / heatmap size) of the kernel window
    around it, where the window's peak confidence reaches `min_confidence`; points off the heatmap stay.
    All windows are gathered at once (L x kernel x kernel values), so the heatmaps may be a view into the
    interpreter: nothing else of them is read or copied."""
    hh, wh, n = heatmap_logits.shape
    if n != xy_norm.shape[0]:
        raise ValueError(f"heatmap has {n} channels for {xy_norm.shape[0]} landmarks")
    out = np.array(xy_norm, np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        col = np.floor(out[:, 0] * wh)
        row = np.floor(out[:, 1] * hh)
    on = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < wh) & (row >= 0) & (row < hh)
    if not on.any():
        return out
    idx = np.flatnonzero(on)
    offsets = np.arange(kernel) - (kernel - 1) // 2
    rows = row[idx].astype(int)[:, None] + offsets                                   # (m, k)
    cols = col[idx].astype(int)[:, None] + offsets
    inside = ((rows >= 0) & (rows < hh))[:, :, None] & ((cols >= 0) & (cols < wh))[:, None, :]   # (m, k, k)
    logits = heatmap_logits[np.clip(rows, 0, hh - 1)[:, :, None], np.clip(cols, 0, wh - 1)[:, None, :],
                            idx[:, None, None]]
    conf = np.where(inside, sigmoid(logits.astype(np.float64)), 0.0)
    total = conf.sum(axis=(1, 2))
    good = (total > 0) & (conf.max(axis=(1, 2)) >= min_confidence)
    safe = np.where(good, total, 1.0)
    mean_col = (conf * cols[:, None, :]).sum(axis=(1, 2)) / safe / wh
    mean_row = (conf * rows[:, :, None]).sum(axis=(1, 2)) / safe / hh
    out[idx[good]] = np.stack([mean_col, mean_row], axis=1)[good]
    return out


@dataclass
class Landmarks:
    """One person's landmark-network answer in image pixels.

    points: (39, 2) pixels; visibility, presence: (39,) in [0, 1]; score: the network's pose presence score.
    """

    points: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    score: float

    def next_roi(self) -> Roi | None:
        """The next frame's crop, from the two auxiliary landmarks (33: centre, 34: scale point)."""
        return roi_from_points(self.points[POSE_LANDMARKS], self.points[POSE_LANDMARKS + 1])


def decode_landmarks(raw: np.ndarray, presence_score: float, heatmap_logits: np.ndarray | None, roi: Roi,
                     input_size: int = LANDMARK_INPUT) -> Landmarks:
    """raw (195,) = 39 x (x, y, z, visibility logit, presence logit) in input pixels -> image-pixel landmarks."""
    values = np.asarray(raw, np.float64).reshape(NUM_LANDMARKS, 5)
    xy = values[:, :2] / input_size
    if heatmap_logits is not None:
        xy = refine_from_heatmap(xy, heatmap_logits)
    return Landmarks(crop_to_image(xy, roi), sigmoid(values[:, 3]), sigmoid(values[:, 4]), float(presence_score))


__all__ = ["DETECTOR_INPUT", "LANDMARK_INPUT", "Landmarks", "Letterbox", "PersonBox", "Roi", "crop_affine",
           "crop_to_image", "decode_detections", "decode_landmarks", "letterbox", "refine_from_heatmap",
           "roi_from_points", "sigmoid", "ssd_anchor_centres", "turned", "weighted_nms"]
