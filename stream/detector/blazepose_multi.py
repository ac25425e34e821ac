"""Multi-person BlazePose: the two networks of the mediapipe wheel, run by LiteRT for up to N people at once.

Why not `mp.solutions.pose`: it follows exactly one person. The weights it wraps work for any number, so this
detector runs them itself, in BlazePose's tracking mode for every person: each person ("slot") has a crop
that the landmark network's two auxiliary points carry from frame to frame, and the person detector
(`pose_detection.tflite`, SSD over the whole letterboxed frame) runs only when a slot's crop was lost on the
previous frame, when there is no slot, or every `redetect_every` frames while fewer than `max_people` are
followed (a newcomer must be found; 0 turns that off). After a loss it runs on each of the next
`redetect_every` frames, or until as many people are followed as before the loss (searching on would only
find the people already followed, or ghosts). A detection whose crop coincides with a followed person's is
not a new person; two slots that converge onto one person (crossings) are merged into the older. A followed
person whose crop scores too low is first retried on the crop turned by a few fixed angles (`_rescue`: a
backflip outturns a crop cut at the last frame's angle, and the person detector misses people upside down);
one so rescued is followed but not published until upright again (`_held`).
Numerics (anchors, decoding, crops, heatmap refinement): `stream/detector/blazepose_multi_ops.py`.

Runtime: LiteRT (`ai-edge-litert`, XNNPACK on CPU). tflite2onnx 0.4.1 cannot convert either model (the
detector uses the DENSIFY op, the landmark model's PAD fails), so onnxruntime is not an option here.
What it costs (BENCHMARKS.md, issue 13): the landmark network is loaded without its unused segmentation
branch (`stream.detector.tflite_prune`: -35 % CPU per crop, the same landmarks); inputs are written into the
interpreter's tensors in place, and the heatmap refinement reads only the 39 windows it needs. The landmark
network (~12 ms of CPU per person on the shared 2-core machine) is then most of the cost; the wheel ships
only its "full" variant (lite and heavy are downloads). Each crop is cut from the full-size frame (as MediaPipe
does); the frame is shrunk to `input_width` only for the person detector, on the frames it runs
(`full_res_crops=False`: every frame shrunk, INTER_AREA as the single-person path, crops cut from that).

Output: one `Detection` per followed person (`.slot` = the crop's id, a hint for the tracker, not an identity),
21 keypoints mapped as in `stream/detector/mediapipe_pose.py`, confidence = landmark visibility. With
`smooth=True` landmarks and visibilities are filtered as MediaPipe's own graph does (One-Euro, min_cutoff
0.05, beta 80 in crop sizes per second; visibility low-pass 0.1), so the output matches the single-person path.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.detector.base import Detection, Detector, bbox_of_visible, check_image
from stream.detector.blazepose_multi_ops import (
    DETECTOR_INPUT, LANDMARK_INPUT, POSE_LANDMARKS, Landmarks, Letterbox, Roi, crop_affine, decode_detections,
    decode_landmarks, letterbox, roi_from_points, ssd_anchor_centres, turned,
)
from stream.detector.mediapipe_pose import BLAZEPOSE_TO_KEYPOINTS
from stream.detector.tflite_prune import prune_outputs
from stream.stage_clock import StageClock
from mocap.smoothing import OneEuroFilter

DETECTOR_MODEL = "modules/pose_detection/pose_detection.tflite"
LANDMARK_MODEL = "modules/pose_landmark/pose_landmark_full.tflite"
log = logging.getLogger(__name__)

_HEATMAPS = (1, 64, 64, 39)
#: Turns (degrees) at which a lost person's crop is retried before the person counts as lost (`_rescue`).
RESCUE_TURNS: tuple[float, ...] = (30.0, 60.0, 90.0, -30.0, -60.0, 120.0)
#: A rescued crop within this of vertical (radians) is upright again: its person is published again (`_held`).
UPRIGHT = math.radians(30.0)
#: Longest a rescued person is held back (seconds): a flip is over by then (sports2d: 0.5 s); someone who stays
#: down (lying after a fall) is published again rather than followed unseen.
MAX_HELD_S = 1.0
#: Landmark-network outputs the detector never reads (segmentation mask, world landmarks): pruned at load.
UNUSED_LANDMARK_OUTPUTS: tuple[tuple[int, ...], ...] = ((1, 256, 256, 1), (1, 117))
_INSTALL_HINT = ('BlazePoseMultiDetector needs mediapipe (for its weights) and ai-edge-litert: '
                 'pip install "livemocap[live]"')


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """image shrunk to size (W, H): area-averaged by the largest whole factor, then bilinear for the rest (< 2x).

    Why not one INTER_AREA resize: at a fractional factor (1768 -> 640 px is 2.76x) OpenCV's area resampling
    costs 7-15 ms of CPU per frame, at a whole factor ~1 ms; the bilinear remainder aliases little below 2x.
    """
    h, w = image.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if image.shape[1] == size[0] and image.shape[0] == size[1]:
            return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def loop_threads(pipelined: bool) -> int:
    """XNNPACK threads per network for a live loop: 2 when the detector runs on the loop's own thread and the
    machine has a second core, which is otherwise idle while it waits for the detector (quiet 2-core machine:
    detect p50 21.5 -> 14.4 ms on sports2d, 13.0 -> 8.6 on Pose2Sim; BENCHMARKS.md, issue 13); 1 when
    pipelined, where the model + publish thread needs that core."""
    return 1 if pipelined or (os.cpu_count() or 1) < 2 else 2


def mediapipe_model(relative: str) -> Path:
    """Path of a .tflite file inside the installed mediapipe wheel (without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the mediapipe wheel (mediapipe==0.10.21 ships it)")
    return path


class TfliteModel:
    """One .tflite network on LiteRT's CPU interpreter: float32 NHWC in, outputs keyed by their shape.

    `run_image` writes a uint8 image straight into the interpreter's input tensor (scaled), and `output`
    reads an output in place: no per-call float copies of the 0.6-0.8 MB input or the 0.6 MB
    landmark heatmaps. Views of the interpreter's tensors must be dropped before the next invoke (LiteRT
    refuses to run while one is held), so `output(copy=False)` is for reading within one call only.
    """

    def __init__(self, path: Path, num_threads: int = 1, drop_outputs: tuple[tuple[int, ...], ...] = ()) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
        content = None
        if drop_outputs:
            try:
                content = prune_outputs(path, drop_outputs)
            except Exception as exc:  # an older wheel without the schema module: run the whole model
                log.warning("%s: running every output (pruning failed: %s: %s)", path.name, type(exc).__name__, exc)
        self.interpreter = (Interpreter(model_content=content, num_threads=int(num_threads)) if content is not None
                            else Interpreter(model_path=str(path), num_threads=int(num_threads)))
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()
        if len(inp) != 1:
            raise ValueError(f"{path}: expected one input, got {len(inp)}")
        self._input = inp[0]["index"]
        self.input_shape = tuple(int(d) for d in inp[0]["shape"])
        self._outputs = [(o["index"], tuple(int(d) for d in o["shape"])) for o in self.interpreter.get_output_details()]

        self._by_shape = {shape: index for index, shape in self._outputs}

    def __call__(self, x: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
        """x: input_shape float32 -> {output shape: array} (every output of these models has its own shape)."""
        self.interpreter.set_tensor(self._input, x)
        self.interpreter.invoke()
        return {shape: self.interpreter.get_tensor(index) for index, shape in self._outputs}

    def run_image(self, image: np.ndarray, scale: float, offset: float = 0.0) -> None:
        """Invoke on image (H, W, C) uint8 (C-contiguous) * scale + offset (float32, written in place)."""
        inp = self.interpreter.tensor(self._input)()
        np.multiply(image[None], np.float32(scale), out=inp, dtype=np.float32)
        if offset:
            inp += np.float32(offset)
        del inp
        self.interpreter.invoke()

    def output(self, shape: tuple[int, ...], copy: bool = True) -> np.ndarray:
        """The last invoke's output of this shape (a view into the interpreter when copy=False)."""
        index = self._by_shape[shape]
        return self.interpreter.get_tensor(index) if copy else self.interpreter.tensor(index)()


@dataclass
class _Slot:
    """One followed person: the crop for the next frame and the filters of its landmarks."""

    slot: int
    roi: Roi
    age: int = 0
    points: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(0.05, 80.0, 1.0))
    aux: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(0.01, 10.0, 1.0))
    visibility: np.ndarray | None = None
    spin: float = 0.0  # the crop's last change of rotation (radians per frame): which way a rescue turns first
    rescued: bool = False  # kept by a turned retry and not yet upright again: followed but not published
    rescued_t: float = 0.0  # when that rescue happened (seconds, the detector's clock)


