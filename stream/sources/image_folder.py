"""A folder of still images played as a video at a nominal fps (e.g. frames exported from another tool)."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import cv2

from stream.sources.base import Frame, Pacer, Source

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def _natural_key(path: Path) -> list[object]:
    """Sort 'f2.png' before 'f10.png' (exported frames are rarely zero-padded consistently)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """Images of `folder` (png/jpg, natural name order) as frames at `fps`.

    realtime: True paces frames at `fps` like a camera; False returns them as fast as they load.
    An unreadable file is skipped with a warning and listed in `.skipped` rather than ending the run.
    """

    def __init__(self, folder: str | Path, fps: float = 30.0, *, realtime: bool = True) -> None:
        super().__init__()
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        self.paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
        if not self.paths:
            raise ValueError(f"no {'/'.join(IMAGE_EXTENSIONS)} images in {folder}")
        self._fps = float(fps)
        self._pacer = Pacer(self._fps, enabled=realtime)
        self._index = 0
        self._seq = 0
        self.skipped: list[Path] = []
        self.incomplete: str | None = None  # set at the end when images had to be skipped
        first = cv2.imread(str(self.paths[0]), cv2.IMREAD_COLOR)
        self._size = (first.shape[1], first.shape[0]) if first is not None else (0, 0)
        self.status = f"playing {folder.name} ({len(self.paths)} images)"

    def read(self, timeout: float = 0.1) -> Frame | None:
        """The next image (after pacing), or None once every image was returned."""
        while self._index < len(self.paths):
            path = self.paths[self._index]
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image %s", path)
                self.skipped.append(path)
                continue
            self._pacer.wait(self._seq)
            self._size = (image.shape[1], image.shape[0])
            frame = Frame(image, self._seq, time.monotonic(), meta={"path": str(path), "frame_index": self._index - 1})
            self._seq += 1
            return frame
        if not self.finished and self.skipped:
            self.incomplete = f"{len(self.skipped)} of {len(self.paths)} images could not be decoded"
        self.finished = True
        self.status = f"finished ({self._seq} images, {len(self.skipped)} skipped)"
        return None
