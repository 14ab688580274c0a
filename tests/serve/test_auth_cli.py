"""The access policy (token, anonymous only on loopback by explicit flag) and the CLI verb."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import onnx
import pytest
from serve_models import conv_model, make_repository, wait_ready

from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.auth import AccessPolicy, is_loopback, policy_for
from edgeinfer.serve.config import TOKEN_ENV, NodeConfig


def test_serve_help() -> None:
    assert main(["serve", "--help"]) == 0


def test_refuses_to_start_without_token(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(EdgeInferError, match="no API token"):
        policy_for(NodeConfig(repository=tmp_path))
    with pytest.raises(EdgeInferError, match="open the node to the network"):
        policy_for(NodeConfig(repository=tmp_path, host="0.0.0.0", allow_anonymous=True))
    assert policy_for(NodeConfig(repository=tmp_path, allow_anonymous=True)).anonymous
    with pytest.raises(EdgeInferError, match="shorter than 8"):
        policy_for(NodeConfig(repository=tmp_path, token="abc"))
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "no API token" in err and len(err.strip().splitlines()) == 1


def test_token_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    policy = policy_for(NodeConfig(repository=tmp_path, host="0.0.0.0"))
    assert policy.allows("Bearer from-the-environment")
    assert not policy.allows("Bearer from-the-environmenT")
    assert not policy.allows("Basic from-the-environment")
    assert not policy.allows(None)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.4.5.6")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")
    assert AccessPolicy.is_public("/healthz") and AccessPolicy.is_public("/static/x.js")
    assert not AccessPolicy.is_public("/v1/models") and not AccessPolicy.is_public("/metrics")


def test_anonymous_loopback_node_serves(tmp_path, monkeypatch) -> None:
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.server import BackgroundServer

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    repo = make_repository(tmp_path / "repo", corrupt=False)
    app = create_app(NodeConfig(repository=repo, allow_anonymous=True))
    with BackgroundServer(app) as srv:
        wait_ready(srv.url)
        r = httpx.get(f"{srv.url}/v1/models")
        assert r.status_code == 200
        assert {m["name"] for m in r.json()["models"]} == {"tiny", "raw", "slow"}


def test_missing_repository_is_one_line(tmp_path) -> None:
    from edgeinfer.serve.repository import scan

    with pytest.raises(EdgeInferError, match="no such model repository"):
        scan(tmp_path / "nope")
    with pytest.raises(EdgeInferError, match="no such streams file"):
        NodeConfig(repository=tmp_path, streams=tmp_path / "streams.yaml")


def test_cli_bad_streams_file_is_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "streams.yaml"
    bad.write_text("streams:\n  - {name: cam0}\n")
    code = main(["serve", str(tmp_path), "--token", "a-long-token", "--streams", str(bad),
                 "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_not_ready_when_no_model_can_serve(tmp_path) -> None:
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.server import BackgroundServer

    repo = tmp_path / "repo"
    (repo / "badjson").mkdir(parents=True)
    (repo / "badjson" / "edgeinfer.json").write_text("{")
    (repo / "junk.onnx").write_bytes(b"\x00\x01 not onnx")
    app = create_app(NodeConfig(repository=repo, token="a-long-token"))
    with BackgroundServer(app) as srv:
        app.state.node.wait_loaded(10)  # the background loader has tried both
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        models = httpx.get(f"{srv.url}/v1/models",
                           headers={"Authorization": "Bearer a-long-token"}).json()["models"]
        assert {m["name"]: m["state"] for m in models} == {"badjson": "failed",
                                                           "junk": "failed"}


def test_cli_bad_uplink_option_is_one_line(tmp_path, capsys) -> None:
    code = main(["serve", str(tmp_path), "--token", "a-long-token", "--uplink-host",
                 "127.0.0.1", "--uplink-encoding", "xml", "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "encoding" in err and len(err.strip().splitlines()) == 1, err


def test_background_server_connections_have_nagle_off(tmp_path) -> None:
    """The socket handed to uvicorn is a TCP one, so asyncio turns Nagle off on accepted
    connections (with proto 0 every small answer waited 40 ms for the client's delayed ACK)."""
    import socket

    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.server import BackgroundServer

    config = NodeConfig(repository=make_repository(tmp_path / "repo", corrupt=False),
                        allow_anonymous=True, load_on_start=False)
    with BackgroundServer(create_app(config)) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/healthz").status_code == 200  # the connection stays open (keep-alive)
        conns = list(srv.server.server_state.connections)
        assert conns
        for proto in conns:
            sock = proto.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_token_from_a_file_never_on_the_command_line(tmp_path, monkeypatch, caplog) -> None:
    # other tests' libraries may have raised the root level: capture this logger's warnings
    caplog.set_level(logging.WARNING, logger="edgeinfer.serve.config")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    secret = tmp_path / "token"
    secret.write_text("token-from-a-file-123\n")
    secret.chmod(0o600)
    policy = policy_for(NodeConfig(repository=tmp_path, host="0.0.0.0", token_file=secret))
    assert policy.allows("Bearer token-from-a-file-123") and not policy.allows("Bearer x")
    assert "can be read by other users" not in caplog.text
    secret.chmod(0o644)
    policy_for(NodeConfig(repository=tmp_path, host="0.0.0.0", token_file=secret))
    assert "can be read by other users" in caplog.text and "chmod 600" in caplog.text
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for bad, fragment in ((tmp_path / "missing", "cannot read it"), (empty, "is empty")):
        with pytest.raises(EdgeInferError, match=fragment) as err:
            policy_for(NodeConfig(repository=tmp_path, token_file=bad))
        assert "\n" not in str(err.value)


def test_cli_token_file_errors_are_one_line(tmp_path, capsys) -> None:
    code = main(["serve", str(tmp_path), "--token-file", str(tmp_path / "nope"), "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "API token file" in err and len(err.strip().splitlines()) == 1, err


def test_token_on_the_command_line_is_warned_about(tmp_path, capsys) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 8, 8]), str(model))
    with socket.socket() as taken:  # a port in use: the node stops right after the warning
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        main(["split-node", str(model), "--token", "a-long-token", "--port",
              str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert "visible to every user" in err and "--token-file" in err


@pytest.mark.slow
def test_split_node_with_a_token_file_keeps_it_out_of_ps(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    model = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 8, 8]), str(model))
    secret = tmp_path / "token"
    secret.write_text("split-node-secret-42")
    secret.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "edgeinfer.cli", "split-node", str(model),
                             "--port", str(port), "--token-file", str(secret)],
                            env={**os.environ, "TMPDIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1/offload/models"
        end = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url, headers={"Authorization": "Bearer split-node-secret-42"})
                break
            except httpx.HTTPError:
                assert time.monotonic() < end and proc.poll() is None, "did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == {"models": ["m"]}
        assert httpx.get(url).status_code == 401
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"split-node-secret-42" not in cmdline
    finally:
        proc.terminate()
        proc.wait(30)
