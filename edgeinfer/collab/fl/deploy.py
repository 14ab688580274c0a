"""Start Flower's deployment engine as separate processes and submit the app with ``flwr run``.

Flower 1.32 deploys with a SuperLink (``flower-superlink``: Fleet API for sites, Control API for
``flwr run``, ServerAppIo for the ServerApp it spawns) and one SuperNode per site
(``flower-supernode``, which spawns the ClientApp). This module only launches and watches those
processes: addresses, a private ``FLWR_HOME`` holding the ``flwr`` CLI's SuperLink connection,
a fail-fast reachability check (a SuperNode would otherwise retry forever), and clean shutdown
of the process groups it started.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError

__all__ = [
    "APP_DIR",
    "Federation",
    "check_grpc",
    "check_reachable",
    "free_port",
    "parse_address",
    "start_superlink",
    "start_supernode",
    "submit_run",
    "wait_result",
]

APP_DIR = Path(__file__).parent / "app"


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise EdgeInferError(f"{name} not found beside {sys.executable}: run "
                             "`pip install 'edgeinfer[fl]'`")
    return str(path)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or a one-line error naming the expected form."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgeInferError(f"server address '{address}' is not HOST:PORT (e.g. "
                             "127.0.0.1:9092): fix --server")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Raise a one-line error unless a TCP connection to ``address`` opens within ``timeout``."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EdgeInferError(
            f"cannot reach the Flower server (SuperLink Fleet API) at {address}: {reason}; "
            "start it with `edgeinfer fl server` or fix --server"
        ) from exc


def check_grpc(address: str, timeout: float = 3.0) -> None:
    """Raise a one-line error unless ``address`` answers as a gRPC (HTTP/2) server in time.

    Catches a wrong address that accepts TCP but is not a SuperLink (a web server, the wrong
    port): a SuperNode would otherwise retry against it for its whole wait time.
    """
    check_reachable(address, timeout)
    grpc = require("grpc", "fl", "federated learning")
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError as exc:
        raise EdgeInferError(
            f"{address} accepts connections but does not answer as a Flower SuperLink (gRPC) "
            f"within {timeout:.0f} s: give the SuperLink's Fleet API address in --server"
        ) from exc
    finally:
        channel.close()


def _wait_port(address: str, proc: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise EdgeInferError(f"{what} exited with code {proc.returncode} "
                                 f"({tail[0][:160] if tail else 'no output'}): see {log}")
        try:
            check_reachable(address, timeout=0.5)
            return
        except EdgeInferError:
            time.sleep(0.2)
    raise EdgeInferError(f"{what} did not open {address} within {timeout:.0f} s: see {log}")


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _env(home: Path, threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    # the SuperLink and SuperNode spawn flower-superexec / flwr-serverapp / flwr-clientapp by name
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(FLWR_HOME=str(home), OMP_NUM_THREADS=str(threads),
               EDGEINFER_FL_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


@dataclass(frozen=True)
class LinkAddresses:
    """The SuperLink's three APIs on loopback."""

    fleet: str
    control: str
    serverappio: str

    @classmethod
    def free(cls, fleet: str | None = None) -> LinkAddresses:
        """Free loopback ports for all three, or for Control/ServerAppIo beside ``fleet``."""
        if fleet is not None:
            parse_address(fleet)
        return cls(fleet or f"127.0.0.1:{free_port()}",
                   *(f"127.0.0.1:{free_port()}" for _ in range(2)))


