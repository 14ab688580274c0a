"""The edge node's configuration: one frozen object built by the CLI (or a test)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.errors import EdgeInferError

logger = logging.getLogger(__name__)

__all__ = ["BODY_LIMIT_OPTION", "TOKEN_ENV", "BodyLimits", "NodeConfig", "UplinkSettings",
           "read_secret", "resolve_token"]

#: environment variable read for the API token when ``--token`` is not given
TOKEN_ENV = "EDGEINFER_TOKEN"
#: the command-line option that sets the request-body limit, on every server verb
BODY_LIMIT_OPTION = "--max-body-mb"


@dataclass(frozen=True)
class BodyLimits:
    """How request bodies are received.

    ``max_bytes``: the largest body (``option`` names the setting, for the 413 message);
    ``timeout_s``: a body must be in within this many seconds of the request's start;
    ``max_pending``: bodies being received at once; ``buffer_bytes``: bytes of bodies being
    received, in total (memory held by slow clients is at most this; None: four bodies or
    256 MiB, whichever is more)."""

    max_bytes: int = 16 * 2**20
    option: str = BODY_LIMIT_OPTION
    timeout_s: float = 30.0
    max_pending: int = 128
    buffer_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise EdgeInferError(f"body limit {self.max_bytes} bytes is too small: give at "
                                 "least 1 KiB")
        if self.timeout_s <= 0 or self.max_pending < 1 or self.held_limit < self.max_bytes:
            raise EdgeInferError(
                f"bad body limits (timeout {self.timeout_s} s, {self.max_pending} pending, "
                f"{self.buffer_bytes} buffer bytes): give a positive timeout, at least one "
                "pending body and a buffer of at least one body")

    @property
    def held_limit(self) -> int:
        """Bytes of bodies being received that may be held at once."""
        return self.buffer_bytes or max(256 * 2**20, 4 * self.max_bytes)


@dataclass(frozen=True)
class UplinkSettings:
    """Where the node sends stream results (MQTT); see :mod:`edgeinfer.serve.uplink`."""

    host: str
    port: int = 1883
    site: str = "site"
    outbox: Path | None = None
    encoding: str = "json"
    qos: int = 1
    keepalive: int = 10
    tls: bool = False
    ca_certs: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``edgeinfer serve`` needs.

    ``repository``: a directory of artifact directories (and bare .onnx files).
    ``token``: the bearer token (None: read ``token_file``, else ``EDGEINFER_TOKEN``: a
    token on the command line is visible to every user of the machine); anonymous access needs
    ``allow_anonymous`` and a loopback ``host``. ``max_body_bytes``: larger request bodies
    get 413; ``body_timeout_s``: a body not in by then gets 408; ``max_pending_bodies``:
    bodies received at once, 503 beyond (:class:`BodyLimits`). ``queue_size``/``workers``:
    the Scheduler's bounded queues and worker threads (None/0: the streams file's
    ``scheduler:`` section, else 64 / automatic). ``spinning``: ONNX Runtime's workers
    (``run``/``always``/``never``; None: the streams file's, else run). ``load_on_start``:
    load every valid model when the node starts (readiness waits for it).
    ``memory_budget_bytes``: loaded models and split tails stay under it, least recently used
    unloaded first (None: the streams file's, else no limit).
    """

    repository: Path
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    token_file: Path | None = None
    allow_anonymous: bool = False
    streams: Path | None = None
    max_body_bytes: int = 16 * 2**20
    body_timeout_s: float = 30.0
    max_pending_bodies: int = 128
    memory_budget_bytes: int | None = None
    queue_size: int | None = None
    workers: int = 0
    load_on_start: bool = True
    node_name: str = "edge-node"
    uplink: UplinkSettings | None = None
    spinning: str | None = None

    def __post_init__(self) -> None:
        self.body_limits()  # validates them
        if not 0 <= self.port < 65536:
            raise EdgeInferError(f"bad port {self.port}: give 0..65535")
        from edgeinfer.runtime.backends import SPINNING_MODES

        if self.spinning is not None and self.spinning not in SPINNING_MODES:
            raise EdgeInferError(f"bad spinning '{self.spinning}': choose run, always or never")
        if self.queue_size is not None and self.queue_size < 1:
            raise EdgeInferError(f"bad queue size {self.queue_size}: give at least 1")
        if self.streams is not None and not Path(self.streams).is_file():
            raise EdgeInferError(f"{self.streams}: no such streams file: check the path")

    def body_limits(self) -> BodyLimits:
        """How the node's guard receives request bodies."""
        return BodyLimits(self.max_body_bytes, timeout_s=self.body_timeout_s,
                          max_pending=self.max_pending_bodies)

    def resolved_token(self) -> str | None:
        """The token from the config, else from ``token_file``, else from
        ``EDGEINFER_TOKEN`` (empty counts as none)."""
        return resolve_token(self.token, self.token_file)


def resolve_token(token: str | None, token_file: str | Path | None = None) -> str | None:
    """``token`` when given, else the token in ``token_file``, else ``$EDGEINFER_TOKEN``
    (empty counts as none)."""
    return read_secret("API token", token, token_file, TOKEN_ENV)


def read_secret(what: str, value: str | None = None, file: str | Path | None = None,
                env: str | None = None) -> str | None:
    """A secret from, in order, ``value``, the file ``file`` (its content, surrounding
    whitespace stripped) or the environment variable ``env``; None when none gives one.
    EdgeInferError (one line) for a file that cannot be read or is empty; a file others may
    read is used, with a warning."""
    if value:
        return value
    if file is not None:
        path = Path(file)
        try:
            secret = path.read_text(encoding="utf-8").strip()
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise EdgeInferError(f"{what} file {path}: cannot read it ({why}): check the path "
                                 "and its permissions") from exc
        if not secret:
            raise EdgeInferError(f"{what} file {path} is empty: write the {what} in it")
        if mode & 0o077:
            logger.warning("%s file %s can be read by other users (mode %03o): chmod 600 it",
                           what, path, mode & 0o777)
        return secret
    return (os.environ.get(env) or None) if env else None
