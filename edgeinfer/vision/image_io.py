"""Encoded image bytes to pixels through one decode gate: the pixel count is read from the
header and capped before any decoder allocates a full-size buffer.

OpenCV's ``imdecode`` allocates what the header declares: a few KB of compressed zeros can
declare gigabytes of pixels, in every format. So every image the package accepts (the node's
uploads, ``edgeinfer run``'s files) goes through :func:`check_image` first:

- the format is told by its signature, exactly as OpenCV tells it (the signatures are disjoint,
  so the header read here is the one the decoder will read);
- JPEG, PNG, BMP, GIF, WebP and TIFF are sized from their headers by the small readers below,
  which follow their decoders where a header can be read more than one way (libjpeg skips
  stray bytes between markers, so the size reader does too; a GIF frame may reach past its
  logical screen, so both count; a TIFF tile or its samples per pixel can ask for more memory
  than its size, so they are bounded as well);
- everything else OpenCV would decode (AVIF, JPEG 2000, Radiance HDR, PFM, PNM, Sun raster,
  OpenEXR) is refused, as is a known format whose header cannot be read: a file that cannot be
  sized is never decoded.

Why our own readers and not Pillow's header-only ``Image.open``: Pillow is not a dependency of
the core, and its WebP and GIF openers create a decoder (the WebP one allocates the canvas) on
open; the six readers together are shorter than the code that would guard those cases.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = ["ACCEPTED_FORMATS", "MAX_PIXELS", "ImageDecodeError", "check_image", "decode_image",
           "image_format", "image_size"]

#: largest image accepted, in pixels (50 MP: above 8K video and 5 MP inspection frames)
MAX_PIXELS = 50_000_000
#: formats the gate sizes and lets through to OpenCV
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WebP", "TIFF")
#: a TIFF tile may hold at most this many pixels beyond the image's own (typical tiles: 256^2)
MAX_TIFF_TILE_PIXELS = 1 << 20
_SEND = "send a JPEG, PNG, BMP, TIFF, WebP or GIF file"


class ImageDecodeError(EdgeInferError):
    """Bytes that are not a decodable image, or one over the pixel limit."""


# ------------------------------------------------------------------------------ signatures

def image_format(data: bytes) -> str | None:
    """The image format ``data`` is in, by its signature (None: none OpenCV knows)."""
    head = data[:16]
    for fmt, test in _SIGNATURES:
        if test(head):
            return fmt
    return None


_SIGNATURES = (
    ("JPEG", lambda h: h[:3] == b"\xff\xd8\xff"),
    ("PNG", lambda h: h[:8] == b"\x89PNG\r\n\x1a\n"),
    ("BMP", lambda h: h[:2] == b"BM"),
    ("GIF", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("TIFF", lambda h: h[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")),
    # decoded by OpenCV, refused here: no size reader
    ("AVIF", lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"avif", b"avis", b"heic", b"mif1")),
    ("JPEG 2000", lambda h: h[:4] == b"\xff\x4f\xff\x51" or h[4:8] == b"jP  "),
    ("Radiance HDR", lambda h: h[:2] == b"#?"),
    ("PFM", lambda h: h[:2] in (b"PF", b"Pf")),
    ("PNM", lambda h: h[:1] == b"P" and h[1:2] in b"1234567"),
    ("Sun raster", lambda h: h[:4] == b"\x59\xa6\x6a\x95"),
    ("OpenEXR", lambda h: h[:4] == b"\x76\x2f\x31\x01"),
)


# ------------------------------------------------------------------------------ size readers

def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker, read as libjpeg reads markers:
    bytes other than 0xFF before a marker are skipped (libjpeg warns "extraneous bytes" and goes
    on), fill bytes (0xFF 0xFF) too; the scan (SOS) or the end before any SOF: unknown."""
    i, n = 2, len(data)
    while i < n:
        while i < n and data[i] != 0xFF:
            i += 1
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # stuffed byte, TEM, RSTn, SOI: no length
        if marker in (0xD9, 0xDA):
            return None  # EOI or SOS before a frame header
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if marker in _SOF:
            if i + 7 > n or length < 8:
                return None
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return width, height
        if length < 2:
            return None
        i += length
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    header = int.from_bytes(data[14:18], "little")
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit dimensions
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _gif_size(data: bytes) -> tuple[int, int] | None:
    """The logical screen, widened to the first frame's extent when that frame reaches past
    it (a decoder may allocate either)."""
    if len(data) < 13:
        return None
    width, height, flags = struct.unpack("<HHB", data[6:11])
    i = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while i < len(data):
        block = data[i]
        if block == 0x2C:  # image descriptor: left, top, width, height
            if i + 9 > len(data):
                return None
            left, top, fw, fh = struct.unpack("<HHHH", data[i + 1:i + 9])
            return max(width, left + fw), max(height, top + fh)
        if block != 0x21 or i + 2 > len(data):
            return None  # the trailer, or junk, before any frame
        i += 2  # extension introducer and label, then sub-blocks up to a zero length
        while i < len(data) and data[i]:
            i += data[i] + 1
        i += 1
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The largest of the extended header's canvas and the first image or frame chunk's size."""
    sizes, i = [], 12
    while i + 8 <= len(data) and len(sizes) < 2:
        kind, length = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        body = data[i + 8:i + 8 + min(length, 32)]
        if kind == b"VP8X" and len(body) >= 10:
            sizes.append((int.from_bytes(body[4:7], "little") + 1,
                          int.from_bytes(body[7:10], "little") + 1))
        elif kind == b"ANMF" and len(body) >= 12:
            sizes.append((int.from_bytes(body[0:3], "little") * 2
                          + int.from_bytes(body[6:9], "little") + 1,
                          int.from_bytes(body[3:6], "little") * 2
                          + int.from_bytes(body[9:12], "little") + 1))
        elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", body[6:10])
            sizes.append((w & 0x3FFF, h & 0x3FFF))
        elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            sizes.append(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        if kind in (b"VP8 ", b"VP8L", b"ANMF"):
            break
        i += 8 + length + (length & 1)
    if not sizes:
        return None
    return max(s[0] for s in sizes), max(s[1] for s in sizes)


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8


def _tiff_tags(data: bytes) -> dict[int, list[int]] | None:
    """The integer tags of the first directory (classic TIFF or BigTIFF), or None."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    try:
        if big:
            offset = struct.unpack_from(order + "Q", data, 8)[0]
            count = struct.unpack_from(order + "Q", data, offset)[0]
            entry, first, inline, cfmt = 20, offset + 8, 8, "Q"
        else:
            offset = struct.unpack_from(order + "I", data, 4)[0]
            count = struct.unpack_from(order + "H", data, offset)[0]
            entry, first, inline, cfmt = 12, offset + 2, 4, "I"
        tags: dict[int, list[int]] = {}
        for k in range(min(count, 4096)):
            pos = first + k * entry
            tag, kind = struct.unpack_from(order + "HH", data, pos)
            (n,) = struct.unpack_from(order + cfmt, data, pos + 4)
            if kind not in _TIFF_TYPES or n < 1:
                continue
            code, size = _TIFF_TYPES[kind]
            n = min(n, 8)
            where = pos + 4 + inline
            if n * size > inline:
                (where,) = struct.unpack_from(order + cfmt, data, where)
            tags[tag] = list(struct.unpack_from(f"{order}{n}{code}", data, where))
        return tags
    except struct.error:
        return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of the first directory; a tile larger than the image and
    ``MAX_TIFF_TILE_PIXELS``, or more than 4 samples per pixel, is counted as the size (the
    decoder allocates a tile, and a pixel per sample)."""
    tags = _tiff_tags(data)
    if tags is None or 256 not in tags or 257 not in tags:
        return None
    width, height = tags[256][0], tags[257][0]
    samples = tags.get(277, [1])[0]
    if samples > 4:
        return width * samples, height  # counted as that many pixels: refused when too many
    tile = tags.get(322, [0])[0] * tags.get(323, [0])[0]
    if tile > max(width * height, MAX_TIFF_TILE_PIXELS):
        return tile, 1
    return width, height


_READERS = {"JPEG": _jpeg_size, "PNG": _png_size, "BMP": _bmp_size, "GIF": _gif_size,
            "WebP": _webp_size, "TIFF": _tiff_size}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of an accepted format without decoding (None:
    another format, or a header that cannot be read)."""
    reader = _READERS.get(image_format(data) or "")
    return reader(data) if reader is not None else None


