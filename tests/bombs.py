"""Image bombs built in code (no files): small encodings whose headers declare far more pixels
than the decode gate accepts. Real bombs where one is cheap to build (PNG, TIFF and BMP decode
to the full declared size: the compressed data covers every pixel, or RLE says "end of bitmap"
at once); elsewhere a real small image whose header is rewritten to declare a huge size, which
is what the gate reads. Used by the tests and by ``benchmarks/hostile_inputs.py``."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np


def _zeros_deflated(nbytes: int, chunk: int = 1 << 20) -> bytes:
    """``nbytes`` zero bytes, zlib-compressed without holding them in memory."""
    comp = zlib.compressobj(9)
    block = bytes(chunk)
    parts = [comp.compress(block) for _ in range(nbytes // chunk)]
    parts.append(comp.compress(bytes(nbytes % chunk)))
    return b"".join(parts) + comp.flush()


def png_bomb(side: int = 10_000) -> bytes:
    """A valid grey PNG of side x side zeros (a few hundred KB declaring side^2 pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", _zeros_deflated((side + 1) * side)) + chunk(b"IEND", b""))


def tiff_bomb(side: int = 12_000) -> bytes:
    """A valid grey 8-bit TIFF of side x side zeros in one deflate strip."""
    data = _zeros_deflated(side * side)
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, side), (279, 4, len(data))]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(tags) + 4
    tags[5] = (273, 4, data_at)
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                             else struct.pack("<I", value))
        for tag, kind, value in tags) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + ifd + data


def tiff_tile_bomb() -> bytes:
    """A real 64x64 TIFF whose tiles are declared 65536x65536 (the decoder allocates a tile)."""
    ok, buf = cv2.imencode(".tiff", np.zeros((64, 64, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    entries = [data[ifd + 2 + 12 * k: ifd + 14 + 12 * k] for k in range(count)]
    entries += [struct.pack("<HHII", 322, 4, 1, 65536), struct.pack("<HHII", 323, 4, 1, 65536)]
    entries.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    ifd_bytes = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    new_at = len(data) + (len(data) & 1)
    return bytes(data[:4] + struct.pack("<I", new_at) + data[8:]) + b"\0" * (new_at - len(data)) \
        + ifd_bytes


def bmp_bomb(side: int = 30_000) -> bytes:
    """A valid 8-bit RLE BMP of side x side pixels whose data is "end of bitmap" (2 bytes)."""
    palette = bytes(256 * 4)
    offset = 14 + 40 + len(palette)
    rle = b"\x00\x01"
    header = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset) + header + palette + rle


def _small(ext: str, params: list[int] | None = None) -> bytearray:
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return bytearray(buf.tobytes())


def _patch_jpeg_sof(data: bytearray, width: int, height: int, stray: bytes) -> bytes:
    at = next(i for i in range(2, len(data) - 9)
              if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data[:at] + stray + data[at:])


def jpeg_bomb(side: int = 30_000, stray: bytes = b"", progressive: bool = False) -> bytes:
    """A real small JPEG whose frame header declares side x side pixels; ``stray``: bytes put
    just before the SOF marker (libjpeg skips them with a warning and decodes on)."""
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    return _patch_jpeg_sof(_small(".jpg", params), side, side, stray)


def gif_bomb(side: int = 30_000) -> bytes:
    """A real small GIF whose logical screen and first frame declare side x side pixels."""
    data = _small(".gif")
    data[6:10] = struct.pack("<HH", side, side)
    at = data.index(b"\x2c", 13)
    data[at + 5:at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def gif_frame_bomb(side: int = 30_000) -> bytes:
    """A GIF whose logical screen is 16x16 but whose first frame reaches side x side."""
    data = _small(".gif")
    at = data.index(b"\x2c", 13)
    data[at + 5:at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def webp_bomb(lossless: bool = True, side: int = 16_383) -> bytes:
    """A real small WebP (lossless VP8L or lossy VP8) whose bitstream header declares side x
    side pixels (the format's largest)."""
    data = _small(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101 if lossless else 80])
    if lossless:
        at = data.index(b"VP8L") + 8
        bits = int.from_bytes(data[at + 1:at + 5], "little")
        bits = (bits & ~0xFFFFFFF) | (side - 1) | ((side - 1) << 14)
        data[at + 1:at + 5] = bits.to_bytes(4, "little")
    else:
        at = data.index(b"VP8 ") + 8
        data[at + 6:at + 10] = struct.pack("<HH", side, side)
    return bytes(data)


def webp_canvas_bomb(side: int = 16_383) -> bytes:
    """An extended WebP whose VP8X canvas says 16x16 and whose image chunk says side x side."""
    inner = webp_bomb(True, side)[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (15).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pnm_bomb(side: int = 100_000) -> bytes:
    """A PGM header declaring side x side pixels (a format the gate refuses outright)."""
    return f"P5\n{side} {side}\n255\n".encode() + bytes(64)


def hdr_bomb(side: int = 100_000) -> bytes:
    """A Radiance HDR header declaring side x side pixels (refused outright)."""
    return f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {side} +X {side}\n".encode() + bytes(64)


#: every bomb, by name, with the size of what it declares; the benchmark runs them all
BOMBS: dict[str, Callable[[], bytes]] = {
    "png 10000x10000": png_bomb,
    "tiff 12000x12000 (deflate)": tiff_bomb,
    "tiff 64x64, tiles 65536x65536": tiff_tile_bomb,
    "bmp 30000x30000 (rle8)": bmp_bomb,
    "jpeg 30000x30000": jpeg_bomb,
    "jpeg 30000x30000, stray byte before SOF": lambda: jpeg_bomb(stray=b"\x00"),
    "jpeg progressive 30000x30000, stray bytes": lambda: jpeg_bomb(stray=b"junk",
                                                                   progressive=True),
    "gif 30000x30000": gif_bomb,
    "gif 16x16 screen, 30000x30000 frame": gif_frame_bomb,
    "webp lossless 16383x16383": webp_bomb,
    "webp lossy 16383x16383": lambda: webp_bomb(lossless=False),
    "webp 16x16 canvas, 16383x16383 image": webp_canvas_bomb,
    "pgm 100000x100000": pnm_bomb,
    "hdr 100000x100000": hdr_bomb,
}
