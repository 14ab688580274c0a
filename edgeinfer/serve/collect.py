"""``edgeinfer collect``: the cloud side of the uplink. Subscribes to every node's results,
features and presence and stores them, each message once.

Topics: ``edgeinfer/+/+/+/+`` (results, features) and ``edgeinfer/+/+/status`` (presence), QoS 1,
with a persistent session (``clean_session=False`` and a fixed client id), so a broker that keeps
sessions (``persistence true``) queues messages while the collector is away.

Exactly once: QoS 1 is "at least once" and the node resends after outages, so the store dedups
by the envelope's unique id (``INSERT ... ON CONFLICT DO NOTHING``); each row is committed before
the collector acknowledges the message, both to the broker (manual PUBACK) and to the node that
sent it: the stored ids go back on ``edgeinfer/{site}/{node}/ack`` (QoS 1, batched every
``ack_interval_s``), and only then does the node's outbox let them go (a duplicate is
acknowledged again: its first acknowledgement may have been lost). A message the store could
not take stays unacknowledged in the broker's session (delivered again when the collector
reconnects) and in the node's outbox. Rows keep their arrival order (``n``); presence changes
are appended to ``presence``.

Gaps: every stream's sequence numbers run 0, 1, 2, ...; a number that arrives past the next
expected one opens a gap (logged, counted in ``gaps_opened``, listed by :meth:`Collector.gaps`),
the missing ones closing it as they come (``gaps_filled``): a gap that stays open is a message
lost upstream (the node's outbox dropped it, or the node's outbox file was replaced).

Stores: SQLite (a file, WAL) built in; PostgreSQL through ``--url postgresql://...`` when
``psycopg`` is installed. We wrote this small store ourselves: two tables and one upsert do not
need an ORM.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgeinfer._deps import require
from edgeinfer.errors import MissingDependencyError
from edgeinfer.serve.messages import (
    TOPIC_ROOT,
    UplinkError,
    ack_topic,
    decode,
    encode_ack,
    encoding_of,
    parse_topic,
    payload_json,
)

__all__ = ["CollectConfig", "Collector", "SqliteStore", "open_store"]

log = logging.getLogger(__name__)

DATA_FILTER = f"{TOPIC_ROOT}/+/+/+/+"
STATUS_FILTER = f"{TOPIC_ROOT}/+/+/status"

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    n        INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    site     TEXT NOT NULL, node TEXT NOT NULL, stream TEXT NOT NULL, kind TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    ts       REAL NOT NULL,
    received REAL NOT NULL,
    encoding TEXT NOT NULL,
    bytes    INTEGER NOT NULL,
    raw      INTEGER,
    payload  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_stream ON messages (site, node, stream, seq);
CREATE TABLE IF NOT EXISTS presence (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL, received REAL NOT NULL
);
"""

