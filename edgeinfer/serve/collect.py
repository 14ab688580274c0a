"""``edgeinfer collect``: the cloud side of the uplink. Subscribes to every node's results,
features and presence and stores them, each message once.

Topics: ``edgeinfer/+/+/+/+`` (results, features) and ``edgeinfer/+/+/status`` (presence), QoS 1,
with a persistent session (``clean_session=False`` and a fixed client id), so a broker that keeps
sessions (``persistence true``) queues messages while the collector is away.

Exactly once: QoS 1 is "at least once" and the node resends after outages, so the store dedups
by the envelope's unique id (``INSERT ... ON CONFLICT DO NOTHING``); each row is committed before
the collector acknowledges the message (manual PUBACK), so an acknowledged message is on disk,
and one the store could not take stays unacknowledged in the broker's session (delivered again
when the collector reconnects). Rows keep their arrival order (``n``); presence changes are
appended to ``presence``.

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
    decode,
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


class Collector:
    """Subscribes to all nodes and writes every message once into a :class:`Store`."""

    def __init__(self, config: CollectConfig, store: Store) -> None:
        """Prepare (nothing connects before :meth:`start`)."""
        self.config = config
        self.store = store
        self._mqtt = require("paho.mqtt.client", "uplink", "edgeinfer collect")
        self._client: Any = None
        self._presence: dict[tuple[str, str], str] = {}
        #: set once subscribed after a connect, cleared on disconnect
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.counts = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0,
                       "presence_changes": 0, "store_errors": 0}

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
        return self

    def stop(self) -> dict[str, int]:
        """Disconnect and close the store; returns the counters."""
        if self._client is not None:
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
        failure leaves it unacknowledged, and the broker delivers it again after a reconnect."""
        try:
            self._handle(msg)
        except Exception as exc:  # the store failed (disk full, database gone): do not ack
            with self._lock:
                self.counts["store_errors"] += 1
            log.error("collect: cannot store a message from %s (%s); left unacknowledged, the "
                      "broker resends it when collect reconnects: fix the store and restart "
                      "collect", msg.topic, exc)
            return
        client.ack(msg.mid, msg.qos)

    def _handle(self, msg: Any) -> None:
        received = time.time()
        parts = parse_topic(msg.topic)
        with self._lock:
            self.counts["received"] += 1
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
