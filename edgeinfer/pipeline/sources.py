"""Frame sources for ``edgeinfer run``: an image file, a folder of images, a video file, a
camera index or an RTSP/HTTP stream.

Frames are BGR ``uint8`` arrays, read one at a time (a video is never loaded whole).
:func:`iter_frames` reads files in order; the stream sources (:class:`FileSource`,
:class:`CaptureSource`, made by :func:`open_source`) yield ``(timestamp, frame)`` for the
stream runner, and a camera or URL reconnects with exponential backoff when it drops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES, read_image

log = logging.getLogger(__name__)

#: file suffixes read as video through OpenCV
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"})


def is_video(source: str | Path) -> bool:
    """Whether ``source`` names a video file (by suffix)."""
    return Path(source).suffix.lower() in VIDEO_SUFFIXES


def iter_frames(
    source: str | Path, limit: int | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, BGR frame)`` from an image, a folder of images (sorted) or a video
    (``name`` is ``clip.mp4#12`` for frame 12); at most ``limit`` frames. In a folder, an
    unreadable image is skipped and reported to ``on_skip(path, reason)`` (as optimize skips
    and counts them); without ``on_skip`` it is an error."""
    source = Path(source)
    if not source.exists():
        raise EdgeInferError(f"{source}: no such file or folder: check --source")
    count = 0
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeInferError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for p in files:
            if limit is not None and count >= limit:
                return
            try:
                image = read_image(p)
            except EdgeInferError as exc:
                if on_skip is None:
                    raise
                log.warning("skipped %s", exc)
                on_skip(str(p), str(exc))
                continue
            count += 1
            yield str(p), image
    elif is_video(source):
        cap = cv2.VideoCapture(str(source))
        if not cap.isOpened():
            raise EdgeInferError(f"{source} is not a readable video: use an MP4/AVI file")
        try:
            while limit is None or count < limit:
                ok, frame = cap.read()
                if not ok:
                    break
                yield f"{source}#{count}", frame
                count += 1
        finally:
            cap.release()
        if count == 0:
            raise EdgeInferError(f"{source}: no frame could be decoded: check the file")
    else:
        yield str(source), read_image(source)


def video_fps(source: str | Path, default: float = 25.0) -> float:
    """Frames per second a video file declares (``default`` when it declares none)."""
    cap = cv2.VideoCapture(str(source))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and fps > 0 else default


# --------------------------------------------------------------------------- stream sources

#: URL schemes opened as network streams through OpenCV's FFmpeg backend
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


class Source(Protocol):
    """What the stream runner reads: a name, ``(timestamp, BGR frame)`` pairs, counters.

    ``timestamp`` is ``time.monotonic()`` when the frame was read (latency is measured from
    it). ``live`` sources (cameras, URLs, paced files) drop frames when the consumer lags;
    the others make it wait. ``close`` may be called from any thread and ends ``frames``.
    """

    name: str
    live: bool
    reconnects: int

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Frames until the source ends or ``close`` is called."""
        ...

    def close(self) -> None:
        """Stop ``frames`` (from any thread)."""
        ...


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a camera or URL source retries: after each failed open or read it waits
    ``initial_s * factor ** n`` seconds (n = consecutive failures so far, capped at
    ``max_backoff_s``) and gives up after ``max_retries`` consecutive failures (None: never).
    A frame read resets the count. Timeouts bound one open and one read of a network stream."""

    initial_s: float = 0.5
    max_backoff_s: float = 10.0
    factor: float = 2.0
    max_retries: int | None = 5
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_backoff_s < self.initial_s or self.factor < 1:
            raise EdgeInferError(
                f"bad reconnect policy (initial {self.initial_s} s, max {self.max_backoff_s} s, "
                f"factor {self.factor}): need 0 <= initial <= max backoff and factor >= 1"
            )
        if self.max_retries is not None and self.max_retries < 1:
            raise EdgeInferError(f"bad --retries {self.max_retries}: give at least 1")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise EdgeInferError("bad reconnect policy: open and read timeouts must be positive")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        n = max(0, failures - 1)
        # cap the exponent first: factor ** n overflows a float for a long outage
        if self.factor > 1 and self.initial_s > 0:
            n = min(n, math.ceil(math.log(max(self.max_backoff_s / self.initial_s, 1.0),
                                          self.factor)))
        return min(self.max_backoff_s, self.initial_s * self.factor**n)