_PG_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS edgeinfer_messages (
        n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, site TEXT NOT NULL, node TEXT NOT NULL,
        stream TEXT NOT NULL, kind TEXT NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        received DOUBLE PRECISION NOT NULL, encoding TEXT NOT NULL, bytes INTEGER NOT NULL,
        raw BIGINT, payload JSONB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS edgeinfer_presence (
        n BIGSERIAL PRIMARY KEY, site TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL)""",
]

_COLUMNS = ("id", "site", "node", "stream", "kind", "seq", "ts", "received", "encoding", "bytes",
            "raw", "payload")


class Store(Protocol):
    """Where collected messages go."""

    def add_message(self, row: dict[str, Any]) -> bool:
        """Store one message row; False when its id was already stored."""

    def add_presence(self, site: str, node: str, state: str, received: float) -> None:
        """Append a presence change."""

    def missing(self, site: str, node: str, stream: str) -> tuple[int, list[tuple[int, int]]]:
        """(next sequence number, missing ranges ``[lo, hi]``) of a stream as stored."""

    def close(self) -> None:
        """Commit and close."""


class _SqlStore:
    """The inserts both stores share; a subclass connects and names its tables and the
    driver's parameter mark (SQLite ``?``, psycopg ``%s``)."""

    _messages = "messages"
    _presence = "presence"
    _mark = "?"
    _db: Any
    _lock: threading.Lock

    def add_message(self, row: dict[str, Any]) -> bool:
        """Insert unless the id is known; committed before it returns."""
        marks = ",".join([self._mark] * len(_COLUMNS))
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO {self._messages} ({','.join(_COLUMNS)}) VALUES ({marks}) "
                "ON CONFLICT (id) DO NOTHING", [row[c] for c in _COLUMNS])
            return cur.rowcount == 1

    def add_presence(self, site: str, node: str, state: str, received: float) -> None:
        """Append one presence change."""
        marks = ",".join([self._mark] * 4)
        with self._lock:
            self._db.execute(f"INSERT INTO {self._presence} (site, node, state, received) "
                             f"VALUES ({marks})", (site, node, state, received))

    def missing(self, site: str, node: str, stream: str) -> tuple[int, list[tuple[int, int]]]:
        """(one past the highest stored sequence number, the ranges missing below it)."""
        marks = ",".join([self._mark] * 3)
        where = f"(site, node, stream) = ({marks})"
        with self._lock:
            top = self._db.execute(f"SELECT MAX(seq) FROM {self._messages} WHERE {where}",
                                   (site, node, stream)).fetchone()[0]
            holes = self._db.execute(
                f"SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt "
                f"FROM {self._messages} WHERE {where}) AS s WHERE nxt > seq + 1",
                (site, node, stream)).fetchall()
            low = self._db.execute(f"SELECT MIN(seq) FROM {self._messages} WHERE {where}",
                                   (site, node, stream)).fetchone()[0]
        if top is None:
            return 0, []
        ranges = [(0, int(low) - 1)] if low and low > 0 else []
        return int(top) + 1, ranges + [(int(a), int(b)) for a, b in holes]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


