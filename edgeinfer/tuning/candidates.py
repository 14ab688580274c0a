"""What ``tune`` tries: model variants (precision x format) and run configurations on them.

A *variant* is a model file: the FP32 graph (with dynamic input dimensions fixed to the tuned
size, so every runtime plans for it), the INT8 model from ``optimize`` (with its
accuracy-aware fallback), and their TFLite conversions. A *configuration* is a variant in one
backend with one set of options: threads, OpenVINO's compute precision (bf16/f16 where the
CPU has the units) and performance hint.

FP16 ONNX models are not tried on the CPU: onnxruntime has few FP16 CPU kernels and inserts
casts, so they run slower than FP32 (measured in the optimize issue); OpenVINO's f16/bf16
compute precision is the CPU's way to use half-precision units, and it is tried instead.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgeinfer.machine import usable_cpus
from edgeinfer.runtime.backends import (
    KNOWN_BACKENDS,
    BackendOptions,
    Hint,
    capabilities,
    is_installed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """A model file that ``tune`` can ship."""

    label: str  # e.g. "int8.onnx"
    path: Path
    format: str  # onnx | tflite | openvino
    precision: str  # fp32 | int8 | mixed
    layout: str  # input layout: NCHW | NHWC
    companions: tuple[Path, ...] = ()

    @property
    def bytes(self) -> int:
        """Size on disk with companions."""
        return sum(p.stat().st_size for p in (self.path, *self.companions))


@dataclass(frozen=True)
class Config:
    """One candidate: a variant run by one backend with one set of options."""

    variant: Variant
    backend: str
    options: BackendOptions

    @property
    def label(self) -> str:
        """A short unique name: ``int8.onnx ort t2`` or ``fp32.onnx openvino t2 bf16``."""
        text = f"{self.variant.label} {self.backend} t{self.options.threads}"
        if self.options.compute_precision != "f32":
            text += f" {self.options.compute_precision}"
        return text


def thread_counts(cpus: int | None = None) -> tuple[int, ...]:
    """1, 2, 4, ... up to the number of CPUs this process may use, and that number."""
    n = max(1, cpus if cpus is not None else usable_cpus())
    counts = {1, n}
    k = 2
    while k < n:
        counts.add(k)
        k *= 2
    return tuple(sorted(counts))


def openvino_precisions() -> tuple[str, ...]:
    """Compute precisions worth trying in OpenVINO on this CPU: f32, plus bf16/f16 if the CPU
    plugin reports the units."""
    if not is_installed("openvino"):
        return ("f32",)
    import openvino as ov

    try:
        caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # an OpenVINO without the property: f32 only
        return ("f32",)
    return ("f32", *(p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in caps))


def configurations(
    variants: Sequence[Variant],
    backends: Sequence[str],
    threads: Sequence[int],
    hint: Hint,
    ov_precisions: Sequence[str],
) -> list[Config]:
    """Every backend x threads x backend option that can run each variant."""
    out = []
    for v in variants:
        for b in backends:
            if v.format not in KNOWN_BACKENDS[b].formats:
                continue
            if v.format == "tflite" and v.precision == "int8" and b != "litert":
                continue  # uint8 I/O with scale and zero point: only our LiteRT backend maps it
            for t in threads:
                base = BackendOptions(threads=t, hint=hint)
                precisions = [p for p in ov_precisions
                              if p in capabilities(b).compute_precisions] or ["f32"]
                for p in precisions:
                    out.append(Config(v, b, replace(base, compute_precision=p)))  # type: ignore[arg-type]
    return out


def keep(variants: Sequence[Variant], directory: Path) -> None:
    """Copy every variant's files into ``directory`` (``tune --keep-candidates``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for v in variants:
        for f in (v.path, *v.companions):
            shutil.copyfile(f, directory / f"{v.label.rsplit('.', 1)[0]}-{f.name}")
