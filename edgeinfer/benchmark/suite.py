"""``bench``: every model x backend x thread count, measured one after another in this process.

Before anything is measured the whole plan is checked (backend names, installed packages, input
shapes of every model), so a typo costs no minutes. Then each configuration is measured by
:func:`edgeinfer.benchmark.harness.measure`, and the outputs of each are compared with those of
the first backend of the same model (same seeded inputs for all).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from edgeinfer.artifact import MANIFEST_NAME, Artifact
from edgeinfer.benchmark.harness import (
    BenchResult,
    backend_label,
    measure,
    memory_method,
    model_files,
    threads_label,
)
from edgeinfer.benchmark.report import BenchReport, ModelInfo
from edgeinfer.errors import EdgeInferError, MissingDependencyError, ShapeError
from edgeinfer.loading import load, resolve
from edgeinfer.machine import machine_info, usable_cpus
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.runtime.backends import (
    DEFAULT_BACKEND,
    KNOWN_BACKENDS,
    PRODUCTION_BACKENDS,
    SPINNING_MODES,
    available_backends,
    capabilities,
    is_installed,
    not_installed_message,
)
from edgeinfer.runtime.feeds import static_shape

__all__ = [
    "backends_for",
    "bench",
    "installed_backends",
    "parse_backends",
    "parse_spinning",
    "parse_threads",
]

#: backend -> the module imported before measuring (so load time excludes the import)
_BACKEND_IMPORTS = {
    "ort": "onnxruntime",
    "litert": "ai_edge_litert.interpreter",
    "openvino": "openvino",
    "reference": "onnx.reference",
}
DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10


def installed_backends() -> tuple[str, ...]:
    """Backends whose Python package can be imported here (nothing is imported), in registry
    order; the ``reference`` backend included."""

    return tuple(n for n in KNOWN_BACKENDS if is_installed(n))


def backends_for(fmt: str) -> tuple[str, ...]:
    """What ``all`` means for a model format: the installed production backends that read it,
    the format's default first (it is the reference for agreement). OpenVINO reads .onnx and
    .tflite directly; LiteRT reads only .tflite."""

    found = available_backends(fmt)
    default = DEFAULT_BACKEND.get(fmt)
    return tuple(sorted(found, key=lambda b: b != default))


def parse_backends(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"ort,openvino"`` or a list -> names; ``"all"`` (or None) -> None, meaning every backend
    that is installed and can load the model. An unknown name is a one-line error."""

    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names or names == ["all"]:
        return None
    if "all" in names:
        raise EdgeInferError(f"bad --backend '{spec}': give 'all' alone, or a list of backends")
    choices = [*sorted(KNOWN_BACKENDS), "all"]
    for n in names:
        if n not in KNOWN_BACKENDS:
            raise EdgeInferError(f"unknown backend '{n}': choose from {choices} (comma-separated)")
    return tuple(dict.fromkeys(names))


