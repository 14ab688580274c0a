"""Many camera streams, one scheduler: a YAML config and a runner built on StreamRunner.

A config names the models once and the streams that use them::

    scheduler: {workers: 1}            # optional: SchedulerConfig workers/threads/queue_size
    models:
      faces: blazeface-short           # zoo name, artifact directory or model file
      defects: out/defect-detector-int8
    streams:
      - {name: entrance, source: entrance.mp4, model: faces, priority: 2, deadline_ms: 200,
         live: true, queue: 2, idle: {after_s: 3, idle_fps: 2}, sink: out/entrance.jsonl}
      - {name: belt-1, source: "http://cam-2/stream.mjpg", model: defects}

:class:`MultiStreamRunner` gives every stream its own
:class:`~edgeinfer.pipeline.streams.StreamRunner` (reader thread, bounded drop-oldest queue,
worker thread, counters) whose predictor runs through :meth:`Scheduler.engine`, so the
streams share the scheduler's workers, priorities, deadlines and memory budget. A request the
scheduler rejects or skips (deadline) is a dropped frame, not the end of the stream. Where a
stream has ``idle``, an :class:`~edgeinfer.runtime.adapt.IdleController` sets its processed
frame rate: after ``after_s`` seconds with no detection only ``idle_fps`` frames a second are
inferred; the first detection restores ``full_fps``.

The config lives in :mod:`~edgeinfer.pipeline.streams_config` (its names are re-exported
here), the terminal view of ``edgeinfer streams`` in :mod:`edgeinfer.cli.streams_view`.

The energy view (:class:`CpuMeter`) splits this process's CPU time (``time.process_time``:
user + system, every thread) by phase: ``idle`` while every stream that has idle mode is
idle, ``busy`` otherwise. We measure process CPU time rather than a power meter because it is
what every edge box has and what the idle mode changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import resolve
from edgeinfer.pipeline.sinks import (
    CallbackSink,
    ImageSink,
    JsonLinesSink,
    Sink,
    StreamResult,
    VideoSink,
)
from edgeinfer.pipeline.sources import (
    FileSource,
    ReconnectPolicy,
    Source,
    open_source,
)
from edgeinfer.pipeline.streams import FrameSkipped, StreamRunner
from edgeinfer.pipeline.streams_config import (
    IdleSpec,
    StreamsConfig,
    StreamSpec,
    load_streams_config,
    parse_streams_config,
)

__all__ = [
    "CpuMeter",
    "IdleSpec",
    "LoopingSource",
    "MultiStreamRunner",
    "StreamSpec",
    "StreamsConfig",
    "load_streams_config",
    "parse_streams_config",
]

log = logging.getLogger(__name__)

#: called for every processed frame: (stream name, prediction, BGR frame)
OnResult = Callable[[str, Any, np.ndarray], None]


class LoopingSource:
    """A file source replayed from the start each time it ends (``loops`` counts them)."""

    reconnects = 0

    def __init__(self, inner: FileSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.live = inner.live
        self.loops = 0
        self._stop = threading.Event()

    def frames(self) -> Any:
        """The file's frames, again and again until ``close``."""
        while not self._stop.is_set():
            n = 0
            for item in self.inner.frames():
                n += 1
                yield item
            if n == 0 or self._stop.is_set():
                return
            self.loops += 1

    def close(self) -> None:
        """End ``frames``; callable from any thread."""
        self._stop.set()
        self.inner.close()


def _open(spec: StreamSpec) -> Source:
    policy = ReconnectPolicy(**spec.reconnect) if spec.reconnect else None
    source = open_source(spec.source, live=spec.live, fps=spec.fps, policy=policy)
    if spec.loop and isinstance(source, FileSource):
        source = LoopingSource(source)
    source.name = spec.name
    return source


