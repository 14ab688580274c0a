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

The energy view (:class:`CpuMeter`) splits this process's CPU time (``time.process_time``:
user + system, every thread) by phase: ``idle`` while every stream that has idle mode is
idle, ``busy`` otherwise. We measure process CPU time rather than a power meter because it is
what every edge box has and what the idle mode changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
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
    source_kind,
)
from edgeinfer.pipeline.streams import FrameSkipped, StreamRunner

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


@dataclass(frozen=True)
class IdleSpec:
    """Idle mode of one stream (see :class:`~edgeinfer.runtime.adapt.IdleConfig`)."""

    after_s: float = 10.0
    idle_fps: float = 2.0
    full_fps: float = 30.0


@dataclass(frozen=True)
class StreamSpec:
    """One stream of the config. ``source``: a file path (resolved), URL or camera index;
    ``queue``: frames waiting at most; ``loop``: replay a file forever; ``reconnect``:
    :class:`ReconnectPolicy` fields for a URL or camera."""

    name: str
    source: str
    model: str
    priority: int = 0
    deadline_ms: float | None = None
    live: bool = True
    fps: float | None = None
    queue: int = 2
    loop: bool = False
    idle: IdleSpec | None = None
    sink: str | None = None
    reconnect: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StreamsConfig:
    """Models (name -> artifact directory, model file or zoo name), streams, and the
    scheduler's ``workers``/``threads``/``queue_size`` (0: the scheduler's defaults)."""

    models: Mapping[str, str]
    streams: tuple[StreamSpec, ...]
    scheduler: Mapping[str, int] = field(default_factory=dict)

    def scheduler_config(self) -> Any:
        """The :class:`~edgeinfer.runtime.scheduler.SchedulerConfig` this config asks for."""
        from edgeinfer.runtime.scheduler import SchedulerConfig

        return SchedulerConfig(**dict(self.scheduler))


_TOP_KEYS = {"models", "streams", "scheduler"}
_SCHEDULER_KEYS = {"workers", "threads", "queue_size"}
_STREAM_KEYS = {f.name for f in fields(StreamSpec)}
_IDLE_KEYS = {f.name for f in fields(IdleSpec)}
_RECONNECT_KEYS = {f.name for f in fields(ReconnectPolicy)}


def _check_keys(where: str, got: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(got) - known)
    if unknown:
        raise EdgeInferError(
            f"{where}: unknown key '{unknown[0]}': use only {', '.join(sorted(known))}"
        )


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EdgeInferError(f"{where}: expected a mapping (key: value), got {value!r:.60}")
    return value


def _resolve_model(where: str, value: Any, base: Path) -> str:
    from edgeinfer.zoo import ZOO

    if not isinstance(value, str) or not value:
        raise EdgeInferError(f"{where}: give a zoo name, an artifact directory or a model file")
    path = base / value
    if path.exists():
        return str(path)
    if value in ZOO:
        return value
    raise EdgeInferError(
        f"{where}: '{value}' is no file or folder (looked at {path}) and no zoo model "
        f"({', '.join(sorted(ZOO))}): fix the path, or build it first"
    )


def _resolve_source(where: str, value: Any, base: Path) -> str:
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise EdgeInferError(f"{where}: missing 'source': give a file, a URL or a camera index")
    if source_kind(value) != "file":
        return value
    path = base / value
    if not path.exists():
        raise EdgeInferError(f"{where}: source '{value}' not found (looked at {path}): fix the "
                             "path, or generate the videos first")
    return str(path)


