"""The edge node's state: the repository's models on one Scheduler, streams, and the uplink.

The HTTP layer (:mod:`edgeinfer.serve.app`) is a thin face over this object; the benchmark
and the tests use it directly too. Every model runs through one
:class:`~edgeinfer.runtime.scheduler.Scheduler`, so HTTP requests and camera streams share
its priorities, deadlines, bounded queues and memory budget.

Per-request queue wait and compute time: the scheduler reports only aggregates, so the node
loads models through :class:`~edgeinfer.runtime.run_timing.TimedRuns`, whose slots a request
registers at submit and its run fills in. Stream requests register no slot and cost nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.run_timing import RunTiming, TimedRuns
from edgeinfer.runtime.scheduler import RejectedError, Scheduler, SchedulerConfig
from edgeinfer.serve import repository
from edgeinfer.serve.config import NodeConfig

logger = logging.getLogger(__name__)

__all__ = ["ModelUnavailableError", "Node", "RunTiming"]

#: model states as the API and the dashboard show them
AVAILABLE, LOADING, READY, UNLOADED, FAILED = "available", "loading", "ready", "unloaded", "failed"


class ModelUnavailableError(EdgeInferError):
    """A model that exists but cannot take requests now (unloaded, loading or failed)."""


class UnknownModelError(EdgeInferError):
    """No model of that name in the repository."""


@dataclass
class _Model:
    name: str
    entry: repository.RepoEntry
    state: str
    error: str | None = None
    registered: bool = False


class Node:
    """The repository's models, streams and uplink of one edge node; thread-safe."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.timed = TimedRuns()
        self.streams_config = None
        if config.streams is not None:  # read now: a bad file stops the node before it binds
            from edgeinfer.pipeline.streams_config import load_streams_config

            self.streams_config = load_streams_config(config.streams)
        self.scheduler = Scheduler(self._scheduler_config(), loader=self.timed.loader())
        self._lock = threading.RLock()
        self._models: dict[str, _Model] = {}
        self._preparing: dict[str, int] = {}
        self._rejected_early: dict[str, int] = {}
        self._http_submitted: dict[str, int] = {}  # the scheduler's counts include stream frames
        self.streams: Any = None
        self.uplink: Any = None
        self.started_at = time.time()
        self.closing = False
        self._loader_thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def _scheduler_config(self) -> SchedulerConfig:
        """The node's own ``workers``/``queue_size``/``spinning`` where set, else the streams
        file's ``scheduler:`` section (workers, threads, queue_size, spinning), else the
        defaults."""
        base = (self.streams_config.scheduler_config() if self.streams_config is not None
                else SchedulerConfig())
        options = base.options
        if self.config.spinning is not None:
            options = replace(options, spinning=self.config.spinning)
        return replace(
            base, workers=self.config.workers or base.workers,
            memory_budget_bytes=(self.config.memory_budget_bytes
                                 if self.config.memory_budget_bytes is not None
                                 else base.memory_budget_bytes),
            queue_size=(self.config.queue_size if self.config.queue_size is not None
                        else base.queue_size),
            options=options,
        )

    def start(self) -> None:
        """Scan the repository, register the valid models, load them in the background (when
        ``load_on_start``), then start the streams and the uplink."""
        for name, entry in repository.scan(self.config.repository).items():
            self._models[name] = _Model(name, entry, FAILED if entry.error else AVAILABLE,
                                        entry.error)
            if not entry.error:
                self._register(self._models[name])
        if self.config.uplink is not None:
            self._start_uplink()
        if self.config.streams is not None:
            self._start_streams()
        if self.config.load_on_start:
            names = [m.name for m in self._models.values() if m.state == AVAILABLE]
            self._loader_thread = threading.Thread(
                target=lambda: [self.load(n) for n in names], name="edgeinfer-node-load",
                daemon=True,
            )
            self._loader_thread.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Wait for the start-up loads (tests and the benchmark)."""
        if self._loader_thread is not None:
            self._loader_thread.join(timeout)

    def close(self) -> None:
        """Stop the streams and the uplink, cancel queued requests, unload every model."""
        self.closing = True
        if self.streams is not None:
            self.streams.stop()
        if self.uplink is not None:
            self.uplink.close()
        self.scheduler.close(cancel_pending=True)

    def _register(self, model: _Model) -> None:
        if not model.registered:
            self.scheduler.register(model.name, model.entry.path)
            model.registered = True

    # ---------------------------------------------------------------- models

    def model_names(self) -> list[str]:
        """Every model in the repository, valid or not."""
        with self._lock:
            return sorted(self._models)

    def _get(self, name: str) -> _Model:
        repository.validate_name(name)
        with self._lock:
            model = self._models.get(name)
        if model is None:
            raise UnknownModelError(f"no model '{name}' in the repository: see GET /v1/models")
        return model

    def describe(self, name: str) -> dict[str, Any]:
        """One model: state, error, task, inputs, decoder and its scheduler counters."""
        model = self._get(name)
        out: dict[str, Any] = {"name": name, "state": model.state, "error": model.error}
        artifact = model.entry.artifact
        if artifact is not None:
            m = artifact.manifest
            out.update(
                task=m.task, format=m.model.format, precision=m.model.precision,
                decoder=m.decoder,
                inputs=[{"name": i.name, "shape": list(i.shape), "dtype": i.dtype}
                        for i in m.inputs],
            )
        if model.registered:
            stats = self.scheduler.stats()["models"].get(name, {})
            out["stats"] = {k: stats.get(k) for k in (
                "submitted", "completed", "failed", "rejected_queue_full", "rejected_deadline",
                "skipped", "queued", "wait_ms_p50", "wait_ms_p99", "run_ms_p50", "run_ms_p99",
                "loads", "unloads", "footprint_bytes")}
            out["stats"]["rejected_before_queue"] = self._rejected_early.get(name, 0)
        return out

    def load(self, name: str) -> dict[str, Any]:
        """Load ``name`` now (re-reading its repository entry: a repaired or new artifact is
        picked up); its state becomes ready, or failed with the reason."""
        repository.validate_name(name)
        entry = repository.find_entry(self.config.repository, name)
        with self._lock:
            model = self._models.get(name)
            if entry is None and model is None:
                raise UnknownModelError(f"no model '{name}' in the repository: see GET /v1/models")
            if model is None:
                model = self._models[name] = _Model(name, entry, AVAILABLE)
            elif entry is not None and not model.registered:
                model.entry = entry
            if model.entry.error:
                model.state, model.error = FAILED, model.entry.error
                return self.describe(name)
            model.state, model.error = LOADING, None
            self._register(model)
        try:
            self.scheduler.cache.acquire(name).release()
        except Exception as exc:  # a corrupt model fails alone, with its reason
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            with self._lock:
                model.state, model.error = FAILED, reason
            logger.warning("loading %s failed: %s", name, reason)
        else:
            with self._lock:
                model.state = READY
        return self.describe(name)

    def unload(self, name: str) -> dict[str, Any]:
        """Unload ``name`` and refuse its requests until it is loaded again."""
        model = self._get(name)
        with self._lock:
            if model.state == FAILED:
                return self.describe(name)
            model.state = UNLOADED
        if model.registered:
            _unload_from_cache(self.scheduler.cache, name)
        return self.describe(name)

    def ready(self) -> bool:
        """Ready when the start-up loads are done, no model is loading, and one can serve
        (without ``load_on_start``, a valid model not loaded yet can: it loads on first use)."""
        if self.closing:
            return False
        if self._loader_thread is not None and self._loader_thread.is_alive():
            return False
        with self._lock:
            states = [m.state for m in self._models.values()]
        usable = (READY,) if self.config.load_on_start else (READY, AVAILABLE)
        return LOADING not in states and any(s in usable for s in states)

    # ---------------------------------------------------------------- requests

    def artifact(self, name: str) -> Any:
        """The artifact of a model that can take requests now (else ModelUnavailableError)."""
        model = self._get(name)
        if self.closing:
            raise ModelUnavailableError("the node is shutting down: retry on another node")
        if model.state not in (READY, AVAILABLE):  # available: loads on first use
            hint = {UNLOADED: f": POST /v1/models/{name}/load first",
                    FAILED: f": {model.error}", LOADING: ": retry in a moment"}.get(model.state, "")
            raise ModelUnavailableError(f"model '{name}' is {model.state}{hint}")
        return model.entry.artifact

    def submit(
        self, name: str, feeds: Mapping[str, np.ndarray], *, priority: int = 0,
        deadline_ms: float | None = None,
    ) -> tuple[Future, RunTiming, Callable[[], None]]:
        """Queue one request: its future, its timing slot, and the call that frees the slot
        (call it when the future is done). Raises RejectedError as the scheduler does."""
        self.artifact(name)
        with self._lock:
            self._http_submitted[name] = self._http_submitted.get(name, 0) + 1
        return self.timed.submit(self.scheduler, name, feeds, priority=priority,
                                 deadline_ms=deadline_ms)

    @contextmanager
    def admit(self, name: str) -> Iterator[None]:
        """Hold one of the model's preparation places while a request is decoded and
        submitted. Image requests are decoded before they reach the scheduler's bounded
        queue; without this bound they would wait unbounded in front of it. More than
        ``queue_size + workers`` at once raises RejectedError (queue_full): 429 at once,
        before any decoding."""
        limit = self.scheduler.config.queue_size + self.scheduler.workers
        with self._lock:
            held = self._preparing.get(name, 0)
            if held >= limit:
                self._rejected_early[name] = self._rejected_early.get(name, 0) + 1
                raise RejectedError(
                    f"'{name}' has {held} requests being prepared (limit {limit})", "queue_full")
            self._preparing[name] = held + 1
        try:
            yield
        finally:
            with self._lock:
                self._preparing[name] -= 1

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """Everything the dashboard shows: node, models, streams, uplink."""
        stats = self.scheduler.stats()
        models = []
        with self._lock:
            records = list(self._models.values())
        for m in sorted(records, key=lambda r: r.name):
            s = stats["models"].get(m.name, {})
            http = self._http_submitted.get(m.name, 0)
            models.append({
                "name": m.name, "state": m.state, "error": m.error,
                "task": m.entry.artifact.manifest.task if m.entry.artifact else None,
                "requests": http + self._rejected_early.get(m.name, 0),
                "stream_frames": max(0, s.get("submitted", 0) - http),
                "completed": s.get("completed", 0),
                "failed": s.get("failed", 0),
                "rejected": s.get("rejected_queue_full", 0) + s.get("rejected_deadline", 0)
                + self._rejected_early.get(m.name, 0),
                "queued": s.get("queued", 0), "run_ms_p50": s.get("run_ms_p50"),
                "wait_ms_p50": s.get("wait_ms_p50"),
            })
        return {
            "node": {"name": self.config.node_name, "uptime_s": time.time() - self.started_at,
                     "ready": self.ready(), "workers": stats["workers"],
                     "threads": stats["threads"], "memory_used_bytes": stats["memory_used_bytes"]},
            "models": models,
            "streams": self.stream_stats(),
            "uplink": self.uplink_stats(),
        }

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """Per stream fps, latency, drops and state (empty without streams)."""
        if self.streams is None:
            return {}
        return dict(self.streams.stats())

    def uplink_stats(self) -> dict[str, Any] | None:
        """The uplink's counters, or None without one."""
        return None if self.uplink is None else dict(self.uplink.stats())

    # ---------------------------------------------------------------- streams, uplink

    def _start_uplink(self) -> None:
        """Connect the MQTT uplink (``edgeinfer.serve.uplink``, the ``uplink`` extra)."""
        from edgeinfer.serve.uplink import Uplink

        self.uplink = Uplink(uplink_config(self.config))
        self.uplink.start()

    def _start_streams(self) -> None:
        """Start the streams of the YAML file (``edgeinfer.pipeline.multistream``) on the
        node's scheduler (sized by the file's ``scheduler:`` section where the node's own
        settings leave it open); a model named like a repository model is that model."""
        from edgeinfer.pipeline import multistream

        self.streams = multistream.MultiStreamRunner(self.scheduler, self.streams_config,
                                                     on_result=self._on_stream_result)
        self.streams.start()

    def _on_stream_result(self, stream: str, prediction: Any, frame: Any) -> None:
        """Send one stream result up (results, never frames; ``raw_bytes`` is what the raw
        frame would have cost: its pixels, as no encoded size exists on this path)."""
        if self.uplink is None:
            return
        result = prediction.result
        from edgeinfer.pipeline.sinks import result_items

        items = result_items(result)
        self.uplink.publish(stream, "results",
                            {"results": items, "times_ms": prediction.times_ms},
                            raw_bytes=int(getattr(frame, "nbytes", 0)) or None)

    def latest_frame_jpeg(self, stream: str) -> bytes | None:
        """The latest frame of ``stream`` with its result drawn, as JPEG (None: no frame yet)."""
        import cv2

        if self.streams is None:
            raise UnknownModelError(f"no stream '{stream}': this node runs no streams")
        try:
            image = self.streams.latest_frame(stream)
        except EdgeInferError as exc:
            raise UnknownModelError(f"no stream '{stream}': see GET /v1/status") from exc
        if image is None:
            return None
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return buf.tobytes() if ok else None


def uplink_config(config: NodeConfig) -> Any:
    """The :class:`~edgeinfer.serve.uplink.UplinkConfig` of ``config`` (validated on
    construction); the outbox defaults to ``.outbox.sqlite`` in the repository."""
    from edgeinfer._deps import require

    require("paho.mqtt", "uplink", "the MQTT uplink")
    from edgeinfer.serve.uplink import UplinkConfig

    u = config.uplink
    if u is None:
        raise EdgeInferError("no uplink configured: give --uplink-host")
    return UplinkConfig(
        host=u.host, port=u.port, site=u.site, node=config.node_name,
        outbox=u.outbox or (config.repository / ".outbox.sqlite"), encoding=u.encoding,
        qos=u.qos, keepalive=u.keepalive, tls=u.tls, ca_certs=u.ca_certs, username=u.username,
        password=u.password,
    )


def _unload_from_cache(cache: Any, name: str) -> None:
    """Unload one model from the scheduler's ModelCache (waits for runs in progress)."""
    cache.unload(name)
