"""Encoded image bytes to pixels, refusing decompression bombs before decoding.

OpenCV's ``imdecode`` allocates what the header declares: a few KB of compressed zeros can
declare gigabytes of pixels. The size is read from the PNG, JPEG or BMP header first (no
library exposes that without decoding), and images over ``max_pixels`` are refused.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = ["MAX_PIXELS", "ImageDecodeError", "decode_image", "image_size"]

#: largest image accepted, in pixels (50 MP: above 8K video and 5 MP inspection frames)
MAX_PIXELS = 50_000_000


class ImageDecodeError(EdgeInferError):
    """Bytes that are not a decodable image, or one over the pixel limit."""


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first start-of-frame marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7],
                                                                             "big")
        i += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, JPEG or BMP header without decoding (None: unknown)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    return None


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A BGR image from encoded bytes (JPEG, PNG, BMP, TIFF, WebP); ImageDecodeError when it
    cannot be decoded, or when its header declares more than ``max_pixels`` (a few KB of
    compressed zeros can declare gigabytes of pixels: refused before decoding)."""
    if not data:
        raise ImageDecodeError("the uploaded image is empty: send a JPEG or PNG file")
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(
            f"the uploaded image declares {size[0]}x{size[1]} pixels, over the limit of "
            f"{max_pixels / 1e6:.0f} MP: send a smaller image"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageDecodeError(
            f"the uploaded file ({len(data)} bytes) is not a decodable image: send a JPEG, PNG, "
            "BMP or TIFF file"
        )
    return image
