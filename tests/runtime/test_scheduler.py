"""The Scheduler's policy: priority, aging, earliest deadline first, admission, bounded queues.

Models here are fakes (a run records its tag and can be held on a gate), so the order of runs
is decided by the scheduler alone; nothing asserts on wall-clock thresholds. A "blocker"
request holds the single worker while the others are queued, so every test sees the whole
queue when it picks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.backends import BackendOptions
from edgeinfer.runtime.model_cache import ModelSpec
from edgeinfer.runtime.scheduler import (
    DeadlineMissedError,
    RejectedError,
    Scheduler,
    SchedulerConfig,
    plan_workers,
)

LONG = 60_000.0  # a deadline (ms) no test reaches


class Fake:
    """A model whose run appends the feed's tag to a shared log; tag -1 waits on the gate."""

    def __init__(self, name: str, log: list, gate: threading.Event, started: threading.Event,
                 on_run: Callable[[str, int], None] | None = None) -> None:
        self.name, self.log, self.gate, self.started = name, log, gate, started
        self.on_run = on_run
        self.closed = False

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.closed:
            raise RuntimeError("run on a closed model")
        tag = int(feeds["x"][0])
        if tag == -1:
            self.started.set()
            if not self.gate.wait(30):
                raise RuntimeError("gate never opened")
        self.log.append((self.name, tag))
        if self.on_run is not None:
            self.on_run(self.name, tag)
        return [feeds["x"] * 2]

    def close(self) -> None:
        self.closed = True


class World:
    """A scheduler over fake models, with the log of runs, loads and closes."""

    def __init__(self, models: tuple[str, ...] = ("a",), expected: dict | None = None,
                 **config) -> None:
        self.log: list[tuple[str, int]] = []
        self.gate, self.started = threading.Event(), threading.Event()
        self.loaded: list[Fake] = []
        self.on_run: Callable[[str, int], None] | None = None
        config.setdefault("workers", 1)
        config.setdefault("threads", 1)
        self.sched = Scheduler(SchedulerConfig(**config), loader=self._load)
        for m in models:
            self.sched.register(
                m, f"/nonexistent/{m}.onnx", expected_run_ms=(expected or {}).get(m)
            )

    def _load(self, spec: ModelSpec, options: BackendOptions) -> Fake:
        fake = Fake(spec.name, self.log, self.gate, self.started,
                    lambda n, t: self.on_run and self.on_run(n, t))
        self.loaded.append(fake)
        return fake

    def submit(self, model: str, tag: int, **kw):
        return self.sched.submit(model, {"x": np.array([tag], np.float32)}, **kw)

    def block(self, model: str = "a"):
        """Hold the only worker on a running request until ``gate`` is set."""
        fut = self.submit(model, -1)
        if not self.started.wait(30):
            raise RuntimeError("the blocker never started")
        return fut

    def tags(self) -> list[int]:
        return [t for _, t in self.log if t != -1]


@pytest.fixture
def world():
    worlds: list[World] = []

    def make(*models: str, expected: dict | None = None, **config) -> World:
        w = World(models or ("a",), expected, **config)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.gate.set()
        w.sched.close()


def test_priority_order(world):
    w = world(aging_s=0)
    w.block()
    futs = [w.submit("a", p, priority=p) for p in (0, 5, 1, 3, 2)]
    w.gate.set()
    for f in futs:
        f.result(30)
    assert w.tags() == [5, 3, 2, 1, 0]


def test_priority_across_models(world):
    w = world("a", "b", aging_s=0)
    w.block("a")
    futs = [w.submit("a", 1, priority=1), w.submit("b", 9, priority=9), w.submit("a", 4,
                                                                                  priority=4)]
    w.gate.set()
    for f in futs:
        f.result(30)
    assert w.tags() == [9, 4, 1]


def test_earliest_deadline_first_within_a_level(world):
    w = world(aging_s=0)
    w.block()
    t0 = time.monotonic()
    futs = [
        w.submit("a", 3, deadline=t0 + 300),
        w.submit("a", 99),  # no deadline: after those that have one
        w.submit("a", 1, deadline=t0 + 100),
        w.submit("a", 2, deadline_ms=200_000),
        w.submit("a", 7, priority=1, deadline=t0 + 900),  # a higher level beats any deadline
    ]
    w.gate.set()
    for f in futs:
        f.result(30)
    assert w.tags() == [7, 1, 2, 3, 99]


def _starve(world, aging_s: float, high_runs: int) -> tuple[bool, int]:
    """A low request under constant high-priority load: three high requests are always queued
    (each high run submits the next). Returns (low ran, high runs before it)."""
    w = world(aging_s=aging_s, queue_size=8)
    stop = threading.Event()

    def refill(name: str, tag: int) -> None:
        if tag == 1 and not stop.is_set() and len(w.log) < high_runs:
            w.submit("a", 1, priority=1)

    w.on_run = refill
    w.block()
    for _ in range(3):
        w.submit("a", 1, priority=1)
    low = w.submit("a", 0, priority=0)
    w.gate.set()
    deadline = time.monotonic() + 30
    while not low.done() and len(w.log) < high_runs and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    ran = 0 in w.tags()
    before = w.tags().index(0) if ran else len(w.tags())
    return ran and before < high_runs - 5, before