def source_kind(spec: str | Path) -> str:
    """``camera`` for a device index (``0``), ``url`` for an rtsp/http(s) URL, else ``file``
    (an image, a folder of images or a video; a file named like an index wins)."""
    text = str(spec)
    if text.isdigit() and not Path(text).exists():
        return "camera"
    if urlsplit(text).scheme.lower() in STREAM_SCHEMES:
        return "url"
    return "file"


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (safe to log and print)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class CaptureSource:
    """A camera index or an RTSP/HTTP URL through ``cv2.VideoCapture``, reconnecting with
    exponential backoff when the stream dies (``reconnects`` counts the successful ones).

    The capture is opened and read in the thread that iterates ``frames``; the old capture is
    released before a new one is created, so reconnecting leaks no sockets or decoders.
    """

    live = True

    def __init__(self, target: int | str, policy: ReconnectPolicy | None = None,
                 name: str | None = None) -> None:
        self.target = target
        self.policy = policy or ReconnectPolicy()
        self.name = name or (f"camera{target}" if isinstance(target, int) else redact_url(target))
        self.reconnects = 0  #: successful re-opens after a lost stream
        self.failures = 0  #: failed opens and reads, all told
        self.fps: float | None = None  #: what the stream declares, once opened
        self._stop = threading.Event()

    def _open(self) -> cv2.VideoCapture | None:
        if isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target)
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.policy.open_timeout_s * 1e3),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.policy.read_timeout_s * 1e3),
            ])
        if not cap.isOpened():
            cap.release()
            return None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        return cap

    def _give_up(self, failures: int) -> EdgeInferError:
        if isinstance(self.target, int):
            return EdgeInferError(
                f"camera {self.target} cannot be read after {failures} attempts: check that it "
                f"is plugged in and free (/dev/video{self.target}), or raise --retries"
            )
        return EdgeInferError(
            f"{self.name}: unreachable after {failures} attempts (backoff up to "
            f"{self.policy.max_backoff_s:g} s): check the URL, the network and that the stream "
            "is up, or raise --retries"
        )

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """``(time.monotonic(), frame)`` until ``close``; raises :class:`EdgeInferError`
        after ``policy.max_retries`` consecutive failed opens or reads."""
        self._stop.clear()
        cap: cv2.VideoCapture | None = None
        failures = 0
        opened_before = False
        try:
            while not self._stop.is_set():
                if cap is None:
                    cap = self._open()
                    if cap is not None and opened_before:
                        self.reconnects += 1
                        log.info("%s: reconnected (%d so far)", self.name, self.reconnects)
                    opened_before = opened_before or cap is not None
                ok, frame = cap.read() if cap is not None else (False, None)
                if ok and frame is not None:
                    failures = 0
                    yield time.monotonic(), frame
                    continue
                if cap is not None:
                    log.warning("%s: stream lost, reconnecting", self.name)
                    cap.release()
                    cap = None
                failures += 1
                self.failures += 1
                retries = self.policy.max_retries
                if retries is not None and failures >= retries:
                    raise self._give_up(failures)
                self._stop.wait(self.policy.delay(failures))
        finally:
            if cap is not None:
                cap.release()

    def close(self) -> None:
        """End ``frames`` (within one read timeout); callable from any thread."""
        self._stop.set()


class FileSource:
    """An image, a folder of images or a video file. ``live=True`` paces frames at ``fps``
    (the video's own rate by default, 25 for images), as a camera would deliver them whether
    or not anyone keeps up; otherwise frames come as fast as they are read."""

    reconnects = 0

    def __init__(self, path: str | Path, live: bool = False, fps: float | None = None,
                 limit: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise EdgeInferError(f"{self.path}: no such file or folder: check --source")
        if fps is not None and fps <= 0:
            raise EdgeInferError(f"bad --fps {fps}: give frames per second, e.g. 25")
        self.name = str(self.path)
        self.live = live
        self.fps = fps or (video_fps(self.path) if is_video(self.path) else 25.0)
        self.limit = limit
        self._stop = threading.Event()

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """``(time.monotonic(), frame)``, paced at ``fps`` when live (from the first frame:
        opening and decoding it does not make the next ones early)."""
        self._stop.clear()
        start = time.monotonic()
        period = 1.0 / self.fps
        for i, (_, frame) in enumerate(iter_frames(self.path, self.limit)):
            if i == 0:
                start = time.monotonic()
            if self.live:
                ahead = start + i * period - time.monotonic()
                if ahead > 0 and self._stop.wait(ahead):
                    return
            if self._stop.is_set():
                return
            yield time.monotonic(), frame

    def close(self) -> None:
        """End ``frames``; callable from any thread."""
        self._stop.set()


def open_source(spec: str | Path, *, live: bool = False, fps: float | None = None,
                policy: ReconnectPolicy | None = None, limit: int | None = None) -> Source:
    """The source ``spec`` names: a camera index (``"0"``), an rtsp/http(s) URL, or a file or
    folder (paced at its fps when ``live``)."""
    kind = source_kind(spec)
    if kind == "camera":
        return CaptureSource(int(str(spec)), policy)
    if kind == "url":
        return CaptureSource(str(spec), policy)
    return FileSource(spec, live=live, fps=fps, limit=limit)
