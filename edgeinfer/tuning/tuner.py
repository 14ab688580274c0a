"""``edgeinfer tune``: find the fastest backend x precision x threads that keeps accuracy.

The flow: fix dynamic input dimensions to the tuned size -> build the model variants (FP32
graph; INT8 through ``optimize`` with its accuracy-aware fallback; their TFLite conversions)
-> load every configuration (variant x backend x threads x backend options) in an Engine ->
check each one's outputs on held-out samples against the FP32 reference and reject those over
``max_drop`` -> screen the survivors' latency in short interleaved rounds, then time the
finalists in longer rounds beside ONNX Runtime FP32 with its defaults (the baseline) -> write
the winner, its runtime options and the table of every candidate into a new artifact, so that
``Engine`` and ``edgeinfer run`` use the winner by default.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from edgeinfer.artifact import (
    Artifact,
    InputSpec,
    ModelFile,
    RuntimeConfig,
    file_sha256,
    refuse_existing,
    write_artifact,
)
from edgeinfer.errors import EdgeInferError, MissingDependencyError
from edgeinfer.loading import load
from edgeinfer.optimization.evaluate import compare
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, _drop, drop_metric
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.runtime.backends import available_backends, is_installed, not_installed_message
from edgeinfer.runtime.engine import Engine
from edgeinfer.runtime.feeds import random_pixel_inputs
from edgeinfer.stats import latency_summary
from edgeinfer.timing import throughput, time_rounds
from edgeinfer.tuning import measure
from edgeinfer.tuning.candidates import (
    Config,
    Variant,
    configurations,
    keep,
    openvino_precisions,
    thread_counts,
)

log = logging.getLogger(__name__)

Objective = Literal["latency", "throughput"]


@dataclass(frozen=True)
class TuneConfig:
    """What ``tune`` searches and how hard it measures."""

    max_drop: float = 0.01  # fraction (0.01 = 1 point), the measure ``optimize`` uses
    objective: Objective = "latency"
    backends: tuple[str, ...] = ()  # (): every installed backend
    threads: tuple[int, ...] = ()  # (): 1, 2, 4, ... up to the CPUs available
    precisions: tuple[str, ...] = ("fp32", "int8")
    tflite: bool = True  # convert to TFLite so LiteRT competes (onnx2tf: ~15 s per model)
    agree_confidence: float = 0.5
    screen_rounds: int = 3
    screen_runs: int = 5
    final_rounds: int = 7
    final_runs: int = 10
    finalists: int = 4
    throughput_seconds: float = 2.0
    calib_limit: int = 200


@dataclass
class _Row:
    """One candidate's fate, for the report."""

    config: Config
    status: str = "ok"  # ok | rejected | failed
    reason: str = ""
    drop: float | None = None
    agreement: float | None = None
    load_s: float | None = None
    screen_p50_ms: float | None = None
    final: dict[str, float] = field(default_factory=dict)
    throughput_fps: float | None = None
    engine: Engine | None = None
    input_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "label": c.label,
            "model": c.variant.label,
            "format": c.variant.format,
            "precision": c.variant.precision,
            "bytes": c.variant.bytes,
            "backend": c.backend,
            "threads": c.options.threads,
            "compute_precision": c.options.compute_precision,
            "hint": c.options.hint,
            "status": self.status,
            "reason": self.reason,
            "drop": self.drop,
            "agreement": self.agreement,
            "load_s": self.load_s,
            "screen_p50_ms": self.screen_p50_ms,
            **self.final,
            "throughput_fps": self.throughput_fps,
        }


def _static_source(art: Artifact, input_shapes: dict[str, tuple[int, ...]] | None, work: Path):
    """The source model with every input dimension fixed, and its input specs."""
    m = art.manifest
    if m.model.format != "onnx":
        if input_shapes:
            raise EdgeInferError(
                f"--input-shape works on ONNX models; {art.model_path.name} is {m.model.format}"
            )
        return art.model_path, m.inputs
    from edgeinfer.model.export import simplify_onnx
    from edgeinfer.model.formats import load_onnx
    from edgeinfer.model.onnx_graph import _with_static_inputs, resolve_input_shapes, value_dims

    model = load_onnx(art.model_path)
    declared = {i.name: i.shape for i in m.inputs if all(d > 0 for d in i.shape)}
    shapes = resolve_input_shapes(model, {**declared, **(input_shapes or {})})
    dynamic = any(
        not isinstance(d, int) for vi in model.graph.input if vi.name in shapes
        for d in value_dims(vi)
    )
    specs = tuple(
        (next((i for i in m.inputs if i.name == n), None) or InputSpec(name=n, shape=s))
        .model_copy(update={"shape": s})
        for n, s in shapes.items()
    )
    if not dynamic:
        return art.model_path, specs
    path = work / f"{art.model_path.stem}.static.onnx"
    onnx.save(_with_static_inputs(model, shapes), str(path))
    simplify_onnx(path)
    return path, specs


