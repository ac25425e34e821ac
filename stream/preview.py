"""Optional live preview: the frame with the detected 2D skeleton, the model's reprojected skeleton and a status line.

The loop is headless by default; a preview is opt-in (``--preview``) because a GUI window costs a few ms per frame
and may not exist at all (servers, containers). Without a display the preview warns once and turns itself off:
the loop never fails because nobody can watch it.
"""
from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

from mocap.camera import CONF_THRESHOLD
from mocap.skeleton import KEYPOINT_EDGES

log = logging.getLogger(__name__)

DETECTED_BGR = (60, 220, 60)     # detector keypoints: green
MODEL_BGR = (40, 120, 255)       # model keypoints reprojected from kp3d_cam: orange
_ESC, _Q = 27, ord("q")


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(np.clip(p[0], -1e5, 1e5)))), int(round(float(np.clip(p[1], -1e5, 1e5))))


def _draw_skeleton(image: np.ndarray, xy: np.ndarray, ok: np.ndarray, colour: tuple[int, int, int],
                   thickness: int) -> None:
    for a, b in KEYPOINT_EDGES:
        if ok[a] and ok[b]:
            cv2.line(image, _pt(xy[a]), _pt(xy[b]), colour, thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, _pt(xy[j]), thickness + 1, colour, -1, cv2.LINE_AA)


def draw_overlay(
    image: np.ndarray,
    kp2d: np.ndarray | None = None,
    kp_model: np.ndarray | None = None,
    text: str = "",
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) BGR uint8 with the overlays drawn.

    kp2d: (21, 3) detected pixels + confidence (points below the confidence threshold are not drawn);
    kp_model: (21, 2) model keypoints in pixels (NaN = behind the camera, not drawn); text: the status line.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preview image must be (H, W, 3) BGR, got {image.shape}")
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    if kp2d is not None:
        kp = np.asarray(kp2d, dtype=np.float64)
        ok = (kp[:, 2] >= CONF_THRESHOLD) & np.isfinite(kp[:, :2]).all(axis=1)
        _draw_skeleton(out, kp[:, :2], ok, DETECTED_BGR, thickness)
    if kp_model is not None:
        xy = np.asarray(kp_model, dtype=np.float64)
        _draw_skeleton(out, xy, np.isfinite(xy).all(axis=1), MODEL_BGR, thickness)
    if text:
        scale = max(0.5, out.shape[0] / 900)
        org = (10, int(30 * scale))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3 * thickness, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def display_available() -> bool:
    """False where a window certainly cannot open (Linux without X11/Wayland); elsewhere opening decides."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Preview:
    """An OpenCV window; ``show`` returns False when the user closes it (q / Esc / window closed).

    max_width: frames wider than this are shown downscaled (the overlay is drawn at full resolution first).
    """

    def __init__(self, title: str = "livemocap", max_width: int = 1280) -> None:
        self.title = title
        self.max_width = max_width
        self.enabled = True
        self._opened = False

    def _disable(self, reason: str) -> None:
        if self.enabled:
            log.warning("preview disabled: %s; continuing without a window", reason)
        self.enabled = False

    def show(self, image: np.ndarray | None, kp2d: np.ndarray | None = None, kp_model: np.ndarray | None = None,
             text: str = "", size: tuple[int, int] | None = None) -> bool:
        """Draw and display one frame (a grey canvas of ``size`` (W, H) when image is None); True = keep going."""
        if not self.enabled:
            return True
        if not self._opened and not display_available():
            self._disable("no display (DISPLAY / WAYLAND_DISPLAY unset)")
            return True
        if image is None:
            w, h = size if size and size[0] > 0 else (640, 480)
            image = np.full((h, w, 3), 90, np.uint8)
        canvas = draw_overlay(image, kp2d, kp_model, text)
        if canvas.shape[1] > self.max_width:
            h = round(canvas.shape[0] * self.max_width / canvas.shape[1])
            canvas = cv2.resize(canvas, (self.max_width, h), interpolation=cv2.INTER_AREA)
        try:
            if not self._opened:
                cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
                self._opened = True
            cv2.imshow(self.title, canvas)
            key = cv2.waitKey(1) & 0xFF
            closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error as exc:
            self._disable(f"OpenCV cannot open a window ({str(exc).strip().splitlines()[-1]})")
            return True
        return not (key in (_ESC, _Q) or closed)

    def close(self) -> None:
        """Destroy the window if one was opened; idempotent."""
        if self._opened:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
            self._opened = False


__all__ = ["Preview", "display_available", "draw_overlay"]
