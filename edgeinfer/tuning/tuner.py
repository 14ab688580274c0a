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
import os
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
)
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load
from edgeinfer.optimization.evaluate import compare
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, _drop, drop_metric
from edgeinfer.runtime.backends import available_backends, is_installed
from edgeinfer.runtime.engine import Engine
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
    """Random-pixel images run through the artifact's normalisation: a weak check, used only
    when no images are given (the report says so)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (2 * n, *spec.shape[1:]), dtype=np.uint8).astype(np.float32)
    axis = 1 if spec.layout == "NCHW" else -1
    shape = [1] * pixels.ndim
    if pixels.ndim == 4:
        shape[axis] = 3 if pixels.shape[axis] == 3 else 1
        mean = np.asarray(pre.mean, np.float32)[: shape[axis]].reshape(shape)
        std = np.asarray(pre.std, np.float32)[: shape[axis]].reshape(shape)
        pixels = (pixels * pre.scale - mean) / std
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
        )
        (work / "opt").mkdir()
        opt_report, fp32, int8 = optimize_model(src_path, opt_cfg, samples, work / "opt")
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
) -> Artifact:
    """Search backend x precision x threads for ``source`` and write the winner to ``out``."""
    from rich.progress import Progress

    from edgeinfer.optimization.optimizer import build_samples

    config = config or TuneConfig()
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise EdgeInferError(f"{out} exists and is not empty: choose another -o or use --force")
        shutil.rmtree(out)
    art = load(source)
    fmt = art.manifest.model.format
    backends = list(config.backends) or available_backends()
    for b in backends:
        if not is_installed(b):
            raise EdgeInferError(f"backend '{b}' is not installed: see `edgeinfer bench --help`")
    threads = config.threads or thread_counts()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeinfer-tune-") as tmp:
        work = Path(tmp)
        src_path, inputs = _static_source(art, input_shapes, work)
        m = art.manifest.model_copy(update={"inputs": inputs})
        work_art = Artifact(art.path, m)
        if calib is not None:
            samples = build_samples(
                work_art, calib, eval_source=eval_source, labels_file=labels,
                limit=config.calib_limit,
            )
        else:
            samples = _synthetic_samples(inputs[0], m.preprocess)
            notes.append("outputs checked on synthetic random pixels: pass --calib IMAGES for a "
                         "meaningful accuracy check")
        variants, opt_report = _build_variants(
            src_path, work_art, samples, config, backends, work, notes
        )
        configs = configurations(
            variants,
            [b for b in backends if any(v.format in _formats(b) for v in variants)],
            threads,
            "throughput" if config.objective == "throughput" else "latency",
            openvino_precisions() if "openvino" in backends else ("f32",),
        )
        if keep_candidates:
            keep(variants, out / "candidates")
        ref_variant = variants[0] if variants[0].precision == "fp32" else None
        ref_art = _variant_artifact(work_art, ref_variant or variants[0], inputs)
        ref_engine = Engine(ref_art, "ort" if fmt == "onnx" else None)
        ref_layout = (ref_variant or variants[0]).layout
        reference = measure.outputs(ref_engine, samples.evaluation)
        ref_agree = compare(
            reference, reference, samples.labels, config.agree_confidence, samples.decode
        )
        ref_engine.close()
        rows = [_Row(c) for c in configs]
        artifacts = {v.label: _variant_artifact(work_art, v, inputs) for v in variants}
        with Progress(transient=True) as bar:
            task = bar.add_task("checking candidates", total=len(rows))
            for row in rows:
                bar.update(task, description=f"checking {row.config.label}")
                _check(row, artifacts, samples, reference, ref_layout, ref_agree, config)
                bar.advance(task)
        ok = [r for r in rows if r.status == "ok"]
        for r in rows:
            log.info("%s: %s %s", r.config.label, r.status, r.reason)
        if not ok:
            failed = [r for r in rows if r.status == "failed"]
            best = min((r.drop for r in rows if r.drop is not None), default=None)
            raise EdgeInferError(
                f"no configuration of {source} stays within --max-drop {config.max_drop:.2%} "
                f"({len(rows) - len(failed)} rejected, smallest drop "
                f"{'n/a' if best is None else f'{best:.2%}'}; {len(failed)} failed"
                + (f", first: {failed[0].config.label}: {failed[0].reason}" if failed else "")
                + "): raise --max-drop, or give calibration images closer to the deployment data"
            )
        sample = samples.evaluation[0]
        baseline_label, baseline_fn = _baseline(art, _in_layout(sample, ref_layout, art))
        winner, baseline = _time(ok, baseline_fn, sample, ref_layout, config, threads)
        for r in ok:
            r.engine.close()
            r.engine = None
        w = winner.config
        report = {
            "objective": config.objective,
            "max_drop": config.max_drop,
            "drop_metric": drop_metric(
                OptimizeConfig(agree_confidence=config.agree_confidence),
                samples.labels is not None,
                ref_agree.metric,
            ),
            "samples": {
                "calibration": len(samples.calib),
                "evaluation": len(samples.evaluation),
                "origin": samples.origin,
            },
            "input_shapes": {i.name: list(i.shape) for i in inputs},
            "threads_tried": list(threads),
            "baseline": {"label": baseline_label, **baseline},
            "winner": w.label,
            "winner_p50_ms": winner.final["p50_ms"],
            "speedup_vs_baseline": baseline["p50_ms"] / winner.final["p50_ms"],
            "candidates": [r.to_dict() for r in rows],
            "notes": notes,
            "seconds": time.perf_counter() - started,
        }
        result = _write(out, art, work_art, winner, inputs, report, opt_report)
    return result


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
    out: Path,
    art: Artifact,
    work_art: Artifact,
    winner: _Row,
    inputs: tuple[InputSpec, ...],
    report: dict[str, Any],
    opt_report: dict[str, Any] | None,
) -> Artifact:
    """Stage the winner's artifact beside ``out``, then swap it in (nothing half-written)."""
    m = art.manifest
    w = winner.config
    staged = out.parent / f".{out.name}.staging"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    ext = w.variant.path.suffix
    model_file = staged / f"{m.name}.{w.variant.precision}{ext}"
    shutil.copyfile(w.variant.path, model_file)
    companions = []
    for c in w.variant.companions:
        shutil.copyfile(c, staged / c.name)
        companions.append(staged / c.name)
    vart = _variant_artifact(work_art, w.variant, inputs)
    # A converter names inputs its own way (TFLite: serving_default_...): the manifest follows.
    specs = tuple(
        i.model_copy(update={"name": n})
        for i, n in zip(vart.manifest.inputs, winner.input_names, strict=False)
    )
    reports = {**m.reports, "tune": report}
    if opt_report is not None and w.variant.precision in ("int8", "mixed"):
        reports["optimize"] = opt_report
    art.derive(
        staged,
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
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        candidates = out / "candidates"
        if candidates.exists():
            shutil.move(str(candidates), staged / "candidates")
        shutil.rmtree(out)
    os.replace(staged, out)

    return load(out)


__all__ = ["TuneConfig", "tune"]
