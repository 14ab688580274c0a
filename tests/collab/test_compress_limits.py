"""Tensor frames refuse payloads that inflate past their header (decompression bombs)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edgeinfer.collab.compress import MAGIC, Compression, FrameError, decode, encode


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_round_trip_still_exact(codec: str) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = decode(encode({"x": x}, Compression(encoding="raw", codec=codec)))
    np.testing.assert_array_equal(out["x"], x)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_bomb_refused(codec: str) -> None:
    """A header declaring 4 bytes in front of 64 MiB of compressed zeros is refused."""
    small = encode({"x": np.zeros(1, np.float32)}, Compression(encoding="raw", codec=codec))
    big = encode({"x": np.zeros(16 * 2**20, np.float32)}, Compression(encoding="raw", codec=codec))
    header_len = 4 + 3 + (2 + 1) + 3 + 4 * 1 + 8  # magic, codec+count, name, enc/dtype/ndim, ...
    payload_big = big[header_len:]
    with pytest.raises(FrameError, match="inflates beyond"):
        decode(small[:header_len] + payload_big)


def test_declared_size_limit() -> None:
    """A header declaring more than the frame limit is refused before any decompression."""
    name = b"x"
    frame = (MAGIC + struct.pack("<BH", 1, 1) + struct.pack("<H", 1) + name
             + struct.pack("<BBB", 0, 0, 2) + struct.pack("<2I", 2**16, 2**16)
             + struct.pack("<ff", 1.0, 0.0) + b"junk")
    with pytest.raises(FrameError, match="over the"):
        decode(frame)


def test_bad_encoding_byte_is_a_frame_error() -> None:
    frame = bytearray(encode({"x": np.zeros(4, np.float32)}, Compression(encoding="raw")))
    enc_at = frame.index(b"x") + 1
    frame[enc_at] = 9
    with pytest.raises(FrameError):
        decode(bytes(frame))
