"""The envelope and topic scheme: round trips, encodings and bad names."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.serve.messages import (
    Envelope,
    UplinkError,
    decode,
    encode,
    encoding_of,
    parse_topic,
    payload_json,
    status_topic,
    topic,
)


@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_round_trip_keeps_everything(encoding: str) -> None:
    feats = np.arange(12, dtype=np.float16).reshape(3, 4)
    env = Envelope.make(7, {"boxes": [[1.5, 2, 3, 4, 0.9, 1]], "f": feats, "b": b"\x00\x01"},
                        raw=123456)
    body = encode(env, encoding)
    assert encoding_of(body) == encoding
    back = decode(body)
    assert (back.id, back.seq, back.ts, back.raw) == (env.id, 7, env.ts, 123456)
    assert back.payload["boxes"] == [[1.5, 2, 3, 4, 0.9, 1]]
    assert back.payload["b"] == b"\x00\x01"
    np.testing.assert_array_equal(back.payload["f"], feats)
    assert back.payload["f"].dtype == np.float16
    assert '"__nd__":"<f2"' in payload_json(back.payload)


def test_json_is_compact_and_cbor_smaller() -> None:
    env = Envelope.make(0, {"boxes": [[10, 20, 30, 40, 0.875, 2]] * 5})
    js, cb = encode(env, "json"), encode(env, "cbor")
    assert b" " not in js
    assert len(cb) < len(js)


def test_ids_are_unique() -> None:
    assert len({Envelope.make(0, {}).id for _ in range(1000)}) == 1000


def test_topics() -> None:
    assert topic("s1", "n1", "cam-1", "results") == "edgeinfer/s1/n1/cam-1/results"
    assert status_topic("s1", "n1") == "edgeinfer/s1/n1/status"
    assert parse_topic("edgeinfer/s1/n1/cam-1/features") == {
        "site": "s1", "node": "n1", "stream": "cam-1", "kind": "features"}
    assert parse_topic("edgeinfer/s1/n1/status")["kind"] == "status"
    assert parse_topic("other/s1/n1/cam/results") is None
    assert parse_topic("edgeinfer/s1/n1/cam/frames") is None


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "with space", "x" * 65])
def test_bad_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(UplinkError, match="bad stream name") as err:
        topic("s1", "n1", bad, "results")
    assert "\n" not in str(err.value)


def test_bad_kind_and_garbage() -> None:
    with pytest.raises(UplinkError, match="results, features"):
        topic("s1", "n1", "cam", "frames")
    with pytest.raises(UplinkError, match="undecodable"):
        decode(b"{not json")
    with pytest.raises(UplinkError, match="undecodable"):
        decode(b"\xa1\x01")  # a CBOR map without the envelope's keys


@pytest.mark.parametrize(("kw", "match"), [
    ({"encoding": "xml"}, "use json or cbor"),
    ({"port": 0}, "bad MQTT port"),
    ({"qos": 2}, "bad uplink qos"),
    ({"site": "a/b"}, "bad site name"),
    ({"password": "x"}, "without a username"),
    ({"tls": True, "ca_certs": "/nonexistent/ca.pem"}, "not found"),
])
def test_bad_config_is_one_line(kw: dict, match: str, tmp_path: Path) -> None:
    from edgeinfer.serve.uplink import UplinkConfig

    with pytest.raises(UplinkError, match=match) as err:
        UplinkConfig(outbox=str(tmp_path / "o.sqlite"), **kw)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_unencodable_payload_is_one_line(encoding: str, tmp_path: Path) -> None:
    from edgeinfer.serve.uplink import Uplink, UplinkConfig

    with pytest.raises(UplinkError, match=f"cannot be encoded as {encoding}"):
        encode(Envelope.make(0, {"x": object()}), encoding)
    up = Uplink(UplinkConfig(outbox=str(tmp_path / "o.sqlite"), encoding=encoding))
    with pytest.raises(UplinkError, match="cannot be encoded"):
        up.publish("cam1", "results", {"x": object()})
    up.publish("cam1", "results", {"x": 1})  # the failed one used no sequence number
    assert up.outbox.backlog == 1 and up.outbox.next_seq("cam1") == 1
    up.close()


def test_missing_paho_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeinfer.errors import MissingDependencyError
    from edgeinfer.serve.uplink import Uplink, UplinkConfig

    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"edgeinfer\[uplink\]"):
        Uplink(UplinkConfig(outbox=str(tmp_path / "o.sqlite")))
