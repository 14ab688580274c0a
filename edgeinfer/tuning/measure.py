"""Measuring candidates: outputs on the evaluation samples, latency, throughput.

Every candidate is checked on the same held-out samples against the FP32 reference (ONNX
Runtime on the FP32 graph), with the drop measure ``optimize`` uses. Latency is timed in
interleaved rounds (each round runs every candidate in turn), so drift on a shared machine
hits them all alike: a short screening pass over all candidates, then a longer pass over the
finalists together with the baseline (ONNX Runtime FP32 with its own defaults).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edgeinfer.runtime.engine import Engine


def to_layout(batch: np.ndarray, src: str, dst: str) -> np.ndarray:
    """A ``[N, ...]`` image batch moved from layout ``src`` to ``dst`` (NCHW <-> NHWC)."""
    if src == dst or batch.ndim != 4:
        return batch
    return batch.transpose(0, 2, 3, 1) if dst == "NHWC" else batch.transpose(0, 3, 1, 2)


def align(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """``candidate`` in ``reference``'s layout when a converter moved channels last."""
    if candidate.shape == reference.shape or candidate.ndim != 4:
        return candidate
    moved = candidate.transpose(0, 3, 1, 2)
    return moved if moved.shape == reference.shape else candidate


def outputs(engine: Engine, batch: np.ndarray) -> np.ndarray:
    """The first output for each sample of ``batch`` (batch 1 each), stacked."""
    name = engine.inputs[0].name
    dtype = engine.inputs[0].dtype
    feed_dtype = np.float32 if np.dtype(dtype).kind in "iu" else np.dtype(dtype)
    outs = [
        engine.run({name: np.ascontiguousarray(x[None], dtype=feed_dtype)})[0][0] for x in batch
    ]
    return np.stack(outs)


def time_rounds(
    runners: Sequence[Callable[[], object]], rounds: int, runs: int, warmup: int = 3
) -> list[list[float]]:
    """Latency samples in ms for each zero-argument call, timed in interleaved rounds."""
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


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 in ms, and the sequential throughput the median implies."""
    p50 = statistics.median(samples)
    return {
        "p50_ms": p50,
        "p90_ms": percentile(samples, 0.9),
        "p99_ms": percentile(samples, 0.99),
        "runs": len(samples),
    }


def throughput(fn: Callable[[], object], workers: int, seconds: float) -> float:
    """Inferences per second with ``workers`` threads calling ``fn`` for ``seconds``."""
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
