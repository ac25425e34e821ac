"""BlazePose (MediaPipe Pose, "full" model) as a 21-keypoint detector; fully offline.

Why BlazePose: its 33 landmarks include heels and toes, which the contact-aware model needs, and the "full"
(model_complexity=1) weights ship inside the mediapipe wheel, so nothing is downloaded at run time
(complexity 0/2 would fetch files, hence only 1 is offered). It runs in tracking mode: the person detector
runs only when the landmark model loses the person, which is what makes it fast enough for live use.

Mapping (BlazePose index -> ours): nose 0, eyes 2/5, ears 7/8, shoulders 11/12, elbows 13/14, wrists 15/16,
hips 23/24, knees 25/26, ankles 27/28, heels 29/30, toes = foot_index 31/32. BlazePose's "left" is the person's
left, as in COCO. Confidence = landmark `visibility` (MediaPipe's estimate that the point is in view and not
occluded), clipped to [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np

from stream.detector.base import Detection, Detector, bbox_of_visible, check_image

#: BlazePose landmark index for each of our 21 keypoints (COCO-17 then L heel, L toe, R heel, R toe).
BLAZEPOSE_TO_KEYPOINTS: tuple[int, ...] = (
    0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28, 29, 31, 30, 32,
)
_INSTALL_HINT = 'MediaPipePoseDetector needs mediapipe: pip install "livemocap[live]"'


def _import_pose_solution():  # noqa: ANN202 - mediapipe has no type stubs
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return mp_pose


class MediaPipePoseDetector(Detector):
    """Single-person BlazePose-full detector.

    input_width: frames wider than this are downscaled before inference (landmarks are normalized, so they map
        back to the original pixels exactly); None keeps the full size. 640 is both faster and as accurate for
        a person who fills a good part of the frame.
    min_score: a detection whose mean COCO-17 confidence is below this is dropped (returns []).
    smooth_landmarks: MediaPipe's own causal landmark filter (reduces jitter, adds a little lag).
    """

    name = "mediapipe-blazepose-full"

    def __init__(self, input_width: int | None = 640, *, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, smooth_landmarks: bool = True, min_score: float = 0.3) -> None:
        if input_width is not None and input_width < 64:
            raise ValueError(f"input_width must be >= 64 or None, got {input_width}")
        self._mp_pose = _import_pose_solution()
        self.input_width = input_width
        self.min_score = float(min_score)
        self._options = dict(
            static_image_mode=False, model_complexity=1, smooth_landmarks=smooth_landmarks,
            enable_segmentation=False, min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._pose = self._mp_pose.Pose(**self._options)
        self._index = np.asarray(BLAZEPOSE_TO_KEYPOINTS)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """image: (H, W, 3) BGR uint8 -> [] or [the one person BlazePose tracks]."""
        if self._pose is None:
            raise RuntimeError("MediaPipePoseDetector is closed")
        check_image(image)
        h, w = image.shape[:2]
        small = image
        if self.input_width is not None and w > self.input_width:
            small = cv2.resize(image, (self.input_width, max(1, round(h * self.input_width / w))),
                               interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return []
        lm = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark], dtype=np.float32)
        kp = lm[self._index]  # (21, 3) normalized x, y + visibility
        kp[:, 0] *= w
        kp[:, 1] *= h
        kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)
        score = float(kp[:17, 2].mean())
        if score < self.min_score:
            return []
        bbox = bbox_of_visible(kp, 0.5)
        if not np.isfinite(bbox).all():
            bbox = bbox_of_visible(kp, 0.0)
        return [Detection(kp, bbox, score)]

    def reset(self) -> None:
        """Drop the tracked person (the next frame runs the person detector again)."""
        if self._pose is not None:
            self._pose.close()
        self._pose = self._mp_pose.Pose(**self._options)

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None
