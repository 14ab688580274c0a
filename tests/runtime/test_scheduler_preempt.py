"""Preemption: with ``SchedulerConfig(preempt=True)`` a high-priority request that finds the
worker busy aborts the low-priority run (onnxruntime ``RunOptions.terminate``); the low one is
queued again and still completes with the right outputs. Real onnxruntime sessions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_builders import slow_model

from edgeinfer.runtime.scheduler import Scheduler, SchedulerConfig

SIZE = 384


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 chained 384x384 MatMuls: a few hundred ms a run, long enough to be caught running."""
    path = tmp_path_factory.mktemp("preempt") / "slow.onnx"
    onnx.save(slow_model(SIZE, layers=300), str(path))
    return path


def _x(seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((1, SIZE)).astype(np.float32)}


def _expected(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _until_running(sch: Scheduler, model: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not sch._running[model]:  # the worker has taken it and is inside run()
        assert time.monotonic() < deadline, "the low-priority request never started"
        time.sleep(0.002)


@pytest.mark.parametrize("preempt", [True, False])
def test_high_priority_preempts_the_running_low_one(slow: Path, preempt: bool) -> None:
    config = SchedulerConfig(workers=1, threads=1, preempt=preempt)
    with Scheduler(config) as sch:
        sch.register("low", slow)
        sch.register("high", slow)
        sch.run("low", _x(0))  # loaded and measured: both share nothing but the worker
        sch.run("high", _x(0))
        done: list[str] = []
        low = sch.submit("low", _x(1), priority=0)
        low.add_done_callback(lambda _: done.append("low"))
        _until_running(sch, "low")
        time.sleep(0.02)  # well inside the low run (hundreds of ms)
        high = sch.submit("high", _x(2), priority=5)
        high.add_done_callback(lambda _: done.append("high"))
        out_high, out_low = high.result(60), low.result(60)
        stats = sch.stats()["models"]
    np.testing.assert_allclose(out_low[0], _expected(slow, _x(1)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out_high[0], _expected(slow, _x(2)), rtol=1e-4, atol=1e-4)
    if preempt:
        assert done == ["high", "low"] and stats["low"]["preempted"] == 1
        assert stats["low"]["completed"] == 2 and stats["low"]["failed"] == 0
    else:
        assert done == ["low", "high"] and stats["low"]["preempted"] == 0


def test_equal_or_lower_priority_never_preempts(slow: Path) -> None:
    with Scheduler(SchedulerConfig(workers=1, threads=1, preempt=True, aging_s=0)) as sch:
        sch.register("a", slow)
        sch.run("a", _x(0))
        first = sch.submit("a", _x(1), priority=3)
        _until_running(sch, "a")
        same = sch.submit("a", _x(2), priority=3)
        lower = sch.submit("a", _x(3), priority=1)
        for f in (first, same, lower):
            f.result(60)
        assert sch.stats()["models"]["a"]["preempted"] == 0


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_engine_run_cancel_aborts_and_is_ignored_where_a_backend_cannot(slow: Path,
                                                                       backend: str) -> None:
    import threading

    from edgeinfer.loading import load
    from edgeinfer.runtime.backends import BackendOptions
    from edgeinfer.runtime.cancel import CancelToken, RunCancelled
    from edgeinfer.runtime.engine import Engine

    pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    engine = Engine(load(slow), backend, BackendOptions(threads=1))
    assert engine.cancellable
    done = CancelToken()
    done.cancel()
    with pytest.raises(RunCancelled):  # cancelled before it started: aborts at once
        engine.run(_x(0), cancel=done)
    token = CancelToken()
    timer = threading.Timer(0.02, token.cancel)
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(RunCancelled):
        engine.run(_x(0), cancel=token)
    aborted = time.perf_counter() - t0
    full = time.perf_counter()
    out = engine.run(_x(0), cancel=CancelToken())  # not cancelled: runs to the end
    full = time.perf_counter() - full
    want = _expected(slow, _x(0))  # 300 chained MatMuls: values in the 1e4s, so a scaled atol
    np.testing.assert_allclose(out[0], want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert aborted < full  # stopped part way, not after a whole run
    engine.close()
    ref = Engine(load(slow), "reference")
    assert not ref.cancellable
    np.testing.assert_allclose(ref.run(_x(0), cancel=done)[0], want, rtol=1e-3,
                               atol=1e-3 * float(np.abs(want).max()))
    ref.close()
