"""Idle cost of loaded Engines: the CPU a process burns with models loaded and no requests.

Three EfficientNet-Lite0 engines are loaded (onnxruntime, OpenVINO and LiteRT where installed;
ONNX Runtime fills in for a missing one, and the table says so), each run a few times to warm up,
then one last request each and no requests for ``--seconds`` (default 30). This process's CPU
time (user + sys of all its threads, ``time.process_time``) over that window, as a share of one
core, is the idle cost. Target: under 2%.

The same is measured with onnxruntime's spinning default for contrast: the three engines with
``BackendOptions(spinning="always")`` for ORT, three Engines on ORT (spinning off, the Engine's
default) and three plain ``InferenceSession``s with default options (spinning on). ORT worker
threads spin only for a short time after a run, so the window is reported in parts: the first
0.1 s and the first second after the last request, and the steady part (1 s to the end).
Per-thread CPU (``/proc/self/task/*/schedstat``, nanoseconds) is grouped by what created the
thread (threads that appeared while an engine was loaded and warmed up belong to it).

Each configuration runs in its own child process (this script with ``--child``), so one
configuration's threads cannot add to another's CPU time.

    .venv/bin/python benchmarks/engine_idle.py [--seconds 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET = 0.02  # under 2% of one core while idle
MARKS = (0.1, 1.0)  # seconds after the last request: the "right after" windows
PERIOD = 0.2  # sparse load: one request to each model every 0.2 s
MAIN = "present before any model was loaded (Python main thread, ...)"

SCENARIOS = {
    "engines": "Engine x3 (spinning off: the default)",
    "engines-spin": "Engine x3, ORT spinning=always",
    "engines-ort": "Engine x3 on ORT (spinning off)",
    "ort-plain": "InferenceSession x3, ORT defaults (spinning)",
}


def _threads() -> dict[int, int]:
    """CPU time so far of each thread of this process, in nanoseconds (schedstat)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return out


def _sleep_until(t0: float, t: float) -> None:
    left = t0 + t - time.perf_counter()
    if left > 0:
        time.sleep(left)


