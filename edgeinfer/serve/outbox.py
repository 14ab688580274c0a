"""A disk-backed outbox: every uplink message is in SQLite before ``publish`` returns, and
leaves it only when it is acknowledged: by the collector that stored it (the uplink's default,
end to end), or by the broker's QoS 1 PUBACK (``ack="broker"``), or when the outbox's bounds
force it out (too old: expired), and what the bounds ever made it drop is counted, on disk.

Message ids are 16 hex digits drawn at random each time the outbox is opened, then the row
number in 16 hex digits: unique, and an acknowledgement names its row without an index on the
ids (an index would cost a third of the insert rate); a row is deleted only when its stored id
matches the acknowledged one, so a stale acknowledgement cannot delete a newer message that
reuses a row number.

Why our own and not paho's in-memory queue: paho keeps unacknowledged messages in the process,
so a killed or rebooted node loses them. Here the row is committed first (WAL journal,
``synchronous=NORMAL``: a committed row survives the process being killed with SIGKILL; use
``synchronous="FULL"`` to survive power loss too, at some throughput), rows are read back in
insertion order (row numbers come from a counter in the process, never reused while it runs, so
"after row N" is a valid cursor even after deletes; AUTOINCREMENT would do the same at the price
of a second page written per insert), and the sequence number of each stream is stored in
the message row (and moved to a small ``streams`` table in the transaction that deletes
acknowledged rows), so a restarted node continues the numbering where it stopped.

Thread-safe: one connection guarded by a lock (publishers, the sender thread and the
acknowledgement path all share it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from edgeinfer.serve.messages import UplinkError

__all__ = ["Outbox", "PendingRow"]

log = logging.getLogger(__name__)

PendingRow = tuple[int, str, bytes]  # (row number, topic, body)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    rowid   INTEGER PRIMARY KEY,
    id      TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    topic   TEXT    NOT NULL,
    body    BLOB    NOT NULL,
    created REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped_full', 0), ('dropped_expired', 0);
"""


def _explain(exc: sqlite3.Error, path: Path, action: str, held: int | None = None) -> UplinkError:
    """A one-line UplinkError naming the outbox, what failed and the fix."""
    text = str(exc).lower()
    kept = f"; the {held} message(s) it holds are kept" if held is not None else ""
    if "full" in text:
        why = "disk (or the outbox's size limit) is full: free space or raise the limit"
    elif "readonly" in text or "read-only" in text or "unable to open" in text:
        why = "path is not writable: check the directory exists and is writable, or choose another"
    elif "locked" in text or "busy" in text:
        why = "database is locked by another process: give each node its own outbox file"
    else:
        why = f"{exc}: check the file (it may be corrupt) or choose another path"
    return UplinkError(f"uplink outbox {path}: cannot {action}: {why}{kept}")


