"""Split inference end to end: real uvicorn node on loopback, real onnxruntime on both sides,
our throttled transport; plus the frame format, the token bucket and the planner."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from edgeinfer.collab.compress import Compression, FrameError, decode, encode
from edgeinfer.collab.link import Link, TokenBucket, parse_rate
from edgeinfer.collab.planner import BandwidthEstimator, Replanner, plan
from edgeinfer.collab.profile import CutProfile, DeviceSim
from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.split_node import BackgroundNode


def residual_model() -> onnx.ModelProto:
    """x -> conv -> relu -> conv -> add(x) -> relu = y, plus an early output e (two outputs,
    a skip connection: cuts of one to three tensors)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = [numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.3,
                                 f"w{k}") for k in range(2)]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a_o"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a_o"], ["ra"]),
        helper.make_node("Conv", ["ra", "w1"], ["b_o"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b_o", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
        helper.make_node("ReduceMean", ["ra"], ["e"], keepdims=1),
    ]
    g = helper.make_graph(nodes, "res",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8]),
                           helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 1, 1, 1])],
                          w)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node(BackgroundNode):
    """A real uvicorn server on a free loopback port serving ``router()`` under /v1/offload."""

    def __init__(self, models) -> None:
        super().__init__(models, threads=1, profile_runs=1)


@pytest.fixture
def res_path(tmp_path: Path) -> Path:
    path = tmp_path / "res.onnx"
    onnx.save(residual_model(), str(path))
    return path


@pytest.fixture
def node(res_path: Path):
    n = Node({"res": res_path})
    yield n
    n.stop()


def _full(path: Path, feeds):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds), strict=True))


def _feeds(seed: int):
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}


# ------------------------------------------------------------------------------ frames
def test_frame_roundtrip_and_errors() -> None:
    rng = np.random.default_rng(0)
    t = {"a/b:0": rng.standard_normal((2, 16, 7, 7)).astype(np.float32) * 3,
         "ids": np.arange(6, dtype=np.int64).reshape(2, 3)}
    for codec in ("none", "lz4", "zstd"):
        raw = decode(encode(t, Compression("raw", codec)))
        np.testing.assert_array_equal(raw["a/b:0"], t["a/b:0"])
        np.testing.assert_array_equal(raw["ids"], t["ids"])
        half = decode(encode(t, Compression("fp16", codec)))["a/b:0"]
        assert half.dtype == np.float32
        np.testing.assert_allclose(half, t["a/b:0"], rtol=1e-3, atol=1e-3)
        q = decode(encode(t, Compression("int8", codec)))
        step = (t["a/b:0"].max() - t["a/b:0"].min()) / 255
        assert np.abs(q["a/b:0"] - t["a/b:0"]).max() <= step * 0.51
        np.testing.assert_array_equal(q["ids"], t["ids"])
    sizes = [len(encode(t, Compression(e, "none"))) for e in ("raw", "fp16", "int8")]
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(FrameError, match="magic"):
        decode(b"nope")
    with pytest.raises(FrameError):
        decode(encode(t, Compression("raw", "none"))[:60])
    with pytest.raises(EdgeInferError, match="unknown encoding"):
        Compression.parse("int4+lz4")


# ------------------------------------------------------------------------------- link
def test_parse_rate_and_token_bucket_paces_bytes() -> None:
    assert parse_rate("20mbit") == 20e6 and parse_rate("500kbit") == 5e5
    with pytest.raises(EdgeInferError, match="bad bandwidth"):
        parse_rate("fast")
    bucket = TokenBucket(8e6)  # 1 MB/s
    t0 = time.perf_counter()
    for _ in range(10):
        bucket.take(10_000)
    took = time.perf_counter() - t0
    assert 0.08 <= took <= 0.3, took  # 100 kB at 1 MB/s less the 1500-byte burst
    assert Link.parse("8mbit", 10).transfer_s(1_000_000) == pytest.approx(1.01)


def test_device_sim_charges_slowdown_on_its_clock() -> None:
    def spin() -> int:
        t = time.thread_time()
        while time.thread_time() - t < 0.02:
            pass
        return 7

    dev = DeviceSim(1, 3.0, "cpu")
    t0 = time.perf_counter()
    result, device_s = dev.run(spin)
    wall = time.perf_counter() - t0
    assert result == 7 and 0.055 < device_s < 0.09 and wall >= device_s * 0.98
    with pytest.raises(EdgeInferError, match="threads=1"):
        DeviceSim(2, 1.0, "cpu")
    with pytest.raises(EdgeInferError, match="slowdown"):
        DeviceSim(1, 0.5)