@dataclass
class CropDetection(Detection):
    """A Detection plus the id of the crop that produced it (stable while BlazePose follows that crop)."""

    slot: int = -1


class BlazePoseMultiDetector(Detector):
    """Up to `max_people` BlazePose-full people per frame.

    input_width: frames wider than this are downscaled first (INTER_AREA, like the single-person path);
        keypoints are returned in the original pixels. None keeps the full size.
    min_detection_confidence: person detector score threshold; min_tracking_confidence: landmark presence below
        which a crop is lost (MediaPipe's defaults, 0.5 each).
    redetect_every: frames between detector runs while fewer than max_people are followed (0 = only on loss).
    same_person: a detection (or a second slot) whose crop centre lies within this fraction of a followed
        crop's side, at a similar size, is the same person.
    smooth: MediaPipe's landmark / visibility filters; fps: clock for them when `detect` gets no `t`.
    num_threads: XNNPACK threads per network (the live loops pass `loop_threads`: 2 on their own thread, 1 pipelined).
    fast_resize: shrink frames by a whole-factor area average plus a bilinear remainder (`downscale`, 1-2 ms
        of CPU) instead of one fractional-factor INTER_AREA resize (the single-person path's: 4-7 ms on the
        calling thread plus as much on OpenCV's). Off by default: it moves landmarks by ~0.5-1 px, and on
        sports2d that was enough to let one 2-frame ghost track through (BENCHMARKS.md, issue 13).
    prune: load the landmark network without the outputs it never reads (`stream.detector.tflite_prune`:
        the segmentation mask; ~35 % less CPU per crop, the landmarks unchanged).
    full_res_crops: cut each person's 256-px crop straight from the full-size frame (one bilinear warp, as
        MediaPipe's own ImageToTensor does) and shrink the frame only on the frames the person detector runs.
        Why: the warp costs the same from any source size (~0.3 ms), while shrinking every frame to
        `input_width` costs 7-11 ms of CPU on 1768x994 / 1080x1920 video (BENCHMARKS.md, issue 13).
    rescue_turns: degrees at which a lost crop is retried (signed the way it last turned; () = never);
        rescue_min_age: frames a person must have been followed for that (a fresh detection may be a ghost).
    """

    name = "blazepose-multi-full"

    def __init__(self, max_people: int = 4, *, input_width: int | None = 640, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, redetect_every: int = 10, same_person: float = 0.25,
                 smooth: bool = True, heatmap_refine: bool = True, num_threads: int = 1, fps: float = 30.0,
                 detector_model: str | Path | None = None, landmark_model: str | Path | None = None,
                 prune: bool = True, fast_resize: bool = False, full_res_crops: bool = True,
                 rescue_turns: tuple[float, ...] = RESCUE_TURNS, rescue_min_age: int = 5) -> None:
        if max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {max_people}")
        if input_width is not None and input_width < 64:
            raise ValueError(f"input_width must be >= 64 or None, got {input_width}")
        if redetect_every < 0 or fps <= 0 or num_threads < 1:
            raise ValueError("need redetect_every >= 0, fps > 0, num_threads >= 1")
        self.max_people, self.input_width = int(max_people), input_width
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.redetect_every, self.same_person, self.smooth = int(redetect_every), float(same_person), smooth
        self.heatmap_refine, self.fps, self.fast_resize = heatmap_refine, float(fps), fast_resize
        self.full_res_crops = full_res_crops
        self.rescue_turns = tuple(math.radians(float(a)) for a in rescue_turns)
        self.rescue_min_age = int(rescue_min_age)
        self._det = TfliteModel(Path(detector_model or mediapipe_model(DETECTOR_MODEL)), num_threads)
        self._lm = TfliteModel(Path(landmark_model or mediapipe_model(LANDMARK_MODEL)), num_threads,
                               UNUSED_LANDMARK_OUTPUTS if prune else ())
        if self._det.input_shape != (1, DETECTOR_INPUT, DETECTOR_INPUT, 3):
            raise ValueError(f"person detector input {self._det.input_shape}, expected (1, 224, 224, 3)")
        if self._lm.input_shape != (1, LANDMARK_INPUT, LANDMARK_INPUT, 3):
            raise ValueError(f"landmark model input {self._lm.input_shape}, expected (1, 256, 256, 3)")
        self._anchors = ssd_anchor_centres()
        outputs = [shape for _, shape in self._det._outputs]
        self._det_boxes = next(s for s in outputs if s[-1] == 12)
        self._det_scores = next(s for s in outputs if s[-1] == 1)
        self._heatmaps = heatmap_refine and _HEATMAPS in self._lm._by_shape
        self._letterbox: tuple[Letterbox, np.ndarray] | None = None
        self._crop = np.empty((LANDMARK_INPUT, LANDMARK_INPUT, 3), np.uint8)
        self._index = np.asarray(BLAZEPOSE_TO_KEYPOINTS)
        self._closed = False
        #: what the last `detect` did (benches read it): detector runs, crops run, people, and the thread-CPU ms
        #: of its parts ("cpu_ms": prepare = downscale + colour, person_detector, landmarks = every crop, post)
        self.last_info: dict[str, Any] = {}
        self.reset()

    # ------------------------------------------------------------------ public
    def reset(self) -> None:
        """Forget every followed person (the next frame runs the person detector)."""
        self._slots: list[_Slot] = []
        self._next_slot = 0
        self._frame = 0
        self._since_detect = 0
        self._search = 0  # frames left during which the detector runs on every frame (after a loss)
        self._search_for = 0  # people followed before that loss: the search ends once as many are again

    def close(self) -> None:
        self._closed = True

    def detect(self, image: np.ndarray, t: float | None = None) -> list[Detection]:
        """image (H, W, 3) BGR uint8, t capture time in seconds (None: frame count / fps) -> people, best first."""
        if self._closed:
            raise RuntimeError("BlazePoseMultiDetector is closed")
        check_image(image)
        t = self._frame / self.fps if t is None else float(t)
        self._frame += 1
        self.last_info = {}
        clock = StageClock()
        want = (not self._slots or self._search > 0
                or (len(self._slots) < self.max_people and self.redetect_every > 0
                    and self._since_detect >= self.redetect_every))
        # Slots live in the shrunk frame's pixels (size, factor); its pixels are needed only by the person
        # detector, and by the crops unless they are cut from the full-size frame.
        size, factor = self._shrunk_size(image)
        rgb = None if self.full_res_crops and not want else cv2.cvtColor(self._downscale(image, size),
                                                                           cv2.COLOR_BGR2RGB)
        crop_source, crop_scale = self._crop_source(image, factor) if self.full_res_crops else (rgb, 1.0)
        clock.stop("prepare")
        info: dict[str, Any] = {"detector_runs": 0, "crops": 0, "cpu_ms": clock.cpu}
        self._since_detect += 1
        clock.cpu["person_detector"] = 0.0  # every frame has the key: its mean is the cost per frame
        if want:
            assert rgb is not None
            clock.start()
            self._add_new_people(rgb)
            clock.stop("person_detector")
            info["detector_runs"] = 1
            self._since_detect = 0
            self._search = max(0, self._search - 1)
            if len(self._slots) >= self._search_for:  # as many people as before the loss: found again
                self._search = 0
        found: list[tuple[_Slot, Landmarks]] = []
        lost = False
        established = sum(s.age > 0 for s in self._slots)
        clock.start()
        for slot in self._slots:
            assert crop_source is not None
            lm = self._landmarks(crop_source, slot.roi, crop_scale, bgr=self.full_res_crops)
            info["crops"] += 1
            if lm.score < self.min_tracking_confidence and self._rescuable(slot, size):
                lm, tries = self._rescue(crop_source, slot, crop_scale, lm)
                if not slot.rescued and lm.score >= self.min_tracking_confidence:
                    slot.rescued, slot.rescued_t = True, t
                info["crops"] += tries
                info["rescue_crops"] = info.get("rescue_crops", 0) + tries
            if lm.score >= self.min_tracking_confidence:
                found.append((slot, lm))
            elif slot.age > 0:  # an established person's crop was lost (a fresh detection that fails is not)
                lost = True
        clock.stop("landmarks")
        clock.start()
        kept: list[_Slot] = []
        detections: list[Detection] = []
        for slot, lm in self._merge_duplicates(found, factor):
            det = self._finish(slot, lm, t, factor, size[0], size[1])
            if det is None:
                lost = lost or slot.age > 0
                continue
            kept.append(slot)
            if self._held(slot, t):
                continue
            detections.append(det)
        self._slots = kept
        if lost:  # look for them on the next frames (they may reappear anywhere), as BlazePose's tracking mode
            self._search = max(1, self.redetect_every)
            self._search_for = established
        info["people"] = len(detections)
        clock.stop("post")
        self.last_info = info
        return sorted(detections, key=lambda d: -d.score)

    # ------------------------------------------------------------------ stages
    def _shrunk_size(self, image: np.ndarray) -> tuple[tuple[int, int], float]:
        """-> ((W, H) of the frame the slots are tracked in, original pixels per such pixel)."""
        h, w = image.shape[:2]
        if self.input_width is None or w <= self.input_width:
            return (w, h), 1.0
        return (self.input_width, max(1, round(h * self.input_width / w))), w / self.input_width

    def _crop_source(self, image: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
        """-> (BGR frame the crops are cut from, its pixels per tracked-frame pixel): the full frame, area-averaged
        by the whole factor that keeps it at least `input_width` wide (a cheap anti-alias: ~1 ms, not 7-11)."""
        k = int(factor)
        if k < 2:
            return image, factor
        h, w = image.shape[:2]
        return cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA), factor * (w // k) / w

    def _downscale(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if size == (image.shape[1], image.shape[0]):
            return image
        if self.fast_resize:
            return downscale(image, size)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _add_new_people(self, image: np.ndarray) -> None:
        """Run the person detector; start a slot for each person no slot follows yet (best score first)."""
        h, w = image.shape[:2]
        box = letterbox(w, h)
        if self._letterbox is None or self._letterbox[0] != box:  # the padding stays black: allocate it once
            self._letterbox = (box, np.zeros((DETECTOR_INPUT, DETECTOR_INPUT, 3), np.uint8))
        inp = self._letterbox[1]
        cv2.resize(image, (box.width, box.height), dst=inp[box.pad_y:box.pad_y + box.height,
                                                           box.pad_x:box.pad_x + box.width],
                   interpolation=cv2.INTER_AREA)
        self._det.run_image(inp, 2.0 / 255.0, -1.0)
        boxes = self._det.output(self._det_boxes, copy=False)[0]
        scores = self._det.output(self._det_scores, copy=False)[0]
        people = decode_detections(boxes, scores, self._anchors, box, self.min_detection_confidence)
        del boxes, scores  # views into the interpreter: never held across an invoke
        for person in people:
            if len(self._slots) >= self.max_people:
                break
            roi = roi_from_points(person.keypoints[0], person.keypoints[1])
            if roi is None or roi.side < 8 or any(self._same(roi, s.roi) for s in self._slots):
                continue
            self._slots.append(_Slot(self._next_slot, roi))
            self._next_slot += 1

    def _same(self, a: Roi, b: Roi) -> bool:
        """Two crops of one person: centres within `same_person` of the larger side, sides within 1.6x."""
        d = float(np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]))
        big, small = max(a.side, b.side), min(a.side, b.side)
        return d < self.same_person * big and big < 1.6 * small

    def _landmarks(self, image: np.ndarray, roi: Roi, scale: float = 1.0, bgr: bool = False) -> Landmarks:
        """image: the RGB frame the slots live in (scale 1), or the full-size BGR frame (bgr) `scale` times
        larger (scale 1 too when the frame is no wider than `input_width`)."""
        if scale != 1.0:
            roi = Roi((roi.centre[0] * scale, roi.centre[1] * scale), roi.side * scale, roi.rotation)
        cv2.warpAffine(image, crop_affine(roi), (LANDMARK_INPUT, LANDMARK_INPUT), dst=self._crop,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=(0, 0, 0))
        if bgr:  # the full-size frame is BGR: convert the 256-px crop, not the frame
            cv2.cvtColor(self._crop, cv2.COLOR_BGR2RGB, dst=self._crop)
        self._lm.run_image(self._crop, 1.0 / 255.0)
        raw = self._lm.output((1, 195))[0]
        presence = float(self._lm.output((1, 1)).reshape(-1)[0])
        heat = self._lm.output(_HEATMAPS, copy=False)[0] if self._heatmaps else None
        lm = decode_landmarks(raw, presence, heat, roi)  # reads only the windows it needs from the heatmaps
        del heat
        if scale != 1.0:
            lm = replace(lm, points=lm.points / scale)
        return lm

    def _rescuable(self, slot: _Slot, size: tuple[int, int]) -> bool:
        """Worth retrying: followed for `rescue_min_age` frames (not a fresh, maybe ghost, detection) and the crop's
        centre well inside the frame (a person leaving the frame is lost, not turned: at the edge a turned crop
        is mostly black border, and what scores there is not a pose)."""
        margin = 0.25 * slot.roi.side
        cx, cy = slot.roi.centre
        return (bool(self.rescue_turns) and slot.age >= self.rescue_min_age
                and margin <= cx <= size[0] - margin and margin <= cy <= size[1] - margin)

    def _rescue(self, image: np.ndarray, slot: _Slot, scale: float, lm: Landmarks) -> tuple[Landmarks, int]:
        """An established person's crop scored below `min_tracking_confidence`: retry it turned by each of
        `rescue_turns` (first that scores enough wins) -> (landmarks, crops run).

        Why: the crop's angle comes from the previous frame's landmarks, so a body turning fast (a flip) is cut
        at a stale angle and the network gives up, while the person detector (trained on upright people) does
        not find them either (BENCHMARKS.md, issue 13). Bounded: at most len(rescue_turns) extra crops, only
        on a lost person's frame."""
        way = -1.0 if slot.spin < 0 else 1.0  # positive turns go the way the crop was turning
        for tries, turn in enumerate(self.rescue_turns, 1):
            retry = self._landmarks(image, turned(slot.roi, way * turn), scale, bgr=self.full_res_crops)
            if retry.score >= self.min_tracking_confidence:
                return retry, tries
        return lm, len(self.rescue_turns)

    @staticmethod
    def _held(slot: _Slot, t: float) -> bool:
        """A rescued person not yet upright again (crop turned more than `UPRIGHT` from vertical) is followed
        but not published: on sports2d the loop's reprojection error on the upside-down / sideways landmarks of
        the flip was 15-96 % of the box (2-8 % once upright), and a garbage pose is worse than a gap. At most
        `MAX_HELD_S` after the rescue: a person who stays down is published again."""
        if slot.rescued and (abs(slot.roi.rotation) <= UPRIGHT or t - slot.rescued_t > MAX_HELD_S):
            slot.rescued = False
        return slot.rescued

    def _merge_duplicates(self, found: list[tuple[_Slot, Landmarks]], factor: float
                          ) -> list[tuple[_Slot, Landmarks]]:
        """Two slots on one person (their crops converged, or a detection of a followed person's part):
        keep the older (lower id) one. Duplicate = same next crop, one keypoint box inside the other's, or most
        of one's keypoints on the other's."""
        keep: list[tuple[_Slot, Landmarks]] = []
        for slot, lm in sorted(found, key=lambda p: p[0].slot):
            if not any(self._duplicate(lm, other) for _, other in keep):
                keep.append((slot, lm))
        return keep

    def _duplicate(self, a: Landmarks, b: Landmarks) -> bool:
        ra, rb = a.next_roi(), b.next_roi()
        if ra is not None and rb is not None and self._same(ra, rb):
            return True
        pa, pb = a.points[self._index], b.points[self._index]
        va, vb = a.visibility[self._index] >= 0.5, b.visibility[self._index] >= 0.5
        if va.sum() < 2 or vb.sum() < 2:
            return False
        ba, bb = bbox_of_visible(np.c_[pa, va], 0.5), bbox_of_visible(np.c_[pb, vb], 0.5)
        inter = np.prod(np.clip(np.minimum(ba[2:], bb[2:]) - np.maximum(ba[:2], bb[:2]), 0.0, None))
        smaller = min(np.prod(ba[2:] - ba[:2]), np.prod(bb[2:] - bb[:2]))
        if smaller > 0 and inter / smaller > 0.85:  # one inside the other: a ghost of a part (or a full occlusion)
            return True
        size = max(float(np.ptp(pa[va], axis=0).max()), float(np.ptp(pb[vb], axis=0).max()), 1.0)
        d = np.linalg.norm(pa[va][:, None] - pb[vb][None], axis=-1)  # (Na, Nb) visible keypoints
        shared_a = float((d.min(axis=1) < 0.08 * size).mean())
        shared_b = float((d.min(axis=0) < 0.08 * size).mean())
        return max(shared_a, shared_b) > 0.6

    def _finish(self, slot: _Slot, lm: Landmarks, t: float, factor: float, w: int, h: int) -> CropDetection | None:
        """Smooth, set the next crop, map to the 21 keypoints in original pixels; None if the crop degenerates."""
        pts = lm.points[: POSE_LANDMARKS + 2]
        vis = lm.visibility[:POSE_LANDMARKS]
        if self.smooth:
            span = np.ptp(pts[:POSE_LANDMARKS], axis=0)
            scale = 1.0 / max(float(span.mean()), 1.0)
            body = self._filtered(slot.points, pts[:POSE_LANDMARKS], t, scale, slot.age)
            aux = self._filtered(slot.aux, pts[POSE_LANDMARKS:], t, scale, slot.age)
            pts = np.concatenate([body, aux])
            vis = vis if slot.visibility is None else 0.1 * vis + 0.9 * slot.visibility
            slot.visibility = vis
        roi = roi_from_points(pts[POSE_LANDMARKS], pts[POSE_LANDMARKS + 1])
        if roi is None or roi.side < 8 or not (-roi.side < roi.centre[0] < w + roi.side
                                                and -roi.side < roi.centre[1] < h + roi.side):
            return None
        if slot.age > 0:
            slot.spin = turned(roi, -slot.roi.rotation).rotation
        slot.roi = roi
        slot.age += 1
        kp = np.empty((len(self._index), 3), np.float32)
        kp[:, :2] = pts[self._index] * factor
        kp[:, 2] = np.clip(vis[self._index], 0.0, 1.0)
        bbox = bbox_of_visible(kp, 0.5)
        if not np.isfinite(bbox).all():
            bbox = bbox_of_visible(kp, 0.0)
        return CropDetection(kp, bbox, lm.score, slot=slot.slot)

    @staticmethod
    def _filtered(filt: OneEuroFilter, points: np.ndarray, t: float, scale: float, age: int) -> np.ndarray:
        if age == 0:
            filt.reset()
        return filt(points.reshape(-1), t, speed_scale=scale).reshape(points.shape)


__all__ = ["BlazePoseMultiDetector", "CropDetection", "TfliteModel", "downscale", "mediapipe_model"]
