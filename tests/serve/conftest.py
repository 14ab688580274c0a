"""Fixtures for the edge node: a model repository of tiny models built in code and a real
uvicorn server on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serve_models import AUTH, TOKEN, make_repository, wait_ready


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with good and corrupt entries."""
    return make_repository(tmp_path_factory.mktemp("serve") / "repo")


@pytest.fixture(scope="module")
def server(repo: Path):
    """A real uvicorn server for ``repo`` (token auth, 64 KiB uploads, queues of 2)."""
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.server import BackgroundServer

    config = NodeConfig(repository=repo, token=TOKEN, max_body_bytes=64 * 1024, queue_size=2,
                        node_name="test-node")
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        yield srv


@pytest.fixture
def client(server) -> httpx.Client:
    """An httpx client with the token."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c
