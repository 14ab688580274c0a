"""The node's HTTP API against a real uvicorn server: every endpoint, auth, errors, overload."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import cv2
import httpx
import numpy as np
import pytest
from serve_models import AUTH


def jpeg(h: int = 32, w: int = 48, seed: int = 0) -> bytes:
    """A small random JPEG."""
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def tensor(shape: list[int], seed: int = 0) -> dict:
    """A JSON tensor body for input x."""
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return {"inputs": {"x": {"shape": shape, "dtype": "float32", "data": data.ravel().tolist()}}}


def test_health_ready_and_public_paths(server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/models/{name}/infer" in spec["paths"]
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "dashboard.js" in page.text
    assert httpx.get(f"{server.url}/docs").status_code in (401, 404)  # no CDN pages


def test_token_required(server) -> None:
    r = httpx.get(f"{server.url}/v1/models")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401
    assert httpx.get(f"{server.url}/metrics").status_code == 401


def test_list_models_with_corrupt_entries(client) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"tiny", "raw", "slow", "broken", "badjson"}
    assert models["tiny"]["state"] == "ready" and models["raw"]["state"] == "ready"
    assert models["slow"]["state"] == "ready"
    assert models["broken"]["state"] == "failed" and "SHA-256" in models["broken"]["error"]
    assert models["badjson"]["state"] == "failed" and "JSON" in models["badjson"]["error"]
    assert "\n" not in models["broken"]["error"]
    one = client.get("/v1/models/tiny").json()
    assert one["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert client.get("/v1/models/nope").status_code == 404


def test_infer_image_multipart_and_raw_body(client) -> None:
    r = client.post("/v1/models/tiny/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["label"] for c in body["result"]] in (["cat", "dog"], ["dog", "cat"])
    assert abs(sum(c["score"] for c in body["result"]) - 1) < 1e-4
    assert {"preprocess", "queue", "infer", "decode"} <= set(body["times_ms"])
    r2 = client.post("/v1/models/tiny/infer", content=jpeg(), headers={"Content-Type":
                                                                          "image/jpeg"})
    assert r2.json()["result"] == body["result"]


def test_infer_tensor_matches_onnxruntime(client, repo) -> None:
    import onnxruntime as ort

    req = tensor([1, 3, 8, 8], seed=3)
    r = client.post("/v1/models/raw/infer", json=req)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["y"]
    assert out["shape"] == [1, 2]
    x = np.asarray(req["inputs"]["x"]["data"], np.float32).reshape(1, 3, 8, 8)
    ref = ort.InferenceSession(str(repo / "raw.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(out["data"], ref.ravel(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [1.0, 2.0]}}}, "holds 2 values"),
    ({"inputs": {"z": {"shape": [1], "data": [1]}}}, "do not match"),
    ({"inputs": {"x": {"shape": [1, 3, 4, 4], "data": [0.0] * 48}}}, "expects"),
    ({"inputs": {"x": {"shape": [1, 3, 8, 8], "dtype": "int32", "data": [0] * 192}}}, "int32"),
    ({"inputs": {"x": {"shape": [1, 3, 8, 8], "dtype": "complex", "data": []}}}, "dtype"),
    ({"inputs": {"x": {"shape": [10**6, 10**6], "data": []}}}, "elements"),
    ({"inputs": {"x": {"shape": [1, 3, 8, 8], "data": ["a"] * 192}}}, "numbers"),
    ({"nope": 1}, "inputs"),
    ([1, 2, 3], "inputs"),
])
def test_bad_tensor_bodies_are_400(client, body, fragment) -> None:
    r = client.post("/v1/models/raw/infer", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"] and "\n" not in r.json()["error"]


def test_bad_images_are_400_never_500(client) -> None:
    for data in (b"", b"GIF89a not really", b"\xff\xd8\xff\xe0" + b"\x00" * 500, jpeg()[:100]):
        r = client.post("/v1/models/tiny/infer", files={"file": ("x.jpg", data, "image/jpeg")})
        assert r.status_code == 400, (data[:8], r.text)
        assert "image" in r.json()["error"]
    r = client.post("/v1/models/tiny/infer", files={"other": ("x.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]
    r = client.post("/v1/models/tiny/infer", content=b"{not json", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/v1/models/tiny/infer", content=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415
    r = client.post("/v1/models/raw/infer", files={"file": ("x.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 400 and "decoder" in r.json()["error"]


def test_upload_limit_413(client) -> None:
    big = b"\xff" * (100 * 1024)
    r = client.post("/v1/models/tiny/infer", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "upload limit" in r.json()["error"]

    def chunks():  # no Content-Length: the guard counts the streamed body
        for _ in range(20):
            yield b"\x00" * 8192

    r = client.post("/v1/models/tiny/infer", content=chunks(),
                    headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413


@pytest.mark.parametrize("name", ["..", ".hidden", "a" * 200, "x y", "..%2F..%2Fetc",
                                  "%2e%2e"])
def test_traversal_and_bad_names_refused(client, name) -> None:
    r = client.post(f"/v1/models/{name}/load")
    assert r.status_code in (400, 404), r.text
    assert "error" in r.json()
    assert client.get(f"/v1/models/{name}").status_code in (400, 404)


def test_symlink_out_of_repository_is_refused(tmp_path) -> None:
    from serve_models import make_repository

    from edgeinfer.serve.repository import InvalidNameError, resolve_inside, scan

    outside = make_repository(tmp_path / "outside", corrupt=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "escape").symlink_to(outside / "tiny", target_is_directory=True)
    entries = scan(repo)
    assert entries["escape"].error and "outside the repository" in entries["escape"].error
    with pytest.raises(InvalidNameError):
        resolve_inside(repo, "../outside")


def test_unload_then_503_then_load(client) -> None:
    r = client.post("/v1/models/tiny/unload")
    assert r.status_code == 200 and r.json()["state"] == "unloaded"
    r = client.post("/v1/models/tiny/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 503 and "load" in r.json()["error"]
    stats = client.get("/v1/models/tiny").json()["stats"]
    assert stats["unloads"] >= 1
    r = client.post("/v1/models/tiny/load")
    assert r.json()["state"] == "ready"
    r = client.post("/v1/models/tiny/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200


def test_failed_model_load_stays_failed_others_serve(client) -> None:
    r = client.post("/v1/models/broken/load")
    assert r.status_code == 200 and r.json()["state"] == "failed"
    r = client.post("/v1/models/broken/infer", json=tensor([1, 3, 8, 8]))
    assert r.status_code == 503
    assert client.post("/v1/models/raw/infer", json=tensor([1, 3, 8, 8])).status_code == 200


def test_queue_full_429_and_deadline_503(server) -> None:
    body = tensor([1, 384])

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as c:
            # 30 at once against 3 places (queue 2 + 1 worker): a 429 needs the model to be
            # slower than 27 runs' worth of arrivals, on any box
            rs = await asyncio.gather(*(c.post("/v1/models/slow/infer", json=body)
                                        for _ in range(30)))
            return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert set(codes) <= {200, 429}, codes
    assert codes.count(429) >= 1 and codes.count(200) >= 1
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        r = c.post("/v1/models/slow/infer", json=body, params={"deadline_ms": 0.01})
        assert r.status_code == 503 and "deadline" in r.json()["error"]
        r = c.post("/v1/models/slow/infer", json=body, headers={"X-Deadline-Ms": "0.01"})
        assert r.status_code == 503
        r = c.post("/v1/models/slow/infer", json=body,
                   params={"priority": 5, "deadline_ms": 60000})
        assert r.status_code == 200
        r = c.post("/v1/models/slow/infer", json=body, params={"priority": "high"})
        assert r.status_code == 422 and "priority" in r.json()["error"]
        r = c.post("/v1/models/slow/infer", json=body, headers={"Retry": "x"})
        rejected = c.get("/v1/models/slow").json()["stats"]["rejected_queue_full"]
        assert rejected == codes.count(429)


def test_status_and_metrics(client) -> None:
    client.post("/v1/models/tiny/infer", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    status = client.get("/v1/status").json()
    assert status["node"]["name"] == "test-node" and status["node"]["ready"] is True
    tiny = next(m for m in status["models"] if m["name"] == "tiny")
    assert tiny["requests"] >= 1 and tiny["state"] == "ready"
    assert status["streams"] == {} and status["uplink"] is None
    text = client.get("/metrics").text
    assert 'edgeinfer_requests_total{code="200",model="tiny"}' in text
    assert 'edgeinfer_compute_seconds_count{model="tiny"}' in text
    assert 'edgeinfer_queue_wait_seconds_bucket' in text
    assert 'edgeinfer_model_loaded{model="broken",state="failed"} 0.0' in text
    r = client.post("/v1/models/tiny/infer", content=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415
    text = client.get("/metrics").text
    line = next(ln for ln in text.splitlines()
                if ln.startswith('edgeinfer_errors_total{model="tiny",reason="unsupported_media"}'))
    assert float(line.split()[-1]) >= 1
    assert 'edgeinfer_requests_total{code="415",model="tiny"}' in text
    client.post("/v1/models/raw/infer", json={"nope": 1})  # a BadRequestError: 400
    for i in range(3):  # made-up names share one label: no unbounded label values
        client.post(f"/v1/models/made-up-{i}/infer", json={})
    text = client.get("/metrics").text
    assert 'edgeinfer_errors_total{model="raw",reason="bad_request"}' in text
    assert 'edgeinfer_requests_total{code="404",model="_unknown"} 3.0' in text
    assert "made-up" not in text


def test_unknown_stream_frame_404(client) -> None:
    r = client.get("/v1/streams/cam0/frame.jpg")
    assert r.status_code == 404 and "cam0" in r.json()["error"]
    assert client.get("/no/such/path").status_code == 404


def test_image_bytes_helper_rejects_garbage() -> None:
    from edgeinfer.serve.infer import BadRequestError, decode_image

    assert decode_image(jpeg()).shape == (32, 48, 3)
    with pytest.raises(BadRequestError):
        decode_image(io.BytesIO(b"junk").getvalue())


def test_admission_bounds_requests_being_prepared(tmp_path) -> None:
    from serve_models import make_repository

    from edgeinfer.runtime.scheduler import RejectedError
    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.node import Node

    node = Node(NodeConfig(repository=make_repository(tmp_path / "r", corrupt=False),
                           queue_size=1, workers=1, load_on_start=False))
    try:
        with node.admit("tiny"), node.admit("tiny"):
            with pytest.raises(RejectedError) as err, node.admit("tiny"):
                pass
            assert err.value.reason == "queue_full"
            with node.admit("raw"):  # per model
                pass
        with node.admit("tiny"):  # places come back
            pass
    finally:
        node.close()


def test_lazy_node_loads_on_first_use_and_times_runs(tmp_path) -> None:
    from serve_models import make_repository

    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.node import Node

    node = Node(NodeConfig(repository=make_repository(tmp_path / "r", corrupt=False),
                           load_on_start=False))
    node.start()
    try:
        assert node.ready() and node.describe("raw")["state"] == "available"
        future, slot, release = node.submit("raw", {"x": np.zeros((1, 3, 8, 8), np.float32)})
        outputs = future.result(timeout=30)
        release()
        assert outputs[0].shape == (1, 2)
        assert slot.end > slot.start > 0  # stamped by the worker that ran it
        assert node.describe("raw")["stats"]["loads"] == 1
    finally:
        node.close()


def png_bomb(side: int = 20000) -> bytes:
    """A valid grey PNG of side x side zeros: a few hundred KB declaring 400 MP."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = zlib.compress(b"".join(b"\x00" * (side + 1) for _ in range(side)), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0,
                                                               0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_header_sizes_and_decompression_bomb() -> None:
    from edgeinfer.serve.infer import BadRequestError, decode_image, image_size

    for ext in (".jpg", ".png", ".bmp"):
        _, buf = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))
        assert image_size(buf.tobytes()) == (53, 37), ext
    assert image_size(b"GIF89a") is None
    with pytest.raises(BadRequestError, match="20000x20000"):
        decode_image(png_bomb())
    with pytest.raises(BadRequestError, match="over the limit"):
        decode_image(jpeg(), max_pixels=100)


