"""The uplink's wire format: topics, the message envelope, and compact JSON / CBOR encoding.

Topics::

    edgeinfer/{site}/{node}/{stream}/{kind}    kind: "results" | "features"   (QoS 1)
    edgeinfer/{site}/{node}/status             "online" / "offline"          (QoS 1, retained;
                                               "offline" is also the node's Last Will)
    edgeinfer/{site}/{node}/ack                the collector's acknowledgements to that node
                                               (QoS 1): {"v": 1, "ids": ["9f2c...", ...]}, the
                                               ids it has stored (or had stored already)

Envelope (one per message; site, node, stream and kind live in the topic, never repeated)::

    {"v": 1,              schema version
     "id": "9f2c...",     unique message id (32 hex digits: 16 random per outbox opening, then
                          16 of the outbox row): the collector's dedup key
     "seq": 41,           per-stream sequence number, 0, 1, 2, ... (kept across node restarts)
     "ts": 1764120000.12, when the node produced the result (Unix seconds)
     "p": {...},          the payload: results dict, or features (see below)
     "raw": 1843211}      optional: bytes the raw frame would have cost (for the byte account)

Encoding: compact JSON (no spaces, ASCII) or CBOR (RFC 8949). A JSON body starts with ``{``
(0x7B); a CBOR map starts with 0xA0-0xBF, so :func:`decode` tells them apart without a header.
Numpy arrays in a payload travel as ``{"__nd__": dtype, "shape": [...], "data": bytes}`` (CBOR
carries the bytes natively, JSON as base64).

We wrote this ourselves because the envelope is ten lines and needs no framework: what matters
is that the ids, sequence numbers and topic scheme are fixed and documented.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from edgeinfer.errors import EdgeInferError

__all__ = [
    "ENCODINGS",
    "KINDS",
    "SCHEMA_VERSION",
    "TOPIC_ROOT",
    "Envelope",
    "UplinkError",
    "ack_topic",
    "decode",
    "decode_ack",
    "detections_payload",
    "encode",
    "encode_ack",
    "new_id",
    "parse_topic",
    "payload_json",
    "status_topic",
    "topic",
]

TOPIC_ROOT = "edgeinfer"
SCHEMA_VERSION = 1
KINDS = ("results", "features")
ENCODINGS = ("json", "cbor")
ONLINE, OFFLINE = "online", "offline"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class UplinkError(EdgeInferError):
    """The uplink or its outbox cannot do what was asked (bad name, unwritable path, full disk)."""


def check_name(what: str, value: str) -> str:
    """Return ``value`` if it is a safe topic segment (letters, digits, ``_.-``), else raise."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise UplinkError(
            f"bad {what} name {value!r}: use 1-64 letters, digits, '_', '.' or '-' "
            "(no '/', '+', '#' or spaces: it becomes an MQTT topic level)"
        )
    return value


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise."""
    if kind not in KINDS:
        raise UplinkError(f"bad message kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def topic(site: str, node: str, stream: str, kind: str) -> str:
    """The topic of a stream's results or features: ``edgeinfer/{site}/{node}/{stream}/{kind}``."""
    check_kind(kind)
    parts = [check_name("site", site), check_name("node", node), check_name("stream", stream)]
    return "/".join([TOPIC_ROOT, *parts, kind])


def status_topic(site: str, node: str) -> str:
    """The retained presence topic of a node: ``edgeinfer/{site}/{node}/status``."""
    return f"{TOPIC_ROOT}/{check_name('site', site)}/{check_name('node', node)}/status"


def ack_topic(site: str, node: str) -> str:
    """Where the collector acknowledges a node's messages: ``edgeinfer/{site}/{node}/ack``."""
    return f"{TOPIC_ROOT}/{check_name('site', site)}/{check_name('node', node)}/ack"


def encode_ack(ids: list[str]) -> bytes:
    """An acknowledgement message: the stored message ids."""
    return json.dumps({"v": SCHEMA_VERSION, "ids": ids}, separators=(",", ":")).encode("ascii")


