"""The multi-model Scheduler against a FIFO queue and against naive concurrent sessions.

Real zoo models, in this process: EfficientNet-Lite0 and the defect detector on onnxruntime,
BlazeFace (short range) on LiteRT. Two measurements, each against its peers side by side:

(a) priority under load. Low-priority clients keep the worker(s) saturated: two closed-loop
    clients each on the defect detector and on EfficientNet-Lite0 (each resubmits as soon as
    its request ends), with a deadline of ``--low-deadline-ms``. High-priority BlazeFace
    requests arrive open-loop (every ``--period-ms`` with seeded jitter). Reported: the high
    requests' p99 latency (submit to result) loaded, against its p99 through the same
    configuration with no load plus one execution (p50 and p99) of the longest low-priority
    model, run alone on the scheduler's own engine right after (the target: loaded p99 <=
    unloaded p99 + one such execution: a high request waits at most for the run in progress).
    Side by side: the same scheduler with ``preempt=True`` (a high request aborts the low run
    in progress, which runs again later), and a FIFO queue with the same engines and workers
    (no priorities, no deadlines). Every engine is wrapped so that a run starting after its
    request's deadline is counted: the scheduler must show zero.
(b) three models in turn: rounds of one request per model (submitted together, the round
    ends when all three are done). Cost per round against the sum of the three standalone
    p50 latencies (each model alone on an Engine using every core, measured in the same
    repetition). Peers: three default sessions, each in its own thread (ORT
    ``InferenceSession`` defaults: every core, spinning on; LiteRT with every core), as
    onnxruntime issue 17011 describes (2.09x reported); three Engines (every core each,
    spinning off) in their own threads; and one thread calling the three Engines in turn.
    Target: the scheduler <= 1.10x.

Both run for the two ways to split 2 cores: 1 worker x 2 intra-op threads (the default) and
2 workers x 1 thread, which is how the default was chosen. Configurations alternate in
``--reps`` repetitions; the figures are medians over them.

    .venv/bin/python benchmarks/scheduler.py [--reps 3] [--high 200] [--rounds 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer import loading
from edgeinfer.machine import machine_info, machine_line, usable_cpus
from edgeinfer.runtime.backends import BackendOptions
from edgeinfer.runtime.engine import Engine
from edgeinfer.runtime.model_cache import ModelSpec
from edgeinfer.runtime.scheduler import (
    DeadlineMissedError,
    RejectedError,
    Scheduler,
    SchedulerConfig,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import OtherLoad

HIGH = "blazeface-short"
LOW = ("defect-detector", "efficientnet-lite0")
THREE = ("efficientnet-lite0", "defect-detector", "blazeface-short")
DEADLINE_KEY = "__deadline__"
TARGET_B = 1.10


# ---------------------------------------------------------------- engines


class Checked:
    """An engine that counts runs starting after their request's deadline (carried in the
    feeds under ``__deadline__`` by this script, removed before the engine sees them)."""

    late = 0
    lock = threading.Lock()

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @property
    def cancellable(self) -> bool:
        """Whether the wrapped engine can abort a run (the scheduler's preemption)."""
        return bool(getattr(self.engine, "cancellable", False))

    def run(self, feeds: dict[str, np.ndarray], **kw: Any) -> list[np.ndarray]:
        """Run, counting a start past the deadline (``kw``: ``cancel`` when preempting)."""
        feeds = dict(feeds)
        deadline = feeds.pop(DEADLINE_KEY, None)
        if deadline is not None and time.monotonic() >= float(deadline):
            with Checked.lock:
                Checked.late += 1
        return self.engine.run(feeds, **kw)

    def close(self) -> None:
        """Close the engine."""
        self.engine.close()


def checked_loader(spec: ModelSpec, options: BackendOptions) -> Checked:
    """The scheduler's loader here: an Engine wrapped in :class:`Checked`."""
    return Checked(Engine.open(spec.path, spec.backend, options))


def feeds_of(name: str) -> dict[str, np.ndarray]:
    """Seeded feeds of the model's input shape."""
    engine = Engine.open(loading.resolve(name), warmup=False)
    shapes = {k: v.shape for k, v in (engine.example_feeds() or {}).items()}
    engine.close()
    rng = np.random.default_rng(0)
    return {k: rng.random(s, dtype=np.float32) for k, s in shapes.items()}


class Fifo:
    """The peer for (a): one FIFO queue, the same engines, the same number of workers."""

    def __init__(self, names: tuple[str, ...], workers: int, threads: int) -> None:
        opts = BackendOptions(threads=threads)
        self.engines = {n: Checked(Engine.open(loading.resolve(n), None, opts)) for n in names}
        self.q: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, name: str, feeds: dict[str, np.ndarray], **_: Any) -> Future:
        """Queue a request (priority and deadline are ignored)."""
        fut: Future = Future()
        self.q.put((name, feeds, fut))
        return fut

    def _work(self) -> None:
        while (item := self.q.get()) is not None:
            name, feeds, fut = item
            fut.set_result(self.engines[name].run(feeds))

    def close(self) -> None:
        """Stop the workers and close the engines."""
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()
        for e in self.engines.values():
            e.close()


