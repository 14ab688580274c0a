"""The output layouts decoders read, declared once per decoder and checked before decoding.

A layout is a sentence for people (``text``) and a check on the output shapes (count, rank,
shape relations; a dynamic dimension is ``None`` and matches anything). A check returns None
when the outputs fit, else the reason they do not. ``edgeinfer import`` runs the checks on the
shapes shape inference gives; every decoder runs its own on the arrays it is handed, so a
model of another family is refused in one line instead of decoding to nonsense.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.errors import ShapeError

__all__ = [
    "DecoderMismatchError",
    "LayoutCheck",
    "OutputLayout",
    "format_shapes",
    "shapes_of",
]

Dims = tuple[int | None, ...]
#: ``(output shapes, decoder params, labels, input shape or None) -> None or the reason``
LayoutCheck = Callable[[Sequence[Dims], dict[str, Any], Sequence[str] | None, Dims | None],
                       str | None]


class DecoderMismatchError(ShapeError):
    """A decoder was given outputs of a layout it does not read."""


@dataclass(frozen=True)
class OutputLayout:
    """What a decoder reads: ``text`` for messages, ``check`` for the shapes."""

    text: str
    check: LayoutCheck

    def problem(self, shapes: Sequence[Dims], params: dict[str, Any] | None = None,
                labels: Sequence[str] | None = None, input_shape: Dims | None = None,
                ) -> str | None:
        """Why ``shapes`` do not fit this layout, or None when they do."""
        return self.check([tuple(s) for s in shapes], dict(params or {}), labels, input_shape)


def shapes_of(outputs: Sequence[np.ndarray]) -> list[Dims]:
    """The shapes of a decoder's input arrays."""
    return [tuple(int(d) for d in np.shape(o)) for o in outputs]


def format_shapes(shapes: Sequence[Dims]) -> str:
    """``[1, 8400, 84], [1, 32, 160, 160]`` with ``?`` for dynamic dimensions."""
    return ", ".join("[" + ", ".join("?" if d is None else str(d) for d in s) + "]"
                     for s in shapes) or "none"


def _known(d: int | None) -> bool:
    return d is not None and d > 0


def _size(shape: Dims) -> int | None:
    """Element count, None when a dimension is dynamic."""
    return int(np.prod(shape)) if all(_known(d) for d in shape) else None


def _batch_ok(shape: Dims) -> bool:
    return not shape or shape[0] is None or shape[0] in (1, -1)


def any_outputs(shapes: Sequence[Dims], params: dict, labels: Any, inp: Any) -> str | None:
    """``raw``: every model fits."""
    return None if shapes else "the model has no outputs"


def class_vector(shapes: Sequence[Dims], params: dict, labels: Sequence[str] | None,
                 inp: Any) -> str | None:
    """Output 0 holds one score per class: a single dimension above 1 besides the batch (a
    labels file of another length is checked by ``edgeinfer import``, not here: labels short
    of the classes fall back to class ids)."""
    if not shapes:
        return "the model has no outputs"
    s = shapes[0]
    if len(s) > 1 and not _batch_ok(s):
        return f"output 0 has batch {s[0]}"
    rest = s if len(s) == 1 else s[1:]
    big = [d for d in rest if d is None or d > 1]
    if len(big) != 1:
        return (f"output 0 {format_shapes([s])} is not one score per class "
                f"({len(big)} dimensions above 1 after the batch)")
    return None


def class_count(shapes: Sequence[Dims]) -> int | None:
    """The number of classes a :func:`class_vector` output holds, when fixed."""
    s = shapes[0] if shapes else ()
    rest = s if len(s) == 1 else s[1:]
    big = [d for d in rest if d is None or d > 1]
    return big[0] if len(big) == 1 and _known(big[0]) else None


def yolo_head(shapes: Sequence[Dims], params: dict, labels: Sequence[str] | None,
              inp: Any) -> str | None:
    """One output ``[1, 4 + C, N]`` or ``[1, N, 4 + C]``."""
    if len(shapes) != 1:
        return f"it reads 1 output, the model has {len(shapes)}"
    s = shapes[0]
    if len(s) == 3 and not _batch_ok(s):
        return f"output batch {s[0]}: decode one image at once"
    if len(s) not in (2, 3):
        return f"output 0 {format_shapes([s])} is not [1, 4 + C, N] or [1, N, 4 + C]"
    classes = params.get("num_classes") or (len(labels) if labels else None)
    axes = [d for d in s[-2:] if d is not None]
    if classes is not None and axes and 4 + int(classes) not in axes:
        return f"output 0 {format_shapes([s])} has no axis of 4 + {classes} classes"
    if axes and max(axes) < 5:
        return f"output 0 {format_shapes([s])} has no axis of 4 box values + classes"
    return None


