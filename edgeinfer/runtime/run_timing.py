"""Per-request run times for models on a :class:`~edgeinfer.runtime.scheduler.Scheduler`.

The scheduler reports only aggregates. A server that answers each request with its own
timing (the edge node's ``times_ms``, the offload node's ``x-edgeinfer-tail-ms``) builds the
scheduler with :meth:`TimedRuns.loader`, which wraps every loaded model so that a run stamps
its start, end and the worker thread's CPU time into a slot the request registered beforehand
(keyed by the identity of its first input array, which the scheduler passes through
untouched), and submits through :meth:`TimedRuns.submit`. Requests that register no slot
(camera streams) cost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.runtime.model_cache import Loader, ModelSpec, Runnable, engine_loader

__all__ = ["RunTiming", "TimedRuns"]


@dataclass
class RunTiming:
    """Monotonic start and end of one run and the CPU seconds of the thread that ran it,
    filled in by the worker."""

    start: float = 0.0
    end: float = 0.0
    cpu_s: float = 0.0

    @property
    def wall_s(self) -> float:
        """Seconds the run took on the wall clock."""
        return max(0.0, self.end - self.start)


class _Timed:
    """A loaded model whose runs stamp the slot registered for their first input array."""

    def __init__(self, model: Runnable, slots: dict[int, RunTiming]) -> None:
        self._model = model
        self._slots = slots

    def run(self, feeds: dict[str, np.ndarray], **kw: Any) -> list[np.ndarray]:
        """Run the model (``kw``: ``cancel`` when the scheduler preempts), recording start, end
        and CPU time where the request asked for it."""
        slot = self._slots.get(id(next(iter(feeds.values())))) if feeds else None
        t0, c0 = time.monotonic(), time.thread_time()
        outputs = self._model.run(feeds, **kw)
        if slot is not None:
            slot.start, slot.end, slot.cpu_s = t0, time.monotonic(), time.thread_time() - c0
        return outputs

    def close(self) -> None:
        """Close the wrapped model."""
        self._model.close()

    def __getattr__(self, attr: str) -> Any:  # inputs, outputs, artifact... of the Engine
        return getattr(self._model, attr)


class TimedRuns:
    """The slots of one scheduler's timed requests; thread-safe (dict operations only)."""

    def __init__(self) -> None:
        self._slots: dict[int, RunTiming] = {}

    def loader(self, inner: Loader = engine_loader) -> Loader:
        """A scheduler loader whose models stamp registered slots (``inner`` builds them)."""
        def load(spec: ModelSpec, options: Any) -> Runnable:
            return _Timed(inner(spec, options), self._slots)

        return load

    def submit(self, scheduler: Any, name: str, feeds: Mapping[str, np.ndarray],
               **kw: Any) -> tuple[Future, RunTiming, Callable[[], None]]:
        """``scheduler.submit(name, feeds, **kw)`` with a timing slot: its future, the slot,
        and the call that frees the slot (call it when the future is done). Raises what
        ``submit`` raises."""
        slot = RunTiming()
        key = id(next(iter(feeds.values())))
        self._slots[key] = slot

        def release() -> None:
            self._slots.pop(key, None)

        try:
            future = scheduler.submit(name, feeds, **kw)
        except BaseException:
            release()
            raise
        return future, slot, release