def new_scheduler(workers: int, threads: int, names: tuple[str, ...],
                  preempt: bool = False) -> Scheduler:
    """A scheduler with ``names`` registered and loaded (one request each)."""
    config = SchedulerConfig(workers=workers, threads=threads, preempt=preempt)
    sched = Scheduler(config, loader=checked_loader)
    for n in names:
        sched.register(n, loading.resolve(n))
    for n in names:
        sched.run(n, FEEDS[n])
    return sched


FEEDS: dict[str, dict[str, np.ndarray]] = {}


# ---------------------------------------------------------------- (a) priority under load


def low_client(server: Any, name: str, stop: threading.Event, deadline_ms: float,
               tally: dict[str, int]) -> None:
    """Closed loop: submit, wait, repeat; a rejected request is retried after 2 ms."""
    while not stop.is_set():
        deadline = time.monotonic() + deadline_ms / 1e3
        feeds = {**FEEDS[name], DEADLINE_KEY: np.float64(deadline)}
        try:
            server.submit(name, feeds, priority=0, deadline=deadline).result()
            tally["ran"] += 1
        except RejectedError:
            tally["rejected"] += 1
            time.sleep(0.002)
        except DeadlineMissedError:
            tally["skipped"] += 1


def high_phase(server: Any, n: int, period_ms: float, loaded: bool,
               low_deadline_ms: float) -> dict[str, Any]:
    """``n`` open-loop high-priority requests (with the low clients running if ``loaded``)."""
    stop = threading.Event()
    tally = {"ran": 0, "rejected": 0, "skipped": 0}
    clients = [
        threading.Thread(target=low_client, args=(server, name, stop, low_deadline_ms, tally))
        for name in LOW for _ in range(2)
    ] if loaded else []
    for c in clients:
        c.start()
    time.sleep(0.3 if loaded else 0)  # the load settles
    rng = np.random.default_rng(1)
    lat: list[float] = []
    lock = threading.Lock()
    futs = []
    late0 = Checked.late
    with OtherLoad() as other:
        t0 = time.perf_counter()
        for k in range(n):
            wake = t0 + (k + rng.uniform(0, 0.9)) * period_ms / 1e3
            time.sleep(max(0.0, wake - time.perf_counter()))
            sent = time.perf_counter()
            fut = server.submit(HIGH, FEEDS[HIGH], priority=10)
            fut.add_done_callback(
                lambda f, s=sent: (lock.acquire(), lat.append(time.perf_counter() - s),
                                   lock.release())
            )
            futs.append(fut)
        for f in futs:
            f.result()
    stop.set()
    for c in clients:
        c.join()
    lat_ms = np.array(lat) * 1e3
    return {
        "p50": float(np.percentile(lat_ms, 50)),
        "p99": float(np.percentile(lat_ms, 99)),
        "low": tally,
        "late_runs": Checked.late - late0,
        "other_load": other.share,
    }


def alone_ms(fn: Callable[[], Any], runs: int = 30) -> tuple[float, float]:
    """(p50, p99) in ms of ``fn`` called alone, after 5 warm-up calls."""
    for _ in range(5):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ms = np.array(ts) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


# ---------------------------------------------------------------- (b) three models in turn


def naive_runners(kind: str, cores: int) -> tuple[dict[str, Callable[[], Any]], Callable]:
    """One callable per model: default sessions (``ort-default``) or Engines (``engines``)."""
    import onnxruntime as ort

    runners, engines = {}, []
    for name in THREE:
        path = loading.resolve(name)
        if kind == "ort-default" and name != HIGH:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            sess = ort.InferenceSession(
                str(next(path.glob("*.onnx"))), so, providers=["CPUExecutionProvider"]
            )
            runners[name] = lambda s=sess, f=FEEDS[name]: s.run(None, f)
            engines.append(sess)
        else:
            e = Engine.open(path, None, BackendOptions(threads=cores))
            runners[name] = lambda e=e, f=FEEDS[name]: e.run(f)
            engines.append(e)
    return runners, lambda: [getattr(e, "close", lambda: None)() for e in engines]


