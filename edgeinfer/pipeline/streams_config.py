"""The streams config of ``edgeinfer streams`` and ``edgeinfer serve --streams``: YAML that
names the models once and the streams that use them, validated into frozen dataclasses with a
one-line error for every mistake (an unknown key, model or source; a bad idle or reconnect
value; a duplicate name).

See :mod:`edgeinfer.pipeline.multistream` for the format and the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.sources import ReconnectPolicy, source_kind

__all__ = ["IdleSpec", "StreamSpec", "StreamsConfig", "load_streams_config",
           "parse_streams_config"]


@dataclass(frozen=True)
class IdleSpec:
    """Idle mode of one stream (see :class:`~edgeinfer.runtime.adapt.IdleConfig`)."""

    after_s: float = 10.0
    idle_fps: float = 2.0
    full_fps: float = 30.0
    motion: float | None = None


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
    scheduler's ``workers``/``threads``/``queue_size`` (0: the scheduler's defaults),
    ``spinning`` (ONNX Runtime's workers: ``run``, ``always`` or ``never``; see
    :class:`~edgeinfer.runtime.backends.BackendOptions`) and ``preempt`` (see
    :class:`~edgeinfer.runtime.scheduler.SchedulerConfig`)."""

    models: Mapping[str, str]
    streams: tuple[StreamSpec, ...]
    scheduler: Mapping[str, Any] = field(default_factory=dict)

    def scheduler_config(self) -> Any:
        """The :class:`~edgeinfer.runtime.scheduler.SchedulerConfig` this config asks for."""
        from edgeinfer.runtime.backends import BackendOptions
        from edgeinfer.runtime.scheduler import SchedulerConfig

        sched = dict(self.scheduler)
        options = BackendOptions(spinning=sched.pop("spinning", "run"))
        return SchedulerConfig(**sched, options=options)


_TOP_KEYS = {"models", "streams", "scheduler"}
_SCHEDULER_KEYS = {"workers", "threads", "queue_size", "spinning", "preempt"}
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
    for key in ("workers", "threads", "queue_size"):
        if key in sched and (type(sched[key]) is not int or sched[key] < 0):
            raise EdgeInferError(f"scheduler: {key} must be a whole number >= 0, not "
                                 f"{sched[key]!r}")
    if type(sched.get("preempt", False)) is not bool:
        raise EdgeInferError(f"scheduler: preempt must be true or false, not {sched['preempt']!r}")
    from edgeinfer.runtime.backends import SPINNING_MODES

    if sched.get("spinning", "run") not in SPINNING_MODES:
        raise EdgeInferError(f"scheduler: spinning must be one of {', '.join(SPINNING_MODES)}, not "
                             f"{sched['spinning']!r}")
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