def _synthetic_samples(spec: InputSpec, pre: Any, n: int = 24, seed: int = 0) -> Samples:
    """Random-pixel images through the artifact's normalisation: a weak check, used only when no
    images are given (the report says so)."""
    pixels = random_pixel_inputs(spec.shape, spec.layout, pre, 2 * n, seed)
    return Samples(pixels[:n], pixels[n:], None, "synthetic random pixels (no --calib given)")


def _variant_artifact(src: Artifact, v: Variant, inputs: tuple[InputSpec, ...]) -> Artifact:
    """An in-memory artifact around one variant file, for the Engine."""
    if v.layout != inputs[0].layout and len(inputs[0].shape) == 4:
        n, c, h, w = inputs[0].shape
        inputs = (inputs[0].model_copy(update={"shape": (n, h, w, c), "layout": "NHWC"}),)
    model = ModelFile(
        path=v.path.name,
        format=v.format,  # type: ignore[arg-type]
        precision=v.precision,  # type: ignore[arg-type]
        sha256=file_sha256(v.path),
        bytes=v.path.stat().st_size,
        companions=tuple(c.name for c in v.companions),
    )
    manifest = src.manifest.model_copy(
        update={"model": model, "inputs": inputs, "runtime": None, "outputs": ()}
    )
    return Artifact(v.path.parent, manifest)


def _build_variants(
    src_path: Path,
    art: Artifact,
    samples: Samples,
    config: TuneConfig,
    backends: list[str],
    work: Path,
    notes: list[str],
) -> tuple[list[Variant], dict[str, Any] | None]:
    """The model files to try, and optimize's report when an INT8 variant was built."""
    m = art.manifest
    layout = m.inputs[0].layout
    if m.model.format != "onnx":
        precision = m.model.precision
        if "int8" in config.precisions and precision != "int8":
            notes.append(f"no INT8 variant: tune quantizes ONNX models only, and this source "
                         f"is {m.model.format} {precision}; it runs as it is (convert or "
                         "optimize the ONNX model it came from for INT8)")
        return [Variant(f"{precision}.{m.model.format}", src_path, m.model.format, precision,
                        layout)], None
    from edgeinfer.optimization.optimizer import optimize_model
    from edgeinfer.optimization.passes import optimize_graph

    variants: list[Variant] = []
    opt_report = None
    want_int8 = "int8" in config.precisions
    if want_int8 and samples.labels is None and samples.origin.startswith("synthetic"):
        notes.append("INT8 not tried: it needs calibration images (--calib)")
        want_int8 = False
    if want_int8:
        opt_cfg = OptimizeConfig(
            precision="int8",
            max_drop=config.max_drop,
            agree_confidence=config.agree_confidence,
            latency_rounds=3,
            speed_check=False,  # INT8 may pay on another backend: tune times them all
        )
        (work / "opt").mkdir()
        try:
            opt_report, fp32, int8 = optimize_model(src_path, opt_cfg, samples, work / "opt")
        except EdgeInferError as exc:  # the quantizer cannot handle this graph: FP32 only
            notes.append(f"INT8 not built, FP32 variants only: {exc}")
            want_int8 = False
    if want_int8 and opt_report is not None:
        kind = "mixed" if opt_report["kept_in_float"] else "int8"
        variants.append(Variant("fp32.onnx", fp32, "onnx", "fp32", layout))
        variants.append(Variant(f"{kind}.onnx", int8, "onnx", kind, layout))
    else:
        fp32 = optimize_graph(src_path, work / "fp32.onnx")
        variants.append(Variant("fp32.onnx", fp32, "onnx", "fp32", layout))
    if "fp32" not in config.precisions:
        variants = [v for v in variants if v.precision != "fp32"]
    if "litert" in backends and config.tflite:
        variants += _tflite_variants(fp32, samples, layout, config, want_int8, work, notes)
    return variants, opt_report


