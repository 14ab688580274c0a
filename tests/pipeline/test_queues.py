"""DropOldestQueue: drop-oldest when full, counted drops, blocking get, close, thread safety."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from edgeinfer.pipeline.queues import DropOldestQueue, QueueClosedError


def test_full_queue_drops_the_oldest_and_counts_it():
    q: DropOldestQueue[int] = DropOldestQueue(2)
    assert [q.put(i) for i in range(5)] == [False, False, True, True, True]
    assert q.dropped == 3 and q.put_count == 5 and len(q) == 2
    assert [q.get(timeout=0), q.get(timeout=0)] == [3, 4]  # the freshest survive, in order


def test_get_times_out_then_sees_a_later_put():
    q: DropOldestQueue[str] = DropOldestQueue(1)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.05, q.put, args=("late",)).start()
    assert q.get(timeout=2) == "late"


def test_close_wakes_a_blocked_getter_after_draining():
    q: DropOldestQueue[int] = DropOldestQueue(3)
    q.put(1)
    assert q.get() == 1
    outcome: list[object] = []

    def consume() -> None:
        try:
            outcome.append(q.get())  # blocks: nothing queued
        except QueueClosedError as exc:
            outcome.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    q.close()
    t.join(2)
    assert not t.is_alive() and isinstance(outcome[0], QueueClosedError)
    with pytest.raises(QueueClosedError):
        q.put(2)

    q2: DropOldestQueue[int] = DropOldestQueue(3)
    q2.put(7)
    q2.close()
    assert q2.get() == 7  # what was queued before close is still delivered
    with pytest.raises(QueueClosedError):
        q2.get()


def test_blocking_put_waits_for_room_instead_of_dropping():
    q: DropOldestQueue[int] = DropOldestQueue(1)
    q.put(0)
    threading.Timer(0.1, q.get).start()
    t0 = time.monotonic()
    assert q.put(1, block=True, timeout=5) is False
    assert time.monotonic() - t0 >= 0.09 and q.dropped == 0
    assert q.put(2, block=True, timeout=0.05) is True  # nobody consumes: drops after the wait
    assert q.dropped == 1 and q.get(timeout=0) == 2


def test_concurrent_producers_lose_nothing_uncounted_and_keep_fifo_order():
    q: DropOldestQueue[tuple[int, int]] = DropOldestQueue(8)
    producers, per = 4, 5000
    got: list[tuple[int, int]] = []

    def produce(p: int) -> None:
        for i in range(per):
            q.put((p, i))

    def consume() -> None:
        while True:
            try:
                got.append(q.get(timeout=5))
            except QueueClosedError:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.close()
    consumer.join(10)
    assert q.put_count == producers * per
    assert len(got) + q.dropped == producers * per
    for p in range(producers):
        seq = [i for pp, i in got if pp == p]
        assert seq == sorted(seq) and len(set(seq)) == len(seq)


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        DropOldestQueue(0)
