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

from dataclasses import dataclass

from edgeinfer.machine import CpuFeatures, cpu_features

__all__ = ["CpuFeatures", "Int8Advice", "cpu_features", "int8_advice"]

@dataclass(frozen=True)
class Int8Advice:
    """How to quantize for this CPU, and whether INT8 is likely to be faster than FP32."""

    activation_type: str
    weight_type: str
    reduce_range: bool
    expect_speedup: bool
    reason: str


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
                "VPMADDUBSW saturation; try U8U8 if accuracy still drops; INT8 is often no "
                "faster than FP32 here (no int8 dot-product instructions), so optimize times "
                "it against FP32 first and keeps FP32 unless INT8 measures faster",
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
