"""``edgeinfer optimize``: graph passes, quantization, accuracy-aware fallback, honest report.

The flow: graph-optimize the FP32 model (portable ONNX) -> read calibration and evaluation
samples with the artifact's own preprocessing -> quantize as asked -> for static INT8, rank
layers by sensitivity and return the most sensitive to float until the drop on the evaluation
set is within ``max_drop`` -> measure size, latency and agreement against FP32 on this machine
-> write the artifact. If the result is slower or worse than FP32, the report says so and the
artifact keeps FP32 as its recommended model.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from edgeinfer.artifact import Artifact, write_artifact
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load
from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.calibration import CalibrationReader, load_samples, split_samples
from edgeinfer.optimization.evaluate import (
    SINGLE_OUTPUT_DETECTORS,
    Agreement,
    DetectionDecode,
    compare,
    interleaved_latency,
    run_outputs,
)
from edgeinfer.optimization.passes import optimize_graph
from edgeinfer.optimization.sensitivity import IsolatedSensitivity, rank_isolated, rank_layers
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.report_html import optimize_report_html

log = logging.getLogger(__name__)

#: a candidate counts as slower than FP32 only beyond this p50 ratio: interleaved timings of
#: two equal models on a busy 2-core machine differ by a few percent run to run.
SLOWER_MARGIN = 1.05

#: layers measured one at a time (a re-quantization and a model run each): the ones activation
#: matching blames most. PP-OCRv4 det touches ~280 nodes, which took 15 minutes at 640x640; the
#: rest follow in activation-matching order, marked as not measured (infinite output SQNR).
ISOLATE_TOP = 48

PrecisionName = Literal["fp32", "fp16", "int8", "int8-dynamic", "mixed"]


@dataclass(frozen=True)
class OptimizeConfig:
    """Everything ``optimize`` needs to know besides the data."""

    precision: PrecisionName = "int8"
    calib_method: str = "percentile"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: from the CPU check
    max_drop: float = 0.01  # fraction (0.01 = 1 point)
    agree_confidence: float = 0.5  # without labels: agreement counted where FP32 is this sure
    fallback: bool = True
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


def _drop(ref: Agreement, cand: Agreement, confidence: float) -> float:
    """The drop the fallback keeps within max_drop: accuracy with labels; without, top-1
    disagreement on the samples FP32 is confident about (flips where FP32 itself hesitates are
    not accuracy lost); output cosine loss for non-classifiers."""
    if cand.accuracy is not None and ref.reference_accuracy is not None:
        return ref.reference_accuracy - cand.accuracy
    return 1.0 - cand.by_confidence.get(f">={confidence}", cand.value)


def drop_metric(config: OptimizeConfig, labels: bool, metric: str) -> str:
    """Words for what ``_drop`` measured, for the report."""
    if labels:
        return "accuracy drop (labels)"
    if metric == "det-ap50":
        return "1 - AP@0.5 of the detections against FP32's detections"
    if metric == "top1":
        return f"top-1 disagreement with FP32 where FP32 confidence >= {config.agree_confidence}"
    return "1 - output cosine vs FP32 (all samples as one vector)"


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
) -> tuple[dict[str, Any], Path, Path]:
    """Optimize the ONNX model ``src`` inside ``workdir`` (the fallback search reports to
    ``progress``).

    Returns the report (JSON-ready), the graph-optimized FP32 model and the candidate; the
    report's ``recommended`` says which of the two to ship.
    """
    from edgeinfer.optimization.hardware import int8_advice

    fp32 = optimize_graph(src, workdir / "fp32.onnx")
    input_name = onnx.load(str(fp32)).graph.input[0].name
    ref_out = run_outputs(fp32, samples.evaluation, input_name)
    labels = samples.labels
    ref = compare(ref_out, ref_out, labels, config.agree_confidence, samples.decode)
    report: dict[str, Any] = {
        "precision_requested": config.precision,
        "max_drop": config.max_drop,
        "samples": {
            "calibration": len(samples.calib),
            "evaluation": len(samples.evaluation),
            "origin": samples.origin,
            "labels": labels is not None,
        },
    }
    advice = int8_advice()
    settings = q.QuantSettings(
        calib_method=config.calib_method,
        per_channel=config.per_channel,
        reduce_range=advice.reduce_range if config.reduce_range is None else config.reduce_range,
        activation_type=advice.activation_type,
        weight_type=advice.weight_type,
    )
    if config.precision in ("int8", "int8-dynamic", "mixed"):
        report["hardware"] = asdict(advice)
        if not advice.expect_speedup:
            log.warning("INT8 is unlikely to be faster on this CPU: %s", advice.reason)

    candidate = workdir / "candidate.onnx"
    kept: list[str] = []
    sensitivity: list[dict[str, Any]] = []
    if config.precision == "fp32":
        shutil.copyfile(fp32, candidate)
    elif config.precision == "fp16":
        q.convert_fp16(fp32, candidate)
    elif config.precision == "int8-dynamic":
        q.quantize_int8_dynamic(fp32, candidate, config.per_channel)
    else:
        cache = workdir / "calib-cache.json"
        reader = CalibrationReader(samples.calib, input_name)
        plain = q.quantize_int8_static(
            fp32, workdir / "int8.onnx", reader, settings, cache_path=cache
        )
        plain_agree = compare(
            ref_out,
            run_outputs(plain, samples.evaluation, input_name),
            labels,
            config.agree_confidence,
            samples.decode,
        )
        report["plain_int8"] = _agreement_dict(plain_agree)
        shutil.copyfile(plain, candidate)
        drop = _drop(ref, plain_agree, config.agree_confidence)
        if config.fallback and drop > config.max_drop:
            probe = samples.calib[: min(16, len(samples.calib))]
            matched = {s.name: s for s in rank_layers(fp32, plain, probe)}

            def quantize_only(name: str, path: Path) -> Path:
                reader.rewind()
                return q.quantize_int8_static(
                    fp32, path, reader, settings, only=[name], cache_path=cache
                )

            by_loss = list(matched.values())  # most dB lost first
            ranked = rank_isolated(
                fp32,
                [(s.name, s.op_type) for s in by_loss[:ISOLATE_TOP]],
                quantize_only,
                probe,
                workdir,
            ) + [IsolatedSensitivity(s.name, s.op_type, math.inf) for s in by_loss[ISOLATE_TOP:]]
            sensitivity = [
                {
                    "name": s.name,
                    "op_type": s.op_type,
                    "output_sqnr_db": s.output_sqnr,
                    "loss_db": matched[s.name].loss_db,
                }
                for s in ranked
            ]
            kept, trials = _fallback_search(
                fp32,
                candidate,
                ranked,
                reader,
                settings,
                cache,
                samples,
                input_name,
                ref_out,
                ref,
                config,
                Tracker(progress),
            )
            report["fallback_trials"] = trials
        if config.precision == "mixed" and kept:
            q.weight_only_int8(candidate, candidate, kept)
    report["kept_in_float"] = kept
    report["sensitivity"] = sensitivity[:20]

    cand_agree = compare(
        ref_out,
        run_outputs(candidate, samples.evaluation, input_name),
        labels,
        config.agree_confidence,
        samples.decode,
    )
    timed = [fp32, candidate] + ([workdir / "int8.onnx"] if kept else [])
    lat_ref, lat_cand, *lat_plain = interleaved_latency(
        timed, samples.evaluation[0], rounds=config.latency_rounds, threads=config.threads
    )
    if lat_plain:  # what keeping layers in float costs, against INT8 everywhere
        report["fallback_latency"] = {
            "plain_int8_p50_ms": lat_plain[0].p50,
            "result_p50_ms": lat_cand.p50,
            "ratio": lat_cand.p50 / lat_plain[0].p50,
        }
    drop = _drop(ref, cand_agree, config.agree_confidence)
    report["fp32"] = {
        "bytes": fp32.stat().st_size,
        "p50_ms": lat_ref.p50,
        "p90_ms": lat_ref.p90,
        **({"accuracy": ref.reference_accuracy} if labels is not None else {}),
    }
    report["result"] = {
        "bytes": candidate.stat().st_size,
        "p50_ms": lat_cand.p50,
        "p90_ms": lat_cand.p90,
        "agreement": _agreement_dict(cand_agree),
        "drop": drop,
    }
    report["ratios"] = {
        "size": candidate.stat().st_size / fp32.stat().st_size,
        "p50": lat_cand.p50 / lat_ref.p50,
    }
    problems, notes = [], []
    timing = f"({_ms(lat_cand.p50)} vs {_ms(lat_ref.p50)} p50)"
    if lat_cand.p50 > lat_ref.p50 * SLOWER_MARGIN:
        problems.append(f"slower than FP32 on this machine {timing}")
    elif lat_cand.p50 > lat_ref.p50:
        notes.append(f"no faster than FP32 on this machine, within timing noise {timing}")
    if drop > config.max_drop:
        problems.append(f"accuracy drop {drop:.2%} exceeds --max-drop {config.max_drop:.2%}")
    report["problems"] = problems
    report["notes"] = notes
    report["drop_metric"] = drop_metric(config, labels is not None, cand_agree.metric)
    report["recommended"] = "fp32" if problems else config.precision
    return report, fp32, candidate


def _fallback_search(
    fp32: Path,
    candidate: Path,
    ranked: list,
    reader: CalibrationReader,
    settings: q.QuantSettings,
    cache: Path,
    samples: Samples,
    input_name: str,
    ref_out: np.ndarray,
    ref: Agreement,
    config: OptimizeConfig,
    track: Tracker,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Smallest k such that keeping the k most sensitive layers in float meets max_drop."""
    names = [s.name for s in ranked]
    trials: list[dict[str, Any]] = []

    def trial(k: int) -> bool:
        path = candidate.with_name(f"fallback-{k}.onnx")
        reader.rewind()
        q.quantize_int8_static(fp32, path, reader, settings, exclude=names[:k], cache_path=cache)
        agree = compare(
            ref_out,
            run_outputs(path, samples.evaluation, input_name),
            samples.labels,
            config.agree_confidence,
            samples.decode,
        )
        drop = _drop(ref, agree, config.agree_confidence)
        trials.append({"kept": k, "drop": drop, "agreement": agree.value})
        return drop <= config.max_drop

    schedule = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k < len(names)] + [len(names)]
    lo, hi = 0, None
    track.start("fallback search", total=len(schedule))
    for k in schedule:
        track.advance("fallback search", detail=f"{k} layers in float")
        if trial(k):
            hi = k
            break
        lo = k
    track.finish("fallback search")
    if hi is None:
        return names, trials  # nothing meets the budget: everything in float
    while hi - lo > 1:  # binary search between the last failure and the first success
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    best = candidate.with_name(f"fallback-{hi}.onnx")
    shutil.copyfile(best, candidate)
    return names[:hi], trials


def optimize(
    source: str | Path,
    out: str | Path,
    config: OptimizeConfig,
    samples: Samples,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Optimize an artifact (or ONNX file, or zoo name) into a new artifact directory ``out``,
    written all or nothing (an existing ``out`` only with ``force``)."""
    art = load(source)
    if art.manifest.model.format != "onnx":
        raise EdgeInferError(
            f"{source}: optimize takes ONNX models; this one is {art.manifest.model.format}"
        )

    def build(stage: Path) -> Artifact:
        with tempfile.TemporaryDirectory(prefix="edgeinfer-opt-") as tmp:
            report, fp32, candidate = optimize_model(
                art.model_path, config, samples, Path(tmp), progress
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
) -> Artifact:
    """Quantize an ONNX model, artifact or zoo name into a new artifact, calibrated on ``calib``
    (an image folder, video or .npy) and checked on ``eval_source`` (default: a held-out part of
    ``calib``); see ``edgeinfer optimize``."""
    samples = build_samples(
        load(model), calib, eval_source=eval_source, labels_file=labels, limit=calib_limit,
        progress=progress,
    )
    return optimize(model, out, config or OptimizeConfig(), samples, force=force,
                    progress=progress)


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
