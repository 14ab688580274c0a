"""End-to-end acknowledgement in parts: the resend bookkeeping, acknowledgements by id in the
outbox, the outbox's bounds and their drop counters, the ack messages, and the collector's gap
detection against a real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from uplink_broker import Broker, wait_until

from edgeinfer.serve.collect import CollectConfig, Collector, SqliteStore
from edgeinfer.serve.messages import (
    Envelope,
    UplinkError,
    ack_topic,
    decode_ack,
    encode,
    encode_ack,
    parse_topic,
)
from edgeinfer.serve.outbox import Outbox
from edgeinfer.serve.resend import ResendTracker
from edgeinfer.serve.uplink import Uplink, UplinkConfig


# ------------------------------------------------------------------------------ resend
def test_resend_is_due_after_the_timeout_and_backs_off() -> None:
    t = ResendTracker(timeout=1.0, max_timeout=4.0)
    t.sent(10, now=0.0)
    t.sent(20, now=0.5)
    assert t.due(oldest=1, cursor=20, now=0.9) == []
    assert t.due(oldest=1, cursor=20, now=1.2) == [(0, 10)]  # the first batch only
    assert t.timeout == 2.0  # a round without acknowledgements doubles it
    assert t.due(oldest=5, cursor=20, now=2.6) == [(10, 20)]  # rows 1-4 were acknowledged
    assert t.timeout == 4.0
    assert t.due(oldest=5, cursor=20, now=30.0) == [(4, 20)]  # both due: one range
    assert t.timeout == 4.0  # capped
    t.acknowledged()
    assert t.timeout == 1.0
    assert t.due(oldest=None, cursor=20, now=99.0) == [] and t.segments == []
    assert t.rounds == 3


def test_resend_memory_does_not_grow_with_the_backlog() -> None:
    t = ResendTracker(timeout=30.0, max_timeout=60.0)
    for k in range(100_000):  # a message every millisecond for 100 s
        t.sent(k + 1, now=k / 1000)
    assert len(t.segments) <= 1001


# ------------------------------------------------------------------------------ outbox
def _put(box: Outbox, n: int, size: int = 10) -> list[str]:
    return [box.put("cam", "t/cam", lambda s, i: b"x" * size)[0] for _ in range(n)]


def test_outbox_acknowledges_by_id_and_only_matching_ids(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    ids = _put(box, 5)
    assert len(set(ids)) == 5 and all(len(i) == 32 and i.startswith(box.epoch) for i in ids)
    stale = "0" * 16 + ids[0][16:]  # the same row, another outbox opening's id
    assert box.ack_ids([stale, "junk", "z" * 32]) == 0 and box.backlog == 5
    assert box.ack_ids(ids[:2] + ids[:2]) == 2 and box.backlog == 3
    box.close()
    box = Outbox(path)  # reopened: a new epoch, the old ids still acknowledge their rows
    assert box.epoch != ids[0][:16]
    new = _put(box, 1)[0]
    assert new[:16] == box.epoch and new not in ids
    assert box.ack_ids(ids[2:]) == 3 and box.backlog == 1
    assert box.next_seq("cam") == 6
    box.close()


def test_full_outbox_counts_what_it_refused_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_bytes=64 * 1024)
    stored = refused = 0
    for _ in range(2000):
        try:
            _put(box, 1, size=1000)
            stored += 1
        except UplinkError as exc:
            assert "full" in str(exc)
            refused += 1
    assert stored and refused and stored + refused == 2000
    assert box.dropped == {"dropped_full": refused, "dropped_expired": 0}
    box.close()
    assert Outbox(path, max_bytes=64 * 1024).dropped["dropped_full"] == refused  # on disk


def test_expired_messages_are_dropped_and_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    _put(box, 3)
    time.sleep(0.05)
    keep = _put(box, 2)
    assert box.expire(max_age_s=0.03) == 3
    assert box.backlog == 2 and box.dropped["dropped_expired"] == 3
    assert box.ack_ids(keep) == 2
    assert box.next_seq("cam") == 5  # the numbering outlives dropped rows too


def test_uplink_reports_its_drops(tmp_path: Path) -> None:
    up = Uplink(UplinkConfig(port=1, outbox=str(tmp_path / "o.sqlite"),
                             outbox_max_bytes=32 * 1024))  # never started: nothing leaves
    with pytest.raises(UplinkError, match="full"):
        for i in range(2000):
            up.publish("cam1", "results", {"i": i, "pad": "x" * 400})
    stats = up.stats()
    assert stats["dropped_full"] == 1 and stats["backlog"] == i
    up.close(timeout=0)


# ------------------------------------------------------------------------------ messages
def test_ack_messages_round_trip_and_have_their_own_topic() -> None:
    assert decode_ack(encode_ack(["a" * 32, "b" * 32])) == ["a" * 32, "b" * 32]
    assert ack_topic("s1", "n1") == "edgeinfer/s1/n1/ack"
    assert parse_topic("edgeinfer/s1/n1/ack") == {"site": "s1", "node": "n1", "kind": "ack"}
    for bad in (b"{}", b"[]", b'{"ids": [1]}', b"\x00"):
        with pytest.raises(UplinkError):
            decode_ack(bad)


# ------------------------------------------------------------------------------ collector
def test_collector_acknowledges_stored_ids_and_reports_gaps(mosquitto: Broker,
                                                            tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    col = Collector(CollectConfig(port=mosquitto.port, client_id="gaps"),
                    SqliteStore(tmp_path / "c.sqlite")).start()
    acked: list[str] = []
    node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-node")
    node.on_message = lambda c, u, m: acked.extend(decode_ack(m.payload))
    node.connect("127.0.0.1", mosquitto.port)
    node.loop_start()
    try:
        assert col.connected.wait(5)
        node.subscribe(ack_topic("s1", "n1"), qos=1)
        time.sleep(0.3)
        envs = {seq: Envelope.make(seq, {"i": seq}) for seq in range(8)}
        for seq in (0, 1, 4, 5, 2, 5, 3, 7):  # 2-3 late, 5 twice, 6 never
            node.publish("edgeinfer/s1/n1/cam/results", encode(envs[seq]), qos=1
                         ).wait_for_publish(5)
        assert wait_until(lambda: col.counts["received"] == 8, 5)
        assert wait_until(lambda: len(acked) == 8, 5)  # the duplicate is acknowledged again
        assert set(acked) == {envs[s].id for s in (0, 1, 2, 3, 4, 5, 7)}
        assert col.counts["stored"] == 7 and col.counts["duplicates"] == 1
        assert col.counts["gaps_opened"] == 2 and col.counts["gaps_filled"] == 1
        assert col.gaps() == {("s1", "n1", "cam"): [(6, 6)]}
    finally:
        node.loop_stop()
        node.disconnect()
        col.stop()
    restarted = Collector(CollectConfig(port=mosquitto.port, client_id="gaps"),
                          SqliteStore(tmp_path / "c.sqlite"))
    restarted._track("s1", "n1", "cam", 7)  # a restarted collector learns gaps from the store
    assert restarted.gaps() == {("s1", "n1", "cam"): [(6, 6)]}
    restarted.store.close()


def test_broker_ack_mode_still_empties_the_outbox_on_puback(mosquitto: Broker,
                                                            tmp_path: Path) -> None:
    up = Uplink(UplinkConfig(port=mosquitto.port, outbox=str(tmp_path / "o.sqlite"),
                             ack="broker")).start()
    for i in range(50):
        up.publish("cam1", "results", {"i": i})
    assert up.wait_sent(10)  # nobody collects: the broker's PUBACK is the acknowledgement
    stats = up.close()
    assert stats["messages_sent"] == stats["broker_acked"] == 50 and stats["acks_received"] == 0