# ---------------------------------------------------------------------------- planner
def _profiles() -> list[CutProfile]:
    # send the input (big), a small mid cut, all on the device (slow head)
    return [
        CutProfile(("x",), 0, 600_000, 600_000, 0.0, 0.010, 4000),
        CutProfile(("m",), 5, 50_000, 50_000, 0.030, 0.006, 4000),
        CutProfile(("y",), 9, 4000, 4000, 0.080, 0.0, 0),
    ]


def test_planner_picks_by_bandwidth_and_replans() -> None:
    cuts = _profiles()
    assert plan(cuts, 1e6).where == "device"          # 1 Mbit/s: sending costs > 80 ms
    assert plan(cuts, 20e6).cut.tensors == ("m",)     # 20 Mbit/s: the small cut
    fast = plan(cuts, 1e9)
    assert fast.where == "node" and fast.total_s == pytest.approx(0.010 + 8 * 604_000 / 1e9)
    assert plan(cuts, 1e9, objective="device").cut.head_s == 0.0
    assert plan(cuts, 1e6, rtt_s=0.5).where == "device"
    est = BandwidthEstimator(1e6)
    rp = Replanner(cuts, est)
    assert rp.plan().where == "device"
    for _ in range(10):
        est.observe(100_000, 100_000 * 8 / 1e9)
    assert rp.plan().where == "node" and rp.replans == 1
    with pytest.raises(EdgeInferError, match="positive"):
        plan(cuts, 0)


# ------------------------------------------------------------------------ end to end
def test_split_over_real_http_matches_the_full_model(node, res_path: Path) -> None:
    from edgeinfer.collab.offload import SplitClient

    client = SplitClient(res_path, node.url, "res", link=Link.parse("50mbit", 2),
                         compression=Compression("raw", "lz4"), bandwidth_bps=50e6, rtt_s=0.002)
    try:
        client.prepare(_feeds(0), runs=1)
        assert len(client.cuts) == len(client.split.cuts)
        for cut in client.split.cuts:  # every cut, forced, equals the full model
            feeds = _feeds(1)
            got = client.infer(feeds, cut=cut.tensors)
            assert got.fallback is None
            for k, v in _full(res_path, feeds).items():
                np.testing.assert_allclose(got.outputs[k], v, rtol=1e-5, atol=1e-5)
        r = client.infer(_feeds(2), cut=("x",))
        assert r.where == "node" and r.transfer_s >= 0.002 and r.sent_bytes > 3 * 8 * 8 * 4
        client.compression = Compression("int8", "zstd")
        q = client.infer(_feeds(3), cut=("x",))
        np.testing.assert_allclose(q.outputs["y"], _full(res_path, _feeds(3))["y"], atol=0.1)
    finally:
        client.close()