def rounds_threads(runners: dict[str, Callable[[], Any]], rounds: int) -> list[float]:
    """ms of each round: each model in its own thread, a barrier between rounds."""
    barrier = threading.Barrier(len(runners) + 1)

    def loop(fn: Callable[[], Any]) -> None:
        for _ in range(rounds + 2):
            barrier.wait()
            fn()
            barrier.wait()

    threads = [threading.Thread(target=loop, args=(fn,)) for fn in runners.values()]
    for t in threads:
        t.start()
    for _ in range(2):  # warm-up rounds
        barrier.wait()
        barrier.wait()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        barrier.wait()
        barrier.wait()
        times.append((time.perf_counter() - t0) * 1e3)
    for t in threads:
        t.join()
    return times


def rounds_sequential(runners: dict[str, Callable[[], Any]], rounds: int) -> list[float]:
    """ms of each round, one thread calling the models in turn."""
    for fn in runners.values():
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for fn in runners.values():
            fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def rounds_scheduler(sched: Scheduler, rounds: int) -> list[float]:
    """ms of each round through the scheduler: three requests submitted, all awaited."""
    for n in THREE:
        sched.run(n, FEEDS[n])
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        futs = [sched.submit(n, FEEDS[n]) for n in THREE]
        for f in futs:
            f.result()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


# ---------------------------------------------------------------- main


def med(xs: list[float]) -> float:
    """Median."""
    return float(statistics.median(xs))