def _tflite_variants(
    fp32: Path,
    samples: Samples,
    layout: str,
    config: TuneConfig,
    int8: bool,
    work: Path,
    notes: list[str],
) -> list[Variant]:
    from edgeinfer.conversion.tflite import to_tflite

    out = []
    for precision in ("fp32", "int8"):
        if precision not in config.precisions or (precision == "int8" and not int8):
            continue
        target = work / f"tflite-{precision}"
        try:
            result = to_tflite(
                fp32,
                target,
                samples.calib,
                int8=precision == "int8",
                input_layout="NHWC" if layout == "NHWC" else "NCHW",
            )
        except EdgeInferError as exc:
            notes.append(f"TFLite {precision} conversion failed, LiteRT skipped for it: {exc}")
            continue
        out.append(Variant(f"{precision}.tflite", result.path, "tflite", precision, "NHWC"))
    return out


def _baseline(art: Artifact, sample: np.ndarray) -> tuple[str, Any]:
    """The format's default runtime with its own default options, on the source file."""
    if art.manifest.model.format == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: sample[None]}
        return "onnxruntime FP32, default session options", lambda: sess.run(None, feeds)
    engine = Engine(art, warmup=True)
    feeds = {engine.inputs[0].name: sample[None]}
    return f"{engine.name} on the source file, default options", lambda: engine.backend.run(feeds)


