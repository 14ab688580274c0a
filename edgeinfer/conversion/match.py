"""Which output of a converted model is which output of the source: by name, or by a permutation
verified on shapes and values; never by position alone.

Converters keep or drop names (OpenVINO keeps ONNX's; LiteRT names outputs
``StatefulPartitionedCall:N``) and may return a multi-output model's outputs in another order
(an 8-output detector through onnx2tf came back reordered). Where every source name is among
the converted model's, names decide. Otherwise each source output is paired with the converted
output whose shape fits it (equal, channels moved last, or equal once squeezed) and whose
values agree best on the same inputs, one to one; a source output that no converted output fits
is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeinfer.errors import ShapeError

__all__ = ["OutputMatch", "align_output", "match_outputs"]


@dataclass(frozen=True)
class OutputMatch:
    """``order[i]``: the index of the converted output that is source output ``i``."""

    order: tuple[int, ...]
    by: str  #: "name" or "shape and values"

    def names(self, candidate_names: Sequence[str]) -> tuple[str, ...]:
        """The converted model's output names in the source's order."""
        return tuple(candidate_names[j] for j in self.order)


def align_output(ref: np.ndarray, got: np.ndarray) -> np.ndarray | None:
    """``got`` in ``ref``'s shape (channels moved back first, or reshaped when only unit
    dimensions differ), or None when the shapes cannot be the same tensor."""
    if got.shape == ref.shape:
        return got
    if ref.ndim == 4 and got.ndim == 4 and got.transpose(0, 3, 1, 2).shape == ref.shape:
        return got.transpose(0, 3, 1, 2)
    if got.size == ref.size and got.squeeze().shape == ref.squeeze().shape:
        return got.reshape(ref.shape)
    return None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(a @ b / denom)


def match_outputs(
    reference: Sequence[np.ndarray], ref_names: Sequence[str],
    candidate: Sequence[np.ndarray], cand_names: Sequence[str],
) -> OutputMatch:
    """Pair the converted model's outputs (``candidate``, stacked over the same samples as
    ``reference``) with the source's (see the module docstring)."""
    if len(reference) != len(candidate):
        raise ShapeError(
            f"the converted model has {len(candidate)} outputs, the source {len(reference)}: "
            "the conversion lost or added outputs"
        )
    if ref_names and len(set(cand_names)) == len(cand_names) and set(ref_names) <= set(
            cand_names):
        return OutputMatch(tuple(list(cand_names).index(n) for n in ref_names), "name")
    scores = np.full((len(reference), len(candidate)), -np.inf)
    for i, ref in enumerate(reference):
        for j, got in enumerate(candidate):
            aligned = align_output(np.asarray(ref), np.asarray(got))
            if aligned is not None:
                scores[i, j] = _cosine(np.asarray(ref), aligned)
    order: list[int | None] = [None] * len(reference)
    taken: set[int] = set()
    for flat in np.argsort(-scores, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(candidate))
        if np.isfinite(scores[i, j]) and order[i] is None and j not in taken:
            order[i] = j
            taken.add(j)
    missing = [i for i, j in enumerate(order) if j is None]
    if missing:
        shapes = [list(np.shape(c)[1:]) for c in candidate]
        raise ShapeError(
            f"source output {missing[0]} ({ref_names[missing[0]] if ref_names else ''} "
            f"{list(np.shape(reference[missing[0]])[1:])}) matches no output of the converted "
            f"model by shape (its outputs: {shapes}): the conversion changed the outputs"
        )
    return OutputMatch(tuple(int(j) for j in order if j is not None), "shape and values")
