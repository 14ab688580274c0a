"""A standalone split-computing node (``edgeinfer split-node``): the offload service of
:mod:`edgeinfer.collab.tails` on a scheduler of its own, behind the same guard as
``edgeinfer serve`` (bearer token, body limits), in the foreground or on a background thread
(tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer._deps import require
from edgeinfer.collab.tails import OFFLOAD_PREFIX, OffloadService, OffloadSettings, mount_offload
from edgeinfer.runtime.run_timing import TimedRuns
from edgeinfer.runtime.scheduler import Scheduler, SchedulerConfig
from edgeinfer.serve.auth import AccessPolicy, access_policy
from edgeinfer.serve.config import BodyLimits, resolve_token
from edgeinfer.serve.guard import Guard
from edgeinfer.serve.server import BackgroundServer

__all__ = ["NODE_MAX_BODY_BYTES", "BackgroundNode", "SplitNodeConfig", "create_split_app",
           "serve_split_node"]

#: the standalone node's default request-body limit: a cut's features, not an upload of photos
NODE_MAX_BODY_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SplitNodeConfig:
    """How a standalone offload node runs: ``threads`` intra-op threads per engine (0: every
    core), tails loaded under ``memory_budget_bytes`` (None: no limit; least recently used
    unloaded first), ``queue_size`` queued requests per tail, the offload settings and the
    body limits."""

    threads: int = 0
    memory_budget_bytes: int | None = None
    queue_size: int = 64
    offload: OffloadSettings = field(default_factory=OffloadSettings)
    limits: BodyLimits = field(default_factory=lambda: BodyLimits(NODE_MAX_BODY_BYTES))


def create_split_app(models: Mapping[str, str | Path], token: str | None = None,
                     config: SplitNodeConfig | None = None) -> Any:
    """A FastAPI app with the offload router under ``/v1/offload``, behind the guard: the
    bearer ``token`` (None: anonymous, which only loopback callers may choose) and the body
    limits. Its scheduler and sub-model files go with the app's lifespan."""
    fastapi = require("fastapi", "serve", "the offload node")
    config = config or SplitNodeConfig()
    timed = TimedRuns()
    scheduler = Scheduler(SchedulerConfig(workers=1, threads=config.threads,
                                          queue_size=config.queue_size,
                                          memory_budget_bytes=config.memory_budget_bytes),
                          loader=timed.loader())
    service = OffloadService(models, scheduler, timed, config.offload)

    @asynccontextmanager
    async def lifespan(app: Any):
        try:
            yield
        finally:
            scheduler.close(cancel_pending=True)
            service.close()

    app = fastapi.FastAPI(title="edgeinfer offload node", lifespan=lifespan)
    app.state.offload, app.state.scheduler = service, scheduler
    mount_offload(app, service)
    app.add_middleware(Guard, policy=AccessPolicy(token), limits=config.limits)
    return app


class BackgroundNode:
    """An offload node on a free loopback port in a daemon thread (tests, benchmarks, examples):
    ``url`` is its ``/v1/offload`` base. ``threads``, ``memory_budget_bytes``: as in
    :class:`SplitNodeConfig`; ``offload_kw`` (max_cuts, profile_runs, clock, max_preparing) go
    to :class:`~edgeinfer.collab.tails.OffloadSettings`."""

    def __init__(self, models: Mapping[str, str | Path], token: str | None = None,
                 max_body_bytes: int = NODE_MAX_BODY_BYTES, threads: int = 0,
                 memory_budget_bytes: int | None = None, **offload_kw: Any) -> None:
        config = SplitNodeConfig(threads, memory_budget_bytes, offload=OffloadSettings(
            **offload_kw), limits=BodyLimits(max_body_bytes))
        self.app = create_split_app(models, token, config)
        self._server = BackgroundServer(self.app).start()
        self.url = f"{self._server.url}{OFFLOAD_PREFIX}"

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.stop()


def serve_split_node(models: Mapping[str, str | Path], host: str, port: int,
                     token: str | None = None, allow_anonymous: bool = False,
                     config: SplitNodeConfig | None = None) -> None:
    """Run a standalone offload node (uvicorn) until interrupted. Access as for
    ``edgeinfer serve``: ``token`` (None: ``$EDGEINFER_TOKEN``), or anonymous only with
    ``allow_anonymous`` on a loopback ``host``."""
    policy = access_policy(resolve_token(token), allow_anonymous, host)
    uvicorn = require("uvicorn", "serve", "the offload node")
    uvicorn.run(create_split_app(models, policy.token, config), host=host, port=port,
                log_level="warning", timeout_graceful_shutdown=5)
