"""Helpers of the uplink tests: a real Mosquitto on a free loopback port that the tests can kill
and restart, polling, and a look into the collector's database."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    """A TCP port nobody listens on at the moment (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process with a generated config; can be killed and restarted on its port.

    ``persistence true`` with a 1 s autosave keeps the collector's persistent session (and its
    subscription) across a broker crash, as a production broker configured for it would;
    ``autosave`` 1800 is Mosquitto's default (what was received since the last save is lost in
    a crash, acknowledged or not).
    """

    def __init__(self, workdir: Path, users: dict[str, str] | None = None,
                 tls: bool = False, autosave: int = 1) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"autosave_interval {autosave}",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            # the defaults plus subscriptions, so tests can wait for a subscriber
            *(f"log_type {t}" for t in ("error", "warning", "notice", "information",
                                        "subscribe")),
        ]
        if os.geteuid() == 0:  # else mosquitto drops to user 'mosquitto' and cannot write here
            lines.append("user root")
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.ca_cert: Path | None = None
        if tls:
            self.ca_cert = make_certs(self.dir)
            lines += [f"cafile {self.ca_cert}", f"certfile {self.dir / 'server.crt'}",
                      f"keyfile {self.dir / 'server.key'}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 5.0) -> Broker:
        """Start mosquitto and wait until it accepts TCP connections."""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the broker (SIGKILL by default: a crash, nothing saved at exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> Broker:
        """Start again on the same port."""
        self.kill()
        return self.start()

    @property
    def db(self) -> Path:
        """The persistence file."""
        return self.dir / "mosquitto.db"

    def log_size(self) -> int:
        """Bytes in the broker's log so far (to look for lines written after this point)."""
        log = self.dir / "mosquitto.log"
        return log.stat().st_size if log.exists() else 0


def make_certs(d: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl, EC P-256); the CA path."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days",
        "1", "-subj", "/CN=edgeinfer-test-ca")
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj",
        "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
        str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.crt"), "-days", "1",
        "-extfile", str(d / "san.ext"))
    return d / "ca.crt"


def subscribed(broker: Broker, client_id: str, since: int = 0) -> bool:
    """Whether the broker's log shows a subscription by ``client_id`` (after byte ``since``)."""
    log = broker.dir / "mosquitto.log"
    if not log.exists():
        return False
    with log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return any(line.split(": ", 1)[-1].startswith(f"{client_id} ")
               for line in text.splitlines())


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``cond`` until true or ``timeout`` s pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def stored_seqs(db: Path, stream: str) -> list[int]:
    """Sequence numbers of ``stream`` in the collector's database, in arrival order."""
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute(
            "SELECT seq FROM messages WHERE stream = ? ORDER BY n", (stream,))]
