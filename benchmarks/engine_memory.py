"""Steady memory of the Engine: RSS over many runs, and over many load/unload cycles.

For each installed backend (onnxruntime first: the ONNX default), EfficientNet-Lite0 through
``edgeinfer.runtime.engine.Engine`` with default options:

- runs: ``--runs`` (default 10,000) batch-1 inferences on one Engine; this process's RSS
  (VmRSS, /proc/self/status) after the first 100 (warm-up) and at the end -> growth %;
- cycles: ``--cycles`` (default 100) times: load an Engine, run it once, close it (where the
  Engine has ``close``), drop it and ``gc.collect()``; RSS after the first 5 cycles and at the end
  -> growth %;
  (``Engine.close`` hands the freed heap back to the OS with glibc's ``malloc_trim(0)``: before
  it did, RSS after a cycle swung by tens of MiB that glibc kept for reuse, and the two-sample
  comparison failed at random on ORT and OpenVINO).

Target: under 2% growth. RSS after a load/unload cycle jumps up and down by several MiB,
depending on what the allocators keep, so a comparison of two single samples is partly chance.
RSS is therefore sampled 100 times along each phase, and besides the two ends the script
reports the growth of the median of the last 20 samples over the median of the first 20 after
warm-up; the verdict uses both (see the table's notes). Every backend and phase runs in its own
child process (this script with ``--child``), so one phase cannot move another's baseline.

    .venv/bin/python benchmarks/engine_memory.py [--runs 10000] [--cycles 100] [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 0.02  # under 2% RSS growth
WARMUP = {"runs": 100, "cycles": 5, "cycles-trim": 5}
SAMPLES = 100  # RSS samples along each phase (every cycle for 100 cycles)
WINDOW = 0.2  # share of the samples after warm-up in each median window


def rss_mib() -> float:
    """This process's resident set size (VmRSS) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` (give free heap memory back to the OS), or None."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    fn = getattr(libc, "malloc_trim", None)
    return None if fn is None else (lambda: fn(0))


