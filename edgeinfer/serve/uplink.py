"""The MQTT uplink of an edge node: results (not frames) to the cloud, and nothing lost.

``publish`` stores the encoded message in the SQLite :class:`~edgeinfer.serve.outbox.Outbox`
and returns its id at once; a sender thread hands stored messages to paho-mqtt (2.x, VERSION2
callbacks, QoS 1) in order, at most ``window`` not yet PUBACKed by the broker at a time.

End to end (``ack="collector"``, the default): a broker's PUBACK only frees a place in that
window; the row stays in the outbox until the collector that stored the message says so on the
node's ack topic (``edgeinfer/{site}/{node}/ack``, QoS 1, subscribed on every connect). A
broker that acknowledged a message and then lost it (killed before its autosave, restarted
without its persistence file, or past its queue limit for an absent collector) therefore loses
nothing: what is not acknowledged ``ack_timeout_s`` after it was sent goes out again (the
timeout doubles per round up to ``ack_timeout_max_s`` while no acknowledgement comes back; see
:mod:`edgeinfer.serve.resend`), and the collector stores each id once. ``ack="broker"`` is the
older contract (a row goes on the broker's PUBACK), for a broker whose persistence is trusted.
Acknowledgements are applied in batches, one SQLite transaction per batch.

Bounds: the outbox holds at most ``outbox_max_bytes`` (a full outbox refuses new messages) and
messages at most ``outbox_max_age_s`` old (older ones are dropped); both are counted, on disk,
in ``stats()["dropped_full"]`` / ``["dropped_expired"]``.

Order after an outage: paho keeps the messages of the current process not yet PUBACKed and
resends them first when the connection returns; the sender waits until those are acknowledged
before it sends anything newer. After a restart of the node process everything still in the
outbox is sent again from the oldest; the collector drops the duplicates by message id.

Presence: ``edgeinfer/{site}/{node}/status`` is "online" (retained) on every connect, and the
broker publishes the Last Will "offline" (retained) when the node vanishes without a goodbye;
:meth:`Uplink.close` says "offline" itself.

Why our own loop instead of paho's queue alone: paho's queue lives in memory (a killed node
loses it) and has no byte accounting; ours is on disk and counts every byte that leaves.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinfer._deps import require
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.serve.messages import (
    ENCODINGS,
    OFFLINE,
    ONLINE,
    Envelope,
    UplinkError,
    ack_topic,
    check_kind,
    check_name,
    decode_ack,
    encode,
    status_topic,
    topic,
)
from edgeinfer.serve.outbox import Outbox
from edgeinfer.serve.resend import ResendTracker

__all__ = ["Uplink", "UplinkConfig", "publish_packet_size"]

log = logging.getLogger(__name__)

#: most rows kept in memory for the sender; past it they are dropped from memory and the sender
#: reads the outbox file instead
_FRESH_MAX = 20000


@dataclass(frozen=True)
class UplinkConfig:
    """Where and how the node sends its results (validated on construction)."""

    host: str = "127.0.0.1"
    port: int = 1883
    site: str = "site1"
    node: str = "node1"
    outbox: str | Path = "outbox.sqlite"
    encoding: str = "json"
    qos: int = 1
    keepalive: int = 10
    tls: bool = False
    ca_certs: str | Path | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    #: most messages handed to the broker and not yet acknowledged
    window: int = 1000
    #: reconnect backoff: first wait and longest wait, seconds (doubles in between)
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    #: cap on the outbox file size (None: until the disk is full); a full outbox refuses
    outbox_max_bytes: int | None = 1 << 30
    #: messages older than this are dropped unacknowledged (None: kept until acknowledged)
    outbox_max_age_s: float | None = 7 * 86400.0
    #: SQLite synchronous mode of the outbox: NORMAL survives a killed process, FULL power loss
    synchronous: str = "NORMAL"
    #: who acknowledges a message so that it leaves the outbox: "collector" (end to end, once
    #: stored) or "broker" (its QoS 1 PUBACK)
    ack: str = "collector"
    #: a message the collector has not acknowledged this long after it was sent goes again
    ack_timeout_s: float = 30.0
    #: the longest the resend timeout grows to (it doubles per round while no ack comes back)
    ack_timeout_max_s: float = 600.0

    def __post_init__(self) -> None:
        check_name("site", self.site)
        check_name("node", self.node)
        if self.encoding not in ENCODINGS:
            raise UplinkError(f"bad uplink encoding {self.encoding!r}: use json or cbor")
        if self.qos not in (0, 1):
            raise UplinkError(f"bad uplink qos {self.qos!r}: use 1 (at least once) or 0")
        if not 0 < int(self.port) < 65536:
            raise UplinkError(f"bad MQTT port {self.port!r}: use 1-65535 (1883, 8883 for TLS)")
        if not 1 <= int(self.keepalive) <= 65535:
            raise UplinkError(f"bad keepalive {self.keepalive!r}: use 1-65535 seconds")
        if not 1 <= int(self.window) <= 20000:
            raise UplinkError(f"bad in-flight window {self.window!r}: use 1-20000 messages")
        if self.ca_certs is not None and not Path(self.ca_certs).is_file():
            raise UplinkError(f"CA certificate file {self.ca_certs} not found: give a PEM file")
        if self.password is not None and self.username is None:
            raise UplinkError("an MQTT password was given without a username: give both")
        if self.ack not in ("collector", "broker"):
            raise UplinkError(f"bad ack {self.ack!r}: use collector (end to end) or broker")
        if self.ack == "collector" and self.qos != 1:
            raise UplinkError("end-to-end acknowledgement needs qos 1 (or ack='broker')")
        if not 0 < self.ack_timeout_s <= self.ack_timeout_max_s:
            raise UplinkError(f"bad ack timeout {self.ack_timeout_s!r} s: give 0 < timeout <= "
                              f"ack_timeout_max_s ({self.ack_timeout_max_s})")


def publish_packet_size(topic_name: str, body_len: int, qos: int = 1) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH packet: header, length, topic, packet id, payload."""
    remaining = 2 + len(topic_name.encode("utf-8")) + (2 if qos else 0) + body_len
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else (
        3 if remaining < 2097152 else 4)
    return 1 + length_bytes + remaining


