"""The node as an attacker and a bad network see it (real uvicorn on loopback, raw sockets for
the slow and vanishing clients): slow bodies hold no queue place and time out, a vanished
client is one log line and one count, oversized bodies are 413 in /metrics however they came,
an anonymous node refuses foreign Host/Origin, image bombs in every format are 400, and no
input is ever a 500."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from bombs import BOMBS
from serve_models import AUTH, TOKEN, conv_model, make_repository, wait_ready
from test_api import jpeg, tensor

from edgeinfer.serve.app import create_app
from edgeinfer.serve.config import NodeConfig
from edgeinfer.serve.server import BackgroundServer


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny, raw and slow (fixed shapes), and dyn (input N x 3 x H x W)."""
    root = make_repository(tmp_path_factory.mktemp("hostile") / "repo", corrupt=False)
    onnx.save(conv_model(["N", 3, "H", "W"]), str(root / "dyn.onnx"))
    return root


@pytest.fixture(scope="module")
def node(repo: Path) -> Iterator[BackgroundServer]:
    """A node with a short body timeout, 2 MiB bodies and queues of 2."""
    config = NodeConfig(repository=repo, token=TOKEN, max_body_bytes=2 * 2**20, queue_size=2,
                        body_timeout_s=2.0, max_pending_bodies=128)
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        yield srv


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def _no_500(url: str) -> str:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert 'code="500"' not in text
    return text


