"""Run the node's app under uvicorn: in the foreground (the CLI) or on a background thread
bound to a socket the caller already holds (tests and the load benchmark, on a free loopback
port with no race between choosing the port and binding it)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.config import NodeConfig

__all__ = ["KEEP_ALIVE_S", "BackgroundServer", "preflight", "run_server"]

#: idle keep-alive connections are closed after this long. uvicorn's default (5 s) equals
#: httpx's pool expiry, so a client could send on a connection the node was closing at that
#: instant (the load test saw 2 ReadErrors in 30 s); clients should expire theirs sooner.
KEEP_ALIVE_S = 30


def _uvicorn() -> Any:
    require("fastapi", "serve", "edgeinfer serve")
    return require("uvicorn", "serve", "edgeinfer serve")


def run_server(config: NodeConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve ``config`` until interrupted (the access policy is checked before binding);
    ``announce`` receives the one line that says where the node listens."""
    uvicorn = _uvicorn()
    from edgeinfer.serve.app import create_app

    app = create_app(config)
    preflight(config)
    if announce is not None:
        announce(f"edgeinfer node '{config.node_name}' on http://{config.host}:{config.port}"
                 f"  (dashboard /, API /v1, metrics /metrics, spec /openapi.json)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S)


def preflight(config: NodeConfig) -> None:
    """Check what the node's start-up reads (the repository, the streams file), so a mistake
    is a one-line error before the server binds rather than a failed start-up inside it."""
    from edgeinfer.serve.repository import scan

    scan(config.repository)
    if config.streams is not None:
        from edgeinfer.pipeline.multistream import load_streams_config

        load_streams_config(config.streams)
    if config.uplink is not None:
        from edgeinfer.serve.node import uplink_config

        uplink_config(config)


class BackgroundServer:
    """A uvicorn server for ``app`` on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        uvicorn = _uvicorn()
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listener's proto says TCP; with proto 0 Nagle's algorithm meets the client's delayed
        # ACK and every small response waited 40 ms (measured 44 ms vs 0.44 ms per request)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=3,
                                                    timeout_keep_alive=KEEP_ALIVE_S))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="edgeinfer-uvicorn", daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the server accepts requests."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise EdgeInferError(f"the node did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down (the app's lifespan closes the node) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