def decode_ack(data: bytes) -> list[str]:
    """The message ids of an acknowledgement (UplinkError when it is not one)."""
    try:
        ids = json.loads(data)["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TypeError("ids must be a list of strings")
        return ids
    except (ValueError, KeyError, TypeError) as exc:
        raise UplinkError(f"undecodable acknowledgement ({len(data)} bytes): {exc}") from exc


def parse_topic(name: str) -> dict[str, str] | None:
    """Split a topic of our scheme into its parts; None for anything else.

    ``{"site", "node", "stream", "kind"}`` for data topics, ``{"site", "node", "kind": "status"}``
    for presence, ``{"site", "node", "kind": "ack"}`` for acknowledgements.
    """
    parts = name.split("/")
    if not parts or parts[0] != TOPIC_ROOT:
        return None
    if len(parts) == 4 and parts[3] in ("status", "ack"):
        return {"site": parts[1], "node": parts[2], "kind": parts[3]}
    if len(parts) == 5 and parts[4] in KINDS:
        return {"site": parts[1], "node": parts[2], "stream": parts[3], "kind": parts[4]}
    return None


def new_id() -> str:
    """A unique message id: 128 random bits as 32 hex digits."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class Envelope:
    """One uplink message (see the module docstring for the schema)."""

    id: str
    seq: int
    ts: float
    payload: Any
    raw: int | None = None
    v: int = field(default=SCHEMA_VERSION)

    @classmethod
    def make(cls, seq: int, payload: Any, raw: int | None = None,
             msg_id: str | None = None) -> Envelope:
        """A new envelope with ``msg_id`` (default: a fresh random id) and the current time."""
        return cls(id=msg_id or new_id(), seq=seq, ts=round(time.time(), 3), payload=payload,
                   raw=raw)


def _array_dict(arr: Any, binary: bool) -> dict[str, Any]:
    data = arr.tobytes(order="C")
    return {"__nd__": arr.dtype.str, "shape": list(arr.shape),
            "data": data if binary else base64.b64encode(data).decode("ascii")}


def _json_default(obj: Any) -> Any:
    """What json cannot write itself: numpy arrays and scalars, bytes (called only for those,
    so plain payloads pay nothing for the hook)."""
    if isinstance(obj, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(obj)).decode("ascii")}
    if type(obj).__module__ == "numpy":
        return _array_dict(obj, binary=False) if hasattr(obj, "shape") and obj.shape else obj.item()
    raise TypeError(f"{type(obj).__name__} cannot go into an uplink message")


def _cbor_default(encoder: Any, obj: Any) -> None:
    """numpy arrays and scalars for cbor2 (bytes it writes natively)."""
    if type(obj).__module__ == "numpy":
        value = _array_dict(obj, binary=True) if hasattr(obj, "shape") and obj.shape \
            else obj.item()
        encoder.encode(value)
        return
    raise TypeError(f"{type(obj).__name__} cannot go into an uplink message")


def _from_wire(obj: Any) -> Any:
    """Inverse of :func:`_to_wire` (arrays come back as numpy arrays)."""
    if isinstance(obj, dict):
        if "__nd__" in obj:
            import numpy as np

            data = obj["data"]
            raw = data if isinstance(data, (bytes, bytearray)) else base64.b64decode(data)
            return np.frombuffer(raw, dtype=np.dtype(obj["__nd__"])).reshape(obj["shape"])
        if set(obj) == {"__b64__"}:
            return base64.b64decode(obj["__b64__"])
        return {k: _from_wire(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_wire(v) for v in obj]
    return obj


def _cbor() -> Any:
    from edgeinfer._deps import require

    return require("cbor2", "uplink", "CBOR encoding of uplink messages")


def encode(env: Envelope, encoding: str = "json") -> bytes:
    """The envelope as compact JSON or CBOR bytes."""
    if encoding not in ENCODINGS:
        raise UplinkError(f"bad encoding {encoding!r}: use json or cbor")
    body: dict[str, Any] = {"v": env.v, "id": env.id, "seq": env.seq, "ts": env.ts,
                            "p": env.payload}
    if env.raw is not None:
        body["raw"] = int(env.raw)
    try:
        if encoding == "cbor":
            return _cbor().dumps(body, default=_cbor_default)
        return json.dumps(body, separators=(",", ":"), default=_json_default).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise UplinkError(f"payload cannot be encoded as {encoding}: {exc}: send dicts, lists, "
                          "numbers, strings, bytes and numpy arrays") from exc


def decode(data: bytes) -> Envelope:
    """Bytes from :func:`encode` (either encoding) -> Envelope; UplinkError when malformed."""
    try:
        body = json.loads(data) if data[:1] == b"{" else _cbor().loads(data)
        return Envelope(
            id=str(body["id"]), seq=int(body["seq"]), ts=float(body["ts"]),
            payload=_from_wire(body.get("p")), raw=body.get("raw"), v=int(body.get("v", 1)),
        )
    except EdgeInferError:
        raise
    except Exception as exc:  # json, cbor2, KeyError, TypeError: all mean "not our envelope"
        raise UplinkError(
            f"undecodable uplink message ({len(data)} bytes): not an edgeinfer envelope ({exc})"
        ) from exc


def detections_payload(boxes: Any, scores: Any, class_ids: Any, **extra: Any) -> dict[str, Any]:
    """A compact results payload: ``{"d": [[x1, y1, x2, y2, score, class], ...], **extra}`` with
    whole-pixel coordinates and scores to 3 decimals (what a dashboard or a count needs)."""
    rows = [[round(float(v)) for v in b] + [round(float(s), 3), int(c)]
            for b, s, c in zip(boxes, scores, class_ids, strict=True)]
    return {"d": rows, **extra}


def payload_json(payload: Any) -> str:
    """A decoded payload as compact JSON text (arrays and bytes as base64), for storage."""
    return json.dumps(payload, separators=(",", ":"), default=_json_default)


def encoding_of(data: bytes) -> str:
    """``"json"`` or ``"cbor"``: which encoding a body uses."""
    return "json" if data[:1] == b"{" else "cbor"