def start_superlink(addrs: LinkAddresses, home: Path, log: Path) -> subprocess.Popen:
    """Start ``flower-superlink --insecure`` and wait until its Fleet and Control APIs listen."""
    args = [_bin("flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
            "--fleet-api-address", addrs.fleet, "--control-api-address", addrs.control,
            "--serverappio-api-address", addrs.serverappio,
            "--health-server-address", f"127.0.0.1:{free_port()}"]
    proc = _spawn(args, log, _env(home))
    try:
        _wait_port(addrs.fleet, proc, "flower-superlink", log, 60)
        _wait_port(addrs.control, proc, "flower-superlink", log, 30)
    except EdgeInferError:
        stop(proc)
        raise
    return proc


def start_supernode(server: str, site: int, home: Path, log: Path,
                    threads: int = 1) -> subprocess.Popen:
    """Start a site's ``flower-supernode --insecure`` against ``server`` (fails fast if down)."""
    check_grpc(server)
    args = [_bin("flower-supernode"), "--insecure", "--superlink", server,
            "--clientappio-api-address", f"127.0.0.1:{free_port()}",
            "--node-config", f"site={int(site)}", "--max-wait-time", "30",
            "--health-server-address", f"127.0.0.1:{free_port()}"]
    return _spawn(args, log, _env(home, threads))


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate the process group we started for ``proc``: SIGTERM, then after the leader
    exits (or ``grace`` s) SIGKILL for any child left behind (a ServerApp still tearing down)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(5)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group at once: a site dying mid-round."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(5)


def write_connection(home: Path, control: str) -> None:
    """The ``flwr`` CLI's config in ``home``: one insecure SuperLink connection, the default."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "edgeinfer"\n\n[superlink.edgeinfer]\n'
        f'address = "{control}"\ninsecure = true\n', encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def submit_run(home: Path, config: dict[str, Any], app_dir: Path = APP_DIR) -> int:
    """``flwr run APP`` against the SuperLink in ``home``'s config; returns the run id."""
    overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in config.items())
    args = [_bin("flwr"), "run", str(app_dir), "--format", "json"]
    if overrides:
        args += ["--run-config", overrides]
    done = subprocess.run(args, capture_output=True, text=True, env=_env(home), timeout=120,
                          cwd=home)
    text = done.stdout.strip()
    try:
        reply = json.loads(text[text.index("{"):]) if "{" in text else {}
    except ValueError:
        reply = {}
    if done.returncode != 0 or not reply.get("success", False):
        lines = (done.stderr or text).strip().splitlines() or ["no output"]
        detail = str(reply.get("error-message") or lines[-1]).replace("\n", " ")
        raise EdgeInferError(f"`flwr run` failed ({detail[:200]}): "
                             f"command was {shlex.join(args)}")
    return int(reply.get("run-id", 0))


def wait_result(out_dir: Path, timeout: float, watch: list[subprocess.Popen],
                on_progress: Any = None) -> dict[str, Any]:
    """Wait for ``result.json`` in ``out_dir``; ``on_progress(progress)`` on each update."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        result = out_dir / "result.json"
        if result.exists():
            data = json.loads(result.read_text(encoding="utf-8"))
            if "error" in data:
                raise EdgeInferError(f"the federated run failed in the ServerApp: "
                                     f"{data['error'][:200]}")
            return data
        progress = out_dir / "progress.json"
        if on_progress and progress.exists() and progress.stat().st_mtime != seen:
            seen = progress.stat().st_mtime
            try:
                on_progress(json.loads(progress.read_text(encoding="utf-8")))
            except ValueError:
                pass
        if watch and watch[0].poll() is not None:
            raise EdgeInferError(f"the SuperLink exited (code {watch[0].returncode}) "
                                 "before the run finished: see its log")
        time.sleep(0.2)
    raise EdgeInferError(f"no result in {out_dir} after {timeout:.0f} s: see the logs there "
                         "(raise --timeout for longer runs)")


@dataclass
class Federation:
    """A SuperLink and one SuperNode per site on loopback, as separate processes.

    Use as a context manager; every process started is stopped on exit.
    """

    workdir: Path
    sites: int = 3  #: SuperNodes started here
    threads: int = 1
    expected: int = 0  #: sites the run waits for (0: ``sites``)
    addrs: LinkAddresses = field(default_factory=LinkAddresses.free)
    link: subprocess.Popen | None = None
    nodes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def home(self) -> Path:
        """The private FLWR_HOME of this federation."""
        return self.workdir / "flwr-home"

    def __enter__(self) -> Federation:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_connection(self.home, self.addrs.control)
        logs = self.workdir / "logs"
        self.link = start_superlink(self.addrs, self.home, logs / "superlink.log")
        for site in range(self.sites):
            self.nodes.append(start_supernode(self.addrs.fleet, site, self.home,
                                              logs / f"site{site}.log", self.threads))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in [*self.nodes, *([self.link] if self.link else [])]:
            stop(proc)

    def run(self, config: dict[str, Any], timeout: float = 600.0,
            on_progress: Any = None) -> dict[str, Any]:
        """Submit the app with ``config`` overrides and wait for its ``result.json``."""
        out = Path(config.get("out-dir") or self.workdir / "run")
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").unlink(missing_ok=True)
        expected = self.expected or self.sites
        submit_run(self.home, {**config, "out-dir": str(out), "expected-sites": expected})
        return wait_result(out, timeout, [self.link] if self.link else [], on_progress)
