"""Several models on one device: priorities with aging, deadlines, a memory budget.

Each request names a registered model, its feeds, a priority (higher runs first) and an
optional deadline. A worker picks, among all queued requests:

1. the highest *level*: ``priority + floor(age / aging_s)``, so a request rises one level per
   ``aging_s`` seconds of waiting and nothing starves under constant higher-priority load;
2. within a level, the earliest deadline (requests without one come after);
3. then the oldest.

Admission control: at submit, a request whose deadline cannot be met (its model's estimated run
time, plus the estimated work queued ahead of it shared over the workers, plus a load when the
model is not loaded) is rejected; a full queue (``queue_size`` per model) rejects too. At
dispatch, a request whose deadline has passed, or would pass before a run of the estimated
length ends, is skipped; the deadline is checked again right before ``run`` (after a load),
so a request already past its deadline never runs. Run time estimates are an exponential
moving average of measured runs (``expected_run_ms`` at registration until the first run).
With ``preempt``, a higher-priority request that finds every worker busy aborts the
lowest-priority run in progress (ONNX Runtime checks ``RunOptions.terminate`` between nodes;
OpenVINO cancels its infer request), which is queued again; otherwise nothing preempts a run
in progress.

Workers x intra-op threads is kept within the cores (onnxruntime issue 17011: sessions that
each take every core slow each other down, 2.09x reported), with spinning off (ORT workers
park when a run ends). The default, one worker whose engines use every core, was chosen by
measurement (benchmarks/scheduler.py, docs/benchmarks/; 2 cores): a lone request then has
every core, so three models in turn cost 1.10x the sum of their standalone latencies, where
two one-thread workers took 1.55x (a model runs on one core while the other idles). Under
saturating load two one-thread workers (``workers=2``) did better: high-priority p99 6 ms
against 14 ms (another worker frees sooner) and more low-priority runs done
(one-thread runs scale better): choose them when the queues are always full.

Models load on first use through a :class:`~edgeinfer.runtime.model_cache.ModelCache` under
``memory_budget_bytes`` and are unloaded least recently used (footprints measured as that
module describes).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load
from edgeinfer.machine import usable_cpus
from edgeinfer.runtime.backends import BackendOptions
from edgeinfer.runtime.cancel import CancelToken, RunCancelled
from edgeinfer.runtime.model_cache import Loader, ModelCache, ModelSpec
from edgeinfer.stats import percentile

logger = logging.getLogger(__name__)

__all__ = [
    "DeadlineMissedError",
    "RejectedError",
    "ScheduledEngine",
    "Scheduler",
    "SchedulerConfig",
    "plan_workers",
]

#: samples kept per model for the percentiles in ``stats()``
WINDOW = 4096
#: weight of the newest run in the run-time estimate (exponential moving average)
EWMA = 0.2


class RejectedError(EdgeInferError):
    """A request refused at submit: ``reason`` is ``queue_full``, ``deadline`` or ``closed``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeadlineMissedError(EdgeInferError):
    """A queued request was skipped: its deadline passed, or would before its run could end."""


@dataclass(frozen=True)
class SchedulerConfig:
    """How the scheduler runs.

    ``workers``/``threads``: worker threads and each engine's intra-op threads (0: chosen by
    :func:`plan_workers`). ``queue_size``: queued requests per model. ``aging_s``: seconds of
    waiting per priority level gained (0: strict priority, which can starve). ``admission``:
    reject at submit requests estimated to miss their deadline. ``memory_budget_bytes``: the
    models' measured footprints stay under it (None: no limit). ``options``: backend options
    for every engine (``threads`` is overridden by ``threads`` here). ``preempt``: when every
    worker is busy, a request of a higher priority aborts the lowest-priority run in progress
    (on backends that can abort one: ONNX Runtime, OpenVINO), which goes back to its queue
    and runs again later; the high-priority request then waits for no whole low-priority run.
    """

    workers: int = 0
    threads: int = 0
    queue_size: int = 64
    aging_s: float = 1.0
    admission: bool = True
    memory_budget_bytes: int | None = None
    options: BackendOptions = field(default_factory=BackendOptions)
    preempt: bool = False

    def __post_init__(self) -> None:
        if self.workers < 0 or self.threads < 0:
            raise EdgeInferError("workers and threads must be >= 0 (0: automatic)")
        if self.queue_size < 1:
            raise EdgeInferError(f"queue_size must be >= 1, not {self.queue_size}")
        if self.aging_s < 0:
            raise EdgeInferError(f"aging_s must be >= 0, not {self.aging_s}")


