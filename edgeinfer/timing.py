"""The one timing loop: candidates timed in interleaved rounds, and threaded throughput.

Interleaving (each round runs every candidate in turn) makes drift on a shared machine (thermal,
a noisy neighbour) hit every candidate alike, so ratios taken in one run stay meaningful.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["throughput", "time_rounds"]


def time_rounds(
    runners: Sequence[Callable[[], object]], rounds: int, runs: int, warmup: int = 3
) -> list[list[float]]:
    """Latency samples in ms for each zero-argument call: ``warmup`` untimed calls each, then
    ``rounds`` rounds of ``runs`` timed calls per runner, runners taking turns."""
    for fn in runners:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, fn in enumerate(runners):
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                samples[i].append((time.perf_counter() - t0) * 1e3)
    return samples


def throughput(fn: Callable[[], object], workers: int, seconds: float) -> float:
    """Calls per second with ``workers`` threads calling ``fn`` for ``seconds``."""
    counts = [0] * workers
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            fn()
            counts[i] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)
