"""``edgeinfer optimize``: graph passes, quantization, accuracy-aware fallback, honest report.

The flow: graph-optimize the FP32 model (portable ONNX) -> read calibration and evaluation
samples with the artifact's own preprocessing -> for static INT8, time full INT8 against FP32
first and stop when it is not faster (:mod:`edgeinfer.optimization.int8`) -> quantize as asked
-> for static INT8, rank layers by sensitivity and return the most sensitive to float until the
drop on the evaluation set is within ``max_drop`` -> measure size, latency and the drop (with
its interval and sample count, :mod:`edgeinfer.optimization.guard`) against FP32 on this
machine -> write the artifact. If the result is slower, worse, or effectively float, the report
says so and the artifact keeps FP32 as its recommended model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from edgeinfer.artifact import Artifact, write_artifact
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import check_manifest_inputs, load, with_input_shapes
from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.calibration import load_samples, split_samples
from edgeinfer.optimization.evaluate import (
    SINGLE_OUTPUT_DETECTORS,
    Agreement,
    DetectionDecode,
    compare,
    interleaved_latency,
    run_outputs,
)
from edgeinfer.optimization.guard import drop as _drop  # noqa: F401 (tune reads it here)
from edgeinfer.optimization.guard import drop_metric as _drop_metric
from edgeinfer.optimization.guard import estimate_drop
from edgeinfer.optimization.int8 import (
    ISOLATE_TOP,
    SLOWER_MARGIN,
    LatencyTimer,
    Reference,
    check_int8_speed,
    float_share,
    not_faster_message,
    static_int8,
)
from edgeinfer.optimization.passes import optimize_graph
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.report_html import optimize_report_html

__all__ = [
    "ISOLATE_TOP",
    "SLOWER_MARGIN",
    "OptimizeConfig",
    "Samples",
    "build_samples",
    "detection_decode",
    "drop_metric",
    "optimize",
    "optimize_model",
    "optimize_with_calibration",
    "read_labels",
]

log = logging.getLogger(__name__)

#: share of the quantizable layers kept in float from which an INT8 request is effectively float
EFFECTIVELY_FLOAT = 0.9

PrecisionName = Literal["fp32", "fp16", "int8", "int8-dynamic", "mixed"]


@dataclass(frozen=True)
class OptimizeConfig:
    """Everything ``optimize`` needs to know besides the data."""

    precision: PrecisionName = "int8"
    calib_method: str = "percentile"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: from the CPU check (7-bit weights without VNNI)
    max_drop: float = 0.01  # fraction (0.01 = 1 point)
    agree_confidence: float = 0.5  # without labels: agreement counted where FP32 is this sure
    fallback: bool = True
    #: static INT8: time full INT8 against FP32 first and stop when it is not faster
    speed_check: bool = True
    latency_rounds: int = 7
    threads: int = 0


@dataclass(frozen=True)
class Samples:
    """Preprocessed calibration and evaluation inputs (disjoint), and optional eval labels."""

    calib: np.ndarray
    evaluation: np.ndarray
    labels: tuple[int, ...] | None = None
    origin: str = ""
    #: for detectors: one sample's output -> detections (agreement is then AP@0.5 vs FP32)
    decode: DetectionDecode | None = None


def detection_decode(artifact: Artifact) -> DetectionDecode | None:
    """How to read a sample's output as detections, for artifacts whose decoder makes them
    from the first output alone (see ``SINGLE_OUTPUT_DETECTORS``); None for the others."""
    from edgeinfer.vision.decoders import get_decoder

    m = artifact.manifest
    if m.decoder not in SINGLE_OUTPUT_DETECTORS:
        return None
    params = {k: v for k, v in m.decoder_params.items() if k != "image_size"}
    conf = float(params.get("conf_threshold", 0.25))
    labels = artifact.labels()
    return DetectionDecode(
        get_decoder(m.decoder), params, tuple(labels) if labels else None, conf
    )


def drop_metric(config: OptimizeConfig, labels: bool, metric: str) -> str:
    """Words for what the drop measured, for the report."""
    return _drop_metric(config.agree_confidence, labels, metric)


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} us" if value < 1 else f"{value:.3g} ms"


def _agreement_dict(a: Agreement) -> dict[str, Any]:
    return {k: v for k, v in asdict(a).items() if v is not None}


def optimize_model(
    src: Path,
    config: OptimizeConfig,
    samples: Samples,
    workdir: Path,
    progress: ProgressFn | None = None,
    timer: LatencyTimer | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """Optimize the ONNX model ``src`` inside ``workdir`` (the fallback search reports to
    ``progress``; ``timer`` times models interleaved, default onnxruntime on this machine).

    Returns the report (JSON-ready), the graph-optimized FP32 model and the candidate; the
    report's ``recommended`` says which of the two to ship.
    """
    timer = timer or partial(interleaved_latency, rounds=config.latency_rounds,
                             threads=config.threads)
    fp32 = optimize_graph(src, workdir / "fp32.onnx")
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    ref_out = run_outputs(fp32, samples.evaluation, input_name)
    ref = Reference(fp32, input_name, ref_out,
                    compare(ref_out, ref_out, samples.labels, config.agree_confidence,
                            samples.decode))
    report = _base_report(config, samples)
    settings = _settings(config, report)
    candidate = workdir / "candidate.onnx"
    if config.precision in ("int8", "mixed") and config.speed_check:
        check, screened = check_int8_speed(fp32, samples.calib, samples.evaluation, settings,
                                           workdir, timer)
        report["int8_speed_check"] = check.to_dict()
        if not check.faster:
            return _stopped(report, check, fp32), fp32, screened
    kept = _make_candidate(ref, candidate, samples, settings, config, workdir, report,
                           Tracker(progress))
    _measure(report, ref, candidate, kept, samples, config, workdir, timer)
    return report, fp32, candidate


def _base_report(config: OptimizeConfig, samples: Samples) -> dict[str, Any]:
    return {
        "precision_requested": config.precision,
        "max_drop": config.max_drop,
        "samples": {
            "calibration": len(samples.calib),
            "evaluation": len(samples.evaluation),
            "origin": samples.origin,
            "labels": samples.labels is not None,
        },
    }


def _settings(config: OptimizeConfig, report: dict[str, Any]) -> q.QuantSettings:
    """Quantization settings from the CPU check, ``reduce_range`` as the config says."""
    from edgeinfer.optimization.hardware import int8_advice

    advice = int8_advice()
    reduce_range = advice.reduce_range if config.reduce_range is None else config.reduce_range
    if config.precision in ("int8", "int8-dynamic", "mixed"):
        report["hardware"] = asdict(advice)
        report["quantization"] = {
            "reduce_range": reduce_range,
            "reduce_range_from": "the CPU check" if config.reduce_range is None
            else "--reduce-range",
            "per_channel": config.per_channel, "calib_method": config.calib_method,
        }
        if not advice.expect_speedup:
            log.warning("INT8 is unlikely to be faster on this CPU: %s", advice.reason)
    return q.QuantSettings(
        calib_method=config.calib_method, per_channel=config.per_channel,
        reduce_range=reduce_range, activation_type=advice.activation_type,
        weight_type=advice.weight_type,
    )


def _stopped(report: dict[str, Any], check: Any, fp32: Path) -> dict[str, Any]:
    """The report of an INT8 request the speed check stopped: FP32 is recommended."""
    message = not_faster_message(check)
    report.update({
        "stopped": message,
        "kept_in_float": [], "sensitivity": [],
        "fp32": {"bytes": fp32.stat().st_size, "p50_ms": check.fp32_p50_ms,
                 "p90_ms": check.fp32_p90_ms},
        "result": {"bytes": check.int8_bytes, "p50_ms": check.int8_p50_ms,
                   "p90_ms": check.int8_p90_ms, "agreement": None, "drop": None},
        "ratios": {"size": check.int8_bytes / fp32.stat().st_size, "p50": check.ratio},
        "problems": [message], "notes": [],
        "drop_metric": "not measured: stopped before calibration (INT8 not faster here)",
        "recommended": "fp32", "label": "fp32",
    })
    return report


def _make_candidate(ref: Reference, candidate: Path, samples: Samples,
                    settings: q.QuantSettings, config: OptimizeConfig, workdir: Path,
                    report: dict[str, Any], track: Tracker) -> list[str]:
    """Write the requested precision's model to ``candidate``; the layers kept in float."""
    kept: list[str] = []
    if config.precision == "fp32":
        shutil.copyfile(ref.fp32, candidate)
    elif config.precision == "fp16":
        q.convert_fp16(ref.fp32, candidate)
    elif config.precision == "int8-dynamic":
        q.quantize_int8_dynamic(ref.fp32, candidate, config.per_channel)
    else:
        fields, kept = static_int8(ref, candidate, samples, settings, config, workdir, track)
        report.update(fields)
        if config.precision == "mixed" and kept:
            q.weight_only_int8(candidate, candidate, kept)
    report.setdefault("kept_in_float", kept)
    report.setdefault("sensitivity", [])
    return kept


