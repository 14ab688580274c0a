"""``compress``: a PyTorch model in, a smaller ordinary artifact out, with the curve that
chose it.

The loop: the unpruned model is the teacher and the first point; then, in ``steps`` rounds,
the student is pruned (Torch-Pruning, :mod:`edgeinfer.compression.pruning`) to the next MACs
fraction of a geometric ladder down to ``macs`` (or, with ``latency``, until the measured ONNX
Runtime latency reaches that fraction of the teacher's), fine-tuned with distillation from the
teacher (:mod:`edgeinfer.compression.distill`), scored on held-out data, exported to ONNX and
timed through the Engine beside the teacher on every backend asked for. Every point is kept
in the report; the artifact holds the fastest point whose score dropped by at most
``max_drop``. INT8 of the chosen point goes through ``optimize`` (kept only where it measured
faster and within the accuracy budget, by the same rule as ``edgeinfer optimize``);
quantization-aware training is not built (see the guide).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgeinfer._deps import require
from edgeinfer.artifact import Artifact, SourceInfo, refuse_existing, write_artifact
from edgeinfer.compression.latency import measure_latency
from edgeinfer.compression.pruning import Importance, count_macs, prune_to_macs
from edgeinfer.compression.report import compress_report_html
from edgeinfer.compression.sources import Subject, resolve_model
from edgeinfer.compression.tasks import FineTune, Task, make_task
from edgeinfer.errors import EdgeInferError
from edgeinfer.machine import machine_info
from edgeinfer.progress import ProgressFn, Tracker

log = logging.getLogger(__name__)

__all__ = ["CompressConfig", "compress", "ladder"]

#: smallest MACs fraction a latency target may push to
MIN_FRACTION = 0.05


@dataclass(frozen=True)
class CompressConfig:
    """What to aim for: ``macs`` (fraction of the teacher's MACs) or ``latency`` (fraction of
    its ONNX Runtime latency), reached in ``steps`` prune + fine-tune rounds; ``max_drop`` of
    the score (absolute: 0.01 is one point of mAP@0.5 or of agreement) picks the point kept."""

    macs: float | None = None
    latency: float | None = None
    steps: int = 3
    max_drop: float = 0.01
    distill: bool = True
    int8: bool = False
    importance: Importance = "magnitude"
    round_to: int | None = 8
    backends: tuple[str, ...] = ("ort",)
    tune: FineTune = field(default_factory=FineTune)

    def __post_init__(self) -> None:
        if (self.macs is None) == (self.latency is None):
            raise EdgeInferError("give one target: --macs FRACTION (e.g. 0.33) or --latency "
                                 "FRACTION (e.g. 0.5x)")
        for name in ("macs", "latency"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise EdgeInferError(f"--{name} is a fraction of the original between 0 and 1 "
                                     f"(0.33 = a third), not {value}")
        if self.steps < 1:
            raise EdgeInferError("--steps must be at least 1")
        if not 0 <= self.max_drop <= 1:
            raise EdgeInferError(f"--max-drop is a fraction (0.01 = 1 point), not {self.max_drop}")


def ladder(target: float, steps: int) -> list[float]:
    """MACs fractions of ``steps`` geometric steps from 1 down to ``target``."""
    return [target ** ((k + 1) / steps) for k in range(steps)]


@dataclass
class _Run:
    subject: Subject
    task: Task
    config: CompressConfig
    track: Tracker
    example: Any
    tmp: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _point(run: _Run, model: nn.Module, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Score, export and time one model; append its row."""
    macs, params = count_macs(model, run.example)
    path = run.task.export(model, run.tmp / f"{name}.onnx")
    score = run.task.score(model)
    files = [run.files[0], path] if run.files else [path]
    timing = measure_latency(files, run.subject, run.config.backends)
    base = run.rows[0] if run.rows else None
    row = {"name": name, "macs": macs, "params": params, "bytes": path.stat().st_size,
           **score, "latency_ms": {b: t[-1] for b, t in timing.items()},
           "latency_ratio": {b: t[-1] / t[0] for b, t in timing.items()}, **extra}
    if base is not None:
        row["macs_ratio"] = base["macs"] / macs
        row["drop"] = base["score"] - row["score"]
    else:
        row["macs_ratio"], row["drop"] = 1.0, 0.0
    run.rows.append(row)
    run.files.append(path)
    return row


def _targets(config: CompressConfig) -> list[float]:
    if config.macs is not None:
        return ladder(config.macs, config.steps)
    fractions, f = [], 1.0
    while f > MIN_FRACTION:  # latency: halve the MACs distance each step, stop when reached
        f *= config.latency ** (1 / config.steps) if not fractions else 0.75
        fractions.append(max(f, MIN_FRACTION))
    return fractions


def _reached(config: CompressConfig, row: dict[str, Any]) -> bool:
    if config.latency is None:
        return False
    return row["latency_ratio"].get("ort", math.inf) <= config.latency


def _rounds(run: _Run, teacher: nn.Module) -> None:
    student = run.task.prepare(teacher)
    base_macs = run.rows[0]["macs"]
    targets = _targets(run.config)
    run.track.start("compress", total=len(targets))
    for k, fraction in enumerate(targets, 1):
        if run.config.importance == "taylor":
            student.zero_grad(set_to_none=True)
            run.task.backward(student)
        pruned = prune_to_macs(student, run.example, int(base_macs * fraction),
                               ignored=run.task.ignored, importance=run.config.importance,
                               round_to=run.config.round_to)
        student = pruned.model
        before = run.task.score(student)["score"]
        tuned = run.task.fine_tune(student, teacher, run.config.distill, run.track.progress)
        row = _point(run, student, f"step{k}", {
            "fraction": fraction, "ratio": pruned.ratio, "score_before_fine_tune": before,
            "fine_tune": tuned})
        run.track.advance("compress", detail=f"{row['macs_ratio']:.2f}x fewer MACs, "
                          f"{run.task.metric} {row['score']:.3f}")
        if _reached(run.config, row):
            break
    run.track.finish("compress")


