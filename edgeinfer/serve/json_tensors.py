"""JSON tensor bodies to feeds: ``{"inputs": {name: {"shape", "dtype", "data"}}}``.

Pure functions over numpy and the standard library, importable alone (the node parses large
bodies in a helper process, :mod:`edgeinfer.serve.json_worker`, that imports only this).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = ["ALLOWED_DTYPES", "MAX_JSON_DEPTH", "BadRequestError", "json_body_bound", "json_depth",
           "parse_json_body", "parse_tensors"]

ALLOWED_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64",
                  "bool")
MAX_RANK = 8
#: the longest a number can be in a JSON tensor body, layout included ("-1.2345678e-308, ",
#: indented): bodies larger than this many bytes per input value are refused unread
JSON_BYTES_PER_VALUE = 64
JSON_SLACK_BYTES = 64 * 1024


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


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_RANK or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in value
    ):
        raise BadRequestError(
            f"input '{name}': 'shape' must be a list of at most {MAX_RANK} non-negative integers"
        )
    return tuple(value)


def _check_model_shape(name: str, shape: tuple[int, ...],
                       expected: tuple[int, ...] | None) -> None:
    """The declared shape against the model's (dims <= 0 there are free), before any data is
    converted."""
    if expected is not None and (len(shape) != len(expected) or any(
            e > 0 and d != e for d, e in zip(shape, expected, strict=True))):
        raise BadRequestError(f"input '{name}' has shape {list(shape)}: the model expects "
                              f"{list(expected)} (dims <= 0 are free)")


def json_body_bound(inputs: Any) -> int | None:
    """The most bytes a JSON body for ``inputs`` (the manifest's input specs) can need: every
    value written at its longest, plus room for layout; None when a shape is dynamic."""
    shapes = [tuple(spec.shape) for spec in inputs]
    if not shapes or any(d <= 0 for s in shapes for d in s):
        return None
    return sum(math.prod(s) for s in shapes) * JSON_BYTES_PER_VALUE + JSON_SLACK_BYTES


def parse_json_body(raw: bytes, inputs: Any, max_elements: int) -> dict[str, np.ndarray]:
    """Feeds from a JSON request body for ``inputs`` (the manifest's input specs): the
    nesting bounded before parsing, shapes checked before data is converted. CPU work: call it
    off the event loop."""
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise BadRequestError(f"the JSON body nests {depth} deep, over the limit of "
                              f"{MAX_JSON_DEPTH}: send tensors as {{'shape', 'data'}} with "
                              "flat data")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise BadRequestError(f"the body is not valid JSON ({str(exc)[:80]})") from exc
    shapes = {spec.name: tuple(spec.shape) for spec in inputs}
    return parse_tensors(body, list(shapes), max_elements, shapes)


def parse_tensors(body: Any, input_names: list[str], max_elements: int,
                  shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Feeds from ``{"inputs": {name: {"shape", "dtype", "data"}}}``; the names must be the
    model's inputs, each shape the model's (``shapes``, when given), ``data`` (flat or nested)
    must fill ``shape`` exactly."""
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
        _check_model_shape(name, shape, (shapes or {}).get(name))
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