def child(backend: str, phase: str, count: int) -> dict[str, Any]:
    """One phase (``runs``, ``cycles`` or ``cycles-trim``) on one backend, in this process."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import close, effnet, new_engine

    from edgeinfer.runtime.backends import BackendOptions

    art, feeds = effnet(backend)
    options = BackendOptions()
    start_rss = rss_mib()
    trim = malloc_trim() if phase == "cycles-trim" else None
    warm = WARMUP[phase]
    trend: list[tuple[int, float]] = []
    every = max(1, count // SAMPLES)
    t0 = time.perf_counter()
    if phase == "runs":
        engine = new_engine(art, backend, options)
        for i in range(1, count + 1):
            engine.run(feeds)
            if i == warm or i % every == 0 or i == count:
                trend.append((i, rss_mib()))
        close(engine)
    else:
        for i in range(1, count + 1):
            engine = new_engine(art, backend, options)
            engine.run(feeds)
            close(engine)
            del engine
            gc.collect()
            if trim is not None:
                trim()
            if i == warm or i % every == 0 or i == count:
                trend.append((i, rss_mib()))
    seconds = time.perf_counter() - t0
    after = [m for i, m in trend if i >= warm]
    n = max(1, round(WINDOW * len(after)))
    first, last = statistics.median(after[:n]), statistics.median(after[-n:])
    return {
        "backend": backend,
        "phase": phase,
        "count": count,
        "warmup": warm,
        "seconds": seconds,
        "start_mib": start_rss,
        "base_mib": after[0],
        "end_mib": after[-1],
        "growth": after[-1] / after[0] - 1,
        "median_growth": last / first - 1,
        "window": n,
        "min_mib": min(after),
        "max_mib": max(after),
        "trend": trend,
    }


def main() -> None:
    """Run each backend's phases in child processes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs on one Engine (ort)")
    parser.add_argument(
        "--other-runs", type=int, default=None, help="runs for openvino/litert (default: --runs)"
    )
    parser.add_argument("--cycles", type=int, default=100, help="load/unload cycles")
    parser.add_argument("--quick", action="store_true", help="300 runs, 10 cycles (smoke run)")
    parser.add_argument(
        "--child", nargs=3, metavar=("BACKEND", "PHASE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        backend, phase, n = args.child
        print(json.dumps(child(backend, phase, int(n))))
        return
    if args.quick:
        args.runs, args.other_runs, args.cycles = 300, 300, 10
    if args.runs <= WARMUP["runs"] or args.cycles <= WARMUP["cycles"]:
        parser.error(f"--runs must exceed {WARMUP['runs']} and --cycles {WARMUP['cycles']}")
    other_runs = args.other_runs or args.runs

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import effnet, installed_backends, versions

    console = Console(width=170)
    backends = installed_backends()
    console.print(f"backends: {', '.join(backends)}; {versions(backends)}")
    if "litert" in backends:
        effnet("litert")  # converts the TFLite copy once, outside the measured children
    phases = ["runs", "cycles"]
    t_start = time.perf_counter()
    results = []
    for backend in backends:
        for phase in phases:
            count = (
                args.cycles if phase != "runs" else args.runs if backend == "ort" else other_runs
            )
            proc = subprocess.run(
                [sys.executable, __file__, "--child", backend, phase, str(count)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"{backend} {phase}: the child process failed ({proc.returncode})")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            step = max(1, len(r["trend"]) // 10)
            console.print(
                f"{backend} {phase}: {count} in {r['seconds']:.1f} s; RSS MiB by "
                f"{'run' if phase == 'runs' else 'cycle'}: "
                + " ".join(f"{i}:{m:.1f}" for i, m in r["trend"][::step])
            )

    table = Table(title="Steady memory: RSS (VmRSS) growth, EfficientNet-Lite0, batch 1, Engine")
    for col in (
        "backend",
        "phase",
        "count",
        "seconds",
        "RSS at start",
        "after warm-up",
        "at end",
        "growth, ends",
        "min-max after warm-up",
        "growth, medians",
        "target < 2%",
    ):
        table.add_column(col, justify="left" if col in ("backend", "phase") else "right")
    verdicts: dict[str, bool] = {}
    for r in results:
        ends_ok, med_ok = r["growth"] < TARGET, r["median_growth"] < TARGET
        if r["phase"] != "cycles-trim":  # the control does not vote
            verdicts[f"{r['backend']} {r['phase']}"] = ends_ok and med_ok
        if ends_ok and med_ok:
            mark = "PASS"
        elif med_ok:
            mark = "[bold red]FAIL[/] at the ends, PASS on medians"
        else:
            mark = "[bold red]FAIL[/]"
        table.add_row(
            r["backend"],
            r["phase"],
            f"{r['count']:,}",
            f"{r['seconds']:.1f}",
            f"{r['start_mib']:.1f}",
            f"{r['base_mib']:.1f}",
            f"{r['end_mib']:.1f}",
            f"{r['growth']:+.2%}",
            f"{r['min_mib']:.1f}-{r['max_mib']:.1f}",
            f"{r['median_growth']:+.2%}",
            mark,
        )
    console.print(table)
    console.print(
        "MiB. RSS at start: before the first Engine (no backend imported yet). Warm-up: the "
        f"first {WARMUP['runs']} runs / {WARMUP['cycles']} cycles. runs: one Engine; cycles: "
        "load, run once, close (which trims the heap), gc.collect(). growth, ends: RSS at "
        "the end / after warm-up - 1; growth, "
        f"medians: median of the last {int(WINDOW * 100)}% of samples / median of the first "
        f"{int(WINDOW * 100)}% after warm-up - 1."
    )
    failed = [k for k, ok in verdicts.items() if not ok]
    verdict = "PASS" if not failed else "[bold red]FAIL[/]"
    console.print(
        f"verdict: {verdict} (RSS growth < 2% at the ends and on medians in every phase"
        + (f"; not met: {', '.join(failed)}" if failed else "")
        + f"); total {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