class Uplink:
    """Results and features of a node's streams to an MQTT broker, through a disk outbox.

    ``publish`` may be called from any thread; ``start`` and ``close`` from the owner.
    """

    def __init__(self, config: UplinkConfig) -> None:
        """Open the outbox (errors for an unwritable path surface here, as one line)."""
        self.config = config
        self._mqtt = require("paho.mqtt.client", "uplink", "the MQTT uplink")
        self.outbox = Outbox(config.outbox, max_bytes=config.outbox_max_bytes,
                             synchronous=config.synchronous)
        self._status = status_topic(config.site, config.node)
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque[int] = collections.deque()  # mids from on_publish
        self._collector_acks: collections.deque[str] = collections.deque()  # ids, on_message
        self._inflight: dict[int, int] = {}  # mid -> outbox row (sender thread only)
        self._end_to_end = config.ack == "collector"
        self._resend = ResendTracker(config.ack_timeout_s, config.ack_timeout_max_s)
        self._resend_ranges: list[tuple[int, int]] = []  # (after, upto] rows to send again
        self._next_check = 0.0
        self._ack_topic = ack_topic(config.site, config.node)
        # stored rows handed from publish to the sender in memory, so that a sender that has
        # caught up with the outbox need not read them back (it reads the file after a restart
        # or when this falls behind by more than _FRESH_MAX)
        self._fresh: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._publish_lock = threading.Lock()
        self._topics: dict[tuple[str, str], str] = {}
        self._idle = False  # the sender is (about to be) waiting for work
        self._cursor = 0  # last outbox row handed to paho
        self._live = False  # caught up with the file: new rows come through _fresh
        self._catching_up_to: int | None = None
        self._fresh_dropped = False  # publish emptied _fresh: the sender must read the file
        self._connected = False
        self._generation = 0  # bumped on every connect
        self._failures = 0
        self._counts_lock = threading.Lock()
        self._counts = {"messages_sent": 0, "bytes_sent": 0, "payload_bytes": 0,
                        "raw_bytes": 0, "published": 0, "reconnects": 0, "connects": 0,
                        "broker_acked": 0, "acks_received": 0, "resent": 0}

    # -- public API -----------------------------------------------------------------------------
    def start(self) -> Uplink:
        """Connect in the background (retrying forever with backoff) and start sending."""
        if self._client is not None:
            return self
        cfg, mqtt = self.config, self._mqtt
        client_id = cfg.client_id or f"edgeinfer-{cfg.site}-{cfg.node}"
        # end to end, a persistent session: the broker keeps the acknowledgements the collector
        # sends while this node is away (they would otherwise be dropped and resent for)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=not self._end_to_end, protocol=mqtt.MQTTv311)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.will_set(self._status, OFFLINE, qos=1, retain=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_certs) if cfg.ca_certs else None)
        client.reconnect_delay_set(min_delay=cfg.reconnect_min, max_delay=cfg.reconnect_max)
        client.max_inflight_messages_set(cfg.window + 10)
        client.max_queued_messages_set(0)
        self._client = client
        client.connect_async(cfg.host, int(cfg.port), keepalive=int(cfg.keepalive))
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="edgeinfer-uplink", daemon=True)
        self._thread.start()
        return self

    def publish(self, stream: str, kind: str, payload: Any, raw_bytes: int | None = None) -> str:
        """Store one message of ``stream`` (``kind``: results | features) and return its id.

        Never blocks on the network: the message is on disk when this returns and is sent when
        the broker is reachable. ``raw_bytes``: what the raw frame would have cost to upload.
        """
        name = self._topics.get((stream, kind))
        if name is None:  # validated once per stream and kind
            check_kind(kind)
            name = self._topics[(stream, kind)] = topic(self.config.site, self.config.node,
                                                        stream, kind)
        encoding = self.config.encoding

        made: list[bytes] = []

        def make(seq: int, msg_id: str) -> bytes:
            made.append(encode(Envelope.make(seq, payload, raw=raw_bytes, msg_id=msg_id),
                               encoding))
            return made[0]

        with self._publish_lock:  # rows reach _fresh in row order
            msg_id, _seq, row = self.outbox.put(stream, name, make)
            if len(self._fresh) >= _FRESH_MAX:  # the sender is far behind: it reads the file
                self._fresh.clear()
                self._fresh_dropped = True
            self._fresh.append((row, name, made[0]))
        with self._counts_lock:
            self._counts["published"] += 1
            if raw_bytes:
                self._counts["raw_bytes"] += int(raw_bytes)
        if self._idle:
            self._wake.set()
        return msg_id

    def stats(self) -> dict[str, Any]:
        """Counters: messages_sent (acknowledged: by the collector, or the broker with
        ``ack="broker"``; they left the outbox), broker_acked (PUBACKs), acks_received (ids
        the collector acknowledged, duplicates included), resent, bytes_sent (MQTT PUBLISH bytes
        handed to the socket), payload_bytes, raw_bytes, backlog (held in the outbox),
        in_flight, connected, reconnects, dropped_full and dropped_expired (ever, on disk)."""
        with self._counts_lock:
            out: dict[str, Any] = dict(self._counts)
        out["backlog"] = self.outbox.backlog
        out["in_flight"] = len(self._inflight)
        out["connected"] = self._connected
        out.update(self.outbox.dropped)
        return out

    def wait_sent(self, timeout: float = 5.0) -> bool:
        """Wait until the outbox is empty (everything acknowledged); False on timeout."""
        end = time.monotonic() + timeout
        while self.outbox.backlog and time.monotonic() < end:
            self._wake.set()
            time.sleep(0.01)
        return self.outbox.backlog == 0

    def close(self, timeout: float = 5.0) -> dict[str, Any]:
        """Flush what can be flushed within ``timeout`` s, say "offline", disconnect; the outbox
        keeps the rest for the next start. Returns the final :meth:`stats`."""
        client = self._client
        if client is not None and self._connected:
            self.wait_sent(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if client is not None:
            if self._connected:
                info = client.publish(self._status, OFFLINE, qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=1)
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
            self._client = None
            self._drain_acks()  # acknowledgements that came in after the sender stopped
            if self._end_to_end:
                self._drain_collector_acks()
        stats = self.stats()
        self._connected = False
        stats["connected"] = False
        self.outbox.close()
        return stats

    def __enter__(self) -> Uplink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paho callbacks (network thread) --------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            cfg = self.config
            hint = (" check --username/--password" if "authori" in str(reason_code).lower()
                    or "password" in str(reason_code).lower() else "")
            log.error("uplink: broker %s:%d refused the connection: %s;%s retrying",
                      cfg.host, cfg.port, reason_code, hint)
            return
        client.publish(self._status, ONLINE, qos=1, retain=True)
        if self._end_to_end:  # again on every connect: a broker may have lost the session
            client.subscribe(self._ack_topic, qos=1)
        with self._counts_lock:
            self._counts["connects"] += 1
            if self._counts["connects"] > 1:
                self._counts["reconnects"] += 1
        if self._failures:
            log.warning("uplink: connected to %s:%d after %d failed attempt(s); %d message(s) "
                        "in the outbox", self.config.host, self.config.port, self._failures,
                        self.outbox.backlog)
        self._failures = 0
        self._generation += 1
        self._connected = True
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures in (1, 10) or self._failures % 100 == 0 \
            else logging.DEBUG
        log.log(level, "uplink: cannot reach MQTT broker %s:%d (attempt %d: refused, unreachable "
                "or timed out); retrying with backoff up to %.0f s; %d message(s) wait in the "
                "outbox %s", self.config.host, self.config.port, self._failures,
                self.config.reconnect_max, self.outbox.backlog, self.outbox.path)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        was = self._connected
        self._connected = False
        if was and not self._stop.is_set():
            log.warning("uplink: lost the broker %s:%d (%s); %d message(s) in the outbox, "
                        "reconnecting", self.config.host, self.config.port, reason_code,
                        self.outbox.backlog)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._acks.append(mid)
        if len(self._acks) >= 64:
            self._wake.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """The collector's acknowledgements (the only topic subscribed)."""
        try:
            self._collector_acks.extend(decode_ack(msg.payload))
        except UplinkError as exc:
            log.warning("uplink: ignored a message on %s: %s", msg.topic, exc)
            return
        self._wake.set()

    # -- sender thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        """Hand stored messages to paho in order and delete acknowledged ones in batches."""
        generation_seen = 0
        while not self._stop.is_set():
            progress = False
            try:
                progress = self._drain_acks() > 0
                if self._end_to_end:
                    progress = self._drain_collector_acks() > 0 or progress
                self._housekeeping(time.monotonic())
                if self._connected and self._generation != generation_seen \
                        and not self._inflight:  # paho resends those first: wait for their acks
                    generation_seen = self._generation
                if self._connected and self._generation == generation_seen:
                    progress = self._send_more() > 0 or progress
            except UplinkError as exc:  # the outbox failed (disk): keep going, say so
                log.error("%s", exc)
                self._live = False  # re-read from the file what memory may have lost
                time.sleep(0.5)
            except Exception:  # never let the sender die silently: the outbox keeps the rows
                log.exception("uplink: sender error; retrying from the outbox in 0.5 s")
                self._live = False
                time.sleep(0.5)
            if progress:
                continue
            self._idle = True
            ready = ((self._fresh or self._resend_ranges) and self._connected
                     and generation_seen == self._generation
                     and len(self._inflight) < self.config.window)
            if not ready:
                self._wake.wait(0.02)
            self._idle = False
            self._wake.clear()
        self._drain_acks()

    def _drain_acks(self) -> int:
        """The broker's PUBACKs: free their window places (and, with ``ack="broker"``, delete
        their rows)."""
        rows = []
        while self._acks:
            row = self._inflight.pop(self._acks.popleft(), None)
            if row is not None:
                rows.append(row)
        if rows:
            if not self._end_to_end:
                self.outbox.ack(rows)
            with self._counts_lock:
                self._counts["broker_acked"] += len(rows)
                if not self._end_to_end:
                    self._counts["messages_sent"] += len(rows)
        return len(rows)

    def _drain_collector_acks(self) -> int:
        """The collector's acknowledgements: delete their rows."""
        ids = []
        while self._collector_acks and len(ids) < 5000:
            ids.append(self._collector_acks.popleft())
        if not ids:
            return 0
        gone = self.outbox.ack_ids(ids)
        self._resend.acknowledged()
        with self._counts_lock:
            self._counts["acks_received"] += len(ids)
            self._counts["messages_sent"] += gone
        return len(ids)

    def _housekeeping(self, now: float) -> None:
        """Every quarter second: due resends (end to end) and expired messages."""
        if now < self._next_check:
            return
        self._next_check = now + 0.25
        if self.config.outbox_max_age_s is not None:
            self.outbox.expire(self.config.outbox_max_age_s)
        if self._end_to_end and self._connected:
            due = self._resend.due(self.outbox.oldest(), self._cursor, now)
            if due:
                self._resend_ranges += due
                log.info("uplink: %d range(s) of messages not acknowledged by the collector "
                         "after %.0f s: sending them again", len(due), self._resend.base)

    def _next_rows(self, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` stored rows after the cursor: from memory when caught up, else from
        the outbox file."""
        with self._publish_lock:
            if self._live and not self._fresh_dropped:
                rows = []
                while self._fresh and len(rows) < limit:
                    item = self._fresh.popleft()
                    if item[0] > self._cursor:
                        rows.append(item)
                return rows
            # from the file; it holds whatever was dropped from memory before this point
            self._live = self._fresh_dropped = False
        rows = self.outbox.pending(after=self._cursor, limit=limit)
        if len(rows) < limit:  # nothing newer in the file: once these are sent, go live
            self._catching_up_to = rows[-1][0] if rows else self._cursor
        return rows

    def _send_more(self) -> int:
        """Publish rows due again, then stored rows after the cursor, while the window has
        room; how many went."""
        room = min(self.config.window - len(self._inflight), 500)
        if room <= 0:
            return 0
        if self._resend_ranges:
            return self._send_again(room)
        self._catching_up_to = None
        rows = self._next_rows(room)
        sent = self._publish_rows(rows, forward=True)
        if self._catching_up_to is not None and self._cursor == self._catching_up_to:
            self._live = True  # the file held nothing newer: what follows comes through _fresh
        if sent and self._end_to_end:
            self._resend.sent(self._cursor, time.monotonic())
        return sent

    def _send_again(self, room: int) -> int:
        """Publish the rows of the oldest range due again that are still held."""
        after, upto = self._resend_ranges[0]
        rows = self.outbox.pending(after=after, limit=room, upto=upto)
        sent = self._publish_rows(rows, forward=False)
        if sent == len(rows) and (len(rows) < room or not rows or rows[-1][0] >= upto):
            self._resend_ranges.pop(0)  # the range is done
        elif sent:
            self._resend_ranges[0] = (rows[sent - 1][0], upto)
        if sent:
            with self._counts_lock:
                self._counts["resent"] += sent
        return sent

    def _publish_rows(self, rows: list[tuple[int, str, bytes]], forward: bool) -> int:
        """Hand rows to paho until its table is full; how many went (``forward``: new rows,
        which move the cursor)."""
        client, qos = self._client, self.config.qos
        sent = sent_bytes = body_bytes = 0
        for row, name, body in rows:
            info = client.publish(name, body, qos=qos)
            if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:  # mid clash in paho's table: later
                if forward:
                    self._live = False
                if not sent:
                    time.sleep(0.01)
                break
            self._inflight[info.mid] = row
            if forward:
                self._cursor = row
            sent += 1
            sent_bytes += publish_packet_size(name, len(body), qos)
            body_bytes += len(body)
        if sent:
            with self._counts_lock:
                self._counts["bytes_sent"] += sent_bytes
                self._counts["payload_bytes"] += body_bytes
        return sent


def send_test_messages(config: UplinkConfig, stream: str, count: int, wait: float = 10.0,
                       progress: ProgressFn | None = None) -> dict[str, Any]:
    """Publish ``count`` small synthetic results on ``stream`` and flush (``edgeinfer
    uplink-send``, a quick end-to-end check); returns the final stats. ``progress``: one step
    per message stored."""
    check_name("stream", stream)  # before the outbox file is created
    up = Uplink(config).start()
    track = Tracker(progress)
    task = f"publishing to {config.host}:{config.port}"
    track.start(task, total=count)
    for i in range(count):
        up.publish(stream, "results", {"test": i, "boxes": [[10, 20, 30, 40, 0.9, 0]]})
        track.advance(task)
    track.finish(task)
    up.wait_sent(wait)
    return up.close(timeout=0)
