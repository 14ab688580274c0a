"""The decode gate: every image bomb refused by its header before any decoder allocates, in
every format OpenCV decodes; sizes read from headers agree with Pillow and with OpenCV."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from bombs import BOMBS, bmp_bomb, jpeg_bomb, png_bomb, tiff_bomb

from edgeinfer.vision.image_io import (
    MAX_PIXELS,
    ImageDecodeError,
    check_image,
    decode_image,
    image_size,
)

CLEAR_REFS = Path("/proc/self/clear_refs")


def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) where Linux allows it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_every_bomb_is_refused_by_its_header(name: str) -> None:
    data = BOMBS[name]()
    assert len(data) < 2 * 2**20, "a bomb is small"
    measured = _peak_rss_reset()
    before = _peak_rss()
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data)
    grew = _peak_rss() - before
    message = str(err.value)
    assert "\n" not in message
    assert "over the limit" in message or "not accepted" in message, message
    if measured:
        assert grew < 100 * 2**20, f"{name}: peak RSS grew {grew / 2**20:.0f} MiB"


@pytest.mark.parametrize("build", [png_bomb, tiff_bomb, bmp_bomb])
def test_the_bomb_builders_make_real_images_of_the_declared_size(build) -> None:
    """At a small size the same builders decode to exactly what they declare: the big ones
    are real bombs, not just bad headers."""
    image = decode_image(build(300))
    assert image.shape[:2] == (300, 300)


def test_stray_bytes_before_the_frame_header_do_not_hide_the_size() -> None:
    """libjpeg skips stray bytes before a marker and decodes on; the gate reads on too."""
    small = jpeg_bomb(side=40, stray=b"\x00\x13")
    assert image_size(small) == (40, 40)
    assert decode_image(small).shape[:2] == (40, 40)
    with pytest.raises(ImageDecodeError, match="30000x30000"):
        decode_image(jpeg_bomb(stray=b"\x00"))


def _rgb(h: int = 37, w: int = 53) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext, params", [
    (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []), (".bmp", []),
    (".gif", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".tiff", []),
])
def test_header_sizes_agree_with_opencv_and_pillow(ext: str, params: list[int]) -> None:
    pil = pytest.importorskip("PIL.Image")
    ok, buf = cv2.imencode(ext, _rgb(), params)
    assert ok
    data = buf.tobytes()
    assert image_size(data) == (53, 37)
    assert pil.open(io.BytesIO(data)).size == (53, 37)
    assert decode_image(data).shape == (37, 53, 3)


@pytest.mark.parametrize("fmt, kwargs", [
    ("TIFF", {"compression": "tiff_deflate"}), ("TIFF", {"tile": True}),
    ("WEBP", {"lossless": True}),
    ("GIF", {}), ("BMP", {}), ("PNG", {}), ("JPEG", {"progressive": True}),
])
def test_sizes_of_images_pillow_wrote(fmt: str, kwargs: dict) -> None:
    """Writers other than OpenCV's lay headers out differently (Pillow's tiled TIFF, its WebP
    with a VP8X header): the readers still find the size."""
    pil = pytest.importorskip("PIL.Image")
    image = pil.fromarray(_rgb(45, 70))
    if kwargs.pop("tile", False):
        kwargs = {"tiffinfo": {322: 16, 323: 16}}
    out = io.BytesIO()
    try:
        image.save(out, fmt, **kwargs)
    except (OSError, KeyError, TypeError) as exc:  # a Pillow built without that writer
        pytest.skip(f"Pillow cannot write {fmt} {kwargs}: {exc}")
    assert image_size(out.getvalue()) == (70, 45)
    assert decode_image(out.getvalue()).shape == (45, 70, 3)


def test_formats_that_cannot_be_sized_are_refused_even_when_small() -> None:
    ok, buf = cv2.imencode(".pgm", _rgb()[:, :, 0])
    assert ok and cv2.imdecode(buf, cv2.IMREAD_COLOR) is not None  # OpenCV would decode it
    with pytest.raises(ImageDecodeError, match="PNM image, which is not accepted"):
        decode_image(buf.tobytes())
    assert check_image(cv2.imencode(".png", _rgb())[1].tobytes()) == ("PNG", 53, 37)


@pytest.mark.parametrize("data, fragment", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG header is truncated"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX", "PNG header is truncated"),
    (b"RIFF\x10\x00\x00\x00WEBPJUNK", "WebP header"),
    (b"II*\x00\xff\xff\xff\x7f", "TIFF header"),
    (b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b", "GIF header"),
])
def test_unreadable_headers_are_refused_not_decoded(data: bytes, fragment: str) -> None:
    with pytest.raises(ImageDecodeError, match=fragment) as err:
        decode_image(data)
    assert "not a decodable image" in str(err.value)


def test_limit_is_a_parameter_and_zero_pixels_are_refused() -> None:
    data = cv2.imencode(".png", _rgb())[1].tobytes()
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(data, max_pixels=53 * 37 - 1)
    assert decode_image(data, max_pixels=53 * 37).shape == (37, 53, 3)
    with pytest.raises(ImageDecodeError, match="0x0 pixels"):
        decode_image(jpeg_bomb(side=0))
    assert MAX_PIXELS == 50_000_000


def test_run_reads_files_through_the_gate(tmp_path: Path) -> None:
    from edgeinfer.errors import EdgeInferError
    from edgeinfer.vision.preprocess import read_image

    bomb = tmp_path / "bomb.webp"
    bomb.write_bytes(BOMBS["webp lossless 16383x16383"]())
    with pytest.raises(EdgeInferError, match="not a readable image.*16383x16383") as err:
        read_image(bomb)
    assert str(bomb) in str(err.value) and "\n" not in str(err.value)
