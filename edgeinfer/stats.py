"""The one definition of the percentiles every figure the project prints uses.

``percentile`` is linear interpolation between the closest ranks (NumPy's default ``linear``
method, Hyndman & Fan type 7): p50 is the median, and p99 of 100 samples lies between the two
largest. ``run``, ``bench``, ``tune``, the scheduler and the streams all report through it, so a
p99 means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["latency_summary", "percentile"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation; None if empty."""
    data = np.fromiter(values, dtype=np.float64)
    return float(np.percentile(data, q)) if data.size else None


def latency_summary(samples_ms: Iterable[float]) -> dict[str, float | int | None]:
    """``p50_ms``, ``p90_ms``, ``p99_ms`` and ``runs`` of latency samples in milliseconds."""
    data = np.fromiter(samples_ms, dtype=np.float64)
    if not data.size:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "runs": 0}
    p50, p90, p99 = (float(v) for v in np.percentile(data, (50, 90, 99)))
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "runs": int(data.size)}