def _stream(i: int, raw: Any, models: Mapping[str, str], base: Path) -> StreamSpec:
    raw = dict(_mapping(f"streams[{i}]", raw))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise EdgeInferError(f"streams[{i}]: missing 'name': give every stream a unique name")
    where = f"stream '{name}'"
    _check_keys(where, raw, _STREAM_KEYS)
    for key in ("source", "model"):
        if key not in raw:
            raise EdgeInferError(f"{where}: missing '{key}'")
    if raw["model"] not in models:
        raise EdgeInferError(f"{where}: unknown model '{raw['model']}': define it under "
                             f"models: (defined: {', '.join(sorted(models)) or 'none'})")
    raw["source"] = _resolve_source(where, raw["source"], base)
    if raw.get("idle") is not None:
        from edgeinfer.runtime.adapt import IdleConfig

        idle = _mapping(f"{where} idle", raw["idle"])
        _check_keys(f"{where} idle", idle, _IDLE_KEYS)
        raw["idle"] = IdleSpec(**idle)
        try:  # validated now, not when the stream starts
            IdleConfig(raw["idle"].after_s, raw["idle"].idle_fps, raw["idle"].full_fps)
        except (EdgeInferError, TypeError) as exc:
            raise EdgeInferError(f"{where} idle: {exc}") from None
    if raw.get("reconnect") is not None:
        reconnect = _mapping(f"{where} reconnect", raw["reconnect"])
        _check_keys(f"{where} reconnect", reconnect, _RECONNECT_KEYS)
        try:
            ReconnectPolicy(**reconnect)
        except (EdgeInferError, TypeError) as exc:
            raise EdgeInferError(f"{where} reconnect: {exc}") from None
    if raw.get("sink") is not None:
        raw["sink"] = str(base / str(raw["sink"]))
    try:
        spec = StreamSpec(**raw)
    except TypeError as exc:
        raise EdgeInferError(f"{where}: {exc}") from None
    if not isinstance(spec.queue, int) or spec.queue < 1:
        raise EdgeInferError(f"{where}: bad queue {spec.queue!r}: give at least 1 frame")
    if spec.deadline_ms is not None and not spec.deadline_ms > 0:
        raise EdgeInferError(f"{where}: bad deadline_ms {spec.deadline_ms!r}: give ms > 0")
    if not isinstance(spec.priority, int):
        raise EdgeInferError(f"{where}: bad priority {spec.priority!r}: give an integer")
    return spec


