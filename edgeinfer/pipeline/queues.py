"""A bounded frame queue that drops the oldest item when full.

A live source must never wait for inference: when the consumer is slower than the camera, the
queue keeps the newest ``maxsize`` frames and counts what it threw away, so memory stays bounded
and the consumer always sees the freshest frames (pipelines that grow their buffers instead run
out of memory). A file source that should lose nothing puts with ``block=True`` instead.
Safe to share between threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

__all__ = ["DropOldestQueue", "QueueClosedError"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class QueueClosedError(Exception):
    """Raised by ``put`` on a closed queue, and by ``get`` on a closed queue left empty."""


class DropOldestQueue(Generic[T]):
    """Bounded FIFO: ``put`` on a full queue evicts the oldest item and counts it in
    ``dropped``. Thread-safe; ``get`` blocks with an optional timeout; ``close`` wakes every
    waiter (the consumer drains what is left, then gets :class:`QueueClosedError`)."""

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError(f"bad queue size {maxsize}: give at least 1")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  #: items evicted to make room
        self.put_count = 0  #: items accepted by ``put``

    def put(self, item: T, block: bool = False, timeout: float | None = None) -> bool:
        """Add ``item``; True when an older item was dropped for it. With ``block=True`` wait
        (up to ``timeout`` s, then drop) for room instead of dropping at once."""
        with self._cond:
            if block:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._closed and len(self._items) >= self.maxsize:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
            if self._closed:
                raise QueueClosedError("put on a closed queue")
            dropped = False
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                dropped = True
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> T:
        """The oldest item kept; waits up to ``timeout`` s (forever when None). Raises
        ``queue.Empty`` on timeout and :class:`QueueClosedError` once closed and drained."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    raise QueueClosedError("queue closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise queue.Empty
                self._cond.wait(left)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Refuse further puts and wake every waiting thread; items left can still be got."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Drop every item held (not counted in ``dropped``); how many there were."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
