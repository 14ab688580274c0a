"""Exactly once, end to end, across the faults the broker's PUBACK does not cover: real
Mosquitto, node and collector processes, SQLite and a real PostgreSQL, a node streaming at
50 messages/s (120 messages per run here; ``benchmarks/uplink_soak.py`` runs 1,000)."""

from __future__ import annotations

from pathlib import Path

import pytest
from uplink_faults import SCENARIOS, postgres_store, run, sqlite_store

TOTAL, RATE = 120, 50.0


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    if kind == "sqlite":
        return sqlite_store(tmp_path / "collect.sqlite")
    cluster = request.getfixturevalue("postgres")
    return postgres_store(cluster, f"faults_{tmp_path.name.lower()[-40:]}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exactly_once_in_order_per_stream(scenario: str, kind: str, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    store = _store(kind, tmp_path, request)
    got = run(scenario, store, tmp_path / "run", total=TOTAL, rate=RATE, ack_timeout=1.0)
    assert got["missing"] == 0 and got["duplicated"] == 0, got
    assert got["in_order_per_stream"] and got["stored"] == TOTAL, got
    assert got["node_backlog"] == 0 and got["dropped"] == 0, got
    if scenario.startswith("broker_"):  # the broker lost what it had acknowledged: resent
        assert got["resent"] > 0, got


@pytest.mark.slow
def test_the_broker_ack_alone_loses_messages_in_the_same_fault(tmp_path: Path) -> None:
    """The fault bites: with the outbox emptied on the broker's PUBACK (ack="broker"), the
    same broker crash loses what the broker had acknowledged and not saved."""
    store = sqlite_store(tmp_path / "collect.sqlite")
    got = run("broker_kill_collector_offline", store, tmp_path / "run", total=TOTAL, rate=RATE,
              ack="broker")
    assert got["missing"] > 0 and got["node_backlog"] == 0, got
