"""Frame sources of the live loop: webcam / video / stream URL, image folder, and the synthetic demo.

`SyntheticSource` is imported lazily because it needs torch (the body model), which a pure ONNX live loop
should not pay for when it reads a camera.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stream.sources.base import Frame, Pacer, Source
from stream.sources.image_folder import ImageFolderSource
from stream.sources.opencv_source import OpenCVSource

__all__ = ["Frame", "Source", "Pacer", "OpenCVSource", "ImageFolderSource", "SyntheticSource", "open_source"]


def __getattr__(name: str) -> Any:
    if name == "SyntheticSource":
        from stream.sources.synthetic import SyntheticSource

        return SyntheticSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_source(spec: int | str | Path, **kwargs: Any) -> Source:
    """One entry point for the command line: "synthetic", a webcam index ("0"), a URL, a video file or a folder.

    kwargs go to the chosen source's constructor.
    """
    if isinstance(spec, str) and spec.strip().lower() == "synthetic":
        from stream.sources.synthetic import SyntheticSource

        return SyntheticSource(**kwargs)
    if isinstance(spec, (str, Path)) and not (isinstance(spec, str) and "://" in spec) and Path(spec).is_dir():
        return ImageFolderSource(spec, **kwargs)
    return OpenCVSource(spec, **kwargs)
