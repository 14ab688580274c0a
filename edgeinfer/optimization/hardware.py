"""The CPU's integer dot-product support, and what it means for INT8 quantization.

The rules follow onnxruntime's "Quantize ONNX models" documentation
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html), sections
"Data type selection", "When and why do I need to try U8U8?" and the FAQ entries "Why am I not
seeing performance improvements?" and "When to use reduce-range and per-channel quantization?":

* On x86-64 with AVX2 or AVX-512 but without VNNI, ORT runs U8S8 with ``VPMADDUBSW``, whose
  16-bit intermediate sums of u8*s8 pairs can saturate. ``reduce_range`` (7-bit weights) is
  "designed for the U8S8 format on AVX2 and AVX512 (non-VNNI) machines to mitigate saturation
  issues" and "is not needed on machines supporting VNNI"; U8U8 is the other way out when
  accuracy still drops. With per-channel weights on those machines reduce_range is generally
  needed as well.
* "There is no such issue on other CPU architectures (x64 with VNNI and ARM)".
* "x86-64 with VNNI, GPU with Tensor Core int8 support and ARM with dot-product instructions can
  get better performance in general"; old hardware with few int8 instructions may get slower,
  since quantize/dequantize has a cost.

The advice is U8S8 (activations ``QUInt8``, weights ``QInt8``) everywhere. ORT's docs name S8S8
with QDQ as the default; on x86 ORT rewrites S8 activations to U8 before running (its
QDQ S8-to-U8 transformer), so U8S8 is what the kernels run there in either case, and the same
saturation rule applies.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuFeatures", "Int8Advice", "cpu_features", "int8_advice"]

_CPUINFO = Path("/proc/cpuinfo")

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86-64": "x86_64",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "armv8l": "aarch64",
}


@dataclass(frozen=True)
class CpuFeatures:
    """CPU architecture and the instruction-set flags that matter for INT8 inference."""

    arch: str
    flags: frozenset[str]
    avx2: bool
    avx512: bool
    vnni: bool
    arm_dotprod: bool
    arm_i8mm: bool

    @property
    def known(self) -> bool:
        """Whether any flags could be read (False off Linux, or when /proc is unreadable)."""
        return bool(self.flags)


@dataclass(frozen=True)
class Int8Advice:
    """How to quantize for this CPU, and whether INT8 is likely to be faster than FP32."""

    activation_type: str
    weight_type: str
    reduce_range: bool
    expect_speedup: bool
    reason: str


def cpu_features(cpuinfo_text: str | None = None, machine: str | None = None) -> CpuFeatures:
    """Parse ``/proc/cpuinfo`` (or ``cpuinfo_text``) into :class:`CpuFeatures`.

    x86 lists its flags on ``flags`` lines, Arm on ``Features`` lines (``asimddp`` is the
    dot-product extension, ``i8mm`` the int8 matrix multiply). Where there is no cpuinfo the
    flags are empty. ``machine`` defaults to what the text shows, else ``platform.machine()``.
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo_text = ""
    flags, arch_hint = _parse_cpuinfo(cpuinfo_text)
    arch = _normalise_arch(machine or arch_hint or platform.machine())
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags or "avx512vnni" in flags
    return CpuFeatures(
        arch=arch,
        flags=flags,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        vnni=vnni,
        arm_dotprod="asimddp" in flags or "dotprod" in flags,
        arm_i8mm="i8mm" in flags,
    )


def int8_advice(features: CpuFeatures | None = None) -> Int8Advice:
    """Quantization settings for ``features`` (this machine's CPU when not given)."""
    f = cpu_features() if features is None else features
    act, weight = "QUInt8", "QInt8"
    if f.arch == "x86_64":
        if not f.known:
            return Int8Advice(
                act,
                weight,
                True,
                True,
                "x86-64 CPU flags unknown: U8S8 with reduce_range, safe without VNNI "
                "(check the speed-up by benchmarking)",
            )
        if f.vnni:
            kind = (
                "AVX-512 VNNI"
                if "avx512_vnni" in f.flags or "avx512vnni" in f.flags
                else ("AVX-VNNI")
            )
            return Int8Advice(act, weight, False, True, f"{kind} present: U8S8, full range")
        if f.avx512 or f.avx2:
            simd = "AVX-512" if f.avx512 else "AVX2"
            return Int8Advice(
                act,
                weight,
                True,
                True,
                f"{simd} without VNNI: U8S8 with reduce_range (7-bit weights) against "
                "VPMADDUBSW saturation; try U8U8 if accuracy still drops; modest speed-up",
            )
        return Int8Advice(
            act,
            weight,
            True,
            False,
            "x86-64 without AVX2: no fast int8 instructions, INT8 is unlikely to beat FP32",
        )
    if f.arch == "aarch64":
        if not f.known:
            return Int8Advice(
                act,
                weight,
                False,
                True,
                "Arm64 CPU features unknown: U8S8, full range (check the speed-up by benchmarking)",
            )
        if f.arm_dotprod:
            extra = " and I8MM" if f.arm_i8mm else ""
            return Int8Advice(
                act,
                weight,
                False,
                True,
                f"Arm dot-product (asimddp){extra} present: U8S8, full range",
            )
        return Int8Advice(
            act,
            weight,
            False,
            False,
            "Arm CPU without dot-product instructions (asimddp): INT8 is unlikely to beat FP32",
        )
    return Int8Advice(
        act,
        weight,
        False,
        False,
        f"{f.arch or 'unknown'} CPU: no known int8 dot-product support, INT8 is unlikely to "
        "beat FP32",
    )


def _parse_cpuinfo(text: str) -> tuple[frozenset[str], str | None]:
    """Flags of the first processor listed, and the architecture the text implies."""
    flags: frozenset[str] | None = None
    arch_hint = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "flags" and flags is None:
            flags = frozenset(value.lower().split())
            arch_hint = "x86_64"
        elif key == "features" and flags is None:
            flags = frozenset(value.lower().split())
        elif key == "cpu architecture" and arch_hint is None:
            arch_hint = "aarch64" if value.strip() == "8" else "arm"
    if flags is not None and arch_hint is None and "asimd" in flags:
        arch_hint = "aarch64"
    return flags or frozenset(), arch_hint


def _normalise_arch(machine: str) -> str:
    m = machine.strip().lower()
    m = _ARCH_ALIASES.get(m, m)
    if re.fullmatch(r"i[3-6]86|x86", m):
        return "x86"
    return m