def _slow_body(url: str, path: str, length: int = 100_000, sent: bytes = b"0123456789"
               ) -> socket.socket:
    """A connection that sends the headers and ``sent`` of a ``length``-byte body, then
    stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Authorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + sent)
    return sock


def _status_of(sock: socket.socket, timeout: float = 10.0) -> int:
    sock.settimeout(timeout)
    head = sock.recv(4096)
    return int(head.split(b" ", 2)[1]) if head else 0


def test_a_normal_request_is_answered_while_100_slow_bodies_are_open(node) -> None:
    before = httpx.get(f"{node.url}/metrics", headers=AUTH).text
    slow = [_slow_body(node.url, "/v1/models/tiny/infer") for _ in range(100)]
    try:
        time.sleep(0.3)  # all of them in: headers and 10 bytes each
        with httpx.Client(base_url=node.url, headers=AUTH, timeout=30) as c:
            for _ in range(3):  # places in the queue (2 + 1) are not held by the slow ones
                r = c.post("/v1/models/tiny/infer", content=jpeg(),
                           headers={"Content-Type": "image/jpeg"})
                assert r.status_code == 200, r.text
        codes = [_status_of(s) for s in slow]  # the body timeout (2 s) answers every one
    finally:
        for s in slow:
            s.close()
    assert codes == [408] * 100, codes
    text = _no_500(node.url)
    timed_out = 'edgeinfer_refused_requests_total{code="408",reason="body_timeout"}'
    assert _metric(text, timed_out) - _metric(before, timed_out) == 100


def test_bodies_beyond_the_pending_bound_get_503_and_gets_still_work(repo: Path) -> None:
    config = NodeConfig(repository=repo, token=TOKEN, max_pending_bodies=4, body_timeout_s=5,
                        load_on_start=False)
    with BackgroundServer(create_app(config)) as srv:
        slow = [_slow_body(srv.url, "/v1/models/tiny/infer") for _ in range(4)]
        try:
            time.sleep(0.3)
            extra = _slow_body(srv.url, "/v1/models/tiny/infer")
            assert _status_of(extra) == 503
            extra.close()
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
            assert httpx.get(f"{srv.url}/v1/models", headers=AUTH).status_code == 200
        finally:
            for s in slow:
                s.close()


def test_a_client_that_vanishes_mid_body_is_one_line_and_one_count(
        node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    before = _metric(httpx.get(f"{node.url}/metrics", headers=AUTH).text,
                     "edgeinfer_client_disconnects_total")
    sock = _slow_body(node.url, "/v1/models/tiny/infer", 100_000, b"x" * 1000)
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    lines = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(lines) == 1 and "1000 of 100000 bytes" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    text = _no_500(node.url)
    assert _metric(text, "edgeinfer_client_disconnects_total") - before == 1


def test_chunked_body_over_the_limit_is_413_in_metrics_too(node) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts the chunks
        for _ in range(40):
            yield b"\x00" * 65536

    with httpx.Client(base_url=node.url, headers=AUTH, timeout=30) as c:
        r = c.post("/v1/models/tiny/infer", content=chunks(),
                   headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413 and "--max-body-mb" in r.json()["error"]
    text = _no_500(node.url)
    assert _metric(text, 'edgeinfer_requests_total{code="413",model="tiny"}') >= 1


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_every_image_bomb_is_a_400(node, name: str) -> None:
    with httpx.Client(base_url=node.url, headers=AUTH, timeout=30) as c:
        r = c.post("/v1/models/tiny/infer", files={"file": ("x", BOMBS[name](), "image/png")})
        assert r.status_code == 400, (name, r.text)
        assert "\n" not in r.json()["error"]
        r = c.post("/v1/offload/tiny/infer-image", content=BOMBS[name]())
        assert r.status_code == 400, (name, r.text)
    _no_500(node.url)


def test_json_bodies_larger_than_the_inputs_are_refused_unread(node) -> None:
    big = b'{"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [' + b"0.5, " * 300_000 + b"0]}}}"
    r = httpx.post(f"{node.url}/v1/models/raw/infer", content=big, headers={
        **AUTH, "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "inputs of 'raw'" in r.json()["error"]
    r = httpx.post(f"{node.url}/v1/models/raw/infer", json=tensor([1, 3, 8, 8]), headers=AUTH)
    assert r.status_code == 200


def test_large_json_bodies_are_parsed_in_the_helper_process(node, repo: Path) -> None:
    import os
    import signal

    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 3, 120, 200)).astype(np.float32)
    body = {"inputs": {"x": {"shape": list(x.shape), "data": x.ravel().tolist()}}}
    ref = ort.InferenceSession(str(repo / "dyn.onnx")).run(None, {"x": x})[0].ravel()
    parser = node.server.config.app.state.json_parser
    for attempt in range(2):  # the second after the helper was killed: started again
        r = httpx.post(f"{node.url}/v1/models/dyn/infer", json=body, headers=AUTH, timeout=60)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"]["y"]["data"], ref, rtol=1e-4, atol=1e-4)
        assert parser._proc is not None and parser._proc.poll() is None
        if attempt == 0:
            os.kill(parser._proc.pid, signal.SIGKILL)
            parser._proc.wait()
    assert len(r.request.content) > parser.inline_bytes


def test_offload_frames_that_would_overflow_are_400_in_serve_too(node) -> None:
    import struct

    from edgeinfer.collab.compress import MAGIC

    for dims in ((65536,) * 4, (0, 2**32 - 1, 2**32 - 1)):
        frame = (MAGIC + struct.pack("<BH", 0, 1) + struct.pack("<H", 1) + b"x"
                 + struct.pack("<BBB", 0, 0, len(dims)) + struct.pack(f"<{len(dims)}I", *dims)
                 + struct.pack("<ff", 1.0, 0.0))
        r = httpx.post(f"{node.url}/v1/offload/raw/infer", content=frame, headers=AUTH)
        assert r.status_code == 400 and "error" in r.json(), r.text
    _no_500(node.url)


@pytest.fixture(scope="module")
def anonymous(repo: Path) -> Iterator[BackgroundServer]:
    config = NodeConfig(repository=repo, allow_anonymous=True)
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        yield srv


@pytest.mark.parametrize("headers", [
    {"Host": "attacker.example"},                       # DNS rebinding
    {"Origin": "http://attacker.example"},              # a cross-site form POST
    {"Origin": "null"},                                 # a sandboxed page
    {"Host": "127.0.0.1.attacker.example:8080"},
], ids=["host", "origin", "null-origin", "lookalike-host"])
def test_anonymous_node_refuses_foreign_host_and_origin(anonymous, headers: dict) -> None:
    r = httpx.post(f"{anonymous.url}/v1/models/tiny/unload", headers=headers)
    assert r.status_code == 403 and "this machine only" in r.json()["error"]
    assert httpx.get(f"{anonymous.url}/v1/models/tiny").json()["state"] == "ready"


def test_anonymous_node_serves_loopback_names(anonymous) -> None:
    port = anonymous.url.rsplit(":", 1)[1]
    for headers in ({}, {"Host": f"localhost:{port}"}, {"Host": f"[::1]:{port}"},
                    {"Origin": f"http://127.0.0.1:{port}"}, {"Origin": f"http://localhost:{port}"}):
        assert httpx.get(f"{anonymous.url}/v1/models/tiny", headers=headers).status_code == 200


def test_a_token_node_takes_any_host(node) -> None:
    """With a token the browser cannot send (no cookie), Host and Origin say nothing."""
    r = httpx.get(f"{node.url}/v1/models/tiny", headers={**AUTH, "Host": "node.example",
                                                          "Origin": "http://elsewhere.example"})
    assert r.status_code == 200


def test_large_json_bodies_waiting_for_the_parser_are_bounded() -> None:
    import asyncio

    from edgeinfer.serve.json_worker import JsonParser, ParserBusyError

    class Spec:
        name, shape = "x", (-1, 3, -1, -1)

    body = b'{"inputs": {"x": {"shape": [1, 3, 200, 200], "data": [' + b"0.5, " * 119_999 \
        + b'0.5]}}}'
    parser = JsonParser(inline_bytes=1024, max_waiting=2)

    async def flood() -> list:
        return await asyncio.gather(*(parser.parse(body, [Spec()], 10**7) for _ in range(6)),
                                    return_exceptions=True)

    try:
        got = asyncio.run(flood())
    finally:
        parser.close()
    busy = [g for g in got if isinstance(g, ParserBusyError)]
    parsed = [g for g in got if isinstance(g, dict)]
    assert len(busy) == 4 and len(parsed) == 2, got
    assert parsed[0]["x"].shape == (1, 3, 200, 200)


def test_large_multipart_uploads_are_parsed_in_the_parser_process(node) -> None:
    import cv2

    big = np.random.default_rng(1).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    png = cv2.imencode(".png", big)[1].tobytes()
    parser = node.server.config.app.state.json_parser
    assert len(png) > parser.inline_bytes
    with httpx.Client(base_url=node.url, headers=AUTH, timeout=60) as c:
        r = c.post("/v1/models/tiny/infer", files={"file": ("a.png", png, "image/png")})
        assert r.status_code == 200, r.text
        assert parser._proc is not None and parser._proc.poll() is None
        direct = c.post("/v1/models/tiny/infer", content=png, headers={"Content-Type":
                                                                         "image/png"})
        assert direct.json()["result"] == r.json()["result"]
        two = [("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))]
        assert c.post("/v1/models/tiny/infer", files=two).status_code in (400, 413)
