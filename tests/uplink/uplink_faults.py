"""Fault scenarios for the acknowledged uplink, run with real processes: a Mosquitto broker, a
node (``uplink_node.py``) streaming at a fixed rate, and the collector (``edgeinfer collect``)
storing into SQLite or PostgreSQL. Each scenario injects one fault while the node streams and
reports what reached the store. Used by ``test_uplink_faults.py`` (few messages) and by
``benchmarks/uplink_soak.py`` (1,000 per scenario).

Scenarios (t: the streaming time, ``total / rate``):

- ``broker_kill_collector_offline``: the collector's session is saved, the collector goes away
  (its session kept), the node streams, the broker is SIGKILLed at 0.4 t (Mosquitto's default
  1800 s autosave: everything it acknowledged since its last save is gone) and restarted; the
  collector returns at 0.7 t.
- ``broker_persistence_deleted``: the same, but the broker comes back with its persistence file
  deleted: the collector's session and everything queued for it are gone, and until the
  collector subscribes again the broker drops what the node sends (no subscriber).
- ``node_kill``: the node is SIGKILLed at 0.4 t and started again on the same outbox.
- ``collector_kill``: the collector is SIGKILLed at 0.4 t and started again at 0.6 t.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uplink_broker import Broker, subscribed, wait_until

SCENARIOS = ("broker_kill_collector_offline", "broker_persistence_deleted", "node_kill",
             "collector_kill")
NODE_SCRIPT = str(Path(__file__).with_name("uplink_node.py"))
STREAM = "cam1"


@dataclass
class Store:
    """Where the collector stores (its CLI arguments) and how to read the stream back."""

    kind: str
    args: list[str]
    read: Any  # () -> [(seq, n)] of STREAM in arrival order
    env: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[int, int]]:
        """(seq, arrival number) of every stored message of the stream, in arrival order."""
        try:
            return self.read()
        except Exception:  # not created yet
            return []


def sqlite_store(path: Path) -> Store:
    """A collector SQLite file."""
    def read() -> list[tuple[int, int]]:
        with sqlite3.connect(path) as con:
            return con.execute("SELECT seq, n FROM messages WHERE stream = ? ORDER BY n",
                               (STREAM,)).fetchall()

    return Store("sqlite", ["--db", str(path)], read)


def postgres_store(cluster: Any, name: str) -> Store:
    """A fresh database on a :class:`pg_cluster.PgCluster` (the password in the environment)."""
    url = cluster.create_db(name)

    def read() -> list[tuple[int, int]]:
        return [(int(s), int(n)) for s, n in cluster.query(
            name, "SELECT seq, n FROM edgeinfer_messages WHERE stream = %s ORDER BY n", STREAM)]

    return Store("postgres", ["--url", url], read, cluster.env())


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


class CollectorProc:
    """``edgeinfer collect`` in its own process (persistent session ``client_id``)."""

    def __init__(self, broker: Broker, store: Store, client_id: str = "soak-collect") -> None:
        self.broker, self.store, self.client_id = broker, store, client_id
        self.proc: subprocess.Popen | None = None
        self.outputs: list[str] = []

    def start(self, timeout: float = 30.0) -> CollectorProc:
        """Start and wait until the broker shows its subscription."""
        since = self.broker.log_size()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeinfer.cli", "collect", "--port", str(self.broker.port),
             "--client-id", self.client_id, *self.store.args], env=_env(self.store.env),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not wait_until(lambda: subscribed(self.broker, self.client_id, since), timeout):
            raise RuntimeError("the collector did not subscribe")
        return self

    def stop(self) -> None:
        """Ctrl-C: it sends its last acknowledgements and disconnects (session kept)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            out, _ = self.proc.communicate(timeout=30)
            self.outputs.append(out)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class NodeProc:
    """A node process streaming STREAM to ``total`` at ``rate`` messages/s."""

    def __init__(self, broker: Broker, outbox: Path, total: int, rate: float,
                 ack_timeout: float, ack: str = "collector") -> None:
        self.args = [sys.executable, NODE_SCRIPT, "127.0.0.1", str(broker.port), str(outbox),
                     STREAM, str(total), str(rate), "5", "--ack-timeout", str(ack_timeout),
                     "--ack", ack]
        self.proc: subprocess.Popen | None = None

    def start(self) -> NodeProc:
        """Start streaming."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash (the outbox file stays)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the node to finish (everything acknowledged); its final stats."""
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"node exited {self.proc.returncode}: {err[-2000:]}")
        return json.loads(out.split("done ", 1)[1])


def _at(t0: float, seconds: float) -> None:
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))


def run(scenario: str, store: Store, workdir: Path, total: int = 1000, rate: float = 50.0,
        ack_timeout: float = 2.0, ack: str = "collector") -> dict[str, Any]:
    """Run one scenario; a report: messages stored, missing, duplicated, out of order, the
    node's final stats and the seconds it took."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose one of {SCENARIOS}")
    workdir.mkdir(parents=True, exist_ok=True)
    collector_away = scenario.startswith("broker_")
    broker = Broker(workdir / "broker", autosave=1800 if collector_away else 1).start()
    collector = CollectorProc(broker, store)
    outbox = workdir / "outbox.sqlite"
    stream_s = total / rate
    started = time.monotonic()
    node = NodeProc(broker, outbox, total, rate, ack_timeout, ack)
    try:
        collector.start()
        if collector_away:
            collector.stop()  # away, its session kept by the broker ...
            broker.kill(signal.SIGTERM)  # ... and saved: a clean shutdown writes it
            broker.start()
        t0 = time.monotonic()
        node.start()
        _at(t0, 0.4 * stream_s)
        if collector_away:
            broker.kill()
            if scenario == "broker_persistence_deleted":
                broker.db.unlink(missing_ok=True)
            time.sleep(0.5)
            broker.start()
            _at(t0, 0.7 * stream_s)
            collector.start()
        elif scenario == "node_kill":
            node.kill()
            node = NodeProc(broker, outbox, total, rate, ack_timeout, ack).start()
        elif scenario == "collector_kill":
            collector.kill()
            _at(t0, 0.6 * stream_s)
            collector.start()
        stats = node.wait(timeout=stream_s + 120)
        if ack == "collector":  # the node finished only once the collector had them all
            wait_until(lambda: len(store.rows()) >= total, 10)
        else:  # nothing tells the node what reached the store: give it time to settle
            _settle(store)
        collector.stop()
    finally:
        node.kill()
        collector.kill()
        broker.kill()
    return report(scenario, store, total, stats, time.monotonic() - started)


def _settle(store: Store, quiet_s: float = 3.0) -> None:
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        n = len(store.rows())
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.2)


def report(scenario: str, store: Store, total: int, stats: dict[str, Any],
           seconds: float) -> dict[str, Any]:
    """What reached the store, against what the node published."""
    seqs = [seq for seq, _ in store.rows()]
    top = -1
    late = 0
    for seq in seqs:
        late += seq < top
        top = max(top, seq)
    return {"scenario": scenario, "store": store.kind, "messages": total, "stored": len(seqs),
            "distinct": len(set(seqs)), "missing": len(set(range(total)) - set(seqs)),
            "duplicated": len(seqs) - len(set(seqs)), "out_of_order": late,
            "in_order_per_stream": sorted(seqs) == list(range(total)),
            "resent": stats.get("resent", 0), "node_backlog": stats.get("backlog"),
            "dropped": stats.get("dropped_full", 0) + stats.get("dropped_expired", 0),
            "seconds": round(seconds, 1)}
