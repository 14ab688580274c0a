"""The model cache under a memory budget (LRU unloads, measured footprints), the scheduler
under concurrent use, and the scheduler on real engines (reference and onnxruntime)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_builders import conv_model

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.backends import BackendOptions, is_installed
from edgeinfer.runtime.engine import Engine
from edgeinfer.runtime.model_cache import ModelCache, ModelSpec
from edgeinfer.runtime.scheduler import Scheduler, SchedulerConfig


class Sized:
    """A fake model that adds ``size`` to a fake RSS while loaded and checks it is never run
    after close."""

    def __init__(self, name: str, size: int, rss: list[int], gate: threading.Event | None = None,
                 started: threading.Event | None = None):
        self.name, self.size, self.rss, self.gate, self.started = name, size, rss, gate, started
        self.closed = False
        self.runs = 0
        rss[0] += size

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.closed:
            raise RuntimeError(f"{self.name} ran after close")
        if self.gate is not None and self.name == "a":
            if self.started is not None:
                self.started.set()
            self.gate.wait(30)
        self.runs += 1
        return [feeds["x"] + 1]

    def close(self) -> None:
        self.closed = True
        self.rss[0] -= self.size


def _cache(budget: int, sizes: dict[str, int], declared: bool = False):
    rss = [1000]
    live: dict[str, Sized] = {}

    def loader(spec: ModelSpec, options: BackendOptions) -> Sized:
        live[spec.name] = Sized(spec.name, sizes[spec.name], rss)
        return live[spec.name]

    cache = ModelCache(budget, loader=loader, measure=lambda: rss[0])
    for name, size in sizes.items():
        cache.add(ModelSpec(name, f"/nonexistent/{name}.onnx",
                            footprint_bytes=size if declared else None))
    return cache, live, rss


def _use(cache: ModelCache, name: str) -> None:
    with cache.acquire(name) as model:
        model.run({"x": np.zeros(1)})


def test_lru_unloads_the_least_recently_used():
    cache, live, _ = _cache(100, {"a": 40, "b": 40, "c": 40}, declared=True)
    _use(cache, "a")
    _use(cache, "b")
    _use(cache, "a")  # a is now the most recently used
    _use(cache, "c")  # needs room: b goes, not a
    assert cache.loaded() == ["a", "c"]
    assert live["b"].closed and not live["a"].closed
    stats = cache.stats()
    assert stats["b"]["unloads"] == 1 and stats["a"]["unloads"] == 0
    assert cache.used_bytes() == 80


def test_measured_footprint_drives_unloads():
    # Nothing declared and no file on disk: the prior is 0, so only measurement can show that
    # two 60-byte models do not fit in 100.
    cache, live, rss = _cache(100, {"a": 60, "b": 60})
    _use(cache, "a")
    assert cache.stats()["a"]["measured_bytes"] == 60
    _use(cache, "b")  # measured after its load: over budget, so a (idle) is unloaded
    assert cache.loaded() == ["b"] and live["a"].closed
    _use(cache, "a")  # a's footprint is known now: b is unloaded *before* a loads
    assert cache.loaded() == ["a"]
    assert rss[0] == 1060  # one model resident at a time
    assert cache.stats()["a"]["loads"] == 2 and cache.stats()["b"]["unloads"] == 1


def test_model_over_the_budget_is_an_error():
    cache, _, _ = _cache(100, {"big": 150}, declared=True)
    with pytest.raises(EdgeInferError, match="over the memory budget"):
        cache.acquire("big")


def test_a_model_in_use_is_never_unloaded():
    gate, started = threading.Event(), threading.Event()
    rss = [0]
    live: dict[str, Sized] = {}

    def loader(spec: ModelSpec, options: BackendOptions) -> Sized:
        live[spec.name] = Sized(spec.name, 80, rss, gate, started)
        return live[spec.name]

    sched = Scheduler(SchedulerConfig(workers=2, threads=1, memory_budget_bytes=100),
                      loader=loader)
    for name in ("a", "b"):
        sched.register(name, f"/nonexistent/{name}.onnx", footprint_bytes=80)
    try:
        fa = sched.submit("a", {"x": np.zeros(1)})  # holds a worker (and model a) on the gate
        assert started.wait(30)
        fb = sched.submit("b", {"x": np.zeros(1)})  # needs a's memory: must wait for a
        time.sleep(0.1)  # time for the second worker to (wrongly) unload a and load b
        assert not fb.done() and "b" not in live and not live["a"].closed
        gate.set()
        fa.result(30), fb.result(30)
        assert live["a"].closed and live["a"].runs == 1 and live["b"].runs == 1
        assert sched.stats()["loaded"] == ["b"]
    finally:
        gate.set()
        sched.close()


def test_concurrent_submitters_get_their_own_results():
    rss = [0]
    peak = [0]
    lock = threading.Lock()

    def loader(spec: ModelSpec, options: BackendOptions) -> Sized:
        model = Sized(spec.name, 40, rss)
        with lock:
            peak[0] = max(peak[0], rss[0])
        return model

    sched = Scheduler(
        SchedulerConfig(workers=3, threads=1, queue_size=1000, memory_budget_bytes=100),
        loader=loader,
    )
    names = ("a", "b", "c")
    for name in names:
        sched.register(name, f"/nonexistent/{name}.onnx", footprint_bytes=40)
    errors: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        futs = []
        for i in range(60):
            x = np.array([seed * 1000 + i], np.float64)
            futs.append((x, sched.submit(rng.choice(names), {"x": x},
                                         priority=rng.randrange(3))))
        for x, f in futs:
            if f.result(60)[0][0] != x[0] + 1:
                errors.append(f"client {seed}: wrong result for {x[0]}")

    threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stats = sched.stats()
    sched.close()
    assert not errors
    done = sum(m["completed"] for m in stats["models"].values())
    assert done == 8 * 60 and all(m["failed"] == 0 for m in stats["models"].values())
    # 2 of the 3 models fit: every load after the first two unloaded one, and RSS never
    # held three
    assert peak[0] <= 100
    for m in stats["models"].values():
        assert m["loads"] - m["unloads"] == (1 if m["loaded"] else 0)


@pytest.mark.parametrize("backend", ["reference", "ort"])
def test_real_engines(backend, tmp_path: Path):
    if not is_installed(backend):
        pytest.skip(f"{backend} is not installed")
    paths = {}
    for seed in (0, 1):
        paths[seed] = tmp_path / f"m{seed}.onnx"
        onnx.save(conv_model([1, 3, 16, 16], seed=seed), str(paths[seed]))
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with Scheduler(SchedulerConfig(workers=1, threads=1)) as sched:
        for seed, path in paths.items():
            sched.register(f"m{seed}", path, backend=backend)
        futs = {seed: sched.submit(f"m{seed}", {"x": x}, deadline_ms=60_000) for seed in paths}
        outs = {seed: f.result(60)[0] for seed, f in futs.items()}
        stats = sched.stats()
    for seed, path in paths.items():
        with Engine.open(path, backend) as engine:
            np.testing.assert_allclose(outs[seed], engine.run({"x": x})[0], rtol=1e-5)
        m = stats["models"][f"m{seed}"]
        # measured: at least the model file's size (the floor), and the load was timed
        assert m["measured_bytes"] >= path.stat().st_size and m["load_ms"] > 0
    assert not np.allclose(outs[0], outs[1])


def test_explicit_unload_then_reload(tmp_path) -> None:
    """ModelCache.unload frees a loaded model at once; the next use loads it again."""
    from edgeinfer.runtime.backends import BackendOptions
    from edgeinfer.runtime.model_cache import ModelCache, ModelSpec

    path = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 8, 8]), str(path))
    cache = ModelCache(options=BackendOptions(threads=1))
    cache.add(ModelSpec("m", path))
    assert cache.unload("m") is False  # never loaded
    with cache.acquire("m"):
        pass
    assert cache.is_loaded("m")
    assert cache.unload("m") is True
    assert not cache.is_loaded("m")
    with cache.acquire("m") as model:
        assert model.run({"x": np.zeros((1, 3, 8, 8), np.float32)})[0].shape == (1, 2)
    assert cache.stats()["m"]["loads"] == 2
    cache.close()