def test_aging_lets_low_priority_run_under_constant_high_load(world):
    ran, before = _starve(world, aging_s=0.02, high_runs=5000)
    assert ran, f"the low-priority request never ran ({before} high runs went first)"


def test_without_aging_low_priority_waits_for_the_high_load(world):
    # The control: strict priority (aging_s=0) keeps the low request waiting while high
    # requests are queued, which is what aging is there to prevent.
    ran, before = _starve(world, aging_s=0, high_runs=300)
    assert not ran and before >= 295


def test_past_deadline_requests_never_run(world):
    w = world(admission=False)
    w.block()
    late = [w.submit("a", 10 + i, deadline_ms=20) for i in range(5)]
    past = w.submit("a", 50, deadline=time.monotonic() - 1)  # already late when submitted
    ok = w.submit("a", 60, deadline_ms=LONG)
    time.sleep(0.1)  # every short deadline passes while the worker is held
    w.gate.set()
    assert ok.result(30)[0][0] == 120
    for f in [*late, past]:
        with pytest.raises(DeadlineMissedError):
            f.result(30)
    assert w.tags() == [60]  # executions counted: none of the late ones ran
    s = w.sched.stats()["models"]["a"]
    assert s["skipped"] == 6 and s["completed"] == 2 and s["deadline_misses"] == 0


def test_admission_rejects_a_deadline_already_past(world):
    w = world()
    with pytest.raises(RejectedError) as exc:
        w.submit("a", 1, deadline=time.monotonic() - 0.001)
    assert exc.value.reason == "deadline"
    assert w.sched.stats()["models"]["a"]["rejected_deadline"] == 1
    assert w.tags() == []


def test_admission_counts_the_queue_ahead(world):
    w = world("a", "slow", expected={"slow": 100.0})
    w.block()
    with pytest.raises(RejectedError):  # one run alone takes longer than the deadline
        w.submit("slow", 1, deadline_ms=50)
    w.submit("slow", 2, deadline_ms=LONG)  # admitted
    for i in range(4):
        w.submit("slow", 3 + i, priority=1)
    # Alone it would make 250 ms (a 100 ms run); behind the 4 higher-priority runs it cannot.
    with pytest.raises(RejectedError):
        w.submit("slow", 8, deadline_ms=250)
    # A lower priority is behind everything queued; a higher one jumps the queue.
    w.submit("slow", 9, priority=5, deadline_ms=LONG)
    stats = w.sched.stats()["models"]["slow"]
    assert stats["rejected_deadline"] == 2 and stats["queued"] == 6
    w.gate.set()


def test_hopeless_request_is_skipped_at_dispatch(world):
    w = world("a", "slow", expected={"slow": 10_000.0}, admission=False)
    w.block()
    fut = w.submit("slow", 5, deadline_ms=LONG / 100)  # 600 ms left, a run takes ~10 s
    w.gate.set()
    with pytest.raises(DeadlineMissedError, match="a run takes about"):
        fut.result(30)
    assert 5 not in w.tags()
    assert w.sched.stats()["models"]["slow"]["skipped"] == 1


def test_bounded_queue_rejects_and_counts(world):
    w = world(queue_size=3)
    w.block()
    futs = [w.submit("a", i) for i in range(3)]
    with pytest.raises(RejectedError) as exc:
        w.submit("a", 3)
    assert exc.value.reason == "queue_full"
    assert w.sched.stats()["models"]["a"]["rejected_queue_full"] == 1
    w.gate.set()
    assert [f.result(30)[0][0] for f in futs] == [0, 2, 4]
    w.submit("a", 4).result(30)  # room again once drained


def test_unknown_model_and_bad_arguments(world):
    w = world()
    with pytest.raises(EdgeInferError, match="unknown model"):
        w.submit("nope", 1)
    with pytest.raises(EdgeInferError, match="not both"):
        w.submit("a", 1, deadline=1.0, deadline_ms=5)
    with pytest.raises(EdgeInferError):
        SchedulerConfig(queue_size=0)


def test_model_error_fails_its_future_not_the_worker(world):
    w = world()
    bad = w.sched.submit("a", {"x": np.array([np.nan])})  # int(nan) raises in the fake
    with pytest.raises(ValueError):
        bad.result(30)
    assert w.submit("a", 3).result(30)[0][0] == 6
    assert w.sched.stats()["models"]["a"]["failed"] == 1


def test_close_cancels_or_drains(world):
    w = world()
    w.block()
    queued = [w.submit("a", i) for i in range(3)]
    threading.Timer(0.05, w.gate.set).start()
    w.sched.close(cancel_pending=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RejectedError):
        w.submit("a", 1)
    assert all(f.closed for f in w.loaded)


def test_stats_percentiles_and_counts(world):
    w = world()
    for i in range(20):
        w.submit("a", i).result(30)
    s = w.sched.stats()
    m = s["models"]["a"]
    assert m["completed"] == 20 and m["submitted"] == 20 and m["loads"] == 1
    assert 0 <= m["run_ms_p50"] <= m["run_ms_p99"] and m["wait_ms_p50"] >= 0
    assert s["workers"] == 1 and s["loaded"] == ["a"]


def test_plan_workers_fits_the_cores():
    assert plan_workers(cores=2) == (1, 2)
    assert plan_workers(workers=2, cores=2) == (2, 1)
    assert plan_workers(workers=3, cores=8) == (3, 2)
    w, t = plan_workers(cores=16)
    assert w * t <= 16
