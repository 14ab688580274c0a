"""Joint inference: a small model answers on the device; the samples it is unsure of go to a
bigger model on the node (hard-example offload, as KubeEdge Sedna offers only on Kubernetes).

Confidence is the top-1 probability or the margin between the top two. The node is the same
offload endpoint that serves split tails (:func:`edgeinfer.collab.tails.router`), asked to
run its whole model (the "cut" is the input). When the node is down, slow or failing the device
keeps its own answer: the HTTP call has a connect timeout and a read timeout that fit the
``budget_s`` (100 ms by default) and a circuit breaker then skips the node for ``cooldown_s``,
so a dead node costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.compress import Compression, decode, encode
from edgeinfer.collab.link import Link, throttled_transport
from edgeinfer.errors import EdgeInferError

__all__ = [
    "CircuitBreaker",
    "JointClassifier",
    "JointResult",
    "confidence",
    "pick_threshold",
    "softmax",
]

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, C] (or [C]) logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confidence(probs: np.ndarray, metric: str = "margin") -> np.ndarray:
    """Per-row confidence of class probabilities: ``top1`` or ``margin`` (top1 - top2)."""
    if metric not in ("top1", "margin"):
        raise EdgeInferError(f"unknown confidence metric '{metric}': choose top1 or margin")
    top = np.sort(probs, axis=-1)
    return top[..., -1] if metric == "top1" else top[..., -1] - top[..., -2]


class CircuitBreaker:
    """Open after ``failures`` consecutive failures; stays open ``cooldown_s``, then lets one
    request through (half-open) and closes on its success."""

    def __init__(self, failures: int = 1, cooldown_s: float = 5.0) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.open_until = 0.0

    def allow(self) -> bool:
        """Whether the node may be tried now."""
        return time.monotonic() >= self.open_until

    def success(self) -> None:
        """A call went through: close."""
        self.failures = 0

    def failure(self) -> None:
        """A call failed: open once the threshold is reached."""
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = time.monotonic() + self.cooldown_s


@dataclass(frozen=True)
class JointResult:
    """One answer: probabilities, class, who answered, the device's confidence, latency."""

    probs: np.ndarray
    label: int
    where: str  # device | node | device (node down)
    confidence: float
    latency_s: float


class JointClassifier:
    """Small model on the device, big model on the node for unsure samples.

    ``small`` is an ONNX file / artifact (run in an Engine with ``threads``) or any callable
    feeds -> logits. ``budget_s`` bounds the node call; a failure answers locally. ``token``
    (default: ``$EDGEINFER_TOKEN``) is sent as a bearer token.
    """

    def __init__(
        self,
        small: str | Path | Callable[[Mapping[str, np.ndarray]], np.ndarray],
        node_url: str,
        name: str,
        *,
        threshold: float = 0.5,
        metric: str = "margin",
        budget_s: float = 0.1,
        cooldown_s: float = 5.0,
        link: Link | None = None,
        threads: int = 1,
        token: str | None = None,
    ) -> None:
        httpx = require("httpx", "collab", "joint inference")
        token = token if token is not None else os.environ.get("EDGEINFER_TOKEN")
        confidence(np.ones((1, 2)) / 2, metric)  # validates the metric
        self._httpx = httpx
        self.small = small if callable(small) else self._engine(small, threads)
        self.url = f"{node_url.rstrip('/')}/{name}/infer"
        self.threshold = threshold
        self.metric = metric
        # connect fails fast on a dead host; the read timeout keeps the whole answer in budget
        self.http = httpx.Client(
            transport=throttled_transport(link or Link()),
            timeout=httpx.Timeout(budget_s * 0.8, connect=min(0.05, budget_s / 2)),
            headers={"authorization": f"Bearer {token}"} if token else {},
        )
        self.breaker = CircuitBreaker(1, cooldown_s)
        self.sent = 0
        self.fallbacks = 0

    @staticmethod
    def _engine(path: str | Path, threads: int) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
        from edgeinfer.runtime.backends import BackendOptions
        from edgeinfer.runtime.engine import Engine

        engine = Engine.open(path, "ort", BackendOptions(threads=threads))
        return lambda feeds: engine.run(dict(feeds))[0]

    def _ask_node(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
        if not self.breaker.allow():
            return None
        try:
            r = self.http.post(self.url, content=encode(dict(feeds), Compression("raw", "lz4")))
            if r.status_code != 200:
                raise EdgeInferError(f"node answered {r.status_code}: {r.text[:200]}")
            out = decode(r.content)
        except (self._httpx.HTTPError, EdgeInferError) as exc:
            log.warning("node unavailable (%s): answering on the device", exc)
            self.breaker.failure()
            self.fallbacks += 1
            return None
        self.breaker.success()
        return next(iter(out.values()))

    def classify(self, feeds: Mapping[str, np.ndarray]) -> JointResult:
        """Answer one sample (batch 1): locally when confident, else from the node, else
        locally after all."""
        t0 = time.perf_counter()
        probs = softmax(np.asarray(self.small(feeds), np.float64).reshape(-1))
        conf = float(confidence(probs, self.metric))
        where = "device"
        if conf < self.threshold:
            self.sent += 1
            big = self._ask_node(feeds)
            if big is not None:
                probs, where = softmax(np.asarray(big, np.float64).reshape(-1)), "node"
            else:
                where = "device (node down)"
        return JointResult(probs, int(probs.argmax()), where, conf, time.perf_counter() - t0)

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def pick_threshold(
    small_probs: np.ndarray, max_sent: float = 0.3, metric: str = "margin"
) -> float:
    """The confidence threshold that sends at most ``max_sent`` of these samples (a
    calibration set, never the test set) to the node."""
    if not 0.0 <= max_sent <= 1.0:
        raise EdgeInferError(f"max_sent {max_sent}: give a fraction between 0 and 1")
    conf = np.sort(confidence(small_probs, metric))
    k = int(np.floor(max_sent * len(conf)))
    return float(conf[k]) if k < len(conf) else float("inf")
