"""The uplink's CLI verbs: help, a real send/collect round trip, and one-line errors."""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from uplink_broker import Broker, free_port, subscribed, wait_until

from edgeinfer.cli import main


def test_help() -> None:
    assert main(["collect", "--help"]) == 0
    assert main(["uplink-send", "--help"]) == 0


def test_send_and_collect(mosquitto: Broker, tmp_path: Path) -> None:
    db = tmp_path / "out.sqlite"
    collector = threading.Thread(target=main, args=(
        ["collect", "--port", str(mosquitto.port), "--db", str(db), "--duration", "6"],))
    collector.start()
    # messages published before the collector subscribes are lost: wait for its subscription
    assert wait_until(lambda: subscribed(mosquitto, "edgeinfer-collect"), 5)
    rc = main(["uplink-send", "--port", str(mosquitto.port), "--count", "25", "--encoding",
               "cbor", "--outbox", str(tmp_path / "o.sqlite")])
    collector.join(15)
    assert rc == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), MAX(seq) FROM messages").fetchone() == (25, 24)
        assert con.execute("SELECT DISTINCT encoding FROM messages").fetchall() == [("cbor",)]


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["collect", "--url", "mysql://x", "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "postgresql://" in err
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "psycopg", None)  # as without the extra installed
        assert main(["collect", "--url", "postgresql://u@127.0.0.1/db", "--duration", "0"]) == 2
    assert "edgeinfer[postgres]" in capsys.readouterr().err
    port = free_port()  # nobody listens: a one-line connection error naming the server
    assert main(["collect", "--url", f"postgresql://u@127.0.0.1:{port}/db",
                 "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}/db" in err and "cannot connect" in err
    assert main(["uplink-send", "--outbox", str(tmp_path / "no" / "o.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
    outbox = tmp_path / "o2.sqlite"
    assert main(["uplink-send", "--stream", "a/b", "--outbox", str(outbox)]) == 2
    assert "bad stream name" in capsys.readouterr().err
    assert not outbox.exists()  # refused before anything was written
