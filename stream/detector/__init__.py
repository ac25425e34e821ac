"""2D keypoint detectors: one BGR image -> people's 21 keypoints (COCO-17 + 4 foot points), pixels + confidence."""
from __future__ import annotations

from typing import Any

from stream.detector.base import Detection, Detector
from stream.detector.mediapipe_pose import MediaPipePoseDetector
from stream.detector.onnx_topdown import OnnxTopDownDetector

__all__ = ["Detection", "Detector", "MediaPipePoseDetector", "OnnxTopDownDetector", "create_detector"]


def create_detector(name: str = "mediapipe", **kwargs: Any) -> Detector:
    """"mediapipe" (default, offline single-person BlazePose), "blazepose-multi" (the same weights for
    `max_people` people, on LiteRT) or a path to a top-down ".onnx" pose model; kwargs go to it."""
    if name == "mediapipe":
        return MediaPipePoseDetector(**kwargs)
    if name == "blazepose-multi":
        from stream.detector.blazepose_multi import BlazePoseMultiDetector  # needs ai-edge-litert

        return BlazePoseMultiDetector(**kwargs)
    if name.endswith(".onnx"):
        return OnnxTopDownDetector(name, **kwargs)
    raise ValueError(f"unknown detector {name!r}: use 'mediapipe', 'blazepose-multi' or a path to a top-down "
                     ".onnx pose model")