# ------------------------------------------------------------------------------ the gate

def check_image(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of an image the gate lets through to the decoder; else
    ImageDecodeError: empty, not an image, a format that cannot be sized, a header that cannot
    be read, zero pixels, or more than ``max_pixels``."""
    if not data:
        raise ImageDecodeError(f"the uploaded image is empty: {_SEND}")
    fmt = image_format(data)
    if fmt is None:
        raise ImageDecodeError(f"the uploaded file ({len(data)} bytes) is not a decodable "
                               f"image: {_SEND}")
    if fmt not in _READERS:
        raise ImageDecodeError(f"the uploaded file is a {fmt} image, which is not accepted "
                               f"(its size cannot be checked before decoding): {_SEND}")
    size = _READERS[fmt](data)
    if size is None:
        raise ImageDecodeError(f"the uploaded file ({len(data)} bytes) is not a decodable "
                               f"image (its {fmt} header is truncated or corrupt): {_SEND}")
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"the uploaded image declares {width}x{height} pixels, over the limit of "
            f"{max_pixels / 1e6:.0f} MP: send a smaller image"
        )
    if width == 0 or height == 0:
        raise ImageDecodeError(f"the uploaded {fmt} image declares {width}x{height} pixels: "
                               f"{_SEND} with pixels in it")
    return fmt, width, height


#: PNG chunks that do not change the pixels OpenCV returns (it applies no colour profile, gamma
#: or text) and whose odd contents make libpng print warnings straight to the process's stderr
#: ("libpng warning: iCCP: known incorrect sRGB profile"): dropped before decoding
_PNG_QUIET = {b"iCCP", b"cHRM", b"sRGB", b"gAMA", b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME",
              b"pHYs"}


def _quiet_png(data: bytes) -> bytes:
    """``data`` without the chunks of :data:`_PNG_QUIET` (unchanged when it does not parse)."""
    out, pos = [data[:8]], 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return data
        if data[pos + 4:pos + 8] not in _PNG_QUIET:
            out.append(data[pos:end])
        pos = end
    return b"".join(out) if pos == len(data) else data


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A BGR image from encoded bytes (JPEG, PNG, BMP, GIF, WebP, TIFF) through the gate
    (:func:`check_image`: sized from its header and refused over ``max_pixels`` before any
    decoding); ImageDecodeError when refused or undecodable."""
    fmt, _, _ = check_image(data, max_pixels)
    buf = np.frombuffer(_quiet_png(data) if fmt == "PNG" else data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageDecodeError(
            f"the uploaded file ({len(data)} bytes) is not a decodable image (a corrupt {fmt} "
            f"stream): {_SEND}"
        )
    return image