def parse_streams_config(data: Any, base: str | Path = ".") -> StreamsConfig:
    """Validate a parsed config (paths relative to ``base``); one-line errors name the key."""
    base = Path(base)
    data = _mapping("config", data)
    _check_keys("config", data, _TOP_KEYS)
    raw_models = _mapping("models", data.get("models") or {})
    if not raw_models:
        raise EdgeInferError("config: no models: add 'models: {name: zoo name or path}'")
    models = {str(k): _resolve_model(f"model '{k}'", v, base) for k, v in raw_models.items()}
    raw_streams = data.get("streams")
    if not isinstance(raw_streams, list) or not raw_streams:
        raise EdgeInferError("config: no streams: add 'streams: [{name, source, model}]'")
    streams = tuple(_stream(i, s, models, base) for i, s in enumerate(raw_streams))
    names = [s.name for s in streams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EdgeInferError(f"config: stream name '{dupes[0]}' used twice: names must differ")
    sched = dict(_mapping("scheduler", data.get("scheduler") or {}))
    _check_keys("scheduler", sched, _SCHEDULER_KEYS)
    return StreamsConfig(models, streams, sched)


def load_streams_config(path: str | Path) -> StreamsConfig:
    """Read and validate a YAML streams config; relative paths are taken from its folder."""
    import yaml  # a core dependency (pyproject.toml), imported only when a config is read

    path = Path(path)
    if not path.is_file():
        raise EdgeInferError(f"{path}: no such config file: check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise EdgeInferError(f"{path}: not valid YAML{at}: fix the syntax") from None
    try:
        return parse_streams_config(data, path.parent)
    except EdgeInferError as exc:
        raise EdgeInferError(f"{path}: {exc}") from None


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
            self.idle = IdleController(IdleConfig(i.after_s, i.idle_fps, i.full_fps), now)

    def predict(self, frame: np.ndarray) -> Any:
        from edgeinfer.runtime.scheduler import DeadlineMissedError, RejectedError

        now = time.monotonic()
        # frames come with jitter: one up to half a full-rate interval early counts as due,
        # else a camera at exactly full_fps would lose every other frame to the gate
        slack = 0.5 / self.spec.idle.full_fps if self.spec.idle is not None else 0.0
        if self.idle is not None and not self.idle.should_process(now + slack):
            self.idle_skipped += 1
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
        from edgeinfer.zoo import resolve

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

def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def stats_table(stats: Mapping[str, Mapping[str, Any]], title: str = "streams") -> Any:
    """A rich table of ``MultiStreamRunner.stats()``: fps, p50/p99 latency, drops, state."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("stream", "fps", "p50 ms", "p99 ms", "frames", "drops", "idle skip", "state",
                "reconn.", "queue"):
        table.add_column(col, justify="left" if col in ("stream", "state") else "right")
    for name, s in stats.items():
        state = s["state"] if s["running"] else ("error" if s["error"] else "ended")
        table.add_row(name, f"{s['fps']:.1f}", _ms(s["latency_ms_p50"]), _ms(s["latency_ms_p99"]),
                      str(s["frames"]), str(s["drops"]), str(s["idle_skipped"]), state,
                      str(s["reconnects"]), f"{s['queue_len']}/{s['queue_bound']}")
    return table


def energy_table(energy: Mapping[str, Any]) -> Any:
    """A rich table of ``MultiStreamRunner.energy()``: CPU seconds per hour by phase."""
    from rich.table import Table

    table = Table(title="energy view: process CPU time by phase")
    for col in ("phase", "wall s", "CPU s", "CPU s per hour", "cores busy"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for phase, p in sorted(energy["phases"].items()):
        table.add_row(phase, f"{p['wall_s']:.1f}", f"{p['cpu_s']:.1f}",
                      f"{p['cpu_s_per_hour']:.0f}", f"{p['cores_busy']:.2f}")
    return table


def run_streams_config(path: str | Path, duration_s: float | None, console: Any,
                       refresh_s: float = 0.5) -> dict[str, Any]:
    """Run a streams config for ``duration_s`` seconds (None: until every stream ends or
    Ctrl-C) with a live table on ``console``; the final stats, energy and scheduler figures."""
    from rich.live import Live

    from edgeinfer.runtime.scheduler import Scheduler

    if duration_s is not None and duration_s <= 0:
        raise EdgeInferError(f"bad --duration {duration_s}: give seconds > 0")
    config = load_streams_config(path)
    with Scheduler(config.scheduler_config()) as scheduler:
        runner = MultiStreamRunner(scheduler, config)
        t0 = time.monotonic()
        with runner, Live(stats_table(runner.stats()), console=console,
                          refresh_per_second=4, transient=False) as live:
            try:
                while runner.running and (duration_s is None
                                          or time.monotonic() - t0 < duration_s):
                    left = None if duration_s is None else duration_s - (time.monotonic() - t0)
                    runner.wait(refresh_s if left is None else max(0.0, min(refresh_s, left)))
                    live.update(stats_table(runner.stats(),
                                            f"streams ({time.monotonic() - t0:.0f} s)"))
            except KeyboardInterrupt:
                console.print("stopping")
        stats, sched = runner.stats(), scheduler.stats()
    energy = runner.energy()
    console.print(stats_table(stats, "summary"))
    console.print(energy_table(energy))
    if energy["idle_over_busy"] is not None:
        console.print(f"idle / busy CPU seconds per hour: {energy['idle_over_busy']:.2f}")
    errors = {k: s["error"] for k, s in stats.items() if s["error"]}
    for name, err in errors.items():
        console.print(f"[red]stream {name} ended: {err}[/red]")
    return {"seconds": time.monotonic() - t0, "streams": stats, "energy": energy,
            "scheduler": sched["models"], "workers": sched["workers"],
            "threads": sched["threads"]}
