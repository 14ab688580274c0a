"""Static INT8 for ``optimize``: the speed check first, then calibration, then the fallback.

1. **Speed check.** Full INT8 (every layer, ranges from a handful of calibration samples: ranges
   do not change the speed) is timed against FP32, interleaved. The fallback only moves layers
   back to float, so when full INT8 is not faster than FP32 by the margin, no fallback result
   will be: optimize stops there, before the full calibration and the search, and says so with
   the CPU features that explain it (a 400-layer detector spent 8 minutes in the search to
   reach that answer on a CPU without VNNI).
2. **Calibration** on all calibration samples, the plain INT8 model measured against FP32.
3. **Fallback**: rank layers by sensitivity and return the most sensitive to float until the
   drop is within ``max_drop`` (smallest such set, by doubling then bisection).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeinfer.machine import CpuFeatures, cpu_features
from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.calibration import CalibrationReader
from edgeinfer.optimization.evaluate import Agreement, Latency, compare, run_outputs
from edgeinfer.optimization.guard import drop
from edgeinfer.optimization.sensitivity import IsolatedSensitivity, rank_isolated, rank_layers
from edgeinfer.progress import Tracker

__all__ = [
    "ISOLATE_TOP",
    "SLOWER_MARGIN",
    "SPEED_CHECK_SAMPLES",
    "LatencyTimer",
    "SpeedCheck",
    "check_int8_speed",
    "features_text",
    "float_share",
    "not_faster_message",
]

#: a candidate counts as slower than FP32 only beyond this p50 ratio: interleaved timings of
#: two equal models on a busy 2-core machine differ by a few percent run to run. The one rule
#: for INT8: kept if and only if its p50 is within this factor of FP32's (speed check and final
#: measurement alike).
SLOWER_MARGIN = 1.05

#: calibration samples behind the speed check's INT8 model (its ranges do not change its speed)
SPEED_CHECK_SAMPLES = 4

#: layers measured one at a time (a re-quantization and a model run each): the ones activation
#: matching blames most. PP-OCRv4 det touches ~280 nodes, which took 15 minutes at 640x640; the
#: rest follow in activation-matching order, marked as not measured (infinite output SQNR).
ISOLATE_TOP = 48

#: ``(model paths, one sample) -> their latencies``, timed interleaved (tests inject their own)
LatencyTimer = Callable[[Sequence[Path], np.ndarray], list[Latency]]


@dataclass(frozen=True)
class SpeedCheck:
    """Full INT8 against FP32 on this machine, before any calibration or search."""

    fp32_p50_ms: float
    fp32_p90_ms: float
    int8_p50_ms: float
    int8_p90_ms: float
    int8_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        """INT8 p50 over FP32 p50 (below 1: INT8 faster)."""
        return self.int8_p50_ms / self.fp32_p50_ms

    @property
    def faster(self) -> bool:
        """Whether INT8 passes the rule (p50 within :data:`SLOWER_MARGIN` of FP32's)."""
        return self.ratio <= SLOWER_MARGIN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the ratio, the margin and the verdict."""
        return {**asdict(self), "ratio": self.ratio, "margin": SLOWER_MARGIN,
                "faster": self.faster, "calibration_samples": SPEED_CHECK_SAMPLES}


def check_int8_speed(
    fp32: Path, calib: np.ndarray, evaluation: np.ndarray, settings: q.QuantSettings,
    workdir: Path, timer: LatencyTimer,
) -> tuple[SpeedCheck, Path]:
    """Quantize every layer on :data:`SPEED_CHECK_SAMPLES` samples and time it against FP32;
    returns the check and the INT8 model it timed."""
    t0 = time.perf_counter()
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    reader = CalibrationReader(calib[:SPEED_CHECK_SAMPLES], input_name)
    int8 = q.quantize_int8_static(fp32, workdir / "int8-speed-check.onnx", reader, settings)
    lat_fp32, lat_int8 = timer([fp32, int8], evaluation[0])
    check = SpeedCheck(lat_fp32.p50, lat_fp32.p90, lat_int8.p50, lat_int8.p90,
                       int8.stat().st_size, time.perf_counter() - t0)
    return check, int8


def features_text(f: CpuFeatures | None = None) -> str:
    """This CPU's INT8-relevant features in words: ``x86_64: AVX2, no AVX-512, no VNNI``."""
    f = cpu_features() if f is None else f
    if not f.known:
        return f"{f.arch or 'unknown'} CPU, flags unreadable"
    if f.arch == "x86_64":
        parts = [("AVX2", f.avx2), ("AVX-512", f.avx512), ("VNNI", f.vnni)]
    elif f.arch == "aarch64":
        parts = [("dot product (asimddp)", f.arm_dotprod), ("I8MM", f.arm_i8mm)]
    else:
        parts = []
    return f"{f.arch}: " + ", ".join(n if ok else f"no {n}" for n, ok in parts)


def _why(f: CpuFeatures) -> str:
    if f.arch == "x86_64" and f.known and not f.vnni:
        return ("without VNNI, INT8 convolutions run on VPMADDUBSW/VPMADDWD pairs, about the "
                "cost of FP32 FMAs, and the quantize/dequantize steps come on top")
    if f.arch == "aarch64" and f.known and not f.arm_dotprod:
        return "without the dot-product extension INT8 gains little over FP32 NEON"
    return ("the CPU has int8 dot-product instructions; this model's quantize/dequantize "
            "overhead outweighs them (small layers, or float ops between them)")


def not_faster_message(check: SpeedCheck, f: CpuFeatures | None = None) -> str:
    """The one sentence of an INT8 request stopped by the speed check."""
    f = cpu_features() if f is None else f
    return (
        f"INT8 not faster here: full INT8 p50 {check.int8_p50_ms:.2f} ms vs FP32 "
        f"{check.fp32_p50_ms:.2f} ms ({check.ratio:.2f}x; INT8 is kept only within "
        f"{SLOWER_MARGIN:.2f}x) on this CPU ({features_text(f)}): {_why(f)}; no fallback can "
        "be faster, so calibration and the fallback search were skipped"
    )


def float_share(fp32: Path, kept: Sequence[str]) -> tuple[int, int]:
    """(quantizable layers kept in float, quantizable layers) of the model ``fp32``."""
    names = {n.name for n in q.quantizable_nodes(onnx.load(str(fp32), load_external_data=False))}
    return len(names & set(kept)), len(names)


@dataclass(frozen=True)
class Reference:
    """FP32's outputs on the evaluation samples and their agreement with themselves."""

    fp32: Path
    input_name: str
    outputs: np.ndarray
    agreement: Agreement


def static_int8(
    ref: Reference, candidate: Path, samples: Any, settings: q.QuantSettings, config: Any,
    workdir: Path, track: Tracker,
) -> tuple[dict[str, Any], list[str]]:
    """Calibrate, measure plain INT8, run the fallback when the drop is too high; writes the
    result to ``candidate``. Returns the report fields and the layers kept in float."""
    cache = workdir / "calib-cache.json"
    reader = CalibrationReader(samples.calib, ref.input_name)
    plain = q.quantize_int8_static(
        ref.fp32, workdir / "int8.onnx", reader, settings, cache_path=cache
    )
    plain_agree = _agreement(ref, plain, samples, config)
    report: dict[str, Any] = {"plain_int8": _agreement_dict(plain_agree),
                              "kept_in_float": [], "sensitivity": []}
    shutil.copyfile(plain, candidate)
    if not config.fallback or drop(ref.agreement, plain_agree, config.agree_confidence) <= \
            config.max_drop:
        return report, []
    ranked, sensitivity = _rank(ref, plain, samples, reader, settings, cache, workdir)
    report["sensitivity"] = sensitivity[:20]
    kept, trials = _fallback_search(ref, candidate, ranked, reader, settings, cache, samples,
                                    config, track)
    report["fallback_trials"] = trials
    report["kept_in_float"] = kept
    return report, kept


def _agreement(ref: Reference, path: Path, samples: Any, config: Any) -> Agreement:
    out = run_outputs(path, samples.evaluation, ref.input_name)
    return compare(ref.outputs, out, samples.labels, config.agree_confidence, samples.decode)


def _agreement_dict(a: Agreement) -> dict[str, Any]:
    return {k: v for k, v in asdict(a).items() if v is not None}


def _rank(ref: Reference, plain: Path, samples: Any, reader: CalibrationReader,
          settings: q.QuantSettings, cache: Path, workdir: Path,
          ) -> tuple[list[IsolatedSensitivity], list[dict[str, Any]]]:
    """Layers by sensitivity: activation matching first, the top ones measured alone."""
    probe = samples.calib[: min(16, len(samples.calib))]
    matched = {s.name: s for s in rank_layers(ref.fp32, plain, probe)}

    def quantize_only(name: str, path: Path) -> Path:
        reader.rewind()
        return q.quantize_int8_static(ref.fp32, path, reader, settings, only=[name],
                                      cache_path=cache)

    by_loss = list(matched.values())  # most dB lost first
    ranked = rank_isolated(
        ref.fp32, [(s.name, s.op_type) for s in by_loss[:ISOLATE_TOP]], quantize_only, probe,
        workdir,
    ) + [IsolatedSensitivity(s.name, s.op_type, math.inf) for s in by_loss[ISOLATE_TOP:]]
    rows = [{"name": s.name, "op_type": s.op_type, "output_sqnr_db": s.output_sqnr,
             "loss_db": matched[s.name].loss_db} for s in ranked]
    return ranked, rows


def _fallback_search(
    ref: Reference, candidate: Path, ranked: list, reader: CalibrationReader,
    settings: q.QuantSettings, cache: Path, samples: Any, config: Any, track: Tracker,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Smallest k such that keeping the k most sensitive layers in float meets max_drop."""
    names = [s.name for s in ranked]
    trials: list[dict[str, Any]] = []

    def trial(k: int) -> bool:
        path = candidate.with_name(f"fallback-{k}.onnx")
        reader.rewind()
        q.quantize_int8_static(ref.fp32, path, reader, settings, exclude=names[:k],
                               cache_path=cache)
        agree = _agreement(ref, path, samples, config)
        d = drop(ref.agreement, agree, config.agree_confidence)
        trials.append({"kept": k, "drop": d, "agreement": agree.value})
        return d <= config.max_drop

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
    shutil.copyfile(candidate.with_name(f"fallback-{hi}.onnx"), candidate)
    return names[:hi], trials
