"""optimize's accuracy guard: the drop a candidate costs against FP32, on how many samples, and
how sure that figure is.

The drop is what ``max_drop`` bounds: accuracy lost where labels are given; else top-1
disagreement with FP32 on the samples FP32 is confident about (flips where FP32 itself
hesitates are not accuracy lost); AP@0.5 lost against FP32's own detections for detectors; else
output cosine lost. Each comes with the number of samples it rests on and a 95% interval
(Wilson for proportions, a seeded bootstrap otherwise). Under :data:`MIN_SAMPLES` samples the
drop is reported as not established: 0 disagreements in 19 samples is consistent with a true
drop of up to 17%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeinfer.optimization.evaluate import Agreement, DetectionDecode, detection_ap50
from edgeinfer.stats import bootstrap_interval, wilson_interval

__all__ = ["MIN_SAMPLES", "DropEstimate", "drop", "drop_metric", "estimate_drop"]

#: below this many samples a measured drop is "not established" (the interval is too wide)
MIN_SAMPLES = 200


@dataclass(frozen=True)
class DropEstimate:
    """A measured drop with its 95% interval and the samples behind it."""

    value: float
    low: float
    high: float
    samples: int
    method: str

    @property
    def established(self) -> bool:
        """Whether enough samples stand behind the figure (:data:`MIN_SAMPLES`)."""
        return self.samples >= MIN_SAMPLES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``established``."""
        return {**asdict(self), "level": 0.95, "established": self.established,
                "min_samples": MIN_SAMPLES}

    def text(self) -> str:
        """``0.00% (95% interval 0.00% to 16.8%, 19 samples): not established (...)``."""
        base = (f"{self.value:.2%} (95% interval {self.low:.2%} to {self.high:.2%}, "
                f"{self.samples} samples)")
        if self.established:
            return base
        return (f"{base}: not established (fewer than {MIN_SAMPLES} samples; give more "
                "evaluation data with --eval or a larger --calib-limit)")


def drop(ref: Agreement, cand: Agreement, confidence: float) -> float:
    """The drop the fallback keeps within max_drop (see the module docstring)."""
    if cand.accuracy is not None and ref.reference_accuracy is not None:
        return ref.reference_accuracy - cand.accuracy
    return 1.0 - cand.by_confidence.get(f">={confidence}", cand.value)


def drop_metric(confidence: float, labels: bool, metric: str) -> str:
    """Words for what :func:`drop` measured, for the report."""
    if labels:
        return "accuracy drop (labels)"
    if metric == "det-ap50":
        return "1 - AP@0.5 of the detections against FP32's detections"
    if metric == "top1":
        return f"top-1 disagreement with FP32 where FP32 confidence >= {confidence}"
    return "1 - output cosine vs FP32 (all samples as one vector)"


def _confidence(reference: np.ndarray) -> np.ndarray:
    sums = reference.sum(1)
    if np.allclose(sums, 1, atol=1e-3):
        return reference.max(1)
    z = reference - reference.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).max(1)


def estimate_drop(
    reference: np.ndarray,
    candidate: np.ndarray,
    cand: Agreement,
    ref: Agreement,
    labels: Sequence[int] | None,
    confidence: float,
    decode: DetectionDecode | None = None,
) -> DropEstimate:
    """The drop of ``candidate`` against ``reference`` (first outputs over the evaluation
    samples) with its interval and sample count, measured as :func:`drop` measures it."""
    value = drop(ref, cand, confidence)
    n = len(reference)
    if cand.metric == "top1":
        ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
        if labels is not None:
            y = np.asarray(labels)
            ref_ok, cand_ok = ref_top == y, cand_top == y
            lost, gained = int((ref_ok & ~cand_ok).sum()), int((~ref_ok & cand_ok).sum())
            lost_lo, lost_hi = wilson_interval(lost, n)
            gain_lo, gain_hi = wilson_interval(gained, n)
            return DropEstimate(value, lost_lo - gain_hi, lost_hi - gain_lo, n,
                                "accuracy lost minus gained, Wilson intervals (conservative)")
        mask = _confidence(reference) >= confidence
        if not mask.any():
            mask = np.ones(n, bool)
        flips = int((ref_top[mask] != cand_top[mask]).sum())
        lo, hi = wilson_interval(flips, int(mask.sum()))
        return DropEstimate(value, lo, hi, int(mask.sum()), "Wilson interval of the "
                            "disagreement rate")
    if cand.metric == "det-ap50" and decode is not None:
        ref_det = [decode(r) for r in reference]
        cand_det = [decode(c, True) for c in candidate]
        lo, hi = bootstrap_interval(
            lambda idx: 1 - detection_ap50([ref_det[i] for i in idx], [cand_det[i] for i in idx]),
            n, resamples=200)
        return DropEstimate(value, lo, hi, n, "bootstrap over samples (200 resamples)")
    a = reference.reshape(n, -1).astype(np.float64)
    b = candidate.reshape(n, -1).astype(np.float64)
    dots, aa, bb = (a * b).sum(1), (a * a).sum(1), (b * b).sum(1)

    def cosine_lost(idx: np.ndarray) -> float:
        denom = np.sqrt(aa[idx].sum() * bb[idx].sum())
        return float(1 - dots[idx].sum() / denom) if denom > 0 else 0.0

    lo, hi = bootstrap_interval(cosine_lost, n)
    return DropEstimate(value, lo, hi, n, "bootstrap over samples (400 resamples)")
