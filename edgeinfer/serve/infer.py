"""Request bodies to feeds and outputs to JSON, for the node's infer endpoint.

Pure functions over numpy (the JSON tensor format lives in
:mod:`edgeinfer.serve.json_tensors`, which a helper process imports alone), so every rule about
bad input (a tensor whose data does not fill its shape, an unknown input name, an undecodable
image) is one ``BadRequestError`` line tested without a server, and the HTTP layer only maps it
to 400.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgeinfer.serve.json_tensors import (
    ALLOWED_DTYPES,
    MAX_JSON_DEPTH,
    BadRequestError,
    json_body_bound,
    json_depth,
    parse_json_body,
    parse_tensors,
)
from edgeinfer.vision.image_io import MAX_PIXELS, ImageDecodeError, image_size
from edgeinfer.vision.image_io import decode_image as _decode_image

__all__ = [
    "ALLOWED_DTYPES", "MAX_JSON_DEPTH", "MAX_PIXELS", "BadRequestError", "decode_image",
    "image_size", "json_body_bound", "json_depth", "outputs_to_json", "parse_json_body",
    "parse_tensors", "result_to_json",
]

def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A BGR image from encoded bytes (:func:`edgeinfer.vision.image_io.decode_image`);
    BadRequestError (answered 400) when it cannot be decoded or is over ``max_pixels``."""
    try:
        return _decode_image(data, max_pixels)
    except ImageDecodeError as exc:
        raise BadRequestError(str(exc)) from exc


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
    """A decoder's result as JSON-ready values, as ``edgeinfer run --json`` writes them: its
    ``to_json()`` where it has one (text, landmarks, raw outputs, anomaly maps), else its
    ``to_dicts()`` (classes, boxes)."""
    if hasattr(result, "to_json"):
        return result.to_json()
    if hasattr(result, "to_dicts"):
        return result.to_dicts()
    return result
