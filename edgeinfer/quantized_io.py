"""Float <-> integer tensors for quantized model inputs and outputs (scale, zero point).

A fully integer TFLite model takes uint8/int8 input and gives uint8/int8 output; callers feed
and read float tensors. Shared by the LiteRT backend and the conversion checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dequantize", "quantize_input"]


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """``round(x / scale + zero_point)`` clipped to ``dtype``'s range (uint8, int8, int16)."""
    dtype = np.dtype(dtype)
    if not scale:
        return np.asarray(x).astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale) + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``(y - zero_point) * scale`` as float32; ``y`` unchanged (as float32) when scale is 0."""
    y = np.asarray(y)
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
