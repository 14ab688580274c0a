"""A standalone split-computing node (``edgeinfer split-node``): the offload router of
:mod:`edgeinfer.collab.tails` behind the same guard as ``edgeinfer serve`` (bearer token,
request-body limit), in the foreground or on a background thread (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeinfer._deps import require
from edgeinfer.collab.tails import OFFLOAD_PREFIX, mount_offload
from edgeinfer.serve.auth import AccessPolicy, access_policy
from edgeinfer.serve.config import BodyLimits, resolve_token
from edgeinfer.serve.guard import Guard
from edgeinfer.serve.server import BackgroundServer

__all__ = ["NODE_MAX_BODY_BYTES", "BackgroundNode", "create_split_app", "serve_split_node"]

#: the standalone node's default request-body limit: a cut's features, not an upload of photos
NODE_MAX_BODY_BYTES = 64 * 2**20


def create_split_app(models: Mapping[str, str | Path], token: str | None = None,
                     max_body_bytes: int = NODE_MAX_BODY_BYTES, **router_kw: Any) -> Any:
    """A FastAPI app with the offload router under ``/v1/offload``, behind the guard: the
    bearer ``token`` (None: anonymous, which only loopback callers may choose) and the
    request-body limit (413 above it)."""
    fastapi = require("fastapi", "serve", "the offload node")
    app = fastapi.FastAPI(title="edgeinfer offload node")
    mount_offload(app, models, **router_kw)
    app.add_middleware(Guard, policy=AccessPolicy(token), limits=BodyLimits(max_body_bytes))
    return app


class BackgroundNode:
    """An offload node on a free loopback port in a daemon thread (tests, benchmarks, examples):
    ``url`` is its ``/v1/offload`` base; ``token``/``max_body_bytes`` as for
    :func:`serve_split_node`; ``router_kw`` go to :func:`edgeinfer.collab.tails.router`."""

    def __init__(self, models: Mapping[str, str | Path], token: str | None = None,
                 max_body_bytes: int = NODE_MAX_BODY_BYTES, **router_kw: Any) -> None:
        app = create_split_app(models, token, max_body_bytes, **router_kw)
        self._server = BackgroundServer(app).start()
        self.url = f"{self._server.url}{OFFLOAD_PREFIX}"

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.stop()


def serve_split_node(models: Mapping[str, str | Path], host: str, port: int, threads: int,
                     token: str | None = None, allow_anonymous: bool = False,
                     max_body_bytes: int = NODE_MAX_BODY_BYTES) -> None:
    """Run a standalone offload node (uvicorn) until interrupted. Access as for
    ``edgeinfer serve``: ``token`` (None: ``$EDGEINFER_TOKEN``), or anonymous only with
    ``allow_anonymous`` on a loopback ``host``; bodies over ``max_body_bytes`` get 413."""
    policy = access_policy(resolve_token(token), allow_anonymous, host)
    uvicorn = require("uvicorn", "serve", "the offload node")
    uvicorn.run(create_split_app(models, policy.token, max_body_bytes, threads=threads),
                host=host, port=port, log_level="warning")
