"""The node's scheduler is sized by its own settings, else by the streams file's
``scheduler:`` section, else by the defaults; a bad streams file stops it before it binds."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_models import TOKEN, make_repository

from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.config import NodeConfig
from edgeinfer.serve.node import Node


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repository(tmp_path_factory.mktemp("node") / "repo", corrupt=False)


def _streams(path: Path, repo: Path, scheduler: str) -> Path:
    (path.parent / "cam.mp4").touch()  # checked to exist; never opened (streams not started)
    path.write_text(f"models:\n  tiny: {repo / 'tiny'}\n{scheduler}"
                    "streams:\n  - {name: cam0, source: cam.mp4, model: tiny}\n")
    return path


def _scheduler(config: NodeConfig) -> tuple[int, int, int, str]:
    node = Node(config)
    try:
        c = node.scheduler.config
        return c.workers, c.threads, c.queue_size, c.options.spinning, c.preempt
    finally:
        node.close()


def test_streams_file_sizes_the_scheduler_unless_the_node_says(repo: Path,
                                                                tmp_path: Path) -> None:
    f = _streams(tmp_path / "s.yaml", repo,
                 "scheduler: {workers: 2, threads: 1, queue_size: 5, spinning: never, "
                 "preempt: true}\n")
    assert _scheduler(NodeConfig(repository=repo, token=TOKEN, streams=f)) == (
        2, 1, 5, "never", True)
    assert _scheduler(NodeConfig(repository=repo, token=TOKEN, streams=f, workers=1,
                                 queue_size=9, spinning="always")) == (1, 1, 9, "always", True)
    plain = _streams(tmp_path / "p.yaml", repo, "")
    assert _scheduler(NodeConfig(repository=repo, token=TOKEN, streams=plain)) == (
        0, 0, 64, "run", False)
    assert _scheduler(NodeConfig(repository=repo, token=TOKEN)) == (0, 0, 64, "run", False)
    assert _scheduler(NodeConfig(repository=repo, token=TOKEN, spinning="never"))[3] == "never"
    with pytest.raises(EdgeInferError, match="bad spinning 'often'"):
        NodeConfig(repository=repo, token=TOKEN, spinning="often")


@pytest.mark.parametrize("section, message", [
    ("{workerz: 2}", "unknown key 'workerz'"),
    ("{workers: two}", "workers must be a whole number"),
    ("{spinning: sometimes}", "spinning must be one of run, always, never"),
    ("{preempt: maybe}", "preempt must be true or false"),
])
def test_a_bad_streams_file_stops_the_node_at_once(repo: Path, tmp_path: Path, section: str,
                                                   message: str) -> None:
    f = _streams(tmp_path / "bad.yaml", repo, f"scheduler: {section}\n")
    with pytest.raises(EdgeInferError, match=message):
        Node(NodeConfig(repository=repo, token=TOKEN, streams=f))
