"""Models loaded on demand under a memory budget, unloaded least-recently-used.

A model's footprint is *measured*: the process's resident set size (``VmRSS``,
``/proc/self/status``) just before the Engine is built and just after, and the Engine's
construction includes loading the model and its warm-up run (kernels compiled, arenas planned,
pages touched), so the delta covers load + first run. Limits of that figure:

- RSS is per process. Another thread allocating or freeing meanwhile (a worker running another
  model) moves the delta; loads are serialised so that two loads never overlap, but runs may.
- Allocators keep freed memory for reuse: a model loaded after another was unloaded can reuse
  its pages and show a delta near zero. The footprint is therefore never taken below the model
  file's size on disk (the weights must be somewhere), and ``Engine.close`` trims the heap.
- Memory a runtime allocates later (an input of a new shape, a bigger arena) is not counted.
- Off Linux (no ``/proc``) nothing is measured and the prior is kept.

Before a model's first load its footprint is unknown; the cache plans with a prior of twice
the model file's size (or the ``footprint_bytes`` declared at registration, which also
replaces the measurement: useful when the figure is known, and for tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.machine import rss_bytes
from edgeinfer.runtime.backends import BackendOptions

logger = logging.getLogger(__name__)

__all__ = ["ModelCache", "ModelSpec", "Runnable"]

#: prior footprint before the first load, as a multiple of the model file's size
PRIOR_FACTOR = 2.0


class Runnable(Protocol):
    """What the cache and the scheduler need from a loaded model (an ``Engine`` fits)."""

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference."""
        ...

    def close(self) -> None:
        """Release the model's resources."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    """A model the cache may load: where it is, the backend, and optional known figures.

    ``footprint_bytes`` replaces the measured footprint; ``expected_run_ms`` is the run-time
    estimate the scheduler uses until it has measured one.
    """

    name: str
    path: str | Path
    backend: str | None = None
    footprint_bytes: int | None = None
    expected_run_ms: float | None = None


#: builds a loaded model from its spec and the backend options
Loader = Callable[[ModelSpec, BackendOptions], Runnable]


def engine_loader(spec: ModelSpec, options: BackendOptions) -> Runnable:
    """The default loader: an :class:`~edgeinfer.runtime.engine.Engine` with its warm-up run."""
    from edgeinfer.runtime.engine import Engine

    return Engine.open(spec.path, spec.backend, options)


def _file_bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.suffix in (".onnx", ".tflite",
                                                                       ".bin", ".xml"))
    return p.stat().st_size if p.exists() else 0


@dataclass
class _Entry:
    spec: ModelSpec
    file_bytes: int
    model: Runnable | None = None
    refs: int = 0
    footprint: int | None = None  # measured (or declared) bytes
    loads: int = 0
    unloads: int = 0
    load_s: list[float] = field(default_factory=list)

    @property
    def planned(self) -> int:
        """Bytes to plan with: declared, else measured, else the prior."""
        if self.spec.footprint_bytes is not None:
            return self.spec.footprint_bytes
        if self.footprint is not None:
            return self.footprint
        return int(PRIOR_FACTOR * self.file_bytes)


class Lease:
    """A loaded model held in use; the cache will not unload it until released."""

    def __init__(self, cache: ModelCache, name: str, model: Runnable) -> None:
        self.name = name
        self.model = model
        self._cache = cache
        self._held = True

    def release(self) -> None:
        """Give the model back to the cache (idempotent)."""
        if self._held:
            self._held = False
            self._cache._release(self.name)

    def __enter__(self) -> Runnable:
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.release()


class ModelCache:
    """Loaded models under ``budget_bytes`` (None: no limit); thread-safe.

    ``acquire(name)`` loads the model if needed, first unloading idle models least recently
    used until the planned footprints fit the budget; a model in use is never unloaded, so an
    acquire that needs their memory waits for a release. Loads are serialised (one at a time)
    so that each RSS delta is one model's.
    """

    def __init__(
        self,
        budget_bytes: int | None = None,
        options: BackendOptions | None = None,
        loader: Loader | None = None,
        measure: Callable[[], int | None] = rss_bytes,
    ) -> None:
        if budget_bytes is not None and budget_bytes <= 0:
            raise EdgeInferError(f"memory budget {budget_bytes} must be positive (or None)")
        self.budget_bytes = budget_bytes
        self.options = options or BackendOptions()
        self._loader = loader or engine_loader
        self._measure = measure
        self._entries: dict[str, _Entry] = {}
        self._lru: OrderedDict[str, None] = OrderedDict()  # loaded models, oldest use first
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()

    # ---------------------------------------------------------------- registry

    def add(self, spec: ModelSpec) -> None:
        """Register a model (nothing is loaded); re-adding a name is an error."""
        with self._cond:
            if spec.name in self._entries:
                raise EdgeInferError(f"model '{spec.name}' is already registered")
            self._entries[spec.name] = _Entry(spec, _file_bytes(spec.path))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def spec(self, name: str) -> ModelSpec:
        """The spec registered under ``name``."""
        return self._entry(name).spec

    def is_loaded(self, name: str) -> bool:
        """Whether ``name`` is loaded now."""
        return self._entry(name).model is not None

    def loaded(self) -> list[str]:
        """Loaded models, least recently used first."""
        with self._cond:
            return list(self._lru)

    def used_bytes(self) -> int:
        """Sum of the planned footprints of the loaded models."""
        with self._cond:
            return sum(self._entries[n].planned for n in self._lru)

    def load_estimate_s(self, name: str) -> float | None:
        """The median of the measured load times of ``name`` (None before its first load)."""
        times = self._entry(name).load_s
        return float(np.median(times)) if times else None

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise EdgeInferError(
                f"unknown model '{name}': register it first (known: {sorted(self._entries)})"
            ) from None

    # ---------------------------------------------------------------- use

    def acquire(self, name: str) -> Lease:
        """The model ``name``, loaded if needed; release the lease (or use ``with``) after."""
        entry = self._entry(name)
        with self._cond:
            if entry.model is not None:
                return self._lease(entry)
        with self._load_lock:
            with self._cond:
                if entry.model is not None:  # another thread loaded it meanwhile
                    return self._lease(entry)
                victims = self._make_room(entry, entry.planned)
            self._close(victims)
            model, footprint, load_s = self._load(entry)
            with self._cond:
                entry.model, entry.footprint = model, footprint
                entry.loads += 1
                entry.load_s = [*entry.load_s[-15:], load_s]
                lease = self._lease(entry)
                victims = self._evict_over_budget(keep=name)
            self._close(victims)
            return lease

    def unload(self, name: str) -> bool:
        """Unload ``name`` now (an explicit unload, as the edge node's API offers), waiting for
        runs in progress to release it; it loads again on its next use. True if it was loaded."""
        entry = self._entry(name)
        with self._cond:
            while entry.refs > 0:
                self._cond.wait(timeout=1.0)
            victims = [self._unload(name)] if entry.model is not None else []
        self._close(victims)
        return bool(victims)

    def _lease(self, entry: _Entry) -> Lease:
        assert entry.model is not None  # internal invariant, held under the lock
        entry.refs += 1
        self._lru[entry.spec.name] = None
        self._lru.move_to_end(entry.spec.name)
        return Lease(self, entry.spec.name, entry.model)

    def _release(self, name: str) -> None:
        with self._cond:
            self._entries[name].refs -= 1
            self._cond.notify_all()

    def _make_room(self, entry: _Entry, need: int) -> list[tuple[str, Runnable]]:
        """Unload idle models, oldest use first, until ``need`` fits; wait for releases while
        models in use hold the memory. Called with the condition held."""
        if self.budget_bytes is None:
            return []
        if need > self.budget_bytes:
            raise EdgeInferError(
                f"model '{entry.spec.name}' needs about {need / 2**20:.1f} MiB, over the "
                f"memory budget of {self.budget_bytes / 2**20:.1f} MiB: raise the budget"
            )
        victims: list[tuple[str, Runnable]] = []
        while self._used() + need > self.budget_bytes:
            idle = [n for n in self._lru if self._entries[n].refs == 0]
            if idle:
                victims.append(self._unload(idle[0]))
            else:
                self._cond.wait()
        return victims

    def _evict_over_budget(self, keep: str) -> list[tuple[str, Runnable]]:
        """After a load measured more than planned: unload idle models (never ``keep``) until
        the budget holds again, as far as idle models allow. Called with the condition held."""
        victims: list[tuple[str, Runnable]] = []
        if self.budget_bytes is None:
            return victims
        while self._used() > self.budget_bytes:
            idle = [n for n in self._lru if n != keep and self._entries[n].refs == 0]
            if not idle:
                logger.warning(
                    "models in use take %.1f MiB, over the budget of %.1f MiB",
                    self._used() / 2**20, self.budget_bytes / 2**20,
                )
                break
            victims.append(self._unload(idle[0]))
        return victims

    def _used(self) -> int:
        return sum(self._entries[n].planned for n in self._lru)

    def _unload(self, name: str) -> tuple[str, Runnable]:
        entry = self._entries[name]
        model = entry.model
        assert model is not None  # internal invariant: only loaded models are in the LRU
        entry.model = None
        entry.unloads += 1
        del self._lru[name]
        logger.info("unloading %s (%.1f MiB)", name, entry.planned / 2**20)
        return name, model

    @staticmethod
    def _close(victims: list[tuple[str, Runnable]]) -> None:
        for _, model in victims:
            model.close()

    def _load(self, entry: _Entry) -> tuple[Runnable, int | None, float]:
        """Build the model; its footprint is the RSS delta across the build (which includes the
        warm-up run), never below the file size. Called with the load lock held."""
        before = self._measure()
        t0 = time.perf_counter()
        model = self._loader(entry.spec, self.options)
        load_s = time.perf_counter() - t0
        after = self._measure()
        footprint = entry.footprint
        if before is not None and after is not None:
            footprint = max(after - before, entry.file_bytes)
        logger.info(
            "loaded %s in %.0f ms, footprint %s", entry.spec.name, load_s * 1e3,
            "unknown" if footprint is None else f"{footprint / 2**20:.1f} MiB",
        )
        return model, footprint, load_s

    # ---------------------------------------------------------------- report, close

    def stats(self) -> dict[str, dict[str, object]]:
        """Per model: loaded, in use, loads, unloads, footprint (planned and measured)."""
        with self._cond:
            return {
                name: {
                    "loaded": e.model is not None,
                    "in_use": e.refs,
                    "loads": e.loads,
                    "unloads": e.unloads,
                    "footprint_bytes": e.planned,
                    "measured_bytes": e.footprint,
                    "load_ms": None if not e.load_s else float(np.median(e.load_s)) * 1e3,
                }
                for name, e in self._entries.items()
            }

    def close(self) -> None:
        """Unload every model (in use or not: call it after the users are done)."""
        with self._cond:
            victims = [self._unload(n) for n in list(self._lru)]
        self._close(victims)
