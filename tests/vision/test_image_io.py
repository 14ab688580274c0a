"""Image bytes to pixels: decodable images pass, bombs and junk are one-line errors."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edgeinfer.vision.image_io import ImageDecodeError, decode_image, image_size


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def test_jpeg_decodes_and_its_size_is_read_from_the_header() -> None:
    image = np.full((30, 40, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    assert image_size(buf.tobytes()) == (40, 30)
    assert decode_image(buf.tobytes()).shape == (30, 40, 3)


def test_bomb_refused_before_decoding() -> None:
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(_png_header(100_000, 100_000) + b"\0" * 64)


@pytest.mark.parametrize("data", [b"", b"not an image at all"])
def test_junk_refused(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_png_metadata_that_makes_libpng_warn_is_dropped_and_the_pixels_kept(
        capfd: pytest.CaptureFixture[str]) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    data = cv2.imencode(".png", pixels)[1].tobytes()
    body = b"bad\x00\x00" + zlib.compress(b"junk" * 40)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(
        ">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    noisy = data[:33] + chunk + data[33:]  # after the signature and IHDR
    capfd.readouterr()
    np.testing.assert_array_equal(decode_image(noisy), pixels)
    assert "libpng" not in capfd.readouterr().err