class Outbox:
    """SQLite outbox of encoded messages waiting for the broker's acknowledgement."""

    def __init__(self, path: str | Path, max_bytes: int | None = None,
                 synchronous: str = "NORMAL") -> None:
        """Open (or create) the outbox at ``path``; ``max_bytes`` caps its size on disk."""
        self.path = Path(path)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise UplinkError(f"bad outbox synchronous mode {synchronous!r}: use NORMAL or FULL")
        if self.path.parent and not self.path.parent.is_dir():
            raise UplinkError(
                f"uplink outbox {self.path}: directory {self.path.parent} does not exist: "
                "create it or choose another path"
            )
        self._lock = threading.Lock()
        self.epoch = os.urandom(8).hex()  #: the first half of every id stored in this opening
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=10)
            # small pages: a commit appends one page of ~200-byte rows to the WAL (set before the
            # database exists; an existing file keeps its own)
            self._db.execute("PRAGMA page_size=1024")
            # one process owns an outbox: no lock syscalls per transaction (about 1.4x faster
            # inserts here), and a second node on the same file gets a clear "locked" error
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            if max_bytes:
                page = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={max(8, int(max_bytes) // page)}")
            self._seqs = dict(self._db.execute("SELECT stream, next_seq FROM streams"))
            for stream, nxt in self._db.execute(
                    "SELECT stream, MAX(seq) + 1 FROM outbox GROUP BY stream"):
                self._seqs[stream] = max(nxt, self._seqs.get(stream, 0))
            self._backlog, top = self._db.execute(
                "SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM outbox").fetchone()
            self._next_row = top + 1
            self._dropped = dict(self._db.execute("SELECT name, value FROM counters"))
        except sqlite3.Error as exc:
            raise _explain(exc, self.path, "open it") from exc
        if self._backlog:
            log.info("uplink outbox %s: %d message(s) from before wait to be sent",
                     self.path, self._backlog)

    @property
    def backlog(self) -> int:
        """Messages stored and not yet acknowledged by the broker."""
        return self._backlog

    def next_seq(self, stream: str) -> int:
        """The sequence number the next message of ``stream`` will get."""
        with self._lock:
            return self._seqs.get(stream, 0)

    @property
    def dropped(self) -> dict[str, int]:
        """What the bounds ever made the outbox drop (kept across restarts): ``dropped_full``
        (refused: the outbox was full), ``dropped_expired`` (older than the age bound)."""
        with self._lock:
            return dict(self._dropped)

    def put(self, stream: str, topic: str, make: Callable[[int, str], bytes]) -> tuple:
        """Store one message; ``make(seq, id) -> body`` builds it with the stream's next
        sequence number and its id. Returns ``(id, seq, row)``; committed to disk before it
        returns. A full outbox refuses it (UplinkError) and counts it as dropped."""
        with self._lock:
            seq = self._seqs.get(stream, 0)
            row = self._next_row
            msg_id = f"{self.epoch}{row:016x}"
            body = make(seq, msg_id)
            try:  # one statement, one implicit transaction: committed when it returns
                self._db.execute(
                    "INSERT INTO outbox (rowid, id, stream, seq, topic, body, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (row, msg_id, stream, seq, topic, body, time.time()))
            except sqlite3.Error as exc:
                if "full" in str(exc).lower():
                    self._count_dropped("dropped_full", 1)
                raise _explain(exc, self.path, "store a message", self._backlog) from exc
            self._next_row = row + 1
            self._seqs[stream] = seq + 1
            self._backlog += 1
            return msg_id, seq, row

    def _count_dropped(self, name: str, n: int) -> None:
        """Add to a drop counter, on disk where the disk allows (called with the lock held)."""
        self._dropped[name] = self._dropped.get(name, 0) + n
        try:  # an update in place needs no new page: it works on a full outbox too
            self._db.execute("UPDATE counters SET value = ? WHERE name = ?",
                             (self._dropped[name], name))
        except sqlite3.Error:
            pass

    def pending(self, after: int = 0, limit: int = 500, upto: int | None = None
                ) -> list[PendingRow]:
        """Up to ``limit`` stored messages with ``after`` < row number (<= ``upto``), oldest
        first."""
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT rowid, topic, body FROM outbox WHERE rowid > ? AND rowid <= ? "
                    "ORDER BY rowid LIMIT ?",
                    (after, upto if upto is not None else 2**62, limit)).fetchall()
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "read messages", self._backlog) from exc

    def oldest(self) -> int | None:
        """The row number of the oldest message held (None: empty)."""
        with self._lock:
            try:
                return self._db.execute("SELECT MIN(rowid) FROM outbox").fetchone()[0]
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "read messages", self._backlog) from exc

    def ack_ids(self, ids: Iterable[str]) -> int:
        """Delete the messages with these ids (acknowledged by the collector); ids of other
        outboxes or of rows already gone are ignored. Returns how many went."""
        wanted: dict[int, str] = {}
        for msg_id in ids:
            if len(msg_id) == 32:
                try:
                    wanted[int(msg_id[16:], 16)] = msg_id
                except ValueError:
                    continue
        if not wanted:
            return 0
        rows = list(wanted)
        with self._lock:
            try:
                found = []
                for i in range(0, len(rows), 500):
                    chunk = rows[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    found += self._db.execute(
                        f"SELECT rowid, id FROM outbox WHERE rowid IN ({marks})", chunk
                    ).fetchall()
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "read messages", self._backlog) from exc
        return self.ack([row for row, msg_id in found if wanted.get(row) == msg_id])

    def expire(self, max_age_s: float) -> int:
        """Drop (and count) the messages older than ``max_age_s``; how many went."""
        cutoff = time.time() - max_age_s
        with self._lock:
            try:
                rows = [r for (r,) in self._db.execute(
                    "SELECT rowid FROM outbox WHERE rowid IN (SELECT rowid FROM outbox ORDER BY "
                    "rowid LIMIT 5000) AND created < ?", (cutoff,))]
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "read messages", self._backlog) from exc
        gone = self.ack(rows)
        if gone:
            with self._lock:
                self._count_dropped("dropped_expired", gone)
            log.warning("uplink outbox %s: dropped %d message(s) older than %.0f s (never "
                        "acknowledged)", self.path, gone, max_age_s)
        return gone

    def ack(self, rows: Iterable[int]) -> int:
        """Delete rows (acknowledged, or expired; one transaction for the batch); returns how
        many went."""
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                done = 0
                for i in range(0, len(rows), 500):
                    chunk = rows[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    self._db.execute(  # the numbering outlives the rows that carried it
                        "INSERT INTO streams (stream, next_seq) SELECT stream, MAX(seq) + 1 "
                        f"FROM outbox WHERE rowid IN ({marks}) GROUP BY stream "
                        "ON CONFLICT(stream) DO UPDATE SET "
                        "next_seq = MAX(next_seq, excluded.next_seq)", chunk)
                    done += self._db.execute(
                        f"DELETE FROM outbox WHERE rowid IN ({marks})", chunk).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise _explain(exc, self.path, "record acknowledgements", self._backlog) from exc
            self._backlog -= done
            return done

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close the database (the rows stay on disk for the next start)."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
