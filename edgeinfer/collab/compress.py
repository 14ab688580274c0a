"""Compress the tensors at a cut into one small binary frame, and read them back.

Encodings: ``raw`` (as computed), ``fp16`` (half precision), ``int8`` (8-bit affine with one
scale and zero point per tensor, stored as uint8), each then optionally packed with ``lz4`` or
``zstd``. Non-float tensors always travel raw.

Why our own frame instead of ``np.savez`` or pickle: savez is a zip (tens of bytes of headers
per tensor, no choice of codec) and pickle must never be read from the network. The frame is

    b"EIF1" | u8 codec | u16 count | count x tensor header | payload (codec-compressed)
    tensor header: u16 name length | name (utf-8) | u8 encoding | u8 dtype | u8 ndim |
                   ndim x u32 dims | f32 scale | f32 zero point

and the payload is the tensors' bytes concatenated in header order.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError

__all__ = [
    "ANSWER",
    "ANSWER_OPTIONS",
    "CODECS",
    "ENCODINGS",
    "Compression",
    "FrameError",
    "TensorHeader",
    "answer_compression",
    "check_header",
    "decode",
    "encode",
    "read_header",
]

MAGIC = b"EIF1"
#: the most tensor bytes one frame may declare (a 1x512x160x160 float32 map is 50 MiB)
MAX_FRAME_BYTES = 512 * 2**20
ENCODINGS = ("raw", "fp16", "int8")
CODECS = ("none", "lz4", "zstd")
_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


class FrameError(EdgeInferError):
    """A frame that is truncated, of another format, or asks for an unknown codec."""


@dataclass(frozen=True)
class Compression:
    """How the cut is sent: an encoding (raw, fp16, int8) then a codec (none, lz4, zstd)."""

    encoding: str = "int8"
    codec: str = "lz4"
    level: int = 3

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise EdgeInferError(
                f"unknown encoding '{self.encoding}': choose one of {', '.join(ENCODINGS)}"
            )
        if self.codec not in CODECS:
            raise EdgeInferError(f"unknown codec '{self.codec}': choose one of {', '.join(CODECS)}")

    @property
    def label(self) -> str:
        """Short name, e.g. ``int8+lz4``."""
        return self.encoding if self.codec == "none" else f"{self.encoding}+{self.codec}"

    @classmethod
    def parse(cls, text: str) -> Compression:
        """``int8+lz4``, ``fp16+zstd``, ``raw`` ... into a Compression."""
        enc, _, codec = text.partition("+")
        return cls(enc, codec or "none")


#: how a node sends outputs back by default: exact values, lz4 (cheap; sparse maps shrink a lot)
ANSWER = Compression("raw", "lz4")
#: what a device may ask the answer in: exact or float16, any codec. Not int8: one scale per
#: tensor would flatten outputs that mix ranges (a detector's box pixels and 0-1 scores)
ANSWER_ENCODINGS = ("raw", "fp16")
ANSWER_OPTIONS = tuple(f"{e}+{c}" if c != "none" else e for e in ANSWER_ENCODINGS
                       for c in ("none", "lz4", "zstd"))


def answer_compression(text: str) -> Compression:
    """An answer encoding (``raw+lz4``, ``fp16+lz4``, ...) checked: EdgeInferError for int8 or
    an unknown name."""
    c = Compression.parse(text)
    if c.encoding not in ANSWER_ENCODINGS:
        raise EdgeInferError(
            f"answer encoding '{text}': choose one of {', '.join(ANSWER_OPTIONS)} (int8 would "
            "flatten outputs that mix ranges, such as box pixels and scores)"
        )
    return c


def _pack(data: bytes, codec: str, level: int) -> bytes:
    if codec == "lz4":
        return require("lz4.frame", "collab", "lz4 compression").compress(data)
    if codec == "zstd":
        zstd = require("zstandard", "collab", "zstd compression")
        return zstd.ZstdCompressor(level=level).compress(data)
    return data


def _unpack(data: bytes, codec: str, expected: int) -> bytes:
    """Decompress at most ``expected`` + 1 bytes: a frame whose payload inflates beyond what its
    header declares (a decompression bomb) is refused without being inflated."""
    try:
        if codec == "lz4":
            lz4f = require("lz4.frame", "collab", "lz4 compression")
            out = lz4f.LZ4FrameDecompressor().decompress(data, max_length=expected + 1)
        elif codec == "zstd":
            zstd = require("zstandard", "collab", "zstd compression")
            with zstd.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                out = reader.read(expected + 1)
        else:
            out = data
    except RuntimeError as exc:  # lz4 and zstandard raise RuntimeError subclasses
        raise FrameError(f"corrupt {codec} payload: {exc}: resend the frame") from exc
    if len(out) > expected:
        raise FrameError(f"frame payload inflates beyond the {expected} bytes its header "
                         "declares: refused (send frames from encode())")
    return out


def _quantize(arr: np.ndarray, encoding: str) -> tuple[int, np.ndarray, float, float]:
    if arr.dtype.kind != "f" or encoding == "raw":
        return 0, arr, 1.0, 0.0
    if encoding == "fp16":
        return 1, arr.astype(np.float16), 1.0, 0.0
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    q = np.clip(np.rint((arr - lo) / scale), 0, 255).astype(np.uint8)
    return 2, q, scale, lo


def encode(tensors: Mapping[str, np.ndarray], compression: Compression = Compression()) -> bytes:
    """One frame holding ``tensors`` (name -> array) encoded and compressed."""
    codec = CODECS.index(compression.codec)
    head = [MAGIC, struct.pack("<BH", codec, len(tensors))]
    chunks = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if str(arr.dtype) not in _DTYPES:
            raise EdgeInferError(f"tensor '{name}' is {arr.dtype}: frames carry {_DTYPES}")
        enc, data, scale, zero = _quantize(arr, compression.encoding)
        raw_name = name.encode()
        head.append(struct.pack("<H", len(raw_name)) + raw_name)
        head.append(struct.pack("<BBB", enc, _DTYPES.index(str(arr.dtype)), arr.ndim))
        head.append(struct.pack(f"<{arr.ndim}I", *arr.shape))
        head.append(struct.pack("<ff", scale, zero))
        chunks.append(data.tobytes())
    return b"".join(head) + _pack(b"".join(chunks), compression.codec, compression.level)


def _stored(enc: int, dtype: str) -> np.dtype:
    """The dtype a tensor travels in: its own (raw), float16 or uint8 (int8 with a scale)."""
    return {0: np.dtype(dtype), 1: np.dtype(np.float16), 2: np.dtype(np.uint8)}[enc]


@dataclass(frozen=True)
class TensorHeader:
    """One tensor as a frame's header declares it (nothing inflated yet)."""

    name: str
    encoding: int
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero: float

    @property
    def nbytes(self) -> int:
        """Bytes of its payload (exact integers: no overflow whatever the dims)."""
        return _stored(self.encoding, self.dtype).itemsize * math.prod(self.shape)