def _sink(path: str) -> Sink:
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JsonLinesSink(path)
    if suffix in (".mp4", ".avi"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return VideoSink(path)
    return ImageSink(path)


def _detections(prediction: Any) -> int:
    result = getattr(prediction, "result", prediction)
    try:
        return len(result)
    except TypeError:
        return 0


class _Stream:
    """One stream's predictor: idle gate, scheduler, rejected frames, the latest result."""

    def __init__(self, spec: StreamSpec, predictor: Any, on_result: OnResult | None) -> None:
        self.spec = spec
        self.predictor = predictor
        self.on_result = on_result
        self.idle: Any = None
        self.idle_skipped = self.rejected = self.callback_errors = 0
        self.latest: tuple[np.ndarray, Any] | None = None
        self.lock = threading.Lock()
        self.runner: StreamRunner | None = None

    def start_idle(self, now: float) -> None:
        if self.spec.idle is not None:
            from edgeinfer.runtime.adapt import IdleConfig, IdleController

            i = self.spec.idle
            self.idle = IdleController(
                IdleConfig(i.after_s, i.idle_fps, i.full_fps, i.motion), now)

    def predict(self, frame: np.ndarray) -> Any:
        from edgeinfer.runtime.scheduler import DeadlineMissedError, RejectedError

        now = time.monotonic()
        # frames come with jitter: one up to half a full-rate interval early counts as due,
        # else a camera at exactly full_fps would lose every other frame to the gate
        slack = 0.5 / self.spec.idle.full_fps if self.spec.idle is not None else 0.0
        if self.idle is not None and (not self.idle.should_process(now + slack)
                                      or self.idle.is_still(frame, now)):
            self.idle_skipped += 1  # not due, or due but the scene is still (motion gate)
            raise FrameSkipped("idle")
        try:
            prediction = self.predictor.predict(frame, self.spec.name)
        except (RejectedError, DeadlineMissedError):
            self.rejected += 1
            raise FrameSkipped("rejected") from None
        if self.idle is not None:
            self.idle.report(now, _detections(prediction) > 0)
        return prediction

    def deliver(self, result: StreamResult) -> None:
        with self.lock:
            self.latest = (result.frame, result.prediction)
        if self.on_result is None:
            return
        try:
            self.on_result(self.spec.name, result.prediction, result.frame)
        except Exception:  # a consumer's bug must not stop the camera stream; it is logged
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("stream %s: on_result failed (further failures counted)",
                              self.spec.name)

    @property
    def state(self) -> str:
        return "idle" if self.idle is not None and self.idle.idle else "active"


class CpuMeter:
    """This process's CPU seconds split by phase, sampled every ``period_s`` on a thread.

    ``phase()`` names the phase of each interval (read at its end). ``report()``: per phase
    wall seconds, CPU seconds, CPU seconds per hour and mean cores busy.
    """

    def __init__(self, phase: Callable[[], str], period_s: float = 0.25) -> None:
        self.phase = phase
        self.period_s = period_s
        self._totals: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="edgeinfer-cpu-meter",
                                        daemon=True)

    def start(self) -> CpuMeter:
        """Start sampling."""
        self._last = (time.monotonic(), time.process_time())
        self._thread.start()
        return self

    def sample(self) -> None:
        """Attribute the time since the last sample to the current phase."""
        now, cpu = time.monotonic(), time.process_time()
        with self._lock:
            wall0, cpu0 = self._last
            self._last = (now, cpu)
            tot = self._totals.setdefault(self.phase(), [0.0, 0.0])
            tot[0] += now - wall0
            tot[1] += cpu - cpu0

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def stop(self) -> None:
        """Take a last sample and stop."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self.sample()

    def report(self) -> dict[str, dict[str, float]]:
        """{phase: {wall_s, cpu_s, cpu_s_per_hour, cores_busy}}."""
        with self._lock:
            totals = {k: tuple(v) for k, v in self._totals.items()}
        return {
            k: {"wall_s": w, "cpu_s": c, "cpu_s_per_hour": c / w * 3600 if w else 0.0,
                "cores_busy": c / w if w else 0.0}
            for k, (w, c) in totals.items()
        }


class MultiStreamRunner:
    """Runs every stream of ``config`` through ``scheduler`` (models registered on it unless
    already there). ``on_result(stream, prediction, frame)`` is called from the stream's
    worker thread for every processed frame (keep it short; an exception is logged and
    counted, the stream goes on). ``stats()`` and ``latest_frame()`` may be called from any
    thread. The scheduler stays the caller's to close.
    """

    def __init__(self, scheduler: Any, config: StreamsConfig,
                 on_result: OnResult | None = None) -> None:
        from edgeinfer.pipeline.predict import Predictor

        self.scheduler = scheduler
        self.config = config
        for name, model in config.models.items():
            if name not in scheduler.cache:
                scheduler.register(name, resolve(model))
        self._streams: dict[str, _Stream] = {}
        for spec in config.streams:
            engine = scheduler.engine(spec.model, priority=spec.priority,
                                      deadline_ms=spec.deadline_ms)
            stream = _Stream(spec, Predictor(engine), on_result)
            sinks: list[Sink] = [CallbackSink(stream.deliver)]
            if spec.sink:
                sinks.append(_sink(spec.sink))
            stream.runner = StreamRunner(_open(spec), stream, sinks, queue_size=spec.queue)
            self._streams[spec.name] = stream
        self.meter = CpuMeter(self._phase)

    @property
    def names(self) -> list[str]:
        """The stream names, in config order."""
        return list(self._streams)

    def _phase(self) -> str:
        gated = [s for s in self._streams.values() if s.idle is not None]
        return "idle" if gated and all(s.state == "idle" for s in gated) else "busy"

    def _runners(self) -> list[StreamRunner]:
        return [s.runner for s in self._streams.values() if s.runner is not None]

    def start(self) -> MultiStreamRunner:
        """Start every stream and the CPU meter."""
        now = time.monotonic()
        for s in self._streams.values():
            s.start_idle(now)
        self.meter.start()
        for r in self._runners():
            r.start()
        return self

    def stop(self) -> None:
        """Stop every stream and wait for them (sinks closed), then the CPU meter."""
        for r in self._runners():
            r.stop()
        for r in self._runners():
            r.join()
        self.meter.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for every stream to end; True when all have."""
        end = None if timeout is None else time.monotonic() + timeout
        for r in self._runners():
            left = None if end is None else max(0.0, end - time.monotonic())
            r.join(left)
        return not self.running

    @property
    def running(self) -> bool:
        """Whether any stream is still running."""
        return any(r.running for r in self._runners())

    def __enter__(self) -> MultiStreamRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per stream: fps (last 2 s), latency p50/p99 (capture to result, ms), frames
        processed, drops (queue evictions + frames the scheduler rejected or skipped), state
        (``active``/``idle``), reconnects, queue length now and its high-water mark, and more."""
        out = {}
        for name, s in self._streams.items():
            st = s.runner.stats() if s.runner is not None else None
            if st is None:
                continue
            out[name] = {
                "fps": st.fps,
                "mean_fps": st.mean_fps,
                "latency_ms_p50": st.p50_ms,
                "latency_ms_p99": st.p99_ms,
                "frames": st.processed,
                "frames_in": st.frames_in,
                "drops": st.dropped + s.rejected,
                "queue_drops": st.dropped,
                "rejected": s.rejected,
                "idle_skipped": s.idle_skipped,
                "idle_entries": 0 if s.idle is None else s.idle.idle_entries,
                "still_skipped": 0 if s.idle is None else s.idle.still_skipped,
                "state": s.state,
                "reconnects": st.reconnects,
                "queue_len": st.queue_len,
                "queue_max": st.queue_max,
                "queue_bound": st.queue_bound,
                "running": st.running,
                "error": st.error,
                "callback_errors": s.callback_errors,
            }
        return out

    def latest_frame(self, stream: str) -> np.ndarray | None:
        """The last processed frame of ``stream`` with its result drawn (a new BGR array),
        or None before its first result."""
        from edgeinfer.vision.draw import annotate

        s = self._streams.get(stream)
        if s is None:
            raise EdgeInferError(f"unknown stream '{stream}': known {', '.join(self._streams)}")
        with s.lock:
            latest = s.latest
        if latest is None:
            return None
        frame, prediction = latest
        return annotate(frame, getattr(prediction, "result", prediction))

    def energy(self) -> dict[str, Any]:
        """The CPU meter's report by phase, with idle / busy CPU seconds per hour."""
        phases = self.meter.report()
        busy, idle = phases.get("busy"), phases.get("idle")
        ratio = None
        if busy and idle and busy["cpu_s_per_hour"] > 0:
            ratio = idle["cpu_s_per_hour"] / busy["cpu_s_per_hour"]
        return {"phases": phases, "idle_over_busy": ratio}


# ---------------------------------------------------------------------- the CLI's view