def main() -> None:
    """Run (a) and (b) ``--reps`` times, alternating configurations, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--high", type=int, default=200, help="high-priority requests a phase")
    parser.add_argument("--period-ms", type=float, default=15.0)
    parser.add_argument("--low-deadline-ms", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=40, help="rounds per (b) measurement")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--parts", default="a,b", help="a: priority under load, b: in turn")
    args = parser.parse_args()
    cores = usable_cpus()
    print(machine_line(machine_info()))
    for n in THREE:
        FEEDS[n] = feeds_of(n)
    splits = [(1, cores), (cores, 1)] if cores > 1 else [(1, 1)]
    a: dict[str, list[dict[str, Any]]] = {}
    b: dict[str, list[list[float]]] = {}
    alone: dict[str, list[tuple[float, float]]] = {}
    for rep in range(args.reps):
        print(f"repetition {rep + 1}/{args.reps}", flush=True)
        # (a)
        for w, t in splits:
            label = f"{w}x{t}"
            sched = new_scheduler(w, t, (HIGH, *LOW))
            a.setdefault(f"unloaded {label}", []).append(
                high_phase(sched, args.high, args.period_ms, False, args.low_deadline_ms))
            with sched.cache.acquire(LOW[0]) as engine:  # the scheduler's own engine, alone
                alone.setdefault(f"{LOW[0]} {label}", []).append(
                    alone_ms(lambda e=engine: e.run(FEEDS[LOW[0]])))
            a.setdefault(f"scheduler {label}", []).append(
                high_phase(sched, args.high, args.period_ms, True, args.low_deadline_ms))
            a[f"scheduler {label}"][-1]["stats"] = sched.stats()["models"]
            sched.close()
            sched = new_scheduler(w, t, (HIGH, *LOW), preempt=True)
            a.setdefault(f"preempt {label}", []).append(
                high_phase(sched, args.high, args.period_ms, True, args.low_deadline_ms))
            a[f"preempt {label}"][-1]["stats"] = sched.stats()["models"]
            sched.close()
            fifo = Fifo((HIGH, *LOW), w, t)
            a.setdefault(f"fifo {label}", []).append(
                high_phase(fifo, args.high, args.period_ms, True, args.low_deadline_ms))
            fifo.close()
        if "b" not in args.parts:
            continue
        # (b)
        for kind in ("ort-default", "engines"):
            runners, close = naive_runners(kind, cores)
            if kind == "engines":  # standalone: each Engine (every core) alone
                for n, fn in runners.items():
                    alone.setdefault(f"{n} alone", []).append(alone_ms(fn))
            b.setdefault(f"naive: {kind}, concurrent threads", []).append(
                rounds_threads(runners, args.rounds))
            if kind == "engines":
                b.setdefault("one thread, Engines in turn", []).append(
                    rounds_sequential(runners, args.rounds))
            close()
        for w, t in splits:
            sched = new_scheduler(w, t, THREE)
            b.setdefault(f"scheduler {w}x{t}", []).append(rounds_scheduler(sched, args.rounds))
            sched.close()
    report(args, a, b, alone, splits)


def report(args: argparse.Namespace, a: dict, b: dict, alone: dict, splits: list) -> None:
    """Print the two tables (medians over repetitions) and write the JSON."""
    longest = LOW[0]
    print(f"\n(a) {HIGH} high-priority p99 latency (ms) under saturating low-priority load "
          f"({', '.join(LOW)}, 2 closed-loop clients each, deadline {args.low_deadline_ms:.0f} "
          f"ms); {args.high} requests, one every ~{args.period_ms:.0f} ms; medians of "
          f"{args.reps} repetitions")
    print(f"{'configuration':<18}{'p50':>8}{'p99':>8}{'bound p50':>11}{'bound p99':>11}"
          f"{'p99/bound':>11}{'late runs':>11}{'low ran/rej/skip':>20}{'other load':>12}")
    out_a = {}
    for w, t in splits:
        label = f"{w}x{t}"
        unl = med([r["p99"] for r in a[f"unloaded {label}"]])
        lo50 = med([x[0] for x in alone[f"{longest} {label}"]])
        lo99 = med([x[1] for x in alone[f"{longest} {label}"]])
        for kind in ("unloaded", "scheduler", "preempt", "fifo"):
            rows = a[f"{kind} {label}"]
            p99 = med([r["p99"] for r in rows])
            low = {k: sum(r["low"][k] for r in rows) for k in ("ran", "rejected", "skipped")}
            late = sum(r["late_runs"] for r in rows)
            print(f"{kind + ' ' + label:<18}{med([r['p50'] for r in rows]):8.1f}{p99:8.1f}"
                  f"{unl + lo50:11.1f}{unl + lo99:11.1f}{p99 / (unl + lo50):10.2f}x"
                  f"{late:11d}{'/'.join(map(str, low.values())):>20}"
                  f"{med([r['other_load'] for r in rows]):12.0%}")
            out_a[f"{kind} {label}"] = {"p99_ms": p99, "late_runs": late, "low": low,
                                        "bound_p50_ms": unl + lo50, "bound_p99_ms": unl + lo99}
    print(f"bound = unloaded p99 (same configuration) + one {longest} run alone (p50 | p99); "
          "late runs: runs that started after their request's deadline (all repetitions); "
          "preempt: the scheduler with SchedulerConfig(preempt=True).")
    if "b" not in args.parts:
        if args.json:
            args.json.write_text(json.dumps({"machine": machine_info(), "a": out_a,
                                             "raw": {"a": a, "alone": alone}},
                                            indent=1, default=str))
        return

    s = sum(med([x[0] for x in alone[f"{n} alone"]]) for n in THREE)
    parts = ", ".join(f"{n} {med([x[0] for x in alone[f'{n} alone']]):.1f}" for n in THREE)
    print(f"\n(b) three models in turn: ms a round (one request each; p50 and mean of "
          f"{args.rounds} rounds); standalone p50s "
          f"({usable_cpus()} threads): {parts}; sum {s:.1f} ms; medians of {args.reps}")
    print(f"{'configuration':<42}{'p50':>8}{'mean':>8}{'p50 / sum':>11}{'mean / sum':>12}"
          f"{'target':>9}")
    out_b = {}
    for label, reps in b.items():
        m = med([med(x) for x in reps])
        mean = med([statistics.fmean(x) for x in reps])
        verdict = ("PASS" if m / s <= TARGET_B else "FAIL") if label.startswith("sched") else ""
        print(f"{label:<42}{m:8.1f}{mean:8.1f}{m / s:10.2f}x{mean / s:11.2f}x{verdict:>9}")
        out_b[label] = {"p50_ms": m, "mean_ms": mean, "ratio_p50": m / s, "ratio_mean": mean / s}
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": machine_info(), "a": out_a, "b": out_b, "sum_alone_ms": s,
             "raw": {"a": a, "b": b, "alone": alone}}, indent=1, default=str))


if __name__ == "__main__":
    main()
