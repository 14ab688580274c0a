"""The ASGI guard in front of every server the package runs (``edgeinfer serve``,
``edgeinfer split-node``): the bearer token and the request-body limit, checked before the
application sees a request, so a refused request costs no parsing.

Every refusal is JSON ``{"error": "<one line>"}``: 401 missing or wrong token, 400 a bad
``Content-Length``, 413 a body over the limit (the message names the option that sets it).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

from edgeinfer.serve.auth import AccessPolicy

logger = logging.getLogger(__name__)

__all__ = ["BODY_LIMIT_OPTION", "Guard", "error_response", "one_line"]

#: the command-line option that sets the request-body limit, on every server verb
BODY_LIMIT_OPTION = "--max-body-mb"


def one_line(text: str) -> str:
    """The first line of ``text``, at most 300 characters ("error" when empty)."""
    line = text.strip().splitlines()[0] if text.strip() else "error"
    return line[:300]


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": "<one line>"}`` with ``status``."""
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


class _TooLargeError(Exception):
    pass


class Guard:
    """Checks the bearer token and the body size before the app sees the request.

    ``limit``: the largest body in bytes; ``limit_option``: the option that set it, named in
    the 413 message so the operator knows what to raise.
    """

    def __init__(self, app: Any, policy: AccessPolicy, limit: int,
                 limit_option: str = BODY_LIMIT_OPTION) -> None:
        self.app, self.policy, self.limit = app, policy, limit
        self.limit_option = limit_option

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """ASGI entry: refuse with 401/413 or pass on with a counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.policy.is_public(scope["path"]) and not self.policy.allows(
            headers.get("authorization")
        ):
            await error_response(401, "missing or wrong bearer token: send 'Authorization: "
                                      "Bearer <token>'", {"WWW-Authenticate": "Bearer"})(
                scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "bad Content-Length header")(scope, receive, send)
                return
            if int(length) > self.limit:
                await self._too_large(scope, receive, send)
                return
        seen = 0
        started = False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLargeError
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLargeError:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: dict, receive: Any, send: Any) -> None:
        mib = self.limit / 2**20
        await error_response(413, f"request body over the upload limit of {mib:.1f} MiB: send "
                                  f"a smaller body (or start the node with a larger "
                                  f"{self.limit_option})")(scope, receive, send)