def plan_workers(workers: int = 0, threads: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(workers, intra-op threads per engine) with workers x threads <= cores.

    Defaults: one worker whose engines use every core (measured best for latency on 2 cores;
    see the module docstring). Given only ``workers``, threads = cores // workers.
    """
    cores = cores or usable_cpus()
    workers = workers or 1
    threads = threads or max(1, cores // workers)
    if workers * threads > cores:
        logger.warning(
            "%d workers x %d threads exceeds the %d cores: sessions will fight over them",
            workers, threads, cores,
        )
    return workers, threads


@dataclass(eq=False)
class _Request:
    model: str
    feeds: Mapping[str, np.ndarray]
    priority: int
    deadline: float | None
    submitted: float
    seq: int
    future: Future
    started: bool = False  # its future is running (a preempted request keeps that)


class _Counters:
    """Per-model counters; updated under the scheduler's lock."""

    def __init__(self) -> None:
        self.submitted = self.completed = self.failed = self.cancelled = 0
        self.rejected_full = self.rejected_deadline = 0
        self.skipped = self.deadline_misses = self.preempted = 0
        self.wait_ms: deque[float] = deque(maxlen=WINDOW)
        self.run_ms: deque[float] = deque(maxlen=WINDOW)
        self.run_estimate_s: float | None = None

    def record_run(self, run_s: float) -> None:
        self.run_ms.append(run_s * 1e3)
        est = self.run_estimate_s
        self.run_estimate_s = run_s if est is None else (1 - EWMA) * est + EWMA * run_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected_queue_full": self.rejected_full,
            "rejected_deadline": self.rejected_deadline,
            "skipped": self.skipped,
            "deadline_misses": self.deadline_misses,
            "preempted": self.preempted,
            "wait_ms_p50": percentile(self.wait_ms, 50),
            "wait_ms_p99": percentile(self.wait_ms, 99),
            "run_ms_p50": percentile(self.run_ms, 50),
            "run_ms_p99": percentile(self.run_ms, 99),
            "run_estimate_ms": None if self.run_estimate_s is None else self.run_estimate_s * 1e3,
        }


