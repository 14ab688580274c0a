"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries, ``initdb``
into a fresh directory, ``pg_ctl`` on a free loopback port, password authentication over TCP
(the password reaches clients through ``PGPASSWORD``, never a command line), stopped and
removed at the end.

PostgreSQL refuses to run as root: when the tests run as root (CI containers), the cluster is
owned and run by the ``postgres`` system user (``runuser``), or ``nobody`` without one.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from uplink_broker import free_port

#: where Debian puts the server binaries (initdb and pg_ctl are not on PATH there)
BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "edgeinfer"


def bindir() -> Path | None:
    """The newest PostgreSQL server binaries installed, or None."""
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    for d in reversed(found):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    which = shutil.which("initdb")
    return Path(which).parent if which else None


class PgCluster:
    """One PostgreSQL server for the session; :meth:`create_db` gives each test its own
    database."""

    def __init__(self, fsync: bool = False) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
        # not under pytest's tmp tree: its 0700 root-owned parents bar the postgres user
        self.dir = Path(tempfile.mkdtemp(prefix="edgeinfer-pg-"))
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.fsync = fsync
        self.owner: str | None = None
        if os.geteuid() == 0:
            self.owner = "postgres" if _user_exists("postgres") else "nobody"
            os.chmod(self.dir, 0o755)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PgCluster:
        """initdb, then start on 127.0.0.1:port (no Unix socket outside the cluster dir)."""
        data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.owner is not None:
            owner = pwd.getpwnam(self.owner)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        os.chmod(pwfile, 0o600)
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                  "--no-sync", "--no-instructions")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories="
                f"{self.dir} -c fsync={'on' if self.fsync else 'off'}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                  str(self.dir / "log"), "-w", "-t", "60", "start")
        return self

    def env(self) -> dict[str, str]:
        """What a client's environment needs for the password (libpq reads PGPASSWORD)."""
        return {"PGPASSWORD": self.password}

    def url(self, db: str = "postgres") -> str:
        """The connection URL of ``db`` (no password in it)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), password=self.password, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, db: str, sql: str, *params: object) -> list[tuple]:
        """Rows of ``sql`` in database ``db``."""
        import psycopg

        with psycopg.connect(self.url(db), password=self.password) as con:
            return con.execute(sql, params).fetchall()

    def stop(self) -> None:
        """Stop the server at once and remove the cluster."""
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                      "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