def test_deep_json_and_multipart_abuse_are_400(client) -> None:
    deep = b"[" * 30000 + b"]" * 30000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(2**31 - 1)  # what importing onnx2tf does to the whole process
    try:
        r = client.post("/v1/models/raw/infer", content=deep,
                        headers={"Content-Type": "application/json"})
    finally:
        sys.setrecursionlimit(limit)
    assert r.status_code == 400 and "nests 30000 deep" in r.json()["error"]
    r = client.post("/v1/models/tiny/infer", content=b"abc",
                    headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400
    two = [("file", ("a.jpg", jpeg(), "image/jpeg")), ("file", ("b.jpg", jpeg(), "image/jpeg"))]
    assert client.post("/v1/models/tiny/infer", files=two).status_code == 400
    nan = {"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [float("nan")] * 192}}}
    r = client.post("/v1/models/raw/infer", content=json.dumps(nan).encode(),
                    headers={"Content-Type": "application/json"})  # NaN literals
    assert r.status_code == 200 and r.json()["outputs"]["y"]["data"] == [None, None]


def test_priority_reaches_the_scheduler(tmp_path) -> None:
    from serve_models import TOKEN, make_repository, wait_ready

    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.server import BackgroundServer

    repo = make_repository(tmp_path / "r", corrupt=False, slow_layers=80)
    body = tensor([1, 384])
    done: list[str] = []

    async def run(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
            await c.post("/v1/models/slow/infer", json=body)  # measured once: estimates exist

            async def one(tag: str, headers: dict) -> None:
                r = await c.post("/v1/models/slow/infer", json=body, headers=headers)
                assert r.status_code == 200, r.text
                done.append(tag)

            lows = [asyncio.create_task(one(f"low{i}", {})) for i in range(8)]
            queued = 0
            for _ in range(300):  # until 5 lows wait (runs take ~100 ms: they stay queued)
                await asyncio.sleep(0.01)
                queued = (await c.get("/v1/models/slow")).json()["stats"]["queued"]
                if queued >= 5:
                    break
            assert queued >= 5, "the lows never queued: the model ran faster than they came"
            await one("high", {"X-Priority": "10"})
            await asyncio.gather(*lows)

    config = NodeConfig(repository=repo, token=TOKEN, queue_size=8, workers=1)
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        asyncio.run(run(srv.url))
    assert done.index("high") < 6, done  # FIFO: behind the >= 5 queued lows (index >= 6)