class Scheduler:
    """Runs requests for several registered models on worker threads; thread-safe.

    ``submit`` returns a :class:`concurrent.futures.Future` holding the outputs, or the
    exception: :class:`RejectedError` is raised by ``submit`` itself, :class:`DeadlineMissedError`
    set on the future of a skipped request, and a model's own error set on its future.
    Use as a context manager, or call ``close()``.
    """

    def __init__(self, config: SchedulerConfig | None = None, *, loader: Loader | None = None):
        self.config = config or SchedulerConfig()
        self.workers, self.threads = plan_workers(self.config.workers, self.config.threads)
        options = replace(self.config.options, threads=self.threads)
        self.cache = ModelCache(self.config.memory_budget_bytes, options, loader)
        self._queues: dict[str, list[_Request]] = {}
        self._counters: dict[str, _Counters] = {}
        self._running: dict[str, list[float]] = {}  # model -> start times of runs in progress
        self._active: dict[int, tuple[_Request, CancelToken]] = {}  # abortable runs, by seq
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"edgeinfer-scheduler-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()
        logger.info("scheduler: %d workers x %d threads", self.workers, self.threads)

    # ---------------------------------------------------------------- public API

    def register(
        self,
        name: str,
        model: str | Path,
        *,
        backend: str | None = None,
        footprint_bytes: int | None = None,
        expected_run_ms: float | None = None,
    ) -> None:
        """Make ``model`` (artifact directory or model file) available as ``name``; it loads
        on first use. ``footprint_bytes`` replaces the measured footprint; ``expected_run_ms``
        is the run-time estimate until one is measured."""
        self.cache.add(ModelSpec(name, model, backend, footprint_bytes, expected_run_ms))
        with self._cond:
            self._queues[name] = []
            self._counters[name] = _Counters()
            self._running[name] = []

    def submit(
        self,
        model: str,
        feeds: Mapping[str, np.ndarray],
        *,
        priority: int = 0,
        deadline: float | None = None,
        deadline_ms: float | None = None,
    ) -> Future:
        """Queue one request. ``deadline`` is an absolute ``time.monotonic()`` time,
        ``deadline_ms`` one relative to now (give at most one). Raises RejectedError when the
        model's queue is full or the deadline cannot be met."""
        if deadline is not None and deadline_ms is not None:
            raise EdgeInferError("give deadline (absolute) or deadline_ms (relative), not both")
        now = time.monotonic()
        if deadline_ms is not None:
            deadline = now + deadline_ms / 1e3
        with self._cond:
            if model not in self._queues:
                raise EdgeInferError(
                    f"unknown model '{model}': register it first (known: {sorted(self._queues)})"
                )
            counters = self._counters[model]
            counters.submitted += 1
            if self._closed:
                raise RejectedError("the scheduler is closed", "closed")
            queue = self._queues[model]
            if len(queue) >= self.config.queue_size:
                counters.rejected_full += 1
                raise RejectedError(
                    f"queue of '{model}' is full ({self.config.queue_size} requests)",
                    "queue_full",
                )
            request = _Request(model, feeds, priority, deadline, now, next(self._seq), Future())
            if deadline is not None and self.config.admission:
                finish = now + self._estimate_ahead(request, now)
                if finish > deadline:
                    counters.rejected_deadline += 1
                    raise RejectedError(
                        f"'{model}' cannot finish by its deadline: estimated "
                        f"{(finish - now) * 1e3:.1f} ms, {(deadline - now) * 1e3:.1f} ms left",
                        "deadline",
                    )
            queue.append(request)
            self._cond.notify()
            if self.config.preempt:
                self._preempt_for(request)
        return request.future

    def run(self, model: str, feeds: Mapping[str, np.ndarray], **kw: Any) -> list[np.ndarray]:
        """``submit`` and wait for the outputs."""
        return self.submit(model, feeds, **kw).result()

    def engine(
        self, name: str, *, priority: int = 0, deadline_ms: float | None = None
    ) -> ScheduledEngine:
        """An Engine-like proxy of the registered model ``name`` whose ``run`` goes through this
        scheduler at ``priority`` (and ``deadline_ms`` after each submit), so a
        :class:`~edgeinfer.pipeline.predict.Predictor` or a stream runner works on top of it."""
        if name not in self.cache:
            raise EdgeInferError(
                f"unknown model '{name}': register it first (known: {sorted(self._queues)})"
            )
        return ScheduledEngine(self, name, priority=priority, deadline_ms=deadline_ms)

    def stats(self) -> dict[str, Any]:
        """Counters per model (queue wait and run time p50/p99 in ms, deadline misses,
        rejections, skips, loads/unloads, footprint), plus workers, threads and memory."""
        cache = self.cache.stats()
        with self._cond:
            models = {
                name: {**c.as_dict(), "queued": len(self._queues[name]), **cache[name]}
                for name, c in self._counters.items()
            }
        return {
            "workers": self.workers,
            "threads": self.threads,
            "memory_budget_bytes": self.config.memory_budget_bytes,
            "memory_used_bytes": self.cache.used_bytes(),
            "loaded": self.cache.loaded(),
            "models": models,
        }

    def close(self, *, cancel_pending: bool = False) -> None:
        """Stop taking requests, finish the queued ones (or cancel them), stop the workers and
        unload every model."""
        with self._cond:
            self._closed = True
            if cancel_pending:
                for name, queue in self._queues.items():
                    for r in queue:
                        r.future.cancel()
                        self._counters[name].cancelled += 1
                    queue.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        self.cache.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- estimates

    def _preempt_for(self, request: _Request) -> None:
        """With every worker busy, abort the lowest-level abortable run below ``request``'s
        priority. Called with the condition held."""
        busy = sum(len(s) for s in self._running.values())
        if busy < self.workers or not self._active:
            return
        now = time.monotonic()
        victim = max(self._active.values(), key=lambda a: self._key(a[0], now))
        if -self._key(victim[0], now)[0] < request.priority:
            del self._active[victim[0].seq]
            victim[1].cancel()

    def _run_estimate(self, model: str) -> float:
        """Seconds one run of ``model`` is expected to take, plus a load if it is not loaded
        (0 where nothing is known yet)."""
        est = self._counters[model].run_estimate_s
        if est is None:
            prior = self.cache.spec(model).expected_run_ms
            est = 0.0 if prior is None else prior / 1e3
        if not self.cache.is_loaded(model):
            est += self.cache.load_estimate_s(model) or 0.0
        return est

    def _estimate_ahead(self, request: _Request, now: float) -> float:
        """Seconds until ``request`` would finish: the queued work that goes before it and the
        rest of the runs in progress, shared over the workers, then its own run."""
        key = self._key(request, now)
        ahead = 0.0
        for name, queue in self._queues.items():
            if queue:
                est = self._run_estimate(name)
                ahead += est * sum(1 for r in queue if self._key(r, now) < key)
        for name, starts in self._running.items():
            if starts:
                est = self._run_estimate(name)
                ahead += sum(max(0.0, est - (now - s)) for s in starts)
        return ahead / self.workers + self._run_estimate(request.model)

    def _key(self, r: _Request, now: float) -> tuple[float, float, int]:
        """Sort key, smallest first: level (higher first), deadline (earliest), age."""
        level = r.priority
        if self.config.aging_s > 0:
            level += math.floor((now - r.submitted) / self.config.aging_s)
        return (-level, math.inf if r.deadline is None else r.deadline, r.seq)

    # ---------------------------------------------------------------- workers

    def _next(self) -> _Request | None:
        """The next request to run (None when closed and drained); skips hopeless ones.
        Called with the condition held."""
        while True:
            now = time.monotonic()
            best, best_key = None, None
            for name, queue in self._queues.items():
                if not queue:
                    continue
                keep, est = [], self._run_estimate(name)
                for r in queue:
                    if r.future.cancelled():
                        self._counters[name].cancelled += 1
                        continue
                    if r.deadline is not None and now + est > r.deadline:
                        self._skip(r, now)
                        continue
                    keep.append(r)
                    k = self._key(r, now)
                    if best_key is None or k < best_key:
                        best, best_key = r, k
                queue[:] = keep
            if best is not None:
                self._queues[best.model].remove(best)
                return best
            if self._closed:
                return None
            self._cond.wait()

    def _skip(self, r: _Request, now: float) -> None:
        self._counters[r.model].skipped += 1
        late = now - r.deadline if r.deadline is not None else 0.0
        r.future.set_exception(
            DeadlineMissedError(
                f"'{r.model}' request skipped: "
                + (f"its deadline passed {late * 1e3:.1f} ms ago" if late >= 0 else
                   f"{-late * 1e3:.1f} ms left, a run takes about "
                   f"{self._run_estimate(r.model) * 1e3:.1f} ms")
            )
        )

    def _work(self) -> None:
        while True:
            with self._cond:
                request = self._next()
                if request is None:
                    return
                if not request.started:
                    if not request.future.set_running_or_notify_cancel():
                        self._counters[request.model].cancelled += 1
                        continue
                    request.started = True
                start = time.monotonic()
                self._running[request.model].append(start)
            try:
                self._execute(request)
            finally:
                with self._cond:
                    self._running[request.model].remove(start)
                    self._cond.notify_all()

    def _execute(self, r: _Request) -> None:
        counters = self._counters[r.model]
        try:
            lease = self.cache.acquire(r.model)
        except Exception as exc:  # a model that fails to load fails its request, not the worker
            with self._cond:
                counters.failed += 1
            r.future.set_exception(exc)
            return
        try:
            start = time.monotonic()
            if r.deadline is not None and start >= r.deadline:  # e.g. the load took too long
                with self._cond:
                    self._skip(r, start)
                return
            t0 = time.perf_counter()
            if self.config.preempt and getattr(lease.model, "cancellable", False):
                token = CancelToken()
                with self._cond:
                    self._active[r.seq] = (r, token)
                try:
                    outputs = lease.model.run(dict(r.feeds), cancel=token)
                finally:
                    with self._cond:
                        self._active.pop(r.seq, None)
            else:
                outputs = lease.model.run(dict(r.feeds))
            run_s = time.perf_counter() - t0
        except RunCancelled:
            with self._cond:  # preempted: back to its queue, to run again (it keeps its age)
                counters.preempted += 1
                self._queues[r.model].append(r)
                self._cond.notify()
            return
        except Exception as exc:
            with self._cond:
                counters.failed += 1
            r.future.set_exception(exc)
            return
        finally:
            lease.release()
        end = time.monotonic()
        with self._cond:
            counters.completed += 1
            counters.wait_ms.append((start - r.submitted) * 1e3)
            counters.record_run(run_s)
            if r.deadline is not None and end > r.deadline:
                counters.deadline_misses += 1
        r.future.set_result(outputs)