def test_fp16_answer_is_planned_and_sent_at_half_the_bytes(node, res_path: Path) -> None:
    """``answer="fp16+lz4"``: the node answers in float16 (values to its precision), and the
    planner charges the fp16 answer size the node published, not the float32 one."""
    import httpx

    from edgeinfer.collab.offload import SplitClient

    prof = httpx.get(f"{node.url}/res/profile", timeout=60).json()["cuts"]
    for c in prof:
        sizes = c["answer_bytes"]
        assert c["out_bytes"] == sizes["raw+lz4"] and sizes["fp16"] < sizes["raw"]
    raw = Compression("raw", "lz4")  # the cut exact: only the answer differs
    exact = SplitClient(res_path, node.url, "res", bandwidth_bps=50e6, rtt_s=0.002,
                        compression=raw)
    half = SplitClient(res_path, node.url, "res", bandwidth_bps=50e6, rtt_s=0.002,
                       compression=raw, answer="fp16+lz4")
    try:
        exact.prepare(_feeds(0), runs=1)
        half.prepare(_feeds(0), runs=1)
        by_cut = {c["position"]: c["answer_bytes"]["fp16+lz4"] for c in prof}
        assert [c.out_bytes for c in half.cuts] == [by_cut[c.position] for c in half.cuts]
        assert sum(c.out_bytes for c in half.cuts) < sum(c.out_bytes for c in exact.cuts)
        feeds = _feeds(4)
        a = exact.infer(feeds, cut=("a_o", "x"))
        b = half.infer(feeds, cut=("a_o", "x"))
        assert a.where == b.where == "split" and b.fallback is None
        full = _full(res_path, feeds)
        np.testing.assert_allclose(a.outputs["y"], full["y"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b.outputs["y"], full["y"], rtol=2e-3, atol=2e-3)
        assert b.outputs["y"].dtype == np.float32  # decoded back to the model's dtype
    finally:
        exact.close()
        half.close()


def test_int8_answer_is_refused_on_both_sides(node, res_path: Path) -> None:
    import httpx

    from edgeinfer.collab.offload import SplitClient

    with pytest.raises(EdgeInferError, match="answer encoding 'int8\\+lz4'.*mix ranges"):
        SplitClient(res_path, node.url, "res", answer="int8+lz4")
    frame = encode({"x": _feeds(0)["x"]}, Compression("raw", "none"))
    r = httpx.post(f"{node.url}/res/infer", content=frame,
                   headers={"x-edgeinfer-answer": "int8"})
    assert r.status_code == 400 and "answer encoding" in r.text


def test_node_rejects_a_bad_cut(node) -> None:
    import httpx

    bad = encode({"b_o": np.zeros((1, 3, 8, 8), np.float32)}, Compression("raw", "none"))
    r = httpx.post(f"{node.url}/res/infer", content=bad)
    assert r.status_code == 400 and "do not separate" in r.text
    assert httpx.post(f"{node.url}/nope/infer", content=bad).status_code == 404
    assert httpx.post(f"{node.url}/res/infer", content=b"junk").status_code == 400


def test_node_unreachable_mid_run_every_request_completes_on_device(res_path: Path) -> None:
    from edgeinfer.collab.offload import SplitClient

    node = Node({"res": res_path})
    client = SplitClient(res_path, node.url, "res", compression=Compression("raw", "none"),
                         bandwidth_bps=1e9)
    try:
        assert client.prepare(_feeds(0), runs=1) is not None
        results = []
        for k in range(12):
            if k == 5:
                node.stop()
            feeds = _feeds(100 + k)
            cut = ("x",) if k % 2 else ("a_o", "x")  # all on the node, and a split
            results.append((client.infer(feeds, cut=cut), feeds))
        assert len(results) == 12
        for r, feeds in results:
            np.testing.assert_allclose(r.outputs["y"], _full(res_path, feeds)["y"],
                                       rtol=1e-5, atol=1e-5)
        assert all(r.where != "device" for r, _ in results[:5])
        assert all(r.where == "device" for r, _ in results[5:])
        assert client.fallbacks == 1  # the breaker keeps later requests local
        assert results[5][0].fallback is not None
    finally:
        node.stop()
        client.close()


def test_prepare_with_no_node_runs_on_device(res_path: Path) -> None:
    from edgeinfer.collab.offload import SplitClient

    client = SplitClient(res_path, f"http://127.0.0.1:{free_port()}/v1/offload", "res")
    try:
        t0 = time.perf_counter()
        assert client.prepare(_feeds(0), runs=1) is None
        r = client.infer(_feeds(1))
        assert r.where == "device" and time.perf_counter() - t0 < 5
    finally:
        client.close()


def test_cli_help() -> None:
    from edgeinfer.cli import main

    assert main(["split", "--help"]) == 0
    assert main(["split-node", "--help"]) == 0


def test_auto_bandwidth_measures_the_throttled_link_and_replans(node, res_path: Path) -> None:
    from edgeinfer.collab.offload import SplitClient

    client = SplitClient(res_path, node.url, "res", link=Link.parse("8mbit", 10))
    try:
        client.prepare(_feeds(0), runs=1)
        # probed, not assumed; wide bounds: a shared, loaded CPU adds time to every probe
        assert 4e6 < client.estimator.bps < 16e6, client.estimator.bps
        assert 0.009 < client.rtt_s < 0.2
        plan = client.use_link(Link.parse("1mbit"), None)
        assert 0.5e6 < client.estimator.bps < 2e6 and plan is not None
        r = client.infer(_feeds(1), cut=("x",))
        # frame + answer + 2 x 200 B of headers at 1 Mbit/s, less one 1500-byte burst each way
        floor = 8 * (r.sent_bytes + 400 + 3 * 8 * 8 * 4 + 4 - 3000) / 1e6
        assert r.transfer_s > max(floor, 0.0) and r.fallback is None
    finally:
        client.close()


def test_cli_split_reports_the_breakdown(node, res_path: Path, capsys) -> None:
    from edgeinfer.cli import main

    code = main(["split", str(res_path), "--node", node.url, "--bandwidth", "50mbit",
                 "--rtt-ms", "2", "--runs", "1", "--compression", "fp16+zstd",
                 "--answer", "fp16+lz4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "chosen cut" in out and out.count("all on") == 2 and "planned" in out
    assert main(["split", str(res_path), "--node", node.url, "--bandwidth", "fast"]) == 2
    assert "bad bandwidth" in capsys.readouterr().err
    assert main(["split", str(res_path), "--node", node.url, "--answer", "int8"]) == 2
    err = capsys.readouterr().err
    assert "answer encoding 'int8'" in err and err.count("\n") == 1


def test_offload_mounted_in_edgeinfer_serve_behind_its_token(tmp_path: Path) -> None:
    """The router as `edgeinfer serve` mounts it: bearer token required, split runs."""
    app_mod = pytest.importorskip("edgeinfer.serve.app")
    from edgeinfer.collab.offload import SplitClient
    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.server import BackgroundServer

    repo = tmp_path / "repo"
    repo.mkdir()
    onnx.save(residual_model(), str(repo / "res.onnx"))
    app = app_mod.create_app(NodeConfig(repository=repo, token="s3cret-token", load_on_start=False))
    server = BackgroundServer(app).start()
    url = f"{server.url}/v1/offload"
    good = SplitClient(repo / "res.onnx", url, "res", token="s3cret-token",
                       compression=Compression("raw", "none"))
    bad = SplitClient(repo / "res.onnx", url, "res", token="wrong")
    try:
        assert good.prepare(_feeds(0), runs=1) is not None
        r = good.infer(_feeds(5), cut=("a_o", "x"))
        assert r.where == "split" and r.fallback is None
        np.testing.assert_allclose(r.outputs["y"], _full(repo / "res.onnx", _feeds(5))["y"],
                                   rtol=1e-5, atol=1e-5)
        assert bad.prepare(_feeds(0), runs=1) is None  # 401: refused, all on the device
        assert bad.infer(_feeds(5)).where == "device"
    finally:
        good.close()
        bad.close()
        server.stop()


def test_standalone_node_has_serves_guard_token_and_body_limit(res_path: Path) -> None:
    """`split-node`'s app: 401 without the token, 413 over its body limit, splits with it
    (the limit must leave room for the client's 32 KiB bandwidth probe)."""
    import httpx

    from edgeinfer.collab.offload import SplitClient

    node = BackgroundNode({"res": res_path}, token="node-token-1", max_body_bytes=40_000,
                          threads=1, profile_runs=1)
    good = SplitClient(res_path, node.url, "res", token="node-token-1",
                       compression=Compression("raw", "none"))
    try:
        auth = {"authorization": "Bearer node-token-1"}
        assert httpx.post(f"{node.url}/probe", content=b"x" * 100).status_code == 401
        assert httpx.post(f"{node.url}/probe", content=b"x" * 100, headers=auth).json() == {
            "bytes": 100}
        r = httpx.post(f"{node.url}/probe", content=b"x" * 40_001, headers=auth)
        assert r.status_code == 413 and "upload limit" in r.json()["error"]
        assert good.prepare(_feeds(0), runs=1) is not None
        out = good.infer(_feeds(5), cut=("a_o", "x"))
        assert out.where == "split" and out.fallback is None
        np.testing.assert_allclose(out.outputs["y"], _full(res_path, _feeds(5))["y"],
                                   rtol=1e-5, atol=1e-5)
    finally:
        good.close()
        node.stop()


@pytest.mark.parametrize("args, message", [
    ([], "no API token"),
    (["--allow-anonymous", "--host", "0.0.0.0"], "would open the node to the network"),
    (["--token", "short"], "shorter than 8"),
])
def test_split_node_refuses_to_start_open(res_path: Path, args, message, capsys,
                                          monkeypatch) -> None:
    from edgeinfer.cli import main

    monkeypatch.delenv("EDGEINFER_TOKEN", raising=False)
    assert main(["split-node", str(res_path), "--port", "0", *args]) != 0
    err = capsys.readouterr()
    assert message in err.out + err.err
