"""Precision cascade: run the cheap model (INT8) first, the accurate one (FP32) only when unsure.

Unsure means, for a classifier, a top-1 probability less than ``margin`` above the second;
for a detector, any box whose score falls in the ``band`` around the deployment threshold
(a box clearly above is kept, one clearly below is noise either way; in between, INT8 rounding
can flip it). The cascade is generic: ``fast`` and ``accurate`` map an input to a result, and
``uncertain`` judges the fast result. The counters say how often the accurate model ran.

Not thread-safe: one cascade per stream loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = ["CascadeConfig", "PrecisionCascade", "classification_uncertain",
           "detection_uncertain"]

log = logging.getLogger(__name__)

X = TypeVar("X")
R = TypeVar("R")


@dataclass(frozen=True)
class CascadeConfig:
    """When a fast result is too unsure to keep: classification top-1 minus top-2 probability
    below ``margin``; detection: any box score in ``band`` (low inclusive, high exclusive)."""

    margin: float = 0.2
    band: tuple[float, float] = (0.3, 0.6)

    def __post_init__(self) -> None:
        lo, hi = self.band
        if not 0 <= self.margin <= 1 or not 0 <= lo < hi <= 1:
            raise EdgeInferError(f"cascade margin {self.margin} and band {self.band}: need "
                                 "0 <= margin <= 1 and 0 <= low < high <= 1")


def classification_uncertain(probs: np.ndarray, margin: float) -> bool:
    """Whether the top-1 probability is less than ``margin`` above the top-2 (a 1-D vector or
    ``[1, C]``; pass probabilities, not logits)."""
    p = np.asarray(probs, np.float64).reshape(-1)
    if p.size < 2:
        return False
    top2 = np.partition(p, -2)[-2:]
    return bool(top2[1] - top2[0] < margin)


def detection_uncertain(scores: np.ndarray, band: tuple[float, float]) -> bool:
    """Whether any detection score lies in ``band`` ``[low, high)``."""
    s = np.asarray(scores).reshape(-1)
    return bool(np.any((s >= band[0]) & (s < band[1])))


class PrecisionCascade(Generic[X, R]):
    """``cascade(x)``: ``fast(x)``, or ``accurate(x)`` when ``uncertain(fast result)``."""

    def __init__(
        self,
        fast: Callable[[X], R],
        accurate: Callable[[X], R],
        uncertain: Callable[[R], bool],
    ) -> None:
        self.fast = fast
        self.accurate = accurate
        self.uncertain = uncertain
        self.runs = 0
        self.fallbacks = 0

    def __call__(self, x: X) -> R:
        """The result for one input, and whether it came from the accurate model is counted."""
        self.runs += 1
        result = self.fast(x)
        if not self.uncertain(result):
            return result
        self.fallbacks += 1
        log.debug("cascade: fast result unsure, running the accurate model (%d of %d)",
                  self.fallbacks, self.runs)
        return self.accurate(x)

    @property
    def fallback_rate(self) -> float:
        """Share of inputs the accurate model ran on (0 before any input)."""
        return self.fallbacks / self.runs if self.runs else 0.0
