"""A simulated network link inside our own HTTP transport: token-bucket bandwidth plus delay.

Loopback moves gigabytes per second, so a split planner tested over it always offloads
everything (anchors.md). ``tc netem`` needs root and a network namespace; instead every byte
the offload client sends or receives passes through a token bucket per direction (full duplex,
like a real link), and each request pays a fixed round-trip delay. The throttle wraps an httpx
transport, so the rest of the client is the same code that talks to a real node.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError

__all__ = ["Link", "TokenBucket", "parse_rate", "throttled_transport"]

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """``20mbit``, ``500kbit``, ``1.5Mbps``, ``100`` (bit/s) -> bits per second."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]?)(bit|bps|b/s)?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise EdgeInferError(
            f"bad bandwidth '{text}': write a positive rate like 20mbit, 500kbit or 1.5mbps"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


class TokenBucket:
    """Bytes leave at ``rate_bps``/8 per second; ``burst`` bytes may go at once. Thread-safe:
    concurrent senders share the link as they would a real one."""

    def __init__(self, rate_bps: float, burst: int = 1500) -> None:
        self.rate = rate_bps / 8.0
        self.burst = burst
        self._tokens = float(burst)
        self._t = time.perf_counter()
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> float:
        """Block until ``nbytes`` have left; returns the seconds waited."""
        with self._lock:
            now = time.perf_counter()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            if wait:
                # the debt is paid by sleeping; the bucket restarts empty at the end of it
                self._t = now + wait
                self._tokens = 0.0
        if wait:
            time.sleep(wait)
        return wait


@dataclass(frozen=True)
class Link:
    """A link to simulate: bandwidth up and down (bit/s; None = unthrottled) and round-trip."""

    up_bps: float | None = None
    down_bps: float | None = None
    rtt_s: float = 0.0

    @classmethod
    def parse(cls, rate: str | None, rtt_ms: float = 0.0) -> Link:
        """A symmetric link from ``20mbit`` (or None for no throttle) and an RTT in ms."""
        bps = parse_rate(rate) if rate else None
        return cls(bps, bps, rtt_ms / 1000.0)

    def transfer_s(self, up_bytes: int, down_bytes: int = 0) -> float:
        """What one request/response should take on this link (the planner's model)."""
        t = self.rtt_s
        if self.up_bps:
            t += up_bytes * 8 / self.up_bps
        if self.down_bps:
            t += down_bytes * 8 / self.down_bps
        return t


@cache
def _transport_class() -> type:
    httpx = require("httpx", "collab", "the split/joint transport")

    class ThrottledTransport(httpx.BaseTransport):
        """An httpx transport that sends through a :class:`Link`: half the RTT and the upload
        bucket before the request, the download bucket and the other half after the response."""

        def __init__(self, link: Link, inner: httpx.BaseTransport | None = None) -> None:
            self.link = link
            self.inner = inner or httpx.HTTPTransport()
            self.up = TokenBucket(link.up_bps) if link.up_bps else None
            self.down = TokenBucket(link.down_bps) if link.down_bps else None

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            """Delay and throttle, then hand the request to the inner transport."""
            body = request.read()
            if self.link.rtt_s:
                time.sleep(self.link.rtt_s / 2)
            if self.up:
                self.up.take(len(body) + 200)  # request line and headers, roughly
            response = self.inner.handle_request(request)
            content = response.read()
            if self.down:
                self.down.take(len(content) + 200)
            if self.link.rtt_s:
                time.sleep(self.link.rtt_s / 2)
            headers = [
                (k, v)
                for k, v in response.headers.items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
            return httpx.Response(
                response.status_code, headers=headers, content=content, request=request
            )

        def close(self) -> None:
            """Close the inner transport."""
            self.inner.close()

    return ThrottledTransport


def throttled_transport(link: Link, inner: Any = None) -> Any:
    """An httpx transport that sends through ``link`` (httpx is imported here, lazily, so
    ``edgeinfer.collab`` loads without the extra)."""
    return _transport_class()(link, inner)
