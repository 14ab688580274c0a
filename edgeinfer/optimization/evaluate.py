"""Measure a candidate model honestly: outputs on held-out samples, agreement or accuracy, latency.

Agreement is top-1 agreement with the FP32 reference for classifier-shaped outputs ([N, C]),
and otherwise the cosine similarity of all outputs of all samples taken as one vector: weighted
by energy, so a sample whose output is nearly empty (a text detector's map of a photo with no
text, norm ~1e-7, where FP32 runtimes differ in the noise) does not count as much as one with
text in it. A per-sample mean scored two FP32 runtimes 4% apart on PP-OCR for that reason. With
labels, accuracy is computed too.

For a detector (the artifact names a single-output detection decoder such as ``yolo``), neither
of those measures what matters: a YOLO output holds box coordinates in pixels beside class
scores in 0..1, so an INT8 model that rounds every score to zero keeps an output cosine of
0.99996 with FP32. There, agreement is AP@0.5 of the candidate's decoded detections scored
against FP32's own detections as ground truth (class-aware, averaged over the classes FP32
found).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from edgeinfer.ort_session import open_session
from edgeinfer.stats import latency_summary
from edgeinfer.timing import time_rounds
from edgeinfer.vision.boxes import Detections, box_iou


@dataclass(frozen=True)
class DetectionDecode:
    """Reads one sample's first output (batch dimension removed) as detections with an
    artifact's decoder: at its own score threshold for the reference, or down to
    ``LOW_SCORE`` for a candidate, so that a detection whose score moved just under the
    threshold ranks low instead of vanishing (as COCO evaluation keeps scores down to 0.001)."""

    decoder: Callable[..., Detections]
    params: dict
    labels: tuple[str, ...] | None
    conf: float

    def __call__(self, output: np.ndarray, candidate: bool = False) -> Detections:
        """Detections of one output (see the class docstring)."""
        from edgeinfer.vision.preprocess import Transform

        params = {**self.params, "conf_threshold": LOW_SCORE if candidate else self.conf}
        labels = list(self.labels) if self.labels is not None else None
        return self.decoder([output[None]], params, Transform(1.0, 1.0, 0.0, 0.0), labels)


#: lowest score a candidate's detections are read down to (see :class:`DetectionDecode`)
LOW_SCORE = 0.01

#: decoders whose detections come from the model's first output alone
SINGLE_OUTPUT_DETECTORS = ("yolo",)


def run_outputs(path: str | Path, inputs: np.ndarray, input_name: str | None = None) -> np.ndarray:
    """First output of the model for each sample (batch 1 each), stacked: [N, ...]."""
    sess = open_session(path)
    name = input_name or sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[None]})[0][0] for x in inputs]
    return np.stack(outs)


@dataclass(frozen=True)
class Agreement:
    """How a candidate's outputs compare with the reference's on the same samples."""

    metric: str  # "top1", "cosine" or "det-ap50"
    value: float  # agreement on all samples
    by_confidence: dict[str, float]  # top-1 agreement where the reference's top-1 prob >= t
    accuracy: float | None = None  # vs labels, when given
    reference_accuracy: float | None = None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: Sequence[int] | None = None,
    confidence: float = 0.5,
    decode: DetectionDecode | None = None,
) -> Agreement:
    """Agreement of ``candidate`` with ``reference`` (outputs of the same samples).

    With ``decode``, AP@0.5 of the candidate's detections against the reference's. For
    classifiers, ``by_confidence`` holds top-1 agreement on the samples where the
    reference's top-1 probability is >= 0.3, >= 0.5 and >= ``confidence``.
    """
    if decode is not None:
        ap = detection_ap50([decode(r) for r in reference], [decode(c, True) for c in candidate])
        return Agreement("det-ap50", ap, {})
    if reference.ndim == 2 and reference.shape[1] > 1:
        ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
        probs = reference if np.allclose(reference.sum(1), 1, atol=1e-3) else _softmax(reference)
        conf = probs.max(1)
        by_conf = {}
        for t in sorted({0.3, 0.5, confidence}):
            mask = conf >= t
            if mask.any():
                by_conf[f">={t}"] = float((ref_top[mask] == cand_top[mask]).mean())
        acc = ref_acc = None
        if labels is not None:
            y = np.asarray(labels)
            acc, ref_acc = float((cand_top == y).mean()), float((ref_top == y).mean())
        return Agreement("top1", float((ref_top == cand_top).mean()), by_conf, acc, ref_acc)
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    return Agreement("cosine", float(cosine_rows(a.reshape(1, -1), b.reshape(1, -1))[0]), {})


def detection_ap50(reference: Sequence[Detections], candidate: Sequence[Detections]) -> float:
    """Mean over the reference's classes of the candidate's AP at IoU 0.5 (all-point
    interpolation, as COCO/VOC), the reference's detections taken as ground truth. 1.0 when
    neither finds anything, 0.0 when only the candidate does."""
    classes = sorted({int(c) for d in reference for c in d.class_ids})
    if not classes:
        return 0.0 if any(len(d) for d in candidate) else 1.0
    aps = []
    for cls in classes:
        hits: list[tuple[float, bool]] = []
        n_ref = 0
        for ref, cand in zip(reference, candidate, strict=True):
            gt = ref.boxes[ref.class_ids == cls]
            sel = cand.class_ids == cls
            boxes, scores = cand.boxes[sel], cand.scores[sel]
            n_ref += len(gt)
            taken = np.zeros(len(gt), bool)
            ious = box_iou(boxes, gt) if len(boxes) and len(gt) else None
            for i in np.argsort(-scores, kind="stable"):
                ok = False
                if ious is not None:
                    cand_iou = np.where(taken, -1.0, ious[i])
                    j = int(cand_iou.argmax())
                    if cand_iou[j] >= 0.5:
                        taken[j] = ok = True
                hits.append((float(scores[i]), ok))
        if not n_ref:
            continue
        hits.sort(key=lambda h: -h[0])
        tp = np.cumsum([h[1] for h in hits]) if hits else np.zeros(0)
        recall = tp / n_ref
        precision = tp / np.arange(1, len(hits) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(hits) else precision
        steps = np.diff(np.concatenate([[0.0], recall]))
        aps.append(float((steps * envelope).sum()))
    return float(np.mean(aps))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair (float64); 1 where both rows are zero, 0 where one is.

    No epsilon floor on the norms' product: a text detector's probability map on a photo with
    no text has a norm near 1e-7, and a floor of 1e-12 on the product made two identical maps
    look 7% apart.
    """
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = na * nb
    safe = np.where(denom > 0, denom, 1.0)
    cos = np.where(denom > 0, (a * b).sum(1) / safe, np.where((na == 0) & (nb == 0), 1.0, 0.0))
    return np.clip(cos, -1.0, 1.0)