def tune(
    source: str | Path,
    out: str | Path,
    config: TuneConfig | None = None,
    *,
    calib: str | Path | None = None,
    eval_source: str | Path | None = None,
    labels: str | Path | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    keep_candidates: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Search backend x precision x threads for ``source`` and write the winner to ``out``
    (all or nothing; an existing ``out`` only with ``force``)."""
    config = config or TuneConfig()
    started = time.perf_counter()
    refuse_existing(out, force)
    art = load(source)
    backends = list(config.backends) or available_backends()
    for b in backends:
        if not is_installed(b):
            raise MissingDependencyError(not_installed_message(b, f"leave '{b}' out of --backend"))
    track = Tracker(progress)

    def build(stage: Path) -> Artifact:
        with tempfile.TemporaryDirectory(prefix="edgeinfer-tune-") as tmp:
            search = _prepare(art, config, backends, Path(tmp), calib, eval_source, labels,
                              input_shapes, track)
            if keep_candidates:
                keep(search.variants, stage / "candidates")
            rows = _check_all(search, config, track)
            ok = [r for r in rows if r.status == "ok"]
            if not ok:
                raise _nothing_fits(source, rows, config)
            sample = search.samples.evaluation[0]
            baseline_label, baseline_fn = _baseline(art, _in_layout(sample, search.ref_layout,
                                                                    art))
            track.start("timing finalists")
            winner, baseline = _time(ok, baseline_fn, sample, search.ref_layout, config,
                                     search.threads)
            track.finish("timing finalists")
            for r in ok:
                r.engine.close()
                r.engine = None
            report = _report(search, config, rows, winner, baseline, baseline_label, started)
            return _write(stage, art, search.work_art, winner, search.inputs, report,
                          search.opt_report)

    return write_artifact(out, build, force=force)


@dataclass
class _Search:
    """What one tuning run works on: the variants, their artifacts and the FP32 reference."""

    work_art: Artifact
    inputs: tuple[InputSpec, ...]
    samples: Samples
    variants: list[Variant]
    opt_report: dict[str, Any] | None
    configs: list[Config]
    artifacts: dict[str, Artifact]
    reference: np.ndarray
    ref_layout: str
    ref_agree: Any
    threads: tuple[int, ...]
    notes: list[str]


def _prepare(
    art: Artifact, config: TuneConfig, backends: list[str], work: Path,
    calib: str | Path | None, eval_source: str | Path | None, labels: str | Path | None,
    input_shapes: dict[str, tuple[int, ...]] | None, track: Tracker,
) -> _Search:
    """Fix the input shapes, load the samples, build the variants and the FP32 reference."""
    from edgeinfer.conversion.convert import match_converted
    from edgeinfer.optimization.optimizer import build_samples

    notes: list[str] = []
    src_path, inputs = _static_source(art, input_shapes, work)
    m = art.manifest.model_copy(update={"inputs": inputs})
    work_art = Artifact(art.path, m)
    if calib is not None:
        samples = build_samples(work_art, calib, eval_source=eval_source, labels_file=labels,
                                limit=config.calib_limit, progress=track.progress)
    else:
        samples = _synthetic_samples(inputs[0], m.preprocess)
        notes.append("outputs checked on synthetic random pixels: pass --calib IMAGES for a "
                     "meaningful accuracy check")
    track.start("building variants")
    variants, opt_report = _build_variants(src_path, work_art, samples, config, backends, work,
                                           notes)
    track.finish("building variants")
    threads = config.threads or thread_counts()
    configs = configurations(
        variants,
        [b for b in backends if any(v.format in _formats(b) for v in variants)],
        threads,
        "throughput" if config.objective == "throughput" else "latency",
        openvino_precisions() if "openvino" in backends else ("f32",),
    )
    ref_variant = variants[0] if variants[0].precision == "fp32" else None
    ref_art = _variant_artifact(work_art, ref_variant or variants[0], inputs)
    fmt = art.manifest.model.format
    with Engine(ref_art, "ort" if fmt == "onnx" else None) as ref_engine:
        reference = measure.outputs(ref_engine, samples.evaluation)
    ref_agree = compare(reference, reference, samples.labels, config.agree_confidence,
                        samples.decode)
    artifacts = {v.label: _variant_artifact(work_art, v, inputs) for v in variants}
    for v in variants:  # a converter may reorder outputs: match them to the source's
        if v.format == "tflite" and fmt == "onnx":
            artifacts[v.label] = match_converted(src_path, artifacts[v.label],
                                                 samples.evaluation[:2], m.outputs).artifact
    return _Search(work_art, inputs, samples, variants, opt_report, configs, artifacts,
                   reference, (ref_variant or variants[0]).layout, ref_agree, threads, notes)


def _check_all(search: _Search, config: TuneConfig, track: Tracker) -> list[_Row]:
    """Load every configuration and check its outputs; the survivors keep their engines."""
    rows = [_Row(c) for c in search.configs]
    track.start("checking candidates", total=len(rows))
    for row in rows:
        track.advance("checking candidates", 0, detail=row.config.label)
        _check(row, search.artifacts, search.samples, search.reference, search.ref_layout,
               search.ref_agree, config)
        track.advance("checking candidates")
        log.info("%s: %s %s", row.config.label, row.status, row.reason)
    track.finish("checking candidates")
    return rows


def _nothing_fits(source: str | Path, rows: list[_Row], config: TuneConfig) -> EdgeInferError:
    failed = [r for r in rows if r.status == "failed"]
    best = min((r.drop for r in rows if r.drop is not None), default=None)
    return EdgeInferError(
        f"no configuration of {source} stays within --max-drop {config.max_drop:.2%} "
        f"({len(rows) - len(failed)} rejected, smallest drop "
        f"{'n/a' if best is None else f'{best:.2%}'}; {len(failed)} failed"
        + (f", first: {failed[0].config.label}: {failed[0].reason}" if failed else "")
        + "): raise --max-drop, or give calibration images closer to the deployment data"
    )


def _report(
    search: _Search, config: TuneConfig, rows: list[_Row], winner: _Row,
    baseline: dict[str, Any], baseline_label: str, started: float,
) -> dict[str, Any]:
    samples = search.samples
    return {
        "objective": config.objective,
        "max_drop": config.max_drop,
        "drop_metric": drop_metric(
            OptimizeConfig(agree_confidence=config.agree_confidence),
            samples.labels is not None,
            search.ref_agree.metric,
        ),
        "samples": {
            "calibration": len(samples.calib),
            "evaluation": len(samples.evaluation),
            "origin": samples.origin,
        },
        "input_shapes": {i.name: list(i.shape) for i in search.inputs},
        "threads_tried": list(search.threads),
        "baseline": {"label": baseline_label, **baseline},
        "winner": winner.config.label,
        "winner_p50_ms": winner.final["p50_ms"],
        "speedup_vs_baseline": baseline["p50_ms"] / winner.final["p50_ms"],
        "candidates": [r.to_dict() for r in rows],
        "notes": search.notes,
        "seconds": time.perf_counter() - started,
    }


def _formats(backend: str) -> tuple[str, ...]:
    from edgeinfer.runtime.backends import KNOWN_BACKENDS

    return KNOWN_BACKENDS[backend].formats


def _in_layout(sample: np.ndarray, layout: str, art: Artifact) -> np.ndarray:
    want = art.manifest.inputs[0].layout
    return measure.to_layout(sample[None], layout, want)[0]


def _check(
    row: _Row,
    artifacts: dict[str, Artifact],
    samples: Samples,
    reference: np.ndarray,
    ref_layout: str,
    ref_agree: Any,
    config: TuneConfig,
) -> None:
    c = row.config
    try:
        engine = Engine(artifacts[c.variant.label], c.backend, c.options)
    except EdgeInferError as exc:
        row.status, row.reason = "failed", str(exc)
        return
    row.load_s = engine.load_s
    row.input_names = tuple(i.name for i in engine.inputs)
    batch = measure.to_layout(samples.evaluation, ref_layout, c.variant.layout)
    try:
        got = measure.align(reference, measure.outputs(engine, batch))
    except EdgeInferError as exc:
        row.status, row.reason = "failed", str(exc)
        engine.close()
        return
    if got.shape != reference.shape:
        row.status = "failed"
        row.reason = f"output shape {list(got.shape)} differs from the reference's"
        engine.close()
        return
    agree = compare(reference, got, samples.labels, config.agree_confidence, samples.decode)
    row.drop = _drop(ref_agree, agree, config.agree_confidence)
    row.agreement = agree.value
    if row.drop > config.max_drop:
        row.status = "rejected"
        row.reason = f"drop {row.drop:.2%} > max {config.max_drop:.2%}"
        engine.close()
        return
    row.engine = engine


def _runner(row: _Row, sample: np.ndarray, ref_layout: str) -> Any:
    engine = row.engine
    x = measure.to_layout(sample[None], ref_layout, row.config.variant.layout)
    dtype = np.dtype(engine.inputs[0].dtype)
    feeds = {engine.inputs[0].name: np.ascontiguousarray(
        x, dtype=np.float32 if dtype.kind in "iu" else dtype)}
    return lambda: engine.run(feeds)


def _time(
    ok: list[_Row],
    baseline_fn: Any,
    sample: np.ndarray,
    ref_layout: str,
    config: TuneConfig,
    threads: tuple[int, ...],
) -> tuple[_Row, dict[str, float]]:
    """Screen every candidate, time the finalists beside the baseline; return the winner."""
    runners = [_runner(r, sample, ref_layout) for r in ok]
    screen = time_rounds(runners, config.screen_rounds, config.screen_runs)
    for r, s in zip(ok, screen, strict=True):
        r.screen_p50_ms = latency_summary(s)["p50_ms"]
    order = sorted(range(len(ok)), key=lambda i: ok[i].screen_p50_ms)
    finalists = order[: config.finalists]
    final = time_rounds(
        [runners[i] for i in finalists] + [baseline_fn], config.final_rounds, config.final_runs
    )
    for i, s in zip(finalists, final, strict=False):
        ok[i].final = latency_summary(s)
    baseline = latency_summary(final[-1])
    if config.objective == "throughput":
        cpus = max(threads)
        for i in finalists:
            workers = max(1, cpus // max(1, ok[i].config.options.threads))
            ok[i].throughput_fps = throughput(
                runners[i], workers, config.throughput_seconds
            )
        best = max(finalists, key=lambda i: ok[i].throughput_fps or 0.0)
    else:
        best = min(finalists, key=lambda i: ok[i].final["p50_ms"])
    return ok[best], baseline


def _write(
    stage: Path,
    art: Artifact,
    work_art: Artifact,
    winner: _Row,
    inputs: tuple[InputSpec, ...],
    report: dict[str, Any],
    opt_report: dict[str, Any] | None,
) -> Artifact:
    """The winner's artifact, written into ``stage`` (``write_artifact`` moves it into place)."""
    m = art.manifest
    w = winner.config
    ext = w.variant.path.suffix
    model_file = stage / f"{m.name}.{w.variant.precision}{ext}"
    shutil.copyfile(w.variant.path, model_file)
    companions = []
    for c in w.variant.companions:
        shutil.copyfile(c, stage / c.name)
        companions.append(stage / c.name)
    vart = _variant_artifact(work_art, w.variant, inputs)
    # A converter names inputs its own way (TFLite: serving_default_...): the manifest follows.
    specs = tuple(
        i.model_copy(update={"name": n})
        for i, n in zip(vart.manifest.inputs, winner.input_names, strict=False)
    )
    reports = {**m.reports, "tune": report}
    if opt_report is not None and w.variant.precision in ("int8", "mixed"):
        reports["optimize"] = opt_report
    return art.derive(
        stage,
        model_file,
        origin=f"tuned from {art.model_path.name}",
        format=w.variant.format,
        precision=w.variant.precision,
        companions=tuple(companions),
        inputs=specs,
        outputs=m.outputs if w.variant.format == "onnx" else (),
        runtime=RuntimeConfig(
            backend=w.backend,
            threads=w.options.threads,
            hint=w.options.hint,
            compute_precision=w.options.compute_precision,
        ),
        reports=reports,
    )


__all__ = ["TuneConfig", "tune"]
