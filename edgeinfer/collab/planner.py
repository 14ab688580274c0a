"""Pick the cut: for a bandwidth and round-trip time, the lowest end-to-end latency (or the
least device time, an energy proxy), both extremes included; re-plan when the link changes.

The model of one request is Neurosurgeon's: ``head (device) + RTT + bytes up / bandwidth +
tail (node) + bytes down / bandwidth``; "all on the device" has no transfer at all. The
bandwidth comes from the user or from an EWMA of measured transfers.

One candidate is not a cut of the graph: "send a JPEG of the input" (``where == "jpeg"``,
cut key ``@jpeg``, position -1), whose head is the device's resize + JPEG encode and whose
tail is the node's decode + preprocess + whole model. It is priced by the same formula, so it
wins exactly when its predicted total is the lowest; it is lossy (see docs/benchmarks/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeinfer.collab.profile import JPEG_CUT, CutProfile
from edgeinfer.errors import EdgeInferError

__all__ = ["BandwidthEstimator", "Plan", "Replanner", "estimate_s", "merge", "plan"]


@dataclass(frozen=True)
class Plan:
    """The chosen cut and its predicted breakdown (seconds)."""

    cut: CutProfile
    head_s: float
    transfer_s: float
    tail_s: float
    bandwidth_bps: float
    rtt_s: float
    objective: str

    @property
    def total_s(self) -> float:
        """Predicted end-to-end latency."""
        return self.head_s + self.transfer_s + self.tail_s

    @property
    def where(self) -> str:
        """``device`` (nothing sent), ``node`` (the input tensor sent), ``jpeg`` (a JPEG of the
        input sent, the node runs everything) or ``split``."""
        if self.cut.tensors == JPEG_CUT:
            return "jpeg"
        if self.cut.tail_s == 0 and self.transfer_s == 0:
            return "device"
        return "node" if self.cut.position == 0 else "split"


def estimate_s(
    cut: CutProfile, bandwidth_bps: float, rtt_s: float, last: bool
) -> tuple[float, ...]:
    """(head, transfer, tail) predicted for one cut; ``last`` marks "all on the device"."""
    if last:
        return cut.head_s, 0.0, 0.0
    transfer = rtt_s + 8.0 * (cut.sent_bytes + cut.out_bytes) / bandwidth_bps
    return cut.head_s, transfer, cut.tail_s


def merge(device: Sequence[CutProfile], node: Sequence[CutProfile]) -> list[CutProfile]:
    """Device profiles (head, bytes) joined with the node's (tail, answer bytes) by cut."""
    tails = {p.key: p for p in node}
    out = []
    for d in device:
        n = tails.get(d.key)
        if n is None:
            continue
        out.append(
            CutProfile(d.tensors, d.position, d.raw_bytes, d.sent_bytes, d.head_s, n.tail_s,
                       n.out_bytes)
        )
    if not out:
        raise EdgeInferError(
            "the node's profile shares no cut with the device's: both sides must load the same "
            "model file (compare their sha256)"
        )
    return out


def plan(
    cuts: Sequence[CutProfile],
    bandwidth_bps: float,
    rtt_s: float = 0.0,
    objective: str = "latency",
) -> Plan:
    """The best cut for the link. ``cuts`` run from "send the input" to "all on the device"
    (the last one). ``objective``: ``latency`` or ``device`` (least device time, ties broken
    by latency)."""
    if not cuts:
        raise EdgeInferError("no cuts to plan over: profile the model first")
    if bandwidth_bps <= 0:
        raise EdgeInferError(f"bandwidth {bandwidth_bps} bit/s: it must be positive")
    if objective not in ("latency", "device"):
        raise EdgeInferError(f"unknown objective '{objective}': choose latency or device")
    last = max(range(len(cuts)), key=lambda k: cuts[k].position)
    best: tuple[tuple[float, float], int, tuple[float, ...]] | None = None
    for k, cut in enumerate(cuts):
        parts = estimate_s(cut, bandwidth_bps, rtt_s, k == last)
        total = sum(parts)
        score = (total, 0.0) if objective == "latency" else (parts[0], total)
        if best is None or score < best[0]:
            best = (score, k, parts)
    assert best is not None
    _, k, (head, transfer, tail) = best
    return Plan(cuts[k], head, transfer, tail, bandwidth_bps, rtt_s, objective)


class BandwidthEstimator:
    """An EWMA of measured throughput: ``observe(bytes, seconds on the wire)``."""

    def __init__(self, initial_bps: float | None = None, alpha: float = 0.3) -> None:
        self.bps = initial_bps
        self.alpha = alpha

    def observe(self, nbytes: int, seconds: float) -> float | None:
        """Fold one transfer in; tiny transfers (< 1 KiB) say more about latency, skip them."""
        if nbytes >= 1024 and seconds > 0:
            rate = 8.0 * nbytes / seconds
            self.bps = rate if self.bps is None else self.alpha * rate + (1 - self.alpha) * self.bps
        return self.bps


class Replanner:
    """Holds a plan and re-plans when the estimated bandwidth moves by more than ``hysteresis``
    (relative) from the one the plan was made for."""

    def __init__(
        self, cuts: Sequence[CutProfile], estimator: BandwidthEstimator, rtt_s: float = 0.0,
        objective: str = "latency", hysteresis: float = 0.2,
    ) -> None:
        self.cuts = list(cuts)
        self.estimator = estimator
        self.rtt_s = rtt_s
        self.objective = objective
        self.hysteresis = hysteresis
        self.current: Plan | None = None
        self.replans = 0

    def plan(self) -> Plan:
        """The current plan, re-made if the bandwidth moved past the hysteresis."""
        bps = self.estimator.bps
        if bps is None:
            raise EdgeInferError("no bandwidth known yet: probe the link or pass --bandwidth")
        cur = self.current
        if cur is None or abs(bps - cur.bandwidth_bps) > self.hysteresis * cur.bandwidth_bps:
            self.current = plan(self.cuts, bps, self.rtt_s, self.objective)
            self.replans += cur is not None
        return self.current
