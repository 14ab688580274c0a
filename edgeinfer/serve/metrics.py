"""Prometheus metrics of one node, in its own CollectorRegistry (never the global one, so two
apps in one process, as in the tests, do not collide).

Per-request figures (requests, errors, queue wait, compute time, end-to-end latency) are
counted as requests finish; state that lives elsewhere (model loaded, queue length, stream
fps and drops, uplink bytes and backlog) is read from the node at scrape time by a collector,
so the figures are never stale and nothing polls in the background.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edgeinfer.serve.node import Node

__all__ = ["CONTENT_TYPE", "NodeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: seconds: 0.5 ms to 10 s, fine where edge models live (a few ms)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _NodeCollector(Collector):
    """Reads the node's live state at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Model state and queues, stream fps and drops, uplink bytes and backlog."""
        status = self.node.status()
        loaded = GaugeMetricFamily("edgeinfer_model_loaded", "1 when the model is loaded",
                                   labels=["model", "state"])
        queued = GaugeMetricFamily("edgeinfer_model_queue_length", "requests queued",
                                   labels=["model"])
        for m in status["models"]:
            loaded.add_metric([m["name"], m["state"]], 1.0 if m["state"] == "ready" else 0.0)
            queued.add_metric([m["name"]], float(m["queued"] or 0))
        yield loaded
        yield queued
        fps = GaugeMetricFamily("edgeinfer_stream_fps", "frames per second", labels=["stream"])
        drops = CounterMetricFamily("edgeinfer_stream_drops", "frames dropped",
                                    labels=["stream"])
        frames = CounterMetricFamily("edgeinfer_stream_frames", "frames processed",
                                     labels=["stream"])
        latency = GaugeMetricFamily("edgeinfer_stream_latency_p50_seconds",
                                    "median frame latency", labels=["stream"])
        for name, s in status["streams"].items():
            fps.add_metric([name], float(s.get("fps") or 0.0))
            drops.add_metric([name], float(s.get("drops") or 0))
            frames.add_metric([name], float(s.get("frames") or 0))
            latency.add_metric([name], float(s.get("latency_ms_p50") or 0.0) / 1e3)
        yield from (fps, drops, frames, latency)
        uplink = status["uplink"]
        if uplink is not None:
            sent = CounterMetricFamily("edgeinfer_uplink_bytes", "bytes sent up")
            sent.add_metric([], float(uplink.get("bytes_sent") or 0))
            raw = CounterMetricFamily("edgeinfer_uplink_raw_frame_bytes",
                                      "bytes the raw frames would have cost")
            raw.add_metric([], float(uplink.get("raw_bytes") or 0))
            msgs = CounterMetricFamily("edgeinfer_uplink_messages", "messages sent up")
            msgs.add_metric([], float(uplink.get("messages_sent") or 0))
            backlog = GaugeMetricFamily("edgeinfer_uplink_backlog", "messages in the outbox")
            backlog.add_metric([], float(uplink.get("backlog") or 0))
            connected = GaugeMetricFamily("edgeinfer_uplink_connected", "1 when connected")
            connected.add_metric([], 1.0 if uplink.get("connected") else 0.0)
            resent = CounterMetricFamily("edgeinfer_uplink_resent",
                                         "messages sent again, unacknowledged by the collector")
            resent.add_metric([], float(uplink.get("resent") or 0))
            dropped = CounterMetricFamily("edgeinfer_uplink_dropped",
                                          "messages the outbox ever dropped, by bound",
                                          labels=["reason"])
            for reason in ("full", "expired"):
                dropped.add_metric([reason], float(uplink.get(f"dropped_{reason}") or 0))
            yield from (sent, raw, msgs, backlog, connected, resent, dropped)


def infer_model(path: str) -> str | None:
    """The model name of an infer endpoint's path (``/v1/models/{name}/infer``), else None."""
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["", "v1", "models"] and parts[4] == "infer":
        return parts[3]
    return None


class NodeMetrics:
    """The node's metrics: request counters and histograms plus the live collector."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgeinfer_requests", "inference requests by model and status",
                                ["model", "code"], registry=self.registry)
        self.errors = Counter("edgeinfer_errors", "failed requests by model and reason",
                              ["model", "reason"], registry=self.registry)
        self.queue_wait = Histogram("edgeinfer_queue_wait_seconds", "time queued before a run",
                                    ["model"], buckets=BUCKETS, registry=self.registry)
        self.compute = Histogram("edgeinfer_compute_seconds", "model run time", ["model"],
                                 buckets=BUCKETS, registry=self.registry)
        self.latency = Histogram("edgeinfer_request_seconds",
                                 "request time in the node, decode to response", ["model"],
                                 buckets=BUCKETS, registry=self.registry)
        self.refused = Counter("edgeinfer_refused_requests",
                               "requests refused by the guard before the app, by status and why",
                               ["code", "reason"], registry=self.registry)
        self.disconnects = Counter("edgeinfer_client_disconnects",
                                   "clients that went away before their request body was in",
                                   registry=self.registry)
        self.registry.register(_NodeCollector(node))
        self._node = node

    def observe(self, model: str, code: int, reason: str | None = None) -> None:
        """Count one finished request (``reason``: why it failed, when it did)."""
        self.requests.labels(model, str(code)).inc()
        if reason is not None:
            self.errors.labels(model, reason).inc()

    def refused_request(self, path: str, code: int, reason: str) -> None:
        """Count a request the guard refused; one for an infer endpoint counts for its model
        too (so a 413 is a 413 in ``edgeinfer_requests_total``, however the body came)."""
        self.refused.labels(str(code), reason).inc()
        model = infer_model(path)
        if model is not None:
            known = model in self._node.model_names()
            self.observe(model if known else "_unknown", code, reason)

    def client_went_away(self, path: str) -> None:
        """Count a client that disconnected before its body was in."""
        self.disconnects.inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