def child(scenario: str, seconds: float, sparse: float, threads: int) -> dict[str, Any]:
    """Load the scenario's three models, warm them up, then measure the idle window and a
    sparse load (one request each every 0.2 s for ``sparse`` seconds)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import close, effnet, installed_backends, new_engine

    from edgeinfer.runtime.backends import BackendOptions

    installed = installed_backends()
    if scenario in ("engines", "engines-spin"):
        wanted = ["ort", "openvino", "litert"]
        backends = [b if b in installed else "ort" for b in wanted]
    else:
        backends = ["ort", "ort", "ort"]

    groups: dict[int, str] = dict.fromkeys(_threads(), MAIN)
    runners, keep, labels = [], [], []
    for i, backend in enumerate(backends):
        label = f"{i + 1}: {backend}"
        art, feeds = effnet(backend)
        if scenario == "ort-plain":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            if threads:
                so.intra_op_num_threads = threads
            session = ort.InferenceSession(
                str(art.model_path), so, providers=["CPUExecutionProvider"]
            )
            keep.append(session)
            runners.append(lambda s=session, f=feeds: s.run(None, f))
            label += " InferenceSession"
        else:
            spin = scenario == "engines-spin" and backend == "ort"
            options = BackendOptions(threads=threads, spinning="always" if spin else "run")
            engine = new_engine(art, backend, options, warmup=True)
            keep.append(engine)
            runners.append(lambda e=engine, f=feeds: e.run(f))
            label += " Engine" + (" (spinning)" if spin else "")
        for _ in range(5):  # warm-up: worker threads are created on the first runs
            runners[-1]()
        for tid in _threads():
            groups.setdefault(tid, label)
        labels.append(label)

    for fn in runners:  # the last request of each
        fn()
    th0, c0, t0 = _threads(), time.process_time(), time.perf_counter()
    marks: dict[str, float] = {}
    th_marks: dict[str, dict[int, int]] = {}
    for m in (*MARKS, seconds):
        _sleep_until(t0, m)
        marks[str(m)] = time.process_time() - c0
        th_marks[str(m)] = _threads()
    wall = time.perf_counter() - t0

    # Sparse load: one request to each model every PERIOD s. Spinning after every request
    # then costs CPU every time, not once.
    rounds = max(1, round(sparse / PERIOD))
    c1, t1 = time.process_time(), time.perf_counter()
    for k in range(rounds):
        _sleep_until(t1, k * PERIOD)
        for fn in runners:
            fn()
    _sleep_until(t1, rounds * PERIOD)
    sparse_cpu, sparse_wall = time.process_time() - c1, time.perf_counter() - t1

    def per_group(a: dict[int, int], b: dict[int, int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, ns in b.items():
            g = groups.get(tid, "threads started during the window")
            out[g] = out.get(g, 0.0) + (ns - a.get(tid, 0)) / 1e9
        return out

    one = str(MARKS[-1])
    result = {
        "scenario": scenario,
        "backends": backends,
        "labels": labels,
        "seconds": wall,
        "cpu": marks,
        "sparse": {"rounds": rounds, "cpu": sparse_cpu, "seconds": sparse_wall},
        "groups": [MAIN, *labels],
        "threads_per_group": {
            g: sum(1 for t in th_marks[str(seconds)] if groups.get(t) == g)
            for g in dict.fromkeys(groups.values())
        },
        "threads_first_second": per_group(th0, th_marks[one]),
        "threads_steady": per_group(th_marks[one], th_marks[str(seconds)]),
        "numpy": np.__version__,
    }
    for item in keep:
        close(item)
    return result


def main() -> None:
    """Run each configuration in a child process and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window length")
    parser.add_argument(
        "--sparse-seconds", type=float, default=5.0, help="sparse load: one request each 0.2 s"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="threads per model (0: each backend's default)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s windows (smoke run)")
    parser.add_argument("--child", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.sparse_seconds = 3.0, 1.0
    if args.seconds < 2:
        parser.error("--seconds must be at least 2 (the first second is reported apart)")
    if args.child:
        print(json.dumps(child(args.child, args.seconds, args.sparse_seconds, args.threads)))
        return

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import effnet, installed_backends, versions

    console = Console(width=190)
    installed = installed_backends()
    console.print(f"backends installed: {', '.join(installed)}; {versions(installed)}")
    if "litert" in installed:
        effnet("litert")  # converts the TFLite copy once, outside the children's windows
    results = {}
    t_start = time.perf_counter()
    for scenario in SCENARIOS:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                scenario,
                "--seconds",
                str(args.seconds),
                "--sparse-seconds",
                str(args.sparse_seconds),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{scenario}: the child process failed (exit {proc.returncode})")
        results[scenario] = json.loads(proc.stdout.strip().splitlines()[-1])
        console.print(f"{scenario}: done in {time.perf_counter() - t0:.1f} s")

    s = args.seconds
    table = Table(
        title=f"Idle CPU of this process, % of one core, three EfficientNet-Lite0 models loaded "
        f"({args.threads or 'default'} threads each), no requests for {s:g} s after the last one"
    )
    for col in (
        "configuration",
        "models",
        "first 0.1 s",
        "first 1 s",
        f"steady (1-{s:g} s)",
        f"whole {s:g} s",
        "CPU ms after last request",
        "target < 2%",
        "sparse load: CPU ms per request",
        "sparse load: % of a core",
    ):
        table.add_column(col, justify="left" if col in ("configuration", "models") else "right")
    verdict_ok = True
    for scenario, r in results.items():
        cpu, wall = r["cpu"], r["seconds"]
        first01, first1, end = cpu["0.1"], cpu["1.0"], cpu[str(s)]
        whole = end / wall
        ok = whole < TARGET
        mark = "PASS" if ok else "[bold red]FAIL[/]"
        if scenario == "engines":
            verdict_ok = ok
        elif scenario != "engines-ort":
            mark = f"({mark}, contrast)"
        table.add_row(
            SCENARIOS[scenario],
            ", ".join(r["backends"]),
            f"{first01 / 0.1:.1%}",
            f"{first1 / 1.0:.1%}",
            f"{(end - first1) / (wall - 1.0):.2%}",
            f"{whole:.2%}",
            f"{end * 1e3:.0f}",
            mark,
            f"{r['sparse']['cpu'] * 1e3 / (3 * r['sparse']['rounds']):.1f}",
            f"{r['sparse']['cpu'] / r['sparse']['seconds']:.1%}",
        )
    console.print(table)

    threads = Table(title="Where the CPU went: CPU ms per thread group (schedstat)")
    for col in ("configuration", "thread group", "threads", "first 1 s", f"steady (1-{s:g} s)"):
        threads.add_column(
            col, justify="left" if col in ("configuration", "thread group") else "right"
        )
    for scenario, r in results.items():
        groups = dict.fromkeys([*r["groups"], *r["threads_first_second"], *r["threads_steady"]])
        for g in groups:
            threads.add_row(
                scenario,
                g,
                str(r["threads_per_group"].get(g, 0)),
                f"{r['threads_first_second'].get(g, 0.0) * 1e3:.1f}",
                f"{r['threads_steady'].get(g, 0.0) * 1e3:.1f}",
            )
    console.print(threads)
    missing = [b for b in ("openvino", "litert") if b not in installed]
    if missing:
        console.print(f"not installed: {', '.join(missing)}; ORT engines stand in for them")
    verdict = "PASS" if verdict_ok else "[bold red]FAIL[/]"
    whole = results["engines"]["cpu"][str(s)] / results["engines"]["seconds"]
    console.print(
        f"verdict: {verdict} (three loaded Engines idle at {whole:.2%} of one core over "
        f"{s:g} s, target < 2%); total {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
