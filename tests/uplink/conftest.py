"""Fixtures of the uplink tests: real Mosquitto brokers on free loopback ports (anonymous, with
a password file, with TLS), killed at teardown, and one real PostgreSQL cluster for the session.
Helpers live in ``uplink_broker.py`` and ``pg_cluster.py``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import PgCluster, bindir
from uplink_broker import MOSQUITTO, MOSQUITTO_PASSWD, Broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """An anonymous mosquitto on a free 127.0.0.1 port; killed at teardown."""
    if not Path(MOSQUITTO).exists():
        pytest.fail(f"{MOSQUITTO} not found: apt-get install mosquitto")
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.kill()


@pytest.fixture
def mosquitto_auth(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto that demands username 'node1' / password 's3cret'."""
    if not Path(MOSQUITTO_PASSWD).exists() or not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto / mosquitto_passwd not found: apt-get install mosquitto")
    broker = Broker(tmp_path / "broker-auth", users={"node1": "s3cret"}).start()
    yield broker
    broker.kill()


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto that speaks only TLS, with a throwaway CA (``broker.ca_cert``)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot make test certificates")
    broker = Broker(tmp_path / "broker-tls", tls=True).start()
    yield broker
    broker.kill()




@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A PostgreSQL server on a free loopback port (initdb'd for this session, removed after);
    its password is in ``PGPASSWORD`` for the session, as a deployment would pass it."""
    if bindir() is None:
        pytest.fail("PostgreSQL server binaries not found: apt-get install postgresql "
                    "(make sysdeps)")
    pytest.importorskip("psycopg", reason="pip install 'edgeinfer[postgres]'")
    cluster = PgCluster().start()
    saved = os.environ.get("PGPASSWORD")
    os.environ.update(cluster.env())
    yield cluster
    if saved is None:
        os.environ.pop("PGPASSWORD", None)
    else:
        os.environ["PGPASSWORD"] = saved
    cluster.stop()