def parse_spinning(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``run,never`` (or a list) into spinning modes, each checked, order kept."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    modes = tuple(dict.fromkeys(s for s in items if s))

    bad = [s for s in modes if s not in SPINNING_MODES]
    if bad or not modes:
        raise EdgeInferError(
            f"bad --spinning '{spec}': choose from run, always, never (comma-separated)"
        )
    return modes


def parse_threads(spec: str | int | Iterable[int] | None) -> tuple[int, ...]:
    """``"1,2"``, an int or a list -> thread counts; None -> the CPUs this process may use.

    0 means the backend's own default.
    """
    if spec is None:
        return (usable_cpus(),)
    if isinstance(spec, int):
        items: list[Any] = [spec]
    elif isinstance(spec, str):
        items = [s for s in spec.split(",") if s.strip()]
    else:
        items = list(spec)
    try:
        counts = tuple(dict.fromkeys(int(str(s).strip()) for s in items))
    except ValueError:
        raise EdgeInferError(
            f"bad --threads '{spec}': write thread counts like 1,2 (0: the backend's default)"
        ) from None
    if not counts or any(c < 0 for c in counts):
        raise EdgeInferError(f"bad --threads '{spec}': thread counts are integers >= 0")
    return counts


@dataclass(frozen=True)
class _Plan:
    info: ModelInfo
    artifact: Artifact
    preprocess: Any


def bench(
    models: str | Path | Sequence[str | Path],
    backends: str | Sequence[str] | None = "all",
    threads: str | int | Iterable[int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    runs: int | None = None,
    duration: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    *,
    seed: int = 0,
    progress: ProgressFn | None = None,
    spinning: str | Sequence[str] = "run",
) -> BenchReport:
    """Benchmark every model on every backend and thread count; see ``edgeinfer bench``.

    ``models``: model files (.onnx, .tflite), artifact directories or zoo names. ``backends``:
    names, a comma-separated string, or ``"all"`` (every installed backend that can load the
    model's format). ``threads``: thread counts (default: the CPUs this process may use; 0 is
    the backend's default). ``input_shapes``: name -> static shape for dynamic inputs (an
    artifact's manifest shapes are the defaults). ``runs`` timed inferences per configuration
    (default 100) or ``duration`` seconds, after ``warmup`` untimed ones. ``spinning``: ONNX
    Runtime's worker spinning, one or several of ``run``, ``always``, ``never`` (a
    comma-separated string or a list): each is one more ``ort`` configuration.

    A backend that fails to load or run a model is a row with the error, unless exactly one
    backend was named: then the error is raised. Progress (task ``bench``, one step per
    configuration, filled as it is measured) goes to ``progress``.
    """
    model_list = [models] if isinstance(models, (str, Path)) else list(models)
    if not model_list:
        raise EdgeInferError("bench needs at least one model: a file, artifact or zoo name")
    if runs is not None and duration is not None:
        raise EdgeInferError("pass --runs or --duration, not both")
    if runs is None and duration is None:
        runs = DEFAULT_RUNS
    if runs is not None and runs < 1:
        raise EdgeInferError(f"bad --runs {runs}: time at least one inference")
    if duration is not None and not duration > 0:
        raise EdgeInferError(f"bad --duration {duration}: give a positive number of seconds")
    if warmup < 0:
        raise EdgeInferError(f"bad --warmup {warmup}: use 0 or more warm-up runs")

    requested = parse_backends(backends)
    thread_counts = parse_threads(threads)
    spins = parse_spinning(spinning)
    installed = installed_backends()
    for b in requested or ():
        if b not in installed:
            raise MissingDependencyError(
                not_installed_message(b, f"leave '{b}' out of --backend")
            )
    overrides = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    plans = _plan_models(model_list, requested, overrides)
    single = requested is not None and len(requested) == 1
    import_s = _import_backends({b for p in plans for b in p.info.backends})
    method = memory_method()
    backend_init = _initialise_backends(plans, thread_counts[0], seed)

    configs = [(p, b, t, s) for p in plans for b in p.info.backends for t in thread_counts
               for s in (spins if capabilities(b).spinning else spins[:1])]
    results: list[BenchResult] = []
    track = Tracker(progress)
    track.start("bench", total=len(configs))
    for i, (plan, backend, nthreads, spin) in enumerate(configs):
        shown = f"{plan.info.name}: {backend_label(backend, spin)}, {threads_label(nthreads)}"
        track.update("bench", i, shown)
        tick = None if progress is None else partial(_tick, track, i, shown)
        results.append(
            _measure_one(plan, backend, nthreads, runs, duration, warmup, seed, method, tick,
                         raise_errors=single, spinning=spin)
        )
    track.finish("bench")
    results = _with_agreement(results)
    settings = {
        "backends": list(requested) if requested else "all",
        "threads": list(thread_counts),
        "spinning": list(spins),
        "runs": runs,
        "duration_s": duration,
        "warmup": warmup,
        "seed": seed,
        "input_shapes": {k: list(v) for k, v in overrides.items()},
        "timing": "sequential batch-1 Engine.run calls, time.perf_counter_ns around each; "
        "garbage collector paused while timing; load time and memory exclude importing the "
        "runtime package (backend_import_s) and its one-time initialisation in this process "
        "(backend_init: each backend loads and runs its first model once, untimed, before any "
        "measurement, so every configuration starts from an initialised runtime)",
        "backend_import_s": import_s,
        "backend_init": backend_init,
    }
    return BenchReport(
        results=tuple(results),
        models=tuple(p.info for p in plans),
        machine=machine_info(),
        settings=settings,
        memory_method=method,
    )


def _measure_one(
    plan: _Plan,
    backend: str,
    threads: int,
    runs: int | None,
    duration: float | None,
    warmup: int,
    seed: int,
    method: str,
    tick: Callable[[float], None] | None,
    *,
    raise_errors: bool,
    spinning: str = "run",
) -> BenchResult:
    info = plan.info
    try:
        return measure(
            plan.artifact,
            backend,
            threads,
            name=info.name,
            shapes=info.input_shapes,
            runs=runs,
            duration=duration,
            warmup=warmup,
            seed=seed,
            preprocess=plan.preprocess,
            rss_method=method,
            tick=tick,
            spinning=spinning,
        )
    except Exception as exc:
        if isinstance(exc, EdgeInferError):
            message = str(exc)
        else:  # a runtime's own exception: keep its first line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            message = f"{backend} failed on {info.name}: {type(exc).__name__}: {first}"
        if raise_errors:
            if isinstance(exc, EdgeInferError):
                raise
            raise EdgeInferError(message) from exc
        return BenchResult(
            model=info.name,
            backend=backend,
            threads=threads,
            model_bytes=info.bytes,
            spinning=spinning if capabilities(backend).spinning else None,
            input_shapes=info.input_shapes,
            rss_method=method,
            error=message,
        )


# --- planning ------------------------------------------------------------------------------


def _plan_models(
    models: Sequence[str | Path],
    requested: tuple[str, ...] | None,
    overrides: Mapping[str, tuple[int, ...]],
) -> list[_Plan]:
    """Load every model, pick its backends and resolve its input shapes, before any timing.

    An ``--input-shape`` applies to every model with an input of that name whose rank and
    fixed dimensions it fits; it is an error when no model has that input, or none it fits.
    """

    loaded = []
    names_seen: set[str] = set()
    for model in models:
        path = resolve(model)
        artifact = load(path)
        is_artifact = path.is_dir() and (path / MANIFEST_NAME).exists()
        base = artifact.manifest.name if is_artifact else path.name
        name, n = base, 1
        while name in names_seen:  # the same model twice, or two files of one name
            n += 1
            name = f"{base} ({n})"
        names_seen.add(name)
        loaded.append((name, path, artifact, is_artifact, _declared_inputs(artifact)))
    fits = {
        k: [
            entry[0]
            for entry in loaded
            if k in entry[4] and _fits(entry[4][k], v)
        ]
        for k, v in overrides.items()
    }
    for k, v in overrides.items():
        having = [entry for entry in loaded if k in entry[4]]
        if not having:
            where = "; ".join(f"{e[0]}: {list(e[4])}" for e in loaded)
            raise ShapeError(
                f"--input-shape names '{k}', but the model inputs are {where}: "
                "use one of those names"
            )
        if not fits[k]:
            dims = having[0][4][k]
            raise ShapeError(
                f"input '{k}' of {having[0][0]} has shape {_fmt(dims)}, --input-shape gives "
                f"{_fmt(v)}: match the model's rank and fixed dimensions"
            )

    plans: list[_Plan] = []
    for name, path, artifact, is_artifact, _declared in loaded:
        m = artifact.manifest
        fmt = m.model.format
        if requested is not None:
            backends = requested
        else:
            backends = backends_for(fmt)
            if not backends:
                capable = [
                    n for n in PRODUCTION_BACKENDS if fmt in KNOWN_BACKENDS[n].formats
                ]
                hint = (" or ".join(f"`{KNOWN_BACKENDS[b].install_hint}`" for b in capable)
                        or "none reads it")
                raise MissingDependencyError(
                    f"{path}: no installed backend runs {fmt} models: {hint}"
                )
        mine = {k: v for k, v in overrides.items() if name in fits[k]}
        shapes = _resolve_shapes(artifact, is_artifact, mine)
        files = model_files(artifact)
        plans.append(
            _Plan(
                info=ModelInfo(
                    name=name,
                    path=str(path),
                    format=fmt,
                    precision=m.model.precision,
                    bytes=sum(f.stat().st_size for f in files if f.exists()),
                    files=tuple(f.name for f in files),
                    input_shapes=shapes,
                    backends=backends,
                ),
                artifact=artifact,
                preprocess=m.preprocess if is_artifact else None,
            )
        )
    return plans


def _declared_inputs(artifact: Artifact) -> dict[str, list[int | None]]:
    """Input name -> dims as the model file declares them (None: dynamic). ONNX: the graph's
    inputs; other formats: the manifest (read from the file for a bare .tflite)."""
    m = artifact.manifest
    if m.model.format == "onnx":
        from edgeinfer.model.formats import load_onnx
        from edgeinfer.model.onnx_graph import graph_input_names, value_dims

        model = load_onnx(artifact.model_path)
        vis = {vi.name: vi for vi in model.graph.input}
        return {
            n: [d if isinstance(d, int) and d > 0 else None for d in value_dims(vis[n])]
            for n in graph_input_names(model)
        }
    return {i.name: [d if d > 0 else None for d in i.shape] for i in m.inputs}


def _fits(dims: Sequence[int | None], shape: Sequence[int]) -> bool:
    if len(dims) != len(shape):
        return False
    return all(d is None or d == s for d, s in zip(dims, shape, strict=True))


def _fmt(dims: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _resolve_shapes(
    artifact: Artifact, is_artifact: bool, overrides: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """The static shape to feed each input.

    ONNX: the graph's own dims, then the manifest's shapes (artifacts), then ``--input-shape``,
    resolved as ``inspect`` resolves them (a dynamic dim left open is a one-line ShapeError
    naming the input and the flag). Other formats: the manifest's shapes (read from the file
    for a bare .tflite) with ``--input-shape`` on top.
    """
    m = artifact.manifest
    if m.model.format == "onnx":
        from edgeinfer.model.formats import load_onnx
        from edgeinfer.model.onnx_graph import graph_input_names, resolve_input_shapes

        model = load_onnx(artifact.model_path)
        names = graph_input_names(model)
        defaults = {
            i.name: tuple(i.shape)
            for i in m.inputs
            if is_artifact and i.name in names and i.shape and all(d > 0 for d in i.shape)
        }
        return resolve_input_shapes(model, {**defaults, **overrides})
    return {i.name: static_shape(i, overrides) for i in m.inputs}


def _initialise_backends(
    plans: Sequence[_Plan], threads: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Load and run each backend's first model once, untimed, so that what a runtime does once
    per process (ONNX Runtime's environment, OpenVINO's CPU plugin, thread pools) is not
    charged to whichever configuration happens to come first. Returns, per backend, what that
    cost: seconds and the RSS it kept. A failure is left for the measured row to report."""
    from edgeinfer.benchmark.harness import _open_engine
    from edgeinfer.machine import rss_bytes, trim_heap
    from edgeinfer.runtime.feeds import synthetic_feeds

    out: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for backend in plan.info.backends:
            if backend in out:
                continue
            trim_heap()
            before = rss_bytes()
            t0 = time.perf_counter()
            engine = None
            try:
                engine = _open_engine(plan.artifact, backend, threads)
                engine.run(synthetic_feeds(engine.inputs, plan.info.input_shapes, seed=seed))
            except Exception as exc:  # the measured configuration reports it
                out[backend] = {"model": plan.info.name, "error": str(exc).splitlines()[0][:200]}
                continue
            finally:
                if engine is not None:
                    engine.close()
                del engine
                trim_heap()
            after = rss_bytes()
            out[backend] = {
                "model": plan.info.name,
                "seconds": round(time.perf_counter() - t0, 4),
                "rss_kept_bytes": None if before is None or after is None else after - before,
            }
    return out


def _import_backends(backends: Iterable[str]) -> dict[str, float]:
    """Import each backend's runtime package once, before anything is timed."""
    seconds = {}
    for b in sorted(backends):
        module = _BACKEND_IMPORTS.get(b)
        if module is None:
            continue
        t0 = time.perf_counter()
        try:
            importlib.import_module(module)
        except ImportError:
            continue  # the row will carry the backend's own missing-package error
        seconds[b] = round(time.perf_counter() - t0, 4)
    return seconds


# --- agreement -----------------------------------------------------------------------------


def _with_agreement(results: list[BenchResult]) -> list[BenchResult]:
    """Compare every result's outputs with the first working backend of the same model."""
    from edgeinfer.conversion.verify import compare_outputs

    reference: dict[str, BenchResult] = {}
    out = []
    for r in results:
        if not r.ok:
            out.append(r)
            continue
        ref = reference.setdefault(r.model, r)
        if ref is r:
            agreement: dict[str, Any] = {"reference": r.label, "is_reference": True}
        elif ref.feeds_sha256 != r.feeds_sha256:
            agreement = {
                "reference": ref.label,
                "error": "the backends took inputs of different shapes or dtypes: not compared",
            }
        else:
            try:
                figures = compare_outputs(list(ref.outputs), list(r.outputs))
                agreement = {
                    "reference": ref.label,
                    "cosine": figures["cosine"],
                    "max_abs_error": figures["max_abs_error"],
                    "mean_abs_error": figures["mean_abs_error"],
                    "top1_agreement": figures["top1_agreement"],
                    "per_output": figures["per_output"],
                }
            except EdgeInferError as exc:
                agreement = {"reference": ref.label, "error": str(exc)}
        out.append(replace(r, agreement=agreement))
    return out


def _tick(track: Tracker, index: int, shown: str, fraction: float) -> None:
    """Part of configuration ``index`` measured (the harness calls it between inferences)."""
    track.update("bench", index + min(fraction, 1.0), shown)
