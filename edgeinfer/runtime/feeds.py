"""Seeded synthetic inputs for a model's input specs: the same seed gives the same arrays.

Every backend of one model gets identical feeds (same shape, dtype and seed), so their outputs
can be compared. Float inputs are a standard normal scaled to the range the preprocessing
produces from pixels 0..255 (plus-minus 3 sigma spans it, clipped), or a plain standard normal
when there is no preprocessing to go by; 8-bit integer inputs (quantized images) cover their
whole range; other integers are small (0..9), booleans are coin flips.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edgeinfer.artifact import Preprocess
from edgeinfer.errors import ShapeError
from edgeinfer.model.shapes import fix_shape

__all__ = [
    "feeds_digest",
    "preprocess_range",
    "random_pixel_inputs",
    "static_shape",
    "synthetic_feeds",
]


class _Spec(Protocol):
    """A TensorSpec (backend) or an InputSpec (manifest): name, shape and dtype name."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> Sequence[int | None]: ...

    @property
    def dtype(self) -> str: ...


def preprocess_range(preprocess: Preprocess) -> tuple[float, float]:
    """The lowest and highest value ``((pixel * scale) - mean) / std`` takes for pixels 0..255."""
    ends = [
        (p * preprocess.scale - m) / s
        for p in (0.0, 255.0)
        for m, s in zip(preprocess.mean, preprocess.std, strict=True)
    ]
    return float(min(ends)), float(max(ends))


def static_shape(
    spec: _Spec, shapes: Mapping[str, Sequence[int]] | None = None, index: int | None = None
) -> tuple[int, ...]:
    """The shape to feed ``spec``: from ``shapes`` (by name, else by position ``index`` when
    ``shapes`` is a positional list of one shape per input), else the spec's own static shape.

    A dynamic dimension (None or -1) that nothing resolves is a one-line ShapeError naming the
    input and the ``--input-shape`` flag.
    """
    shapes = shapes or {}
    given = shapes.get(spec.name)
    if given is None and index is not None and len(shapes) > index and spec.name not in shapes:
        candidate = shapes[list(shapes)[index]]
        if len(candidate) == len(spec.shape):
            given = candidate
    return fix_shape(spec.name, list(spec.shape), given)


def synthetic_feeds(
    specs: Sequence[_Spec],
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    preprocess: Preprocess | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One seeded array per input, named as the specs name them.

    Input ``i`` draws from ``numpy.random.default_rng([seed, i])``: the arrays do not depend on
    the backend, only on the seed, the position, the shape and the dtype.
    """
    feeds = {}
    lo_hi = preprocess_range(preprocess) if preprocess is not None else None
    for i, spec in enumerate(specs):
        shape = static_shape(spec, shapes, i)
        rng = np.random.default_rng([seed, i])
        feeds[spec.name] = _draw(rng, shape, np.dtype(spec.dtype), lo_hi)
    return feeds


def random_pixel_inputs(
    shape: Sequence[int], layout: str, preprocess: Preprocess, n: int, seed: int = 0
) -> np.ndarray:
    """``n`` images of uniform random pixels 0..255 run through ``preprocess``'s scale, mean and
    std: ``[n, *shape[1:]]`` float32 in the model's ``layout``. The weakest possible stand-in for
    real images, for checking a conversion or a tuning candidate when none are given (reports
    say so)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, *shape[1:]), dtype=np.uint8).astype(np.float32)
    if pixels.ndim != 4:
        return pixels
    axis = 1 if layout == "NCHW" else -1
    view = [1] * pixels.ndim
    view[axis] = 3 if pixels.shape[axis] == 3 else 1
    mean = np.asarray(preprocess.mean, np.float32)[: view[axis]].reshape(view)
    std = np.asarray(preprocess.std, np.float32)[: view[axis]].reshape(view)
    return (pixels * preprocess.scale - mean) / std


def feeds_digest(feeds: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the feeds' dtypes, shapes and bytes, in input order (names left out: two
    runtimes may name one input differently)."""
    h = hashlib.sha256()
    for arr in feeds.values():
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _draw(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dtype: np.dtype,
    lo_hi: tuple[float, float] | None,
) -> np.ndarray:
    if dtype.kind == "f":
        z = rng.standard_normal(shape)
        if lo_hi is not None:
            lo, hi = lo_hi
            z = np.clip((lo + hi) / 2 + z * (hi - lo) / 6, lo, hi)
        return z.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        if dtype.itemsize == 1:
            info = np.iinfo(dtype)
            return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)
        return rng.integers(0, 10, shape).astype(dtype)
    raise ShapeError(f"cannot make synthetic data of dtype {dtype}: feed the model yourself")


