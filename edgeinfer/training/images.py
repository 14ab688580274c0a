"""A folder of training images: read them all, skip and count the unreadable ones.

Every problem a user can cause is one line naming the folder (or file) and the fix: no such
folder, no image files in it, fewer usable images than the job needs, images with different
channel counts (grey beside colour). Unreadable files (corrupt, truncated, not an image) are
skipped and counted; their names are kept for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

__all__ = ["DatasetError", "ImageFolder", "read_folder"]

class DatasetError(EdgeInferError):
    """A training folder is missing, empty, too small or inconsistent."""


@dataclass
class ImageFolder:
    """The images of one folder, as BGR uint8, with what was skipped."""

    path: Path
    images: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  #: files that could not be read
    channels: int | None = None  #: channels of the files as stored (1, 3 or 4)

    def __len__(self) -> int:
        """Usable images."""
        return len(self.images)


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else int(image.shape[2])


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF: keep the top 8 bits
        image = (image / 257).astype(np.uint8) if image.dtype == np.uint16 else \
            cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _decode(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), dtype=np.uint8)
    if not data.size:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim not in (2, 3):
        return None
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        return None
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def read_folder(
    path: str | Path,
    *,
    minimum: int = 1,
    what: str = "--good",
    progress: ProgressFn | None = None,
    decode: Callable[[Path], np.ndarray | None] = _decode,
) -> ImageFolder:
    """Read every image file of ``path`` (sorted, not recursive) as BGR uint8.

    Raises :class:`DatasetError` for a missing folder, a folder without image files, fewer
    than ``minimum`` usable images, or mixed channel counts; ``what`` names the option in
    the message.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{what} {folder}: no such folder: give a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if not files:
        raise DatasetError(
            f"{what} {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}): "
            "put the images of good parts there"
        )
    out = ImageFolder(folder)
    first_channels: tuple[int, str] | None = None
    track = Tracker(progress)
    track.start("reading images", total=len(files))
    for f in files:
        image = decode(f)
        track.advance("reading images")
        if image is None:
            out.skipped.append(f.name)
            log.warning("%s: not a readable image, skipped", f)
            continue
        ch = _channels(image)
        if first_channels is None:
            first_channels = (ch, f.name)
        elif ch != first_channels[0]:
            raise DatasetError(
                f"{what} {folder} mixes channel counts: {f.name} has {ch}, "
                f"{first_channels[1]} has {first_channels[0]}: convert them all to one "
                "format (all colour or all grey)"
            )
        out.images.append(_to_bgr(image))
        out.names.append(f.name)
    track.finish("reading images")
    out.channels = first_channels[0] if first_channels else None
    if len(out) < minimum:
        skipped = f" ({len(out.skipped)} unreadable skipped)" if out.skipped else ""
        raise DatasetError(
            f"{what} {folder}: {len(out)} usable image(s){skipped}, at least {minimum} "
            "needed: add more images of good parts"
        )
    return out