def _measure(report: dict[str, Any], ref: Reference, candidate: Path, kept: list[str],
             samples: Samples, config: OptimizeConfig, workdir: Path,
             timer: LatencyTimer) -> None:
    """Size, latency and the drop (with its interval) of ``candidate`` against FP32; the
    problems and notes that decide what ships."""
    cand_out = run_outputs(candidate, samples.evaluation, ref.input_name)
    cand_agree = compare(ref.outputs, cand_out, samples.labels, config.agree_confidence,
                         samples.decode)
    timed = [ref.fp32, candidate] + ([workdir / "int8.onnx"] if kept else [])
    lat_ref, lat_cand, *lat_plain = timer(timed, samples.evaluation[0])
    if lat_plain:  # what keeping layers in float costs, against INT8 everywhere
        report["fallback_latency"] = {"plain_int8_p50_ms": lat_plain[0].p50,
                                      "result_p50_ms": lat_cand.p50,
                                      "ratio": lat_cand.p50 / lat_plain[0].p50}
    estimate = estimate_drop(ref.outputs, cand_out, cand_agree, ref.agreement, samples.labels,
                             config.agree_confidence, samples.decode)
    size, fp32_size = candidate.stat().st_size, ref.fp32.stat().st_size
    report["fp32"] = {
        "bytes": fp32_size, "p50_ms": lat_ref.p50, "p90_ms": lat_ref.p90,
        **({"accuracy": ref.agreement.reference_accuracy} if samples.labels is not None else {}),
    }
    report["result"] = {"bytes": size, "p50_ms": lat_cand.p50, "p90_ms": lat_cand.p90,
                        "agreement": _agreement_dict(cand_agree), "drop": estimate.value}
    report["drop_interval"] = estimate.to_dict()
    report["ratios"] = {"size": size / fp32_size, "p50": lat_cand.p50 / lat_ref.p50}
    problems, notes = [], []
    timing = f"({_ms(lat_cand.p50)} vs {_ms(lat_ref.p50)} p50)"
    if lat_cand.p50 > lat_ref.p50 * SLOWER_MARGIN:
        problems.append(f"slower than FP32 on this machine {timing}")
    elif lat_cand.p50 > lat_ref.p50:
        notes.append(f"no faster than FP32 on this machine, within timing noise {timing}")
    if estimate.value > config.max_drop:
        problems.append(f"accuracy drop {estimate.value:.2%} exceeds --max-drop "
                        f"{config.max_drop:.2%}")
    label = config.precision
    if config.precision in ("int8", "mixed"):
        label = _int8_label(ref.fp32, kept, report, problems)
    report["problems"] = problems
    report["notes"] = notes
    report["drop_metric"] = drop_metric(config, samples.labels is not None, cand_agree.metric)
    report["recommended"] = "fp32" if problems else config.precision
    report["label"] = "fp32" if problems else label