def blazeface_pair(anchors: Callable[[dict], int]) -> LayoutCheck:
    """Two outputs ``[1, A, 16]`` (boxes) and ``[1, A, 1]`` (scores), A from the variant."""

    def check(shapes: Sequence[Dims], params: dict, labels: Any, inp: Any) -> str | None:
        try:
            a = anchors(params)
        except Exception as exc:  # an unknown variant: the decoder's own error names it
            return str(exc)
        flat = [(s[-2] if len(s) >= 2 else None, s[-1] if s else None) for s in shapes]
        boxes = [f for f in flat if f[0] in (a, None) and f[1] is not None and f[1] >= 4]
        scores = [f for f in flat if f[0] in (a, None) and f[1] == 1]
        if len(shapes) < 2 or not boxes or not scores:
            return f"it reads [1, {a}, 16] boxes and [1, {a}, 1] scores"
        return None

    return check


def probability_map(shapes: Sequence[Dims], params: dict, labels: Any,
                    inp: Dims | None) -> str | None:
    """Output 0 ``[1, 1, H, W]`` (or ``[1, H, W, 1]``), H and W those of the input when the
    input is known."""
    if not shapes:
        return "the model has no outputs"
    s = shapes[0]
    if len(s) == 4 and s[3] == 1 and s[1] != 1:
        s = (s[0], 1, s[1], s[2])
    if len(s) not in (2, 3, 4) or any(_known(d) and d != 1 for d in s[:-2]) or any(
            _known(d) and d < 2 for d in s[-2:]):
        return f"output 0 {format_shapes([s])} is not a map [1, 1, H, W]"
    if inp is not None and len(inp) == 4:
        hw = {tuple(inp[2:]), tuple(inp[1:3])}
        if all(_known(d) for d in s[-2:]) and all(all(_known(d) for d in x) for x in hw) and \
                tuple(s[-2:]) not in hw:
            return f"output 0 {format_shapes([s])} is not the input's size {format_shapes([inp])}"
    return None


def ctc_sequence(shapes: Sequence[Dims], params: dict, labels: Sequence[str] | None,
                 inp: Any) -> str | None:
    """Output 0 ``[1, T, C]``: C = blank + the charset (+ a space when ``append_space``)."""
    if not shapes:
        return "the model has no outputs"
    s = shapes[0]
    if len(s) != 3 or not _batch_ok(s):
        return f"output 0 {format_shapes([s])} is not a sequence [1, T, C]"
    if labels is not None and _known(s[2]):
        want = len(labels) + 1 + (1 if params.get("append_space", True) else 0)
        if s[2] != want:
            return (f"output 0 has {s[2]} classes per step, the charset gives {want} "
                    f"(blank + {len(labels)} characters"
                    + (" + space)" if params.get("append_space", True) else ")"))
    return None


def point_set(shapes: Sequence[Dims], params: dict, labels: Any, inp: Any) -> str | None:
    """Output 0 holds K points of ``dims`` (2 or 3) coordinates: ``[1, K, D]``,
    ``[1, 1, 1, K*D]`` (MediaPipe), or ``[1, K*D]`` beside a presence output of one value."""
    if not shapes:
        return "the model has no outputs"
    s = shapes[0]
    size = _size(s[1:]) if s else None
    dims = int(params.get("dims", 3 if size and size % 3 == 0 else 2))
    presence = any(_size(o) == 1 for o in shapes[1:])
    shaped = (len(s) == 3 and s[2] in (2, 3)) or (len(s) == 4 and tuple(s[1:3]) == (1, 1)) or (
        len(s) == 2 and presence)
    if not shaped or not _batch_ok(s):
        return (f"output 0 {format_shapes([s])} is not [1, K, D], [1, 1, 1, K*D] or [1, K*D] "
                "with a presence output")
    if size is not None and (size < 2 * dims or size % dims):
        return f"output 0 {format_shapes([s])} is not a set of {dims}-D points"
    return None


def describe(layouts: dict[str, OutputLayout], name: str) -> str:
    """The sentence of decoder ``name``'s layout, or that none is declared."""
    return layouts[name].text if name in layouts else "a layout it does not declare"
