"""When to send an unacknowledged uplink message again: a pure bookkeeping object, driven by
the uplink's sender thread.

Messages leave the outbox in row order, so their send times are kept as a few segments of
rows (``rows <= upto were last sent at t``), not one entry per message: memory does not grow
with the backlog. A segment whose messages are still held (not acknowledged by the collector)
``timeout`` after they were sent is due again; every round of resends doubles the timeout (up
to ``max_timeout``), and any acknowledgement that comes back resets it, so a collector that is
away for hours does not make the node resend its whole backlog every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ResendTracker"]

#: forward sends closer together than this share one segment (at most this much early)
MERGE_S = 0.1


@dataclass
class ResendTracker:
    """Send times of rows ``<=`` the sender's cursor, and the resend timeout with backoff."""

    timeout: float
    max_timeout: float
    base: float = field(init=False)
    segments: list[list[float]] = field(default_factory=list)  # [upto row, sent at], row order
    rounds: int = 0

    def __post_init__(self) -> None:
        self.base = self.timeout

    def sent(self, upto: int, now: float) -> None:
        """Rows up to ``upto`` (after the previous ones) were sent for the first time now."""
        if self.segments and now - self.segments[-1][1] < MERGE_S:
            self.segments[-1][0] = upto
        else:
            self.segments.append([upto, now])

    def acknowledged(self) -> None:
        """An acknowledgement came back: the collector is there, back to the base timeout."""
        self.timeout = self.base

    def due(self, oldest: int | None, cursor: int, now: float) -> list[tuple[int, int]]:
        """Row ranges ``(after, upto]`` to send again now, oldest first, given the oldest row
        still held (None: none) and the last row ever sent; marks them sent now."""
        if oldest is None or oldest > cursor:
            self.segments.clear()
            return []
        while self.segments and self.segments[0][0] < oldest:
            self.segments.pop(0)
        ranges: list[tuple[int, int]] = []
        prev = oldest - 1
        for seg in self.segments:
            if seg[1] < now - self.timeout:
                if ranges and ranges[-1][1] == prev:
                    ranges[-1] = (ranges[-1][0], int(seg[0]))
                else:
                    ranges.append((prev, int(seg[0])))
                seg[1] = now
            prev = int(seg[0])
        if ranges:
            self.rounds += 1
            self.timeout = min(2 * self.timeout, self.max_timeout)
        return ranges