@dataclass(frozen=True)
class Latency:
    """Latency of batch-1 inference in milliseconds."""

    p50: float
    p90: float
    runs: int
    threads: int


def time_interleaved(
    runners: Sequence[Callable[[], object]], *, rounds: int = 5, runs: int = 10, warmup: int = 5
) -> list[Latency]:
    """Latency of several zero-argument calls timed in interleaved rounds
    (:func:`edgeinfer.timing.time_rounds`). Threads are whatever each call was set up with."""
    out = []
    for samples in time_rounds(runners, rounds, runs, warmup):
        summary = latency_summary(samples)
        out.append(Latency(summary["p50_ms"], summary["p90_ms"], len(samples), 0))
    return out


def interleaved_latency(
    paths: Sequence[str | Path],
    sample: np.ndarray,
    *,
    rounds: int = 5,
    runs: int = 10,
    threads: int = 0,
) -> list[Latency]:
    """Batch-1 onnxruntime latency of several models on one sample, timed interleaved."""
    sessions = [open_session(p, threads=threads) for p in paths]
    runners = [partial(s.run, None, {s.get_inputs()[0].name: sample[None]}) for s in sessions]
    return [
        replace(lat, threads=threads) for lat in time_interleaved(runners, rounds=rounds, runs=runs)
    ]
