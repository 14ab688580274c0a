"""The ASGI guard in front of every server the package runs (``edgeinfer serve``,
``edgeinfer split-node``): who may call, and how request bodies come in.

In order, before the application sees a request:

1. Anonymous mode (no token, loopback only): the ``Host`` header must be a loopback name
   (``localhost``, 127.0.0.0/8, ``[::1]``) and an ``Origin``, when a browser sends one, too;
   else 403. A page on another site cannot then drive the node from a victim's browser (a
   cross-site form POST, DNS rebinding).
2. The bearer token (constant-time compare): else 401.
3. The body is read here, whole, before the app runs: at most ``max_bytes``, or a narrower
   limit the app gives for the request (``body_limit``; 413 above it, whether declared by
   ``Content-Length`` or counted as chunks arrive, and then unread), within ``timeout_s``
   (408 after), with at most ``max_pending`` bodies being received at once and at most
   ``buffer_bytes`` of them held (503 beyond). So a slow or stalled client holds no place in
   any inference queue, and admission to a queue happens only once a body is in. A client that
   goes away mid-body is one log line and one count, never an error in the app.

Every refusal is JSON ``{"error": "<one line>"}`` and is reported to ``on_refused(path,
status, reason)`` (the node counts it in ``/metrics``); a vanished client goes to
``on_disconnect(path)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from edgeinfer.serve.auth import AccessPolicy, is_loopback
from edgeinfer.serve.config import BodyLimits

logger = logging.getLogger(__name__)

__all__ = ["BodyLimitFn", "Guard", "error_response", "foreign_origin", "one_line"]

#: ``(path, headers) -> (bytes, 413 message)``: a request's own body limit when narrower than
#: the server's (the node's: a JSON body for a model can need no more than its inputs)
BodyLimitFn = Callable[[str, dict[str, str]], tuple[int, str] | None]

#: methods whose requests are read for a body even without a Content-Length
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def one_line(text: str) -> str:
    """The first line of ``text``, at most 300 characters ("error" when empty)."""
    line = text.strip().splitlines()[0] if text.strip() else "error"
    return line[:300]


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": "<one line>"}`` with ``status``."""
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


class _RefusedError(Exception):
    """A body not taken: ``status`` (0: the client went away, nothing to answer)."""

    def __init__(self, status: int, reason: str, message: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers


def _host_name(value: str) -> str | None:
    try:
        return urlsplit(f"//{value}").hostname
    except ValueError:
        return None


def foreign_origin(headers: dict[str, str]) -> str | None:
    """Why a request may come from another site (a non-loopback ``Host`` or ``Origin``), or
    None when both are loopback names (or absent: not a browser)."""
    host = headers.get("host")
    if host is not None and not is_loopback(_host_name(host) or ""):
        return f"Host '{host[:60]}'"
    origin = headers.get("origin")
    if origin is not None:
        name = urlsplit(origin).hostname if origin != "null" else None
        if not name or not is_loopback(name):
            return f"Origin '{origin[:60]}'"
    return None


class Guard:
    """ASGI middleware: origin (anonymous mode), token and body checks, then the app with the
    body already read. Counters and buffers are per Guard, on the event loop's thread."""

    def __init__(self, app: Any, policy: AccessPolicy, limits: BodyLimits | None = None,
                 on_refused: Callable[[str, int, str], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None,
                 body_limit: BodyLimitFn | None = None) -> None:
        self.app, self.policy, self.limits = app, policy, limits or BodyLimits()
        self.on_refused, self.on_disconnect = on_refused, on_disconnect
        self.body_limit = body_limit
        self.pending = 0  #: bodies being received now
        self.buffered = 0  #: bytes held by them

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """ASGI entry: refuse, or run the app with a ``receive`` that replays the body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self._check_caller(scope, headers)
            body = await self._read_body(scope, headers, receive)
        except _RefusedError as refusal:
            await self._refuse(scope, receive, send, refusal)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_caller(self, scope: dict, headers: dict[str, str]) -> None:
        if self.policy.anonymous:
            why = foreign_origin(headers)
            if why is not None:
                raise _RefusedError(403, "foreign_origin", (
                    f"this node takes anonymous requests from this machine only, not from "
                    f"{why}: open it as http://127.0.0.1:PORT, or start it with a token"))
        if not self.policy.is_public(scope["path"]) and not self.policy.allows(
                headers.get("authorization")):
            raise _RefusedError(401, "unauthorized", "missing or wrong bearer token: send "
                           "'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})

    async def _read_body(self, scope: dict, headers: dict[str, str], receive: Any) -> bytes:
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise _RefusedError(400, "bad_length", "bad Content-Length header")
        limit, too_large = self.limits.max_bytes, self._too_large()
        if self.body_limit is not None:
            narrower = self.body_limit(scope["path"], headers)
            if narrower is not None and narrower[0] < limit:
                limit, too_large = narrower[0], _RefusedError(413, "too_large", narrower[1])
        if length is not None and int(length) > limit:
            raise too_large
        if length in (None, "0") and "transfer-encoding" not in headers and \
                scope.get("method") not in _BODY_METHODS:
            return b""  # no body: nothing to hold a place for
        if self.pending >= self.limits.max_pending:
            raise self._busy(f"{self.pending} request bodies are being received")
        self.pending += 1
        chunks: list[bytes] = []
        held = 0
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        self._went_away(scope, held, length)
                        raise _RefusedError(0, "client_disconnect")
                    chunk = message.get("body", b"")
                    if held + len(chunk) > limit:
                        raise too_large
                    if self.buffered + len(chunk) > self.limits.held_limit:
                        raise self._busy(f"{self.buffered} bytes of bodies are being received")
                    chunks.append(chunk)
                    held += len(chunk)
                    self.buffered += len(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _RefusedError(408, "body_timeout", (
                f"the request body did not arrive within {self.limits.timeout_s:g} s "
                f"({held} bytes came): send it faster, or in a smaller request")) from None
        finally:
            self.pending -= 1
            self.buffered -= held

    def _too_large(self) -> _RefusedError:
        mib = self.limits.max_bytes / 2**20
        return _RefusedError(413, "too_large", (
            f"request body over the upload limit of {mib:.1f} MiB: send a smaller body (or "
            f"start the node with a larger {self.limits.option})"))

    @staticmethod
    def _busy(what: str) -> _RefusedError:
        return _RefusedError(503, "busy_receiving", f"the node is busy receiving ({what}): retry "
                        "in a moment", {"Retry-After": "1"})

    def _went_away(self, scope: dict, held: int, length: str | None) -> None:
        client = scope.get("client") or ("?", 0)
        of = f" of {length}" if length is not None else ""
        logger.warning("client %s:%s went away after %d%s bytes of %s %s", client[0], client[1],
                       held, of, scope.get("method"), scope["path"])
        if self.on_disconnect is not None:
            self.on_disconnect(scope["path"])

    async def _refuse(self, scope: dict, receive: Any, send: Any, refusal: _RefusedError) -> None:
        if refusal.status == 0:
            return  # nobody to answer
        if self.on_refused is not None:
            self.on_refused(scope["path"], refusal.status, refusal.reason)
        await error_response(refusal.status, refusal.message, refusal.headers)(scope, receive,
                                                                                 send)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the app the body once, then passes on (disconnect events)."""
    given = False

    async def replayed() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