class ScheduledEngine:
    """The surface of an :class:`~edgeinfer.runtime.engine.Engine` (``artifact``, ``inputs``,
    ``outputs``, ``run``) for a model registered on a :class:`Scheduler`: ``run`` submits
    with this proxy's priority and deadline and waits, so code written for one Engine shares
    the scheduler's workers, priorities and memory budget unchanged. Thread-safe; ``run``
    raises :class:`RejectedError` or :class:`DeadlineMissedError` as ``submit`` does.
    The model loads on first use; ``inputs``/``outputs`` load it if it is not loaded.
    """

    def __init__(
        self, scheduler: Scheduler, model: str, *, priority: int = 0,
        deadline_ms: float | None = None,
    ) -> None:
        if deadline_ms is not None and deadline_ms <= 0:
            raise EdgeInferError(f"bad deadline_ms {deadline_ms}: give milliseconds > 0")
        self.scheduler = scheduler
        self.model = model
        self.priority = priority
        self.deadline_ms = deadline_ms
        self._artifact: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``scheduler:<model>`` (an Engine's ``name`` is its backend's)."""
        return f"scheduler:{self.model}"

    @property
    def artifact(self) -> Any:
        """The model's artifact (manifest, labels), read once from its registered path."""
        with self._lock:
            if self._artifact is None:

                self._artifact = load(self.scheduler.cache.spec(self.model).path)
            return self._artifact

    def _specs(self, attr: str) -> Any:
        with self.scheduler.cache.acquire(self.model) as model:
            specs = getattr(model, attr, None)
        if specs is None:
            raise EdgeInferError(
                f"model '{self.model}' was loaded by a loader whose models report no {attr}: "
                "use the default loader (Engine) to get them"
            )
        return specs

    @property
    def inputs(self) -> Any:
        """Input specs of the loaded model."""
        return self._specs("inputs")

    @property
    def outputs(self) -> Any:
        """Output specs of the loaded model."""
        return self._specs("outputs")

    def submit(self, feeds: Mapping[str, np.ndarray]) -> Future:
        """Queue one run with this proxy's priority and deadline; the future of its outputs."""
        return self.scheduler.submit(self.model, feeds, priority=self.priority,
                                     deadline_ms=self.deadline_ms)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference through the scheduler and wait for its outputs."""
        return self.submit(feeds).result()

    def close(self) -> None:
        """Nothing to release: the scheduler owns the model (``Scheduler.close`` unloads it)."""
