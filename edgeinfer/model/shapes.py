"""Input shapes the user names (``--input-shape NAME=1x3x640x640``) and the model's own dims,
reconciled in one place for every verb and every format.

A model dimension is fixed when it is a positive integer; anything else (``None``, a symbolic
name such as ``"batch"`` or ``"p2o.DynamicDimension.0"``, or ``-1`` as Paddle and TFLite write
it) is dynamic and must be given. Every error suggests a fix that :func:`parse_input_shape`
accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgeinfer.errors import ShapeError

__all__ = [
    "EXAMPLE_SIZE",
    "Shape",
    "example_fix",
    "fix_shape",
    "format_dims",
    "is_fixed",
    "parse_input_shapes",
    "parse_shape",
]

Shape = tuple[int, ...]
#: the spatial size an error's suggested ``--input-shape`` uses for a dynamic height/width
EXAMPLE_SIZE = 640


def is_fixed(dim: object) -> bool:
    """Whether a model dimension is a known size (a positive int; -1, None, names are not)."""
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def format_dims(dims: Sequence[object]) -> str:
    """``[1, 3, ?, ?]``: fixed sizes as numbers, every dynamic dimension as ``?``."""
    return "[" + ", ".join(str(d) if is_fixed(d) else "?" for d in dims) + "]"


def example_fix(name: str, dims: Sequence[object]) -> str:
    """A ``--input-shape`` value the parser accepts for an input with ``dims``: its fixed sizes
    kept, a dynamic first dimension (batch) as 1, other dynamic ones as :data:`EXAMPLE_SIZE`."""
    sizes = [str(d) if is_fixed(d) else ("1" if i == 0 else str(EXAMPLE_SIZE))
             for i, d in enumerate(dims)]
    return f"{name}={'x'.join(sizes)}"


def dynamic_message(name: str, dims: Sequence[object]) -> str:
    """The one-line error for an input whose dynamic dims nothing resolves."""
    return (
        f"input '{name}' has dynamic shape {format_dims(dims)}: fix each dynamic size with "
        f"--input-shape {example_fix(name, dims)} (the sizes to run it at; {EXAMPLE_SIZE} is "
        "an example)"
    )


def fix_shape(name: str, dims: Sequence[object], given: Sequence[int] | None) -> Shape:
    """The static shape to use for input ``name`` with model dims ``dims``: ``given`` when it
    matches the rank and every fixed dimension, else the model's own when all its dims are
    fixed; a one-line ShapeError otherwise."""
    if given is not None:
        shape = tuple(int(d) for d in given)
        if len(shape) != len(dims) or any(
            is_fixed(d) and d != s for d, s in zip(dims, shape, strict=False)
        ):
            raise ShapeError(
                f"input '{name}' has shape {format_dims(dims)}, --input-shape gives "
                f"{format_dims(shape)}: match the model's rank and fixed dimensions "
                f"(e.g. --input-shape {example_fix(name, dims)})"
            )
        return shape
    if all(is_fixed(d) for d in dims):
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]
    raise ShapeError(dynamic_message(name, dims))


def parse_shape(text: str) -> Shape:
    """Parse ``1x3x640x640`` (or ``1,3,640,640``) into a tuple of ints."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError as exc:
        raise ShapeError(f"bad shape '{text}': write it like 1x3x640x640") from exc
    if not dims or any(d <= 0 for d in dims):
        raise ShapeError(f"bad shape '{text}': every dimension must be a positive integer")
    return dims


def parse_input_shapes(values: Sequence[str] | None) -> dict[str, Shape] | None:
    """``["x=1x3x224x224"]`` -> ``{"x": (1, 3, 224, 224)}``; None or empty -> None."""
    if not values:
        return None
    shapes = {}
    for v in values:
        name, sep, shape = v.rpartition("=")
        if not sep or not name:
            raise ShapeError(f"bad --input-shape '{v}': write it as NAME=1x3x640x640")
        shapes[name] = parse_shape(shape)
    return shapes


def check_names(shapes: Mapping[str, Shape] | None, names: Sequence[str]) -> None:
    """A one-line error when ``shapes`` names an input the model does not have."""
    unknown = sorted(set(shapes or {}) - set(names))
    if unknown:
        raise ShapeError(
            f"--input-shape names {unknown}, but the model's inputs are {list(names)}: "
            "use one of those names"
        )