class SqliteStore(_SqlStore):
    """Collected messages in a SQLite file (WAL); safe to call from several threads."""

    def __init__(self, path: str | Path) -> None:
        """Open or create the database at ``path``."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise UplinkError(f"collector database {self.path}: cannot open it ({exc}): check "
                              "the directory exists and is writable") from exc


class PostgresStore(_SqlStore):
    """Collected messages in PostgreSQL (tables ``edgeinfer_messages``, ``edgeinfer_presence``)."""

    _messages = "edgeinfer_messages"
    _presence = "edgeinfer_presence"
    _mark = "%s"

    def __init__(self, url: str) -> None:
        """Connect with psycopg 3 (``pip install 'edgeinfer[postgres]'``) and create tables."""
        try:
            psycopg = require("psycopg", "postgres", "storing collected messages in PostgreSQL")
        except MissingDependencyError as exc:
            raise MissingDependencyError(
                "collecting into PostgreSQL needs psycopg 3: run "
                "`pip install 'edgeinfer[postgres]'` (or give --db out.sqlite)") from exc
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=True)
            for stmt in _PG_SCHEMA:
                self._db.execute(stmt)
        except psycopg.Error as exc:
            raise UplinkError(f"PostgreSQL {url.split('@')[-1]}: cannot connect or create tables "
                              f"({str(exc).strip().splitlines()[0]}): check the URL") from exc


def open_store(db: str | Path | None = None, url: str | None = None) -> Store:
    """A PostgreSQL store for ``url`` (postgresql://...), else a SQLite store at ``db``."""
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise UplinkError(f"bad --url {url!r}: give postgresql://user:pass@host/dbname "
                              "(or use --db out.sqlite)")
        return PostgresStore(url)
    if not db:
        raise UplinkError("no store given: pass --db out.sqlite or --url postgresql://...")
    return SqliteStore(db)


@dataclass(frozen=True)
class CollectConfig:
    """Which broker to read from and how."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edgeinfer-collect"
    keepalive: int = 30
    tls: bool = False
    ca_certs: str | None = None
    username: str | None = None
    password: str | None = None
    #: False: the broker keeps our subscription and queues messages while we are away
    clean_session: bool = False
    #: send each node the ids it may drop from its outbox (end-to-end acknowledgement)
    acks: bool = True
    #: acknowledgements are batched per node and sent at least this often
    ack_interval_s: float = 0.05


class _Gaps:
    """One stream's expected next sequence number and missing ranges ``[lo, hi]``."""

    def __init__(self, next_seq: int, missing: list[tuple[int, int]]) -> None:
        self.next = next_seq
        self.missing = [list(r) for r in missing]

    def see(self, seq: int) -> str | None:
        """Take a new message's number: "opened", "filled", "reset" or None (in order)."""
        if seq == self.next:
            self.next += 1
            return None
        if seq > self.next:
            self.missing.append([self.next, seq - 1])
            self.next = seq + 1
            return "opened"
        for k, (lo, hi) in enumerate(self.missing):
            if lo <= seq <= hi:
                parts = [[lo, seq - 1]] if seq > lo else []
                parts += [[seq + 1, hi]] if seq < hi else []
                self.missing[k:k + 1] = parts
                return "filled" if not parts else None
        self.next, self.missing = seq + 1, []  # numbering restarted: a new outbox
        return "reset"


class Collector:
    """Subscribes to all nodes and writes every message once into a :class:`Store`."""

    def __init__(self, config: CollectConfig, store: Store) -> None:
        """Prepare (nothing connects before :meth:`start`)."""
        self.config = config
        self.store = store
        self._mqtt = require("paho.mqtt.client", "uplink", "edgeinfer collect")
        self._client: Any = None
        self._presence: dict[tuple[str, str], str] = {}
        self._gaps: dict[tuple[str, str, str], _Gaps] = {}
        self._acks: dict[tuple[str, str], list[str]] = {}
        self._acks_lock = threading.Lock()
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None
        #: set once subscribed after a connect, cleared on disconnect
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.counts = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0,
                       "presence_changes": 0, "store_errors": 0, "acks_sent": 0,
                       "gaps_opened": 0, "gaps_filled": 0, "sequence_resets": 0}

    def start(self) -> Collector:
        """Connect in the background (retrying forever) and subscribe on every connect."""
        cfg, mqtt = self.config, self._mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                             clean_session=cfg.clean_session, protocol=mqtt.MQTTv311)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.manual_ack_set(True)
        client.max_inflight_messages_set(1000)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_certs)
        client.reconnect_delay_set(min_delay=0.2, max_delay=10)
        client.connect_async(cfg.host, int(cfg.port), keepalive=cfg.keepalive)
        client.loop_start()
        self._client = client
        if cfg.acks:
            self._flusher = threading.Thread(target=self._flush_acks_forever,
                                             name="edgeinfer-collect-acks", daemon=True)
            self._flusher.start()
        return self

    def stop(self) -> dict[str, int]:
        """Send the acknowledgements due, disconnect and close the store; returns the
        counters."""
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self._flush_acks()
        if self._client is not None:
            time.sleep(0.05)  # the last acknowledgements leave before the goodbye
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.store.close()
        return dict(self.counts)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.error("collect: broker %s:%d refused the connection: %s", self.config.host,
                      self.config.port, reason_code)
            return
        client.subscribe([(DATA_FILTER, 1), (STATUS_FILTER, 1)])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("collect: the broker refused the subscription (%s): check its ACL", bad[0])
            return
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected.clear()
        log.warning("collect: lost the broker %s:%d (%s); reconnecting", self.config.host,
                    self.config.port, reason_code)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """Store, then acknowledge (manual PUBACK): an acknowledged message is on disk. A store
        failure leaves it unacknowledged, and the broker delivers it again after a reconnect.
        "received" is counted last, so a reader that sees it has also seen the outcome."""
        try:
            self._handle(msg)
        except Exception as exc:  # the store failed (disk full, database gone): do not ack
            with self._lock:
                self.counts["store_errors"] += 1
                self.counts["received"] += 1
            log.error("collect: cannot store a message from %s (%s); left unacknowledged, the "
                      "broker resends it when collect reconnects: fix the store and restart "
                      "collect", msg.topic, exc)
            return
        with self._lock:
            self.counts["received"] += 1
        client.ack(msg.mid, msg.qos)

    def _handle(self, msg: Any) -> None:
        received = time.time()
        parts = parse_topic(msg.topic)
        if parts is None:
            return self._reject(msg.topic, "not an edgeinfer topic")
        if parts["kind"] == "status":
            return self._presence_change(parts["site"], parts["node"], msg.payload, received)
        try:
            env = decode(msg.payload)
        except UplinkError as exc:
            return self._reject(msg.topic, str(exc))
        row = {**parts, "id": env.id, "seq": env.seq, "ts": env.ts, "received": received,
               "encoding": encoding_of(msg.payload), "bytes": len(msg.payload), "raw": env.raw,
               "payload": payload_json(env.payload)}
        new = self.store.add_message(row)
        with self._lock:
            self.counts["stored" if new else "duplicates"] += 1
        if new:
            self._track(parts["site"], parts["node"], parts["stream"], env.seq)
        if self.config.acks:
            with self._acks_lock:
                self._acks.setdefault((parts["site"], parts["node"]), []).append(env.id)

    def _track(self, site: str, node: str, stream: str, seq: int) -> None:
        """Follow the stream's sequence: log and count gaps opened, filled and restarts."""
        key = (site, node, stream)
        where = f"{site}/{node}/{stream}"
        gaps = self._gaps.get(key)
        if gaps is None:  # the stream's first message since start: the store says the rest
            nxt, missing = self.store.missing(site, node, stream)
            self._gaps[key] = _Gaps(nxt, missing)
            if missing:
                with self._lock:
                    self.counts["gaps_opened"] += len(missing)
                log.warning("collect: stream %s: %d range(s) of seq missing in the store "
                            "(first %d-%d)", where, len(missing), *missing[0])
            return
        event = gaps.see(seq)
        if event is None:
            return
        with self._lock:
            self.counts[{"opened": "gaps_opened", "filled": "gaps_filled",
                         "reset": "sequence_resets"}[event]] += 1
        if event == "opened":
            lo, hi = gaps.missing[-1]
            log.warning("collect: stream %s: seq %d arrived, %d-%d missing so far", where, seq,
                        lo, hi)
        elif event == "filled":
            log.info("collect: stream %s: a gap closed (seq %d arrived)", where, seq)
        else:
            log.warning("collect: stream %s numbering restarted at %d (a new outbox on the "
                        "node?)", where, seq)

    def gaps(self) -> dict[tuple[str, str, str], list[tuple[int, int]]]:
        """The ranges of sequence numbers still missing, per stream (site, node, stream)."""
        with self._lock:
            return {k: [(lo, hi) for lo, hi in g.missing] for k, g in self._gaps.items()
                    if g.missing}

    def _flush_acks_forever(self) -> None:
        while not self._stopping.wait(self.config.ack_interval_s):
            self._flush_acks()

    def _flush_acks(self) -> None:
        """Send every node the ids stored since the last flush (QoS 1, 500 per message)."""
        with self._acks_lock:
            due, self._acks = self._acks, {}
        client = self._client
        if client is None:
            return
        for (site, node), ids in due.items():
            for i in range(0, len(ids), 500):
                client.publish(ack_topic(site, node), encode_ack(ids[i:i + 500]), qos=1)
            with self._lock:
                self.counts["acks_sent"] += len(ids)

    def _presence_change(self, site: str, node: str, payload: bytes, received: float) -> None:
        state = payload.decode("utf-8", "replace").strip() or "cleared"
        if self._presence.get((site, node)) == state:
            return
        self._presence[(site, node)] = state
        self.store.add_presence(site, node, state, received)
        with self._lock:
            self.counts["presence_changes"] += 1
        log.info("collect: node %s/%s is %s", site, node, state)

    def _reject(self, name: str, why: str) -> None:
        with self._lock:
            self.counts["rejected"] += 1
        log.warning("collect: dropped a message on %s: %s", name, why)

    def presence(self) -> dict[tuple[str, str], str]:
        """The last known state of every node seen."""
        return dict(self._presence)
