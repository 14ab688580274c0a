"""Measure a candidate model honestly: outputs on held-out samples, agreement or accuracy, latency.

Agreement is top-1 agreement with the FP32 reference for classifier-shaped outputs ([N, C]),
and otherwise the cosine similarity of all outputs of all samples taken as one vector: weighted
by energy, so a sample whose output is nearly empty (a text detector's map of a photo with no
text, norm ~1e-7, where FP32 runtimes differ in the noise) does not count as much as one with
text in it. A per-sample mean scored two FP32 runtimes 4% apart on PP-OCR for that reason. With
labels, accuracy is computed too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from edgeinfer.ort_session import open_session


def run_outputs(path: str | Path, inputs: np.ndarray, input_name: str | None = None) -> np.ndarray:
    """First output of the model for each sample (batch 1 each), stacked: [N, ...]."""
    sess = open_session(path)
    name = input_name or sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[None]})[0][0] for x in inputs]
    return np.stack(outs)


@dataclass(frozen=True)
class Agreement:
    """How a candidate's outputs compare with the reference's on the same samples."""

    metric: str  # "top1" or "cosine"
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
) -> Agreement:
    """Agreement of ``candidate`` with ``reference`` (outputs of the same samples).

    For classifiers, ``by_confidence`` holds top-1 agreement on the samples where the
    reference's top-1 probability is >= 0.3, >= 0.5 and >= ``confidence``.
    """
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
    """Latency of several zero-argument calls timed in alternating rounds, so drift (thermal,
    a noisy neighbour) hits them all equally. Threads are whatever each call was set up with."""
    for fn in runners:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, fn in enumerate(runners):
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times[i].append((time.perf_counter() - t0) * 1e3)
    out = []
    for t in times:
        t.sort()
        out.append(Latency(statistics.median(t), t[int(0.9 * (len(t) - 1))], len(t), 0))
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