#: most dimensions a frame's tensor may have, and the largest single dimension
MAX_RANK, MAX_DIM = 16, 2**31 - 1


def read_header(frame: bytes) -> tuple[str, list[TensorHeader], int]:
    """(codec, tensor headers, payload offset) of a frame, without touching its payload;
    FrameError when it is not a frame, is truncated, or declares impossible tensors (a dim over
    2^31 - 1, or more elements, counting zero dims as one, than the frame limit allows)."""
    if frame[:4] != MAGIC:
        raise FrameError("not an edgeinfer tensor frame (bad magic): send frames from encode()")
    try:
        codec_i, count = struct.unpack_from("<BH", frame, 4)
        codec = CODECS[codec_i]
        pos, specs = 7, []
        for _ in range(count):
            (n,) = struct.unpack_from("<H", frame, pos)
            name = frame[pos + 2 : pos + 2 + n].decode()
            pos += 2 + n
            enc, dt, ndim = struct.unpack_from("<BBB", frame, pos)
            if ndim > MAX_RANK:
                raise FrameError(f"tensor '{name[:40]}' declares {ndim} dimensions, over "
                                 f"{MAX_RANK}: send frames from encode()")
            shape = struct.unpack_from(f"<{ndim}I", frame, pos + 3)
            scale, zero = struct.unpack_from("<ff", frame, pos + 3 + 4 * ndim)
            pos += 3 + 4 * ndim + 8
            _stored(enc, _DTYPES[dt])  # KeyError/IndexError: an unknown encoding or dtype
            specs.append(TensorHeader(name, enc, _DTYPES[dt], tuple(shape), scale, zero))
    except (struct.error, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise FrameError(f"truncated or corrupt frame ({exc}): resend it") from exc
    for spec in specs:
        if max(spec.shape, default=0) > MAX_DIM or math.prod(max(d, 1) for d in spec.shape) \
                > MAX_FRAME_BYTES:
            raise FrameError(f"tensor '{spec.name[:40]}' declares shape {list(spec.shape)}, "
                             "over the most a frame can hold: split the request")
    expected = sum(spec.nbytes for spec in specs)
    if expected > MAX_FRAME_BYTES:
        raise FrameError(f"frame declares {expected / 2**20:.0f} MiB of tensors, over the "
                         f"{MAX_FRAME_BYTES // 2**20} MiB limit: split the request")
    return codec, specs, pos


def check_header(specs: list[TensorHeader],
                 expect: Mapping[str, tuple[tuple[int | None, ...], str]]) -> None:
    """FrameError unless the frame declares exactly the tensors of ``expect`` (name ->
    (shape, dtype); a dim that is None or <= 0 is free) in their shapes and dtypes: checked
    before the payload is inflated, so a frame cannot make the node allocate more than the
    model's own tensors."""
    got = {s.name: s for s in specs}
    if sorted(got) != sorted(expect) or len(got) != len(specs):
        shown = sorted(got)[:6]
        raise FrameError(f"the frame carries tensors {shown}, this cut takes "
                         f"{sorted(expect)[:6]}: send the cut you planned on")
    for name, (shape, dtype) in expect.items():
        spec = got[name]
        if spec.dtype != dtype or len(spec.shape) != len(shape) or any(
                e is not None and e > 0 and d != e
                for d, e in zip(spec.shape, shape, strict=True)):
            raise FrameError(f"tensor '{name}' is declared {spec.dtype}{list(spec.shape)}, the "
                             f"model's is {dtype}{list(shape)}: send the model's tensors")


def decode(frame: bytes, expect: Mapping[str, tuple[tuple[int | None, ...], str]] | None = None
           ) -> dict[str, np.ndarray]:
    """The tensors of a frame, back in their original dtypes (int8/fp16 dequantized);
    ``expect`` (name -> (shape, dtype)): the tensors the frame must declare, checked before
    anything is inflated (:func:`check_header`)."""
    codec, specs, pos = read_header(frame)
    if expect is not None:
        check_header(specs, expect)
    payload = _unpack(frame[pos:], codec, sum(spec.nbytes for spec in specs))
    out: dict[str, np.ndarray] = {}
    off = 0
    for spec in specs:
        stored = _stored(spec.encoding, spec.dtype)
        n = spec.nbytes
        if off + n > len(payload):
            raise FrameError(f"frame payload too short for tensor '{spec.name}': resend it")
        arr = np.frombuffer(payload, stored, count=n // stored.itemsize, offset=off)
        arr = arr.reshape(spec.shape)
        off += n
        if spec.encoding == 1:
            arr = arr.astype(spec.dtype)
        elif spec.encoding == 2:
            arr = (arr.astype(np.float32) * np.float32(spec.scale)
                   + np.float32(spec.zero)).astype(spec.dtype)
        out[spec.name] = arr
    return out
