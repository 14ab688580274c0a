"""Scheduler.engine: an Engine-like proxy, so Predictor and StreamRunner run on the scheduler
unchanged. Real onnxruntime engines on a tiny classifier built in code."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from onnx_builders import tiny_classifier

from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.pipeline.sources import FileSource
from edgeinfer.pipeline.streams import StreamRunner
from edgeinfer.runtime.engine import Engine
from edgeinfer.runtime.model_cache import ModelSpec, engine_loader
from edgeinfer.runtime.scheduler import (
    DeadlineMissedError,
    RejectedError,
    ScheduledEngine,
    Scheduler,
    SchedulerConfig,
)


@pytest.fixture
def classifier(tmp_path):
    return tiny_classifier(tmp_path).path


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_predictor_on_the_proxy_matches_a_plain_engine(classifier):
    with Engine.open(classifier) as engine, Scheduler(SchedulerConfig(workers=1)) as sch:
        sch.register("tiny", classifier)
        proxy = sch.engine("tiny")
        assert isinstance(proxy, ScheduledEngine)
        assert [s.name for s in proxy.inputs] == [s.name for s in engine.inputs]
        assert [s.name for s in proxy.outputs] == [s.name for s in engine.outputs]
        ours, ref = Predictor(proxy), Predictor(engine)
        for seed in range(3):
            a, b = ours.predict(_image(seed)).result, ref.predict(_image(seed)).result
            assert [r["label"] for r in a] == [r["label"] for r in b]
            np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b],
                                       rtol=1e-5)
        assert sch.stats()["models"]["tiny"]["completed"] == 3  # every run went through it


def test_the_proxy_submits_with_its_priority(classifier):
    """The worker is held by a first run; a low- and a high-priority proxy then queue one run
    each (low first): the high one must run first."""
    gate, order = threading.Event(), []

    class Gated:
        def __init__(self, inner):
            self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs

        def run(self, feeds):
            tag = int(feeds["x"].flat[0])
            if tag == 9:
                gate.wait(10)
            order.append(tag)
            return self.inner.run(feeds)

        def close(self):
            self.inner.close()

    def loader(spec: ModelSpec, options):
        return Gated(engine_loader(spec, options))

    x = {t: {"x": np.full((1, 3, 32, 32), t, np.float32)} for t in (9, 1, 2)}
    with Scheduler(SchedulerConfig(workers=1), loader=loader) as sch:
        sch.register("tiny", classifier)
        blocker = sch.engine("tiny").submit(x[9])
        deadline = time.monotonic() + 10
        while sch.stats()["models"]["tiny"]["in_use"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        low = sch.engine("tiny", priority=0).submit(x[1])
        high = sch.engine("tiny", priority=5).submit(x[2])
        gate.set()
        for f in (blocker, low, high):
            f.result(10)
    assert order == [9, 2, 1]


def test_a_deadline_that_cannot_be_met_raises_from_run(classifier):
    with Scheduler(SchedulerConfig(workers=1)) as sch:
        sch.register("tiny", classifier, expected_run_ms=50.0)
        proxy = sch.engine("tiny", deadline_ms=1.0)
        with pytest.raises((RejectedError, DeadlineMissedError)):
            proxy.run({"x": np.zeros((1, 3, 32, 32), np.float32)})
        assert sch.engine("tiny").run({"x": np.zeros((1, 3, 32, 32), np.float32)})[0].shape \
            == (1, 2)


def test_unknown_model_and_bad_deadline_are_one_line_errors(classifier):
    with Scheduler(SchedulerConfig(workers=1)) as sch:
        sch.register("tiny", classifier)
        with pytest.raises(EdgeInferError, match="unknown model 'nope'.*register it first"):
            sch.engine("nope")
        with pytest.raises(EdgeInferError, match="bad deadline_ms"):
            sch.engine("tiny", deadline_ms=0)


def test_a_stream_runner_runs_unchanged_on_the_scheduler(classifier, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:02d}.png"), _image(i))
    with Scheduler(SchedulerConfig(workers=1)) as sch:
        sch.register("tiny", classifier)
        stats = StreamRunner(FileSource(folder), Predictor(sch.engine("tiny", priority=1))).run()
        assert stats.processed == 6 and stats.error is None
        assert sch.stats()["models"]["tiny"]["completed"] == 6
