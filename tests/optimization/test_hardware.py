"""CPU feature detection and INT8 quantization advice."""

from __future__ import annotations

import pytest

from edgeinfer.machine import CpuFeatures, cpu_features
from edgeinfer.optimization.hardware import int8_advice

_X86_BASE = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx lm constant_tsc pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe "
    "popcnt aes xsave avx f16c rdrand"
)


def _x86(model: str, extra: str) -> str:
    block = (
        "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
        f"model name\t: {model}\nflags\t\t: {_X86_BASE} {extra}\nbugs\t\t: spectre_v1\n"
        "bogomips\t: 5999.99\n\n"
    )
    return block.format(n=0) + block.format(n=1)


ZEN3 = _x86("AMD Ryzen 9 5950X 16-Core Processor", "avx2 bmi1 bmi2 sha_ni vaes vpclmulqdq")
ICE_LAKE = _x86(
    "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_vbmi2",
)
ALDER_LAKE = _x86("12th Gen Intel(R) Core(TM) i7-12700K", "avx2 bmi2 avx_vnni sha_ni")
SANDY_BRIDGE = _x86("Intel(R) Core(TM) i7-2600 CPU @ 3.40GHz", "")

GRAVITON2 = (
    "processor\t: 0\nBogoMIPS\t: 243.75\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm lrcpc dcpop asimddp ssbs\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n"
    "CPU revision\t: 1\n\n"
)
CORTEX_A53 = (
    "processor\t: 0\nBogoMIPS\t: 38.40\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
    "CPU revision\t: 4\n\n"
)
GRAVITON3 = GRAVITON2.replace("asimddp ssbs", "asimddp ssbs sve i8mm bf16")


def test_zen3_avx2_without_vnni() -> None:
    f = cpu_features(ZEN3, "x86_64")
    assert (f.arch, f.avx2, f.avx512, f.vnni) == ("x86_64", True, False, False)
    a = int8_advice(f)
    assert (a.activation_type, a.weight_type) == ("QUInt8", "QInt8")
    assert a.reduce_range is True and a.expect_speedup is True
    assert "AVX2 without VNNI" in a.reason and "reduce_range" in a.reason


def test_ice_lake_avx512_vnni() -> None:
    f = cpu_features(ICE_LAKE, "x86_64")
    assert f.avx2 and f.avx512 and f.vnni
    a = int8_advice(f)
    assert a.reduce_range is False and a.expect_speedup is True
    assert a.reason == "AVX-512 VNNI present: U8S8, full range"


def test_alder_lake_avx_vnni() -> None:
    f = cpu_features(ALDER_LAKE, "x86_64")
    assert f.avx2 and not f.avx512 and f.vnni
    a = int8_advice(f)
    assert a.reduce_range is False and a.expect_speedup is True
    assert "AVX-VNNI" in a.reason


def test_x86_without_avx2_expects_no_speedup() -> None:
    a = int8_advice(cpu_features(SANDY_BRIDGE, "x86_64"))
    assert a.expect_speedup is False and a.reduce_range is True


@pytest.mark.parametrize("text", [GRAVITON2, GRAVITON3])
def test_aarch64_with_dotprod(text: str) -> None:
    f = cpu_features(text)  # architecture inferred from the text
    assert f.arch == "aarch64" and f.arm_dotprod
    assert f.arm_i8mm == ("i8mm" in text)
    assert not (f.avx2 or f.avx512 or f.vnni)
    a = int8_advice(f)
    assert a.reduce_range is False and a.expect_speedup is True
    assert "asimddp" in a.reason


def test_aarch64_without_dotprod() -> None:
    f = cpu_features(CORTEX_A53, "aarch64")
    assert not f.arm_dotprod and not f.arm_i8mm
    a = int8_advice(f)
    assert a.reduce_range is False and a.expect_speedup is False
    assert "unlikely" in a.reason


def test_machine_aliases_and_flag_case() -> None:
    f = cpu_features("flags : AVX2 AVX512F AVX512_VNNI\n", "AMD64")
    assert f.arch == "x86_64" and f.vnni and "avx2" in f.flags
    assert cpu_features(GRAVITON2, "arm64").arch == "aarch64"


def test_no_cpuinfo_falls_back_to_empty_flags() -> None:
    f = cpu_features("", "x86_64")
    assert f.flags == frozenset() and not f.known
    a = int8_advice(f)
    assert a.reduce_range is True  # safe without knowing about VNNI
    assert "unknown" in a.reason
    other = int8_advice(cpu_features("", "riscv64"))
    assert other.expect_speedup is False


def test_real_machine() -> None:
    f = cpu_features()
    assert isinstance(f, CpuFeatures) and f.arch
    a = int8_advice()
    assert a.reason and "\n" not in a.reason