def _int8_label(fp32: Path, kept: list[str], report: dict[str, Any],
                problems: list[str]) -> str:
    """What an INT8 result is: int8, mixed, or effectively FP32 (a problem: FP32 ships)."""
    if not kept:
        return "int8"
    in_float, total = float_share(fp32, kept)
    report["float_layers"] = {"kept": in_float, "quantizable": total}
    if total and in_float / total >= EFFECTIVELY_FLOAT:
        problems.append(
            f"effectively FP32: the fallback kept {in_float} of {total} layers in float "
            f"(size {report['ratios']['size']:.2f}x, p50 {report['ratios']['p50']:.2f}x of "
            "FP32), which gains nothing over shipping FP32 itself")
    return f"mixed ({in_float} of {total} conv/matmul layers in float)"


def optimize(
    source: str | Path | Artifact,
    out: str | Path,
    config: OptimizeConfig,
    samples: Samples,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    timer: LatencyTimer | None = None,
) -> Artifact:
    """Optimize an artifact (or ONNX file, or zoo name) into a new artifact directory ``out``,
    written all or nothing (an existing ``out`` only with ``force``); ``input_shapes`` fix
    dynamic dims in the new manifest (``--input-shape``)."""
    art = with_input_shapes(source if isinstance(source, Artifact) else load(source),
                            input_shapes)
    if art.manifest.model.format != "onnx":
        raise EdgeInferError(
            f"{source}: optimize takes ONNX models; this one is {art.manifest.model.format}: "
            "optimize the ONNX model it came from, or use `edgeinfer tune`"
        )
    check_manifest_inputs(art)

    def build(stage: Path) -> Artifact:
        with tempfile.TemporaryDirectory(prefix="edgeinfer-opt-") as tmp:
            report, fp32, candidate = optimize_model(
                art.model_path, config, samples, Path(tmp), progress, timer
            )
            model_out, precision = _ship(art, config, report, fp32, candidate, stage)
        m = art.manifest
        new = art.derive(
            stage, model_out, origin=f"optimized from {art.model_path.name}",
            precision=precision, format="onnx",
            reports={**m.reports, "optimize": {**report, "html": "optimize-report.html"}},
        )
        (stage / "optimize-report.html").write_text(
            optimize_report_html(m.name, report), encoding="utf-8"
        )
        return new

    return write_artifact(out, build, force=force)


