"""Facts about this machine and this process, defined once: usable CPUs, CPU model and
instruction-set flags, memory, resident set size (now and peak), and handing freed heap back to
the OS. Pure standard library; everything above uses these instead of reading /proc itself."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import platform
import re
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "CpuFeatures",
    "cpu_features",
    "machine_info",
    "machine_line",
    "memory_method",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "trim_heap",
    "usable_cpus",
]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
#: the packages whose versions a machine description names
_DISTS = ("edgeinfer", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "openvino")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- memory --------------------------------------------------------------------------------


def status_bytes(key: str) -> int | None:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in bytes, or None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """The resident set size now (``VmRSS``), or None off Linux."""
    return status_bytes("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False if that is not possible."""
    try:
        with _CLEAR_REFS.open("w") as fh:
            fh.write("5")
    except OSError:
        return False
    return status_bytes("VmHWM") is not None


def peak_rss_bytes(method: str = "clear_refs") -> int:
    """The peak RSS: ``VmHWM`` since the last reset, or ``ru_maxrss`` since the process start."""
    if method == "clear_refs":
        peak = status_bytes("VmHWM")
        if peak is not None:
            return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # macOS reports bytes


def memory_method() -> str:
    """``clear_refs`` (per-measurement peak) if the peak can be reset here, else ``ru_maxrss``."""
    return "clear_refs" if reset_peak_rss() else "ru_maxrss"


def trim_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Without it, RSS after an unload keeps tens of MiB that glibc holds for reuse, and swings from
    one load/unload cycle to the next; a measurement's baseline would include memory the previous
    one freed but the allocator kept.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
        fn.argtypes = [ctypes.c_size_t]
        return fn
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _memory_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- the CPU -------------------------------------------------------------------------------

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


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), cores, memory, OS, Python and package versions."""
    usable = usable_cpus()
    versions = {}
    for dist in _DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    feats = cpu_features()
    isa = [
        n
        for n, on in (
            ("AVX2", feats.avx2),
            ("AVX-512", feats.avx512),
            ("VNNI", feats.vnni),
            ("Arm dot-product", feats.arm_dotprod),
            ("Arm i8mm", feats.arm_i8mm),
        )
        if on
    ]
    return {
        "cpu": _cpu_model(),
        "arch": feats.arch,
        "isa": isa,
        "cores": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": _memory_total(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_line(machine: dict[str, Any] | None = None) -> str:
    """One line: ``AMD EPYC, 2 CPUs (AVX2, VNNI), 23.5 GiB, Python 3.11.7, onnxruntime ...``."""
    machine = machine_info() if machine is None else machine
    mem = machine.get("memory_bytes")
    isa = f" ({', '.join(machine['isa'])})" if machine.get("isa") else ""
    parts = [
        f"{machine['cpu']}, {machine['usable_cpus']} CPUs{isa}",
        f"{mem / 2**30:.1f} GiB" if mem else "",
        f"Python {machine['python']}",
        ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if k != "edgeinfer"),
    ]
    return ", ".join(p for p in parts if p)