def _retime(run: _Run) -> None:
    """Time every point again in one interleaved session (the per-round timings, each beside
    the original alone, only steer a latency target): the report's figures and the choice
    rest on one comparison."""
    run.track.start("timing", total=None, detail=f"{len(run.files)} models")
    timing = measure_latency(run.files, run.subject, run.config.backends)
    for i, row in enumerate(run.rows):
        row["latency_ms"] = {b: t[i] for b, t in timing.items()}
        row["latency_ratio"] = {b: t[i] / t[0] for b, t in timing.items()}
    run.track.finish("timing")


def choose(rows: list[dict[str, Any]], max_drop: float) -> int:
    """The index of the fastest row (ORT latency, else MACs) whose drop is within
    ``max_drop``; the first row (the teacher) when none is."""
    ok = [i for i, r in enumerate(rows) if r["drop"] <= max_drop + 1e-12]
    return min(ok, key=lambda i: (rows[i]["latency_ms"].get("ort", rows[i]["macs"]),
                                  rows[i]["macs"]))


def compress(
    model: nn.Module | str | Path,
    out: str | Path,
    *,
    data: Any,
    config: CompressConfig,
    weights: str | Path | None = None,
    like: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Prune, distil and fine-tune ``model`` on ``data`` as ``config`` says and write the
    chosen point as an artifact at ``out`` (see the module doc and docs/guides/compress.md);
    ``reports.compress`` holds every point, ``compress.html`` the Pareto chart."""
    require("torch_pruning", "compress", "structured pruning")
    import torch

    out = Path(out)
    refuse_existing(out, force)
    subject = resolve_model(model, weights=weights, like=like, input_shape=input_shape)
    torch.manual_seed(config.tune.seed)
    task = make_task(subject, data, config.tune)
    teacher = copy.deepcopy(subject.module).eval()
    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(subject, task, config, Tracker(progress),
                   torch.zeros(subject.input_shape), Path(tmp))
        _point(run, teacher, "original", {"fraction": 1.0, "ratio": 0.0})
        _rounds(run, teacher)
        _retime(run)
        chosen = choose(run.rows, config.max_drop)
        report = _report(run, chosen)
        if not config.int8:
            return _write(out, run, run.files[chosen], report, force)
        fp32 = _write(run.tmp / out.name, run, run.files[chosen], report, force)
        return _int8(run, fp32, out, force, progress)


def _report(run: _Run, chosen: int) -> dict[str, Any]:
    rows = run.rows
    return {
        "model": run.subject.origin, "kind": run.subject.kind, "metric": run.task.metric,
        "config": {**asdict(run.config), "tune": asdict(run.config.tune)},
        "machine": machine_info(), "points": rows, "chosen": rows[chosen]["name"],
        "chosen_index": chosen,
        "reason": (f"the fastest point whose {run.task.metric} dropped by at most "
                   f"{run.config.max_drop:g}" if chosen else
                   f"no pruned point kept {run.task.metric} within {run.config.max_drop:g} "
                   "of the original: the original is kept; allow a larger --max-drop, more "
                   "fine-tuning (--epochs) or a milder target"),
    }


def _int8(run: _Run, fp32: Artifact, out: Path, force: bool,
          progress: ProgressFn | None) -> Artifact:
    """The chosen point through ``optimize`` (static INT8, per-channel, its speed check and
    accuracy guard): INT8 is shipped only where it measured faster within ``max_drop``."""
    from edgeinfer.optimization.optimizer import (
        OptimizeConfig,
        Samples,
        detection_decode,
        optimize,
    )

    calib, evaluation = run.task.samples()
    samples = Samples(calib, evaluation, origin="compress: training inputs (calibration) / "
                      "held-out inputs (evaluation)", decode=detection_decode(fp32))
    return optimize(fp32, out, OptimizeConfig(max_drop=run.config.max_drop), samples,
                    force=force, progress=progress)


def _write(out: Path, run: _Run, path: Path, report: dict[str, Any], force: bool) -> Artifact:
    s = run.subject
    tmpl = s.template
    fields: dict[str, Any] = {"task": "other"}
    if tmpl is not None:
        fields = {"task": tmpl.task, "outputs": tmpl.outputs, "decoder": tmpl.decoder,
                  "decoder_params": tmpl.decoder_params}
    html = run.tmp / "compress.html"
    html.write_text(compress_report_html(out.name, report), encoding="utf-8")
    chosen = report["points"][report["chosen_index"]]
    onnx_path = run.tmp / f"{out.name}.onnx"
    onnx_path.write_bytes(path.read_bytes())
    return write_artifact(out, lambda stage: Artifact.create(
        stage, onnx_path, name=out.name, inputs=s.inputs, preprocess=s.preprocess,
        labels=s.labels, companions=(html,),
        source=SourceInfo(name=f"edgeinfer compress ({s.origin})", license=None,
                          origin=f"pruned from {s.origin}: {chosen['macs_ratio']:.2f}x fewer "
                          f"MACs, {report['metric']} {chosen['score']:.3f}"),
        reports={"compress": _json_ready(report)}, **fields,
    ), force=force)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
