"""Request bodies to feeds and outputs to JSON, for the node's infer endpoint.

Pure functions over numpy, so every rule about bad input (a tensor whose data does not fill
its shape, an unknown input name, an undecodable image) is one ``BadRequestError`` line tested
without a server, and the HTTP layer only maps it to 400.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = [
    "ALLOWED_DTYPES", "MAX_JSON_DEPTH", "MAX_PIXELS", "BadRequestError", "decode_image",
    "image_size", "json_depth",
    "outputs_to_json", "parse_tensors", "result_to_json",
]

ALLOWED_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64",
                  "bool")
MAX_RANK = 8
#: largest image accepted, in pixels (50 MP: above 8K video and 5 MP inspection frames)
MAX_PIXELS = 50_000_000


#: deepest JSON nesting accepted: a tensor of rank 8 inside the body needs about 12. Checked
#: before parsing, because the parser's own guard is the interpreter's recursion limit, which
#: an imported library may raise (onnx2tf sets it to 2**31 - 1) until deep input overflows the
#: C stack.
MAX_JSON_DEPTH = 64
_OPEN, _CLOSE = b"[{", b"]}"


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting in ``raw``, counted without parsing (brackets inside strings
    count too, so this can only over-estimate)."""
    brackets = raw.translate(None, bytes(set(range(256)) - set(_OPEN + _CLOSE)))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, np.uint8)
    steps = np.where(np.isin(codes, np.frombuffer(_OPEN, np.uint8)), 1, -1)
    return int(np.cumsum(steps).max())


class BadRequestError(EdgeInferError):
    """The request body cannot be turned into feeds (answered 400)."""


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
    """A BGR image from encoded bytes (JPEG, PNG, BMP, TIFF, WebP); BadRequestError when it
    cannot be decoded, or when its header declares more than ``max_pixels`` (a few KB of
    compressed zeros can declare gigabytes of pixels: refused before decoding)."""
    if not data:
        raise BadRequestError("the uploaded image is empty: send a JPEG or PNG file")
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadRequestError(
            f"the uploaded image declares {size[0]}x{size[1]} pixels, over the limit of "
            f"{max_pixels / 1e6:.0f} MP: send a smaller image"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise BadRequestError(
            f"the uploaded file ({len(data)} bytes) is not a decodable image: send a JPEG, PNG, "
            "BMP or TIFF file"
        )
    return image


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_RANK or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in value
    ):
        raise BadRequestError(
            f"input '{name}': 'shape' must be a list of at most {MAX_RANK} non-negative integers"
        )
    return tuple(value)


def parse_tensors(body: Any, input_names: list[str], max_elements: int) -> dict[str, np.ndarray]:
    """Feeds from ``{"inputs": {name: {"shape", "dtype", "data"}}}``; the names must be the
    model's inputs, ``data`` (flat or nested) must fill ``shape`` exactly."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise BadRequestError('send {"inputs": {NAME: {"shape": [...], "dtype": "float32", '
                         '"data": [...]}}}')
    inputs: dict[str, Any] = body["inputs"]
    if sorted(inputs) != sorted(input_names):
        raise BadRequestError(f"inputs {sorted(inputs)} do not match the model's {input_names}")
    feeds = {}
    for name, tensor in inputs.items():
        if not isinstance(tensor, dict):
            raise BadRequestError(f"input '{name}' must be an object with shape, dtype and data")
        shape = _shape(name, tensor.get("shape"))
        dtype = tensor.get("dtype", "float32")
        if dtype not in ALLOWED_DTYPES:
            raise BadRequestError(f"input '{name}': dtype {str(dtype)[:20]!r} is not one of "
                             f"{', '.join(ALLOWED_DTYPES)}")
        count = math.prod(shape)
        if count > max_elements:
            raise BadRequestError(f"input '{name}' has {count} elements, over the limit of "
                             f"{max_elements}: send a smaller tensor")
        try:
            arr = np.asarray(tensor.get("data"), dtype=dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadRequestError(f"input '{name}': 'data' is not a list of {dtype} numbers "
                             f"({str(exc).splitlines()[0][:80]})") from exc
        if arr.size != count:
            raise BadRequestError(f"input '{name}': 'data' holds {arr.size} values, shape "
                             f"{list(shape)} needs {count}")
        feeds[name] = arr.reshape(shape)
    return feeds


def _json_values(arr: np.ndarray) -> list[Any]:
    flat = arr.ravel()
    if flat.dtype.kind == "f":
        return [float(x) if math.isfinite(x) else None for x in flat.tolist()]
    return flat.tolist()


def outputs_to_json(outputs: list[np.ndarray], names: tuple[str, ...]) -> dict[str, Any]:
    """Raw outputs as ``{name: {shape, dtype, data}}`` (non-finite floats become null)."""
    out = {}
    for i, arr in enumerate(outputs):
        arr = np.asarray(arr)
        name = names[i] if i < len(names) else f"output_{i}"
        out[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "data": _json_values(arr)}
    return out


def result_to_json(result: Any) -> Any:
    """A decoder's result as JSON-ready values (``Detections`` have ``to_dicts``)."""
    if hasattr(result, "to_dicts"):
        return result.to_dicts()
    return result
