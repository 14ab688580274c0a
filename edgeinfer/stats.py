"""The one definition of the percentiles every figure the project prints uses.

``percentile`` is linear interpolation between the closest ranks (NumPy's default ``linear``
method, Hyndman & Fan type 7): p50 is the median, and p99 of 100 samples lies between the two
largest. ``run``, ``bench``, ``tune``, the scheduler and the streams all report through it, so a
p99 means the same thing everywhere. ``wilson_interval`` and ``bootstrap_interval`` put 95%
intervals on measured proportions and drops (optimize's accuracy guard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["bootstrap_interval", "latency_summary", "percentile", "wilson_interval"]


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


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a proportion ``successes / n``: honest at 0
    and at small ``n`` (0 of 19 gives 0 to 0.168, where the normal approximation gives 0 to 0).
    ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = 400, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` samples drawn with
    replacement (seeded: the same inputs give the same interval)."""
    if n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, (tail, 100 - tail))
    return float(lo), float(hi)
