"""Where the loop's messages go: the publisher, a recording, the VMC bridge, the preview window, one interface.

Why one interface: the loop hands every message to its sinks in order and knows nothing else about them; a new
output (another bridge, a file format) is a new `Sink`, not a change to the loop. A sink must return at once:
the wire sinks are sent before any diagnostics, so subscribers never wait for them. Sinks that are handed a
frame (`FrameView`: the preview) get it after the frame's diagnostics instead. Closing stays with whoever
opened the sink (`run_live.py` closes everything it built, in reverse order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mocap.camera import project
from stream.loop.stats import LoopStats
from stream.protocol import PoseMessage


@dataclass
class FrameView:
    """What a sink that draws needs besides the message: the image and the keypoints detected / modelled."""

    image: np.ndarray | None
    kp2d: np.ndarray | None
    kp_model: np.ndarray | None     # the model's keypoints projected into the image (pixels)
    size: tuple[int, int]
    fps: float


def frame_view(image: np.ndarray | None, kp2d: np.ndarray | None, outputs: dict[str, np.ndarray] | None,
               K: np.ndarray, size: tuple[int, int], fps: float) -> FrameView:
    """The view of a frame with the model's keypoints (kp3d_cam of batch-1 outputs) projected through K."""
    kp_model = None
    if outputs is not None and "kp3d_cam" in outputs:
        kp_model = np.asarray(project(np.asarray(outputs["kp3d_cam"][0], np.float64), K))
    return FrameView(image, kp2d, kp_model, size, fps)


class Sink(Protocol):
    """Takes the loop's messages; ``view`` is given only to sinks that draw the frame."""

    def send(self, msg: PoseMessage, view: FrameView | None = None) -> None: ...

    def close(self) -> None: ...


class PublisherLike(Protocol):
    def publish(self, msg: PoseMessage) -> bool: ...


class PublisherSink:
    """The ZeroMQ publisher (``publish(msg) -> bool``): counts published / refused; its exceptions are counted
    as errors["publish"], never raised (a subscriber's trouble must not stop the loop)."""

    def __init__(self, publisher: PublisherLike, stats: LoopStats) -> None:
        self.publisher, self.stats = publisher, stats

    def send(self, msg: PoseMessage, view: FrameView | None = None) -> None:
        try:
            if self.publisher.publish(msg):
                self.stats.n.published += 1
            else:
                self.stats.n.publish_dropped += 1
        except Exception as exc:
            self.stats.fail("publish", exc)

    def close(self) -> None:
        getattr(self.publisher, "close", lambda: None)()


class WriterSink:
    """Anything with ``write(msg)``: a `stream.recorder.Recorder`, a `stream.vmc.VmcSender`, or a
    `stream.recording.FanOut` of them. Writers account for their own failures (``errors``, ``last_error``)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def send(self, msg: PoseMessage, view: FrameView | None = None) -> None:
        self.writer.write(msg)

    def close(self) -> None:
        getattr(self.writer, "close", lambda: None)()


class PreviewSink:
    """The OpenCV window (`stream.preview.Preview`): the frame with both skeletons and a status line.
    ``closed`` turns True when the user closed the window (the loop then stops); errors count as "preview"."""

    def __init__(self, preview: Any, stats: LoopStats) -> None:
        self.preview, self.stats = preview, stats
        self.closed = False

    def send(self, msg: PoseMessage, view: FrameView | None = None) -> None:
        if view is None:
            return
        text = f"{msg.status} track {msg.track}  seq {msg.seq}  {view.fps:.1f} fps  {msg.model}"
        try:
            if not self.preview.show(view.image, view.kp2d, view.kp_model, text, size=view.size):
                self.closed = True
        except Exception as exc:
            self.stats.fail("preview", exc)

    def close(self) -> None:
        self.preview.close()


class Sinks:
    """Sinks in order, sent to one after another (the publisher first: it is what subscribers wait for)."""

    def __init__(self, *sinks: Sink | None) -> None:
        self.sinks: list[Sink] = [s for s in sinks if s is not None]

    def send(self, msg: PoseMessage, view: FrameView | None = None) -> None:
        for sink in self.sinks:
            sink.send(msg, view)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


__all__ = ["FrameView", "PreviewSink", "PublisherLike", "PublisherSink", "Sink", "Sinks", "WriterSink", "frame_view"]
