"""Where stream results go: annotated image files, an annotated video, JSON lines, a callback.

A sink is any object with ``write(result)`` and ``close()``; the stream runner calls them from
its worker thread in frame order. :class:`JsonLinesSink` and :class:`CallbackSink` may be shared
by several runners (writes are serialised); the file sinks belong to one stream each.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.draw import annotate

__all__ = [
    "CallbackSink",
    "ImageSink",
    "JsonLinesSink",
    "Sink",
    "StreamResult",
    "VideoSink",
    "result_items",
    "slug",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamResult:
    """One processed frame: which stream, its index among the frames read (dropped ones
    included), when it was captured (``time.monotonic()``), the frame, what the predictor
    returned, and the capture-to-result latency."""

    stream: str
    index: int
    captured_at: float
    frame: np.ndarray
    prediction: Any
    latency_ms: float

    @property
    def source(self) -> str:
        """``stream#index``, the frame's name (as ``Prediction.source``)."""
        return f"{self.stream}#{self.index}"

    @property
    def result(self) -> Any:
        """The decoded result (``prediction.result`` for edgeinfer predictors)."""
        return getattr(self.prediction, "result", self.prediction)

    @property
    def times_ms(self) -> dict[str, float]:
        """Per-stage milliseconds the predictor reported (empty for a plain callable)."""
        return dict(getattr(self.prediction, "times_ms", {}) or {})


class Sink(Protocol):
    """Receives every processed frame of a stream, then ``close``."""

    def write(self, result: StreamResult) -> None:
        """Handle one processed frame."""
        ...

    def close(self) -> None:
        """Flush and release what the sink holds."""
        ...


def slug(name: str) -> str:
    """``name`` made safe as a file name (a URL or path becomes ``host_port_path``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "stream"


def result_items(result: Any) -> Any:
    """A decoded result in JSON-ready form: its ``to_json()`` where it has one (an anomaly
    result: score, verdict, regions), ``Detections`` as dicts, lists as they are, numpy
    arrays as lists, anything else as its ``repr``."""
    if hasattr(result, "to_json"):
        return result.to_json()
    if hasattr(result, "to_dicts"):
        return result.to_dicts()
    if isinstance(result, np.ndarray):
        return result.tolist()
    if isinstance(result, (list, tuple, dict, str, int, float, bool)) or result is None:
        return result
    return repr(result)


class ImageSink:
    """Annotated frames as ``FOLDER/STREAM-000012.jpg``."""

    def __init__(self, folder: str | Path, draw: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.draw = draw
        self.saved: list[str] = []

    def write(self, result: StreamResult) -> None:
        """Write one annotated frame."""
        image = annotate(result.frame, result.result) if self.draw else result.frame
        path = self.folder / f"{slug(result.stream)}-{result.index:06d}.jpg"
        if not cv2.imwrite(str(path), image):
            raise EdgeInferError(f"cannot write {path}: check --save and free disk space")
        self.saved.append(str(path))

    def close(self) -> None:
        """Nothing to release."""


class VideoSink:
    """Annotated frames into one MP4 (``mp4v``) at ``fps``; frames of another size than the
    first (a camera that came back at another resolution) are resized to it."""

    def __init__(self, path: str | Path, fps: float = 25.0, draw: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.draw = draw
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, result: StreamResult) -> None:
        """Append one annotated frame."""
        image = annotate(result.frame, result.result) if self.draw else result.frame
        h, w = image.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise EdgeInferError(f"cannot write {self.path}: check --save")
            self._size = (w, h)
        if (w, h) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class JsonLinesSink:
    """One JSON object a frame (stream, index, frame name, latency, per-stage ms, result) to
    a file path (opened for appending) or an open text stream such as ``sys.stdout``."""

    def __init__(self, target: str | Path | TextIO) -> None:
        if isinstance(target, (str, Path)):
            self._fh: TextIO = Path(target).open("a", encoding="utf-8")
            self._owned = True
        else:
            self._fh = target
            self._owned = False
        self._lock = threading.Lock()

    @staticmethod
    def record(result: StreamResult) -> dict[str, Any]:
        """The JSON object written for ``result``."""
        return {
            "stream": result.stream,
            "index": result.index,
            "source": result.source,
            "latency_ms": round(result.latency_ms, 3),
            "times_ms": {k: round(v, 3) for k, v in result.times_ms.items()},
            "result": result_items(result.result),
        }

    def write(self, result: StreamResult) -> None:
        """Write and flush one line."""
        line = json.dumps(self.record(result), default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        """Close the file when the sink opened it."""
        with self._lock:
            if self._owned and not self._fh.closed:
                self._fh.close()


class CallbackSink:
    """Calls ``fn(result)`` for every processed frame (serialised across threads)."""

    def __init__(self, fn: Callable[[StreamResult], None]) -> None:
        self.fn = fn
        self._lock = threading.Lock()

    def write(self, result: StreamResult) -> None:
        """Call the function."""
        with self._lock:
            self.fn(result)

    def close(self) -> None:
        """Nothing to release."""
