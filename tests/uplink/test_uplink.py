"""The uplink against a real Mosquitto: outages of the broker and of the node lose nothing."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from uplink_broker import Broker, stored_seqs, wait_until

from edgeinfer.serve.collect import CollectConfig, Collector, SqliteStore
from edgeinfer.serve.uplink import Uplink, UplinkConfig

NODE = str(Path(__file__).with_name("uplink_node.py"))


def _uplink(broker: Broker, tmp_path: Path, **kw: object) -> Uplink:
    cfg = dict(port=broker.port, outbox=str(tmp_path / "outbox.sqlite"), reconnect_min=0.2,
               reconnect_max=1.0, keepalive=5, ack_timeout_s=2.0)
    cfg.update(kw)
    return Uplink(UplinkConfig(**cfg))


@pytest.fixture
def collector(mosquitto: Broker, tmp_path: Path) -> Iterator[Collector]:
    """A collector subscribed (persistent session) to the broker, storing into collect.sqlite."""
    col = Collector(CollectConfig(port=mosquitto.port, client_id="test-collect"),
                    SqliteStore(tmp_path / "collect.sqlite")).start()
    assert col.connected.wait(5), "collector did not subscribe"
    time.sleep(1.2)  # the broker autosaves every 1 s: the session must outlive a broker crash
    yield col
    col.stop()


def _db(tmp_path: Path) -> Path:
    return tmp_path / "collect.sqlite"


def test_results_and_features_arrive_with_byte_counts(mosquitto: Broker, collector: Collector,
                                                      tmp_path: Path) -> None:
    import numpy as np

    up = _uplink(mosquitto, tmp_path, encoding="cbor").start()
    ids = [up.publish("cam1", "results", {"boxes": [[1, 2, 3, 4, 0.9, 0]]}, raw_bytes=50_000)
           for _ in range(20)]
    up.publish("cam1", "features", np.ones((4, 8), np.float16))
    assert up.wait_sent(10)
    stats = up.close()
    assert len(set(ids)) == 20
    assert stats["messages_sent"] == 21 and stats["backlog"] == 0
    assert stats["raw_bytes"] == 20 * 50_000
    assert stats["payload_bytes"] < stats["bytes_sent"] < stats["raw_bytes"] / 100
    assert wait_until(lambda: collector.counts["stored"] == 21, 5)
    assert stored_seqs(_db(tmp_path), "cam1") == list(range(21))
    assert wait_until(lambda: collector.presence().get(("site1", "node1")) == "offline", 5)


def test_broker_killed_mid_stream_loses_nothing(mosquitto: Broker, collector: Collector,
                                                tmp_path: Path) -> None:
    up = _uplink(mosquitto, tmp_path).start()
    assert wait_until(lambda: up.stats()["connected"], 5)
    slowest = 0.0
    for i in range(1000):
        if i == 400:
            mosquitto.kill()  # a crash: SIGKILL
        if i == 700:
            mosquitto.start()
        t = time.perf_counter()
        up.publish("cam1", "results", {"i": i})
        if i % 5 == 0:
            up.publish("cam2", "results", {"i": i})
        slowest = max(slowest, time.perf_counter() - t)
        time.sleep(0.002)
    assert slowest < 0.5, "publish blocked on the network"
    assert up.wait_sent(20), up.stats()
    assert up.stats()["reconnects"] >= 1
    stats = up.close()
    assert wait_until(lambda: collector.counts["stored"] == 1200, 10), collector.counts
    for stream, n in (("cam1", 1000), ("cam2", 200)):
        seqs = stored_seqs(_db(tmp_path), stream)
        assert sorted(seqs) == list(range(n))  # every message, once
        # in arrival order, but for messages the broker acknowledged and lost in the crash:
        # those arrive when they are sent again, so there are never more late than resent
        late = sum(seq < max(seqs[:k], default=-1) for k, seq in enumerate(seqs))
        assert late <= stats["resent"], (late, stats)


def _node(mosquitto: Broker, outbox: Path, total: int, rate: int, keepalive: int = 5,
          *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, NODE, "127.0.0.1", str(mosquitto.port), str(outbox), "cam1",
         str(total), str(rate), str(keepalive), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_node_killed_and_restarted_loses_nothing(mosquitto: Broker, collector: Collector,
                                                 tmp_path: Path) -> None:
    outbox = tmp_path / "node-outbox.sqlite"
    node = _node(mosquitto, outbox, 1000, 500)
    try:
        assert wait_until(lambda: collector.counts["stored"] >= 300, 20), collector.counts
        node.send_signal(signal.SIGKILL)
        node.wait(5)
    finally:
        node.kill()
    killed_at = collector.counts["stored"]
    assert killed_at < 1000
    node = _node(mosquitto, outbox, 1000, 2000)
    out, err = node.communicate(timeout=60)
    assert node.returncode == 0, err
    resumed = int(out.split("start ")[1].split()[0])
    assert killed_at <= resumed < 1000  # the numbering continued from the outbox
    assert wait_until(lambda: collector.counts["stored"] == 1000, 10), collector.counts
    assert stored_seqs(_db(tmp_path), "cam1") == list(range(1000))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_presence_flips_offline_within_1_5x_keepalive(mosquitto: Broker, collector: Collector,
                                                      tmp_path: Path, sig: int) -> None:
    """SIGKILL closes the node's socket (the broker sees it at once: well within 1.5x keepalive);
    SIGSTOP freezes the node with its socket open, as a hung node or a cut cable would: only the
    keepalive finds it, and Mosquitto 2.0 sweeps keepalives only every 6 s, at whole-second
    resolution, so the bound there is 1.5x keepalive + 7.5 s (the broker's, not ours)."""
    keepalive = 2
    node = _node(mosquitto, tmp_path / "o.sqlite", 10**6, 20, keepalive)
    try:
        assert wait_until(lambda: collector.presence().get(("site1", "node1")) == "online", 10)
        time.sleep(1.0)
        node.send_signal(sig)
        killed = time.monotonic()
        assert wait_until(
            lambda: collector.presence().get(("site1", "node1")) == "offline", 10, step=0.01)
        took = time.monotonic() - killed
    finally:
        node.kill()
        node.wait(5)
    bound = 1.5 * keepalive + (7.5 if sig == signal.SIGSTOP else 0.0)
    assert took <= bound, f"offline after {took:.2f} s"


def test_dead_broker_at_start_keeps_messages(mosquitto: Broker, collector: Collector,
                                             tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="edgeinfer.serve.uplink")
    # a short in-memory handoff: the outage overflows it, so the sender must read the file
    monkeypatch.setattr("edgeinfer.serve.uplink._FRESH_MAX", 20)
    mosquitto.kill()
    up = _uplink(mosquitto, tmp_path).start()
    t = time.perf_counter()
    for i in range(50):
        up.publish("cam1", "results", {"i": i})
    assert time.perf_counter() - t < 2.0
    assert wait_until(lambda: "cannot reach MQTT broker" in caplog.text, 5)
    line = next(r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage())
    assert f"127.0.0.1:{mosquitto.port}" in line and "wait in the outbox" in line
    assert up.stats()["backlog"] == 50 and not up.stats()["connected"]
    mosquitto.start()
    assert up.wait_sent(15), up.stats()
    up.close()
    assert wait_until(lambda: collector.counts["stored"] == 50, 10), collector.counts
    assert stored_seqs(_db(tmp_path), "cam1") == list(range(50))


def test_credentials(mosquitto_auth: Broker, tmp_path: Path,
                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgeinfer.serve.uplink")
    col = Collector(CollectConfig(port=mosquitto_auth.port, username="node1", password="s3cret"),
                    SqliteStore(tmp_path / "collect.sqlite")).start()
    try:
        assert col.connected.wait(5)
        bad = _uplink(mosquitto_auth, tmp_path, username="node1", password="wrong",
                      outbox=str(tmp_path / "bad.sqlite")).start()
        bad.publish("cam1", "results", {"i": 0})
        assert wait_until(lambda: "refused the connection" in caplog.text, 5)
        assert bad.stats()["backlog"] == 1
        bad.close(timeout=0)
        good = _uplink(mosquitto_auth, tmp_path, username="node1", password="s3cret").start()
        good.publish("cam1", "results", {"i": 0})
        assert good.wait_sent(5)
        good.close()
        assert wait_until(lambda: col.counts["stored"] == 1, 5)
    finally:
        col.stop()


def test_tls(mosquitto_tls: Broker, tmp_path: Path) -> None:
    ca = str(mosquitto_tls.ca_cert)
    col = Collector(CollectConfig(port=mosquitto_tls.port, tls=True, ca_certs=ca),
                    SqliteStore(tmp_path / "collect.sqlite")).start()
    try:
        assert col.connected.wait(5)
        up = _uplink(mosquitto_tls, tmp_path, tls=True, ca_certs=ca).start()
        up.publish("cam1", "results", {"i": 0})
        assert up.wait_sent(5), up.stats()
        up.close()
        assert wait_until(lambda: col.counts["stored"] == 1, 5)
    finally:
        col.stop()


def test_collector_dedups_by_id_and_rejects_garbage(mosquitto: Broker, collector: Collector,
                                                    tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    from edgeinfer.serve.messages import Envelope, encode

    body = encode(Envelope.make(0, {"d": []}), "cbor")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-publisher")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for payload in (body, body, b"garbage"):  # a resend after an outage, then junk
            pub.publish("edgeinfer/s1/n1/cam1/results", payload, qos=1).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert wait_until(lambda: collector.counts["received"] >= 3, 5)
    assert collector.counts["stored"] == 1
    assert collector.counts["duplicates"] == 1 and collector.counts["rejected"] == 1
    assert stored_seqs(_db(tmp_path), "cam1") == [0]


def test_full_outbox_refuses_new_and_delivers_what_it_holds(
        mosquitto: Broker, collector: Collector, tmp_path: Path) -> None:
    from edgeinfer.serve.messages import UplinkError

    mosquitto.kill()  # an outage long enough to fill the outbox
    up = _uplink(mosquitto, tmp_path, outbox_max_bytes=64 * 1024).start()
    held = 0
    with pytest.raises(UplinkError, match="full") as err:
        for i in range(5000):
            up.publish("cam1", "results", {"i": i, "pad": "x" * 500})
            held += 1
    assert "\n" not in str(err.value) and f"the {held} message(s)" in str(err.value)
    assert up.stats()["backlog"] == held
    mosquitto.start()
    assert up.wait_sent(15), up.stats()
    up.publish("cam1", "results", {"i": held})  # room again once acknowledged
    assert up.wait_sent(5)
    up.close()
    assert wait_until(lambda: collector.counts["stored"] == held + 1, 10), collector.counts
    assert stored_seqs(_db(tmp_path), "cam1") == list(range(held + 1))