def _ship(
    art: Artifact, config: OptimizeConfig, report: dict[str, Any], fp32: Path, candidate: Path,
    stage: Path,
) -> tuple[Path, str]:
    """Move the recommended model into ``stage`` as ``NAME.PRECISION.onnx`` (the label says what
    the file holds); a rejected candidate is kept beside it for inspection, not shipped."""
    precision = "fp32" if report["recommended"] == "fp32" else config.precision
    if precision in ("int8", "mixed"):
        precision = "mixed" if report["kept_in_float"] else "int8"
    model_out = stage / f"{art.manifest.name}.{precision}.onnx"
    shutil.move(fp32 if precision == "fp32" else candidate, model_out)
    if report["problems"] and config.precision != "fp32":
        shutil.move(candidate, stage / f"{art.manifest.name}.{config.precision}.rejected.onnx")
    return model_out, precision


def read_labels(
    path: str | Path, names: tuple[str, ...], classes: list[str] | None
) -> tuple[int, ...]:
    """Labels of evaluation samples from a file of ``NAME LABEL`` lines (LABEL: id or class name).

    NAME is the image's file name; every evaluation sample must have a label.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeInferError(f"{path}: no such labels file: check the path")
    by_name: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.replace(",", " ").replace("\t", " ").split(maxsplit=1)
        if len(parts) == 2 and not line.startswith("#"):
            by_name[parts[0]] = parts[1].strip()
    index = {c: i for i, c in enumerate(classes or [])}
    out = []
    for name in names:
        key = Path(name.split("#")[0]).name
        if key not in by_name:
            raise EdgeInferError(
                f"{path} has no label for evaluation sample '{key}': add a line "
                f"'{key} CLASS' (CLASS: an id or a class name)"
            )
        value = by_name[key]
        if value.lstrip("-").isdigit():
            out.append(int(value))
        elif value in index:
            out.append(index[value])
        else:
            raise EdgeInferError(
                f"{path}: label '{value}' of '{key}' is neither a class id nor "
                "one of the artifact's class names"
            )
    return tuple(out)


def optimize_with_calibration(
    model: str | Path,
    out: str | Path,
    config: OptimizeConfig | None = None,
    *,
    calib: str | Path,
    eval_source: str | Path | None = None,
    labels: str | Path | None = None,
    calib_limit: int = 200,
    force: bool = False,
    progress: ProgressFn | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    timer: LatencyTimer | None = None,
) -> Artifact:
    """Quantize an ONNX model, artifact or zoo name into a new artifact, calibrated on ``calib``
    (an image folder, video or .npy) and checked on ``eval_source`` (default: a held-out part of
    ``calib``); ``input_shapes`` fix dynamic dims; see ``edgeinfer optimize``."""
    art = with_input_shapes(load(model), input_shapes)
    check_manifest_inputs(art)
    samples = build_samples(
        art, calib, eval_source=eval_source, labels_file=labels, limit=calib_limit,
        progress=progress,
    )
    return optimize(art, out, config or OptimizeConfig(), samples, force=force,
                    progress=progress, timer=timer)


def build_samples(
    artifact: Artifact,
    calib: str | Path,
    *,
    eval_source: str | Path | None = None,
    labels_file: str | Path | None = None,
    limit: int = 200,
    holdout: float = 0.3,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Samples:
    """Calibration and evaluation samples, preprocessed as ``artifact`` says, never overlapping.

    Without ``eval_source``, a held-out part of the calibration source is the evaluation set
    (agreement with FP32 is measured there, never on the samples used to calibrate).
    """
    spec, pre = artifact.manifest.inputs[0], artifact.manifest.preprocess
    cal = load_samples(calib, spec, pre, limit=limit, seed=seed, progress=progress)
    if eval_source is None:
        if labels_file is not None:
            raise EdgeInferError("--labels needs --eval: give the labelled evaluation images")
        if len(cal) < 4:
            raise EdgeInferError(
                f"{calib} gives {len(cal)} samples: give at least 4 so some can "
                "be held out for evaluation, or pass --eval"
            )
        cal, ev = split_samples(cal, holdout, seed)
        origin = f"{calib} (calibration) / held-out {holdout:.0%} of it (evaluation)"
    else:
        ev = load_samples(eval_source, spec, pre, limit=None, seed=seed, progress=progress)
        origin = f"{calib} (calibration) / {eval_source} (evaluation)"
    labels = read_labels(labels_file, ev.names, artifact.labels()) if labels_file else None
    skipped = len(set(cal.skipped) | set(ev.skipped))
    if skipped:
        origin += f"; {skipped} unreadable files skipped"
    return Samples(cal.inputs, ev.inputs, labels, origin, detection_decode(artifact))
