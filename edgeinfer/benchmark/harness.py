"""Measure one configuration (model x backend x threads) in this process.

For one configuration, in order: collect garbage and return freed heap pages to the OS
(glibc ``malloc_trim``), reset the peak-RSS mark (Linux: ``/proc/self/clear_refs``), read the
baseline RSS, construct the Engine without warm-up (load time), run once (cold start: the first
inference), warm up, then time ``runs`` sequential batch-1 inferences (or as many as fit in
``duration`` seconds) with the garbage collector paused, read the peak RSS, close the engine and
release its memory again.

Peak RSS comes from ``VmHWM`` after resetting it with ``echo 5 > /proc/self/clear_refs`` (Linux
4.0+). Where that file is not writable the peak falls back to ``getrusage``'s ``ru_maxrss``: the
peak since the process started, so it can only grow from one configuration to the next and is an
upper bound for all but the first; :func:`memory_method` says which one is in use.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import Artifact, Preprocess
from edgeinfer.machine import memory_method, peak_rss_bytes, reset_peak_rss, rss_bytes, trim_heap
from edgeinfer.runtime.backends import BackendOptions, capabilities
from edgeinfer.runtime.feeds import feeds_digest, synthetic_feeds
from edgeinfer.stats import percentile

__all__ = ["BenchResult", "measure", "model_files"]

#: the fewest timed runs a --duration measurement makes, however slow the model
MIN_RUNS = 3

@dataclass(frozen=True)
class BenchResult:
    """One configuration's measurement; ``error`` is set (and the figures are None) if it failed.

    Times are in milliseconds, memory in bytes. ``samples_ms`` are the raw per-inference
    latencies in run order; ``outputs`` are the first inference's outputs (for agreement; not
    serialised). ``agreement`` is filled in by the suite against the model's first backend.
    """

    model: str
    backend: str
    threads: int
    model_bytes: int
    spinning: str | None = None  # ONNX Runtime's worker spinning (ort rows only)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    load_ms: float | None = None
    cold_ms: float | None = None
    samples_ms: tuple[float, ...] = ()
    wall_s: float | None = None
    rss_baseline_bytes: int | None = None
    rss_peak_bytes: int | None = None
    rss_method: str = ""
    feeds_sha256: str = ""
    error: str | None = None
    agreement: Mapping[str, Any] | None = None
    outputs: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the configuration loaded and ran."""
        return self.error is None

    @property
    def backend_label(self) -> str:
        """The backend, with ONNX Runtime's spinning when it is not the default (``ort
        never-spin``)."""
        return backend_label(self.backend, self.spinning)

    @property
    def label(self) -> str:
        """``backend, N threads`` (threads 0: the backend's default)."""
        return f"{self.backend_label}, {threads_label(self.threads)}"

    @property
    def runs(self) -> int:
        """Timed inferences (warm-up and the cold first run excluded)."""
        return len(self.samples_ms)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100) of the latency samples in ms (``edgeinfer.stats``)."""
        return percentile(self.samples_ms, q)

    @property
    def p50_ms(self) -> float | None:
        """Median latency."""
        return self.percentile(50)

    @property
    def p90_ms(self) -> float | None:
        """90th percentile latency."""
        return self.percentile(90)

    @property
    def p99_ms(self) -> float | None:
        """99th percentile latency."""
        return self.percentile(99)

    @property
    def mean_ms(self) -> float | None:
        """Mean latency."""
        return float(np.mean(self.samples_ms)) if self.samples_ms else None

    @property
    def throughput(self) -> float | None:
        """Inferences per second, sequential batch 1: timed runs / their wall time."""
        if not self.samples_ms or not self.wall_s:
            return None
        return self.runs / self.wall_s

    @property
    def rss_growth_bytes(self) -> int | None:
        """Peak RSS over the baseline RSS read just before the engine was constructed."""
        if self.rss_peak_bytes is None or self.rss_baseline_bytes is None:
            return None
        return self.rss_peak_bytes - self.rss_baseline_bytes


def backend_label(backend: str, spinning: str | None) -> str:
    """``ort``, or ``ort never-spin`` where an ORT configuration does not spin the default way."""
    if not capabilities(backend).spinning or spinning in (None, "run"):
        return backend
    return f"{backend} {spinning}-spin"


def threads_label(threads: int) -> str:
    """``1 thread``, ``2 threads``, or ``default threads`` for 0."""
    if threads == 0:
        return "default threads"
    return f"{threads} thread" + ("" if threads == 1 else "s")


# --- memory --------------------------------------------------------------------------------


# --- files ---------------------------------------------------------------------------------


def model_files(artifact: Artifact) -> tuple[Path, ...]:
    """The model file and the companions it needs (OpenVINO's .bin)."""
    return (
        artifact.model_path,
        *(artifact.path / c for c in artifact.manifest.model.companions),
    )


# --- one configuration ---------------------------------------------------------------------


def _open_engine(artifact: Artifact, backend: str, threads: int, spinning: str = "run") -> Any:
    from edgeinfer.runtime.engine import Engine

    # warmup=False: the first run after construction is the cold first inference. Options are
    # always given, so a tuned artifact's `runtime` section does not change what is measured.
    options = BackendOptions(threads=threads, spinning=spinning)  # type: ignore[arg-type]
    return Engine(artifact, backend, options, warmup=False)


def measure(
    artifact: Artifact,
    backend: str,
    threads: int,
    *,
    name: str | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    runs: int | None = None,
    duration: float | None = None,
    warmup: int = 10,
    seed: int = 0,
    preprocess: Preprocess | None = None,
    rss_method: str | None = None,
    tick: Callable[[float], None] | None = None,
    spinning: str = "run",
) -> BenchResult:
    """Load ``artifact`` in ``backend`` with ``threads`` and time it; see the module docstring.
    ``spinning``: ONNX Runtime's worker spinning (``run``, ``always``, ``never``; ort only).

    Stops after ``runs`` timed inferences (100 when neither is given), or once ``duration``
    seconds have passed (at least :data:`MIN_RUNS`). ``tick(fraction)`` reports progress of
    this configuration (0..1), at most every 0.1 s and never inside a timed inference; the time
    it takes is left out of the wall time that throughput divides by. Errors propagate (the
    suite decides whether one becomes a row or stops the run).
    """
    if runs is not None and duration is not None:
        raise ValueError("measure takes runs or duration, not both")
    if runs is None and duration is None:
        runs = 100
    method = rss_method or memory_method()
    model_bytes = sum(f.stat().st_size for f in model_files(artifact) if f.exists())
    engine = None
    trim_heap()
    if method == "clear_refs":
        reset_peak_rss()
    baseline = rss_bytes()
    try:
        t0 = time.perf_counter()
        engine = _open_engine(artifact, backend, threads, spinning)
        load_ms = (time.perf_counter() - t0) * 1e3
        feeds = synthetic_feeds(engine.inputs, shapes, preprocess=preprocess, seed=seed)
        t0 = time.perf_counter()
        outputs = engine.run(feeds)
        cold_ms = (time.perf_counter() - t0) * 1e3
        outputs = tuple(np.array(o, copy=True) for o in outputs)
        samples, wall = _time_runs(engine.run, feeds, runs, duration, warmup, tick)
        peak = peak_rss_bytes(method)
    finally:
        if engine is not None:
            engine.close()
        del engine
        trim_heap()
    return BenchResult(
        model=name or artifact.manifest.name,
        backend=backend,
        threads=threads,
        model_bytes=model_bytes,
        spinning=spinning if capabilities(backend).spinning else None,
        input_shapes={k: tuple(int(d) for d in v.shape) for k, v in feeds.items()},
        load_ms=load_ms,
        cold_ms=cold_ms,
        samples_ms=samples,
        wall_s=wall,
        rss_baseline_bytes=baseline,
        rss_peak_bytes=peak,
        rss_method=method,
        feeds_sha256=feeds_digest(feeds),
        outputs=outputs,
    )


def _time_runs(
    run: Callable[[dict[str, np.ndarray]], Any],
    feeds: dict[str, np.ndarray],
    runs: int | None,
    duration: float | None,
    warmup: int,
    tick: Callable[[float], None] | None,
) -> tuple[tuple[float, ...], float]:
    clock = time.perf_counter
    last_tick = clock()
    for i in range(warmup):
        run(feeds)
        if tick is not None and clock() - last_tick > 0.1:
            last_tick = clock()
            tick(0.1 * (i + 1) / warmup)
    samples: list[int] = []
    in_tick = 0.0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        deadline = math.inf if duration is None else start + duration
        while True:
            t0 = time.perf_counter_ns()
            run(feeds)
            samples.append(time.perf_counter_ns() - t0)
            now = clock()
            if runs is not None and len(samples) >= runs:
                break
            if now >= deadline and len(samples) >= MIN_RUNS:
                break
            if tick is not None and now - last_tick > 0.1:
                done = len(samples) / runs if runs is not None else (now - start) / duration
                tick(0.1 + 0.9 * min(done, 1.0))
                last_tick = clock()
                in_tick += last_tick - now
        wall = clock() - start - in_tick  # the progress display's time is not inference time
    finally:
        if gc_was_enabled:
            gc.enable()
    if tick is not None:
        tick(1.0)
    return tuple(s / 1e6 for s in samples), wall
