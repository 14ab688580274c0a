"""Joint inference: unsure samples go to the node, a dead or hung node answers locally in
under 100 ms, and on real digits the pair is within 1 point of the big model sending <= 30%."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("httpx")

from edgeinfer.collab.joint import (
    CircuitBreaker,
    JointClassifier,
    confidence,
    pick_threshold,
    softmax,
)
from edgeinfer.errors import EdgeInferError


def _small(feeds):
    """A stand-in device model: logits straight from the input (confident when |x0| large)."""
    x = feeds["input"].reshape(-1)
    return np.array([x[0], -x[0]], np.float32)


def test_confidence_and_threshold() -> None:
    p = softmax(np.array([[4.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(p.sum(1), 1.0)
    m = confidence(p, "margin")
    assert m[0] > 0.9 and m[1] == pytest.approx(0.0)
    assert confidence(p, "top1")[1] == pytest.approx(p[1].max())
    probs = softmax(np.random.default_rng(0).standard_normal((100, 10)) * 3)
    t = pick_threshold(probs, 0.3)
    assert (confidence(probs) < t).mean() <= 0.3
    with pytest.raises(EdgeInferError, match="metric"):
        confidence(p, "entropy")


def test_breaker_opens_and_half_opens() -> None:
    b = CircuitBreaker(2, cooldown_s=0.05)
    b.failure()
    assert b.allow()
    b.failure()
    assert not b.allow()
    time.sleep(0.06)
    assert b.allow()


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_node_down_answers_locally_within_100ms(kind: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if kind == "hung":
        listener.listen(16)  # accepts connections, never answers
    else:
        listener.close()
    # a 50 ms budget: the one request that meets the hung node waits 80% of it, and the local
    # answer after it must still come within 100 ms on a loaded box (at a 100 ms budget a
    # loaded box measured 103 ms)
    joint = JointClassifier(_small, f"http://127.0.0.1:{port}/v1/offload", "big",
                            threshold=0.5, budget_s=0.05)
    try:
        unsure = {"input": np.zeros((1, 4), np.float32)}  # margin 0: goes to the node
        results = [joint.classify(unsure) for _ in range(20)]
        assert all(r.where == "device (node down)" for r in results)
        assert max(r.latency_s for r in results) < 0.1, [r.latency_s for r in results]
        assert joint.fallbacks == 1 and joint.sent == 20  # the breaker spared the other 19
        sure = joint.classify({"input": np.full((1, 4), 5.0, np.float32)})
        assert sure.where == "device" and sure.label == 0
    finally:
        joint.close()
        listener.close()


@pytest.mark.slow
def test_joint_on_digits_within_one_point_sending_at_most_30_percent(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    joint_bench = pytest.importorskip("joint")
    res = joint_bench.evaluate(tmp_path, max_sent=0.25)
    acc = res["accuracy"]
    assert acc["small"] < acc["big"] - 0.01  # the big model is worth asking
    assert res["gap_points"] <= 1.0, res
    assert 0 < res["sent_share"] <= 0.30, res
    down = res["node_down"]
    assert down["answered"] == down["requests"] == 100
    assert down["unsure"] > 0 and down["max_ms"] < 100
