"""Frame sources for ``edgeinfer run``: an image file, a folder of images, or a video file.

Frames are BGR ``uint8`` arrays, read one at a time (a video is never loaded whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES, read_image

#: file suffixes read as video through OpenCV
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"})


def is_video(source: str | Path) -> bool:
    """Whether ``source`` names a video file (by suffix)."""
    return Path(source).suffix.lower() in VIDEO_SUFFIXES


def iter_frames(source: str | Path, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, BGR frame)`` from an image, a folder of images (sorted) or a video
    (``name`` is ``clip.mp4#12`` for frame 12); at most ``limit`` frames."""
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
            count += 1
            yield str(p), read_image(p)
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
