"""The offload node under hostile requests: only published cuts are taken, frames are checked
before inflating, tails live in the node's ModelCache under its budget, and the sub-model
files go away at exit (or at the next start after a kill). Real uvicorn on loopback, real
onnxruntime, real `edgeinfer split-node` processes."""

from __future__ import annotations

import itertools
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_split import free_port, residual_model

from edgeinfer.collab.compress import MAGIC, Compression, encode
from edgeinfer.model.partition import load_partition
from edgeinfer.serve.split_node import BackgroundNode


@pytest.fixture
def res_path(tmp_path: Path) -> Path:
    path = tmp_path / "res.onnx"
    onnx.save(residual_model(), str(path))
    return path


@pytest.fixture
def node(res_path: Path):
    n = BackgroundNode({"res": res_path}, threads=1, profile_runs=1)
    yield n
    n.stop()


def _frame(tensors: dict[str, tuple[int, ...]], codec: int = 0, payload: bytes = b"") -> bytes:
    """A frame header declaring float32 ``tensors`` (name -> dims), then ``payload``."""
    head = [MAGIC, struct.pack("<BH", codec, len(tensors))]
    for name, dims in tensors.items():
        raw = name.encode()
        head += [struct.pack("<H", len(raw)), raw, struct.pack("<BBB", 0, 0, len(dims)),
                 struct.pack(f"<{len(dims)}I", *dims), struct.pack("<ff", 1.0, 0.0)]
    return b"".join(head) + payload


def _unpublished_supersets(path: Path, published: set[frozenset[str]], n: int) -> list[list[str]]:
    """Sets of tensors that do separate inputs from outputs but are not published cuts."""
    part = load_partition(path)
    names = sorted(set(part.producer) | set(part.inputs))
    found = []
    for k in range(2, len(names) + 1):
        for combo in itertools.combinations(names, k):
            if frozenset(combo) in published:
                continue
            try:
                part.check(combo)
            except Exception:
                continue
            found.append(list(combo))
            if len(found) == n:
                return found
    return found


def _offload_files(node: BackgroundNode) -> list[Path]:
    from edgeinfer.collab.workdir import process_dir

    return sorted(process_dir().rglob("*.onnx"))


def test_only_published_cuts_are_served_and_others_build_nothing(node, res_path: Path) -> None:
    profile = httpx.get(f"{node.url}/res/profile", timeout=60).json()
    published = {frozenset(c["tensors"]) for c in profile["cuts"]}
    scheduler = node.app.state.scheduler
    registered = set(scheduler.stats()["models"])
    files = _offload_files(node)
    supersets = _unpublished_supersets(res_path, published, 20)
    assert len(supersets) >= 10
    rng = np.random.default_rng(0)
    for names in supersets:
        frame = encode({t: rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
                        for t in names}, Compression("raw", "none"))
        r = httpx.post(f"{node.url}/res/infer", content=frame)
        assert r.status_code == 400 and "not one of the cuts" in r.json()["detail"], r.text
    assert set(scheduler.stats()["models"]) == registered  # no engine built for any of them
    assert _offload_files(node) == files  # and no file written


@pytest.mark.parametrize("dims, codec", [
    ({"x": (1, 3, 64, 64)}, 2),                   # the cut, but 64x bigger than the model's
    ({"x": (65536,) * 4}, 0),                     # 2^64 elements: overflows int64
    ({"x": (0, 2**32 - 1, 2**32 - 1)}, 0),        # zero elements, impossible dims
    ({"x": (1, 3, 8)}, 0),                        # the wrong rank
], ids=["bigger", "overflow64", "zero-huge", "rank"])
def test_declared_shapes_are_checked_before_inflating(node, dims, codec: int) -> None:
    zstd = pytest.importorskip("zstandard")
    payload = zstd.ZstdCompressor().compress(bytes(16 * 2**20)) if codec == 2 else b""
    r = httpx.post(f"{node.url}/res/infer", content=_frame(dims, codec, payload))
    assert r.status_code == 400, r.text
    assert "\n" not in r.json()["detail"]


def _chain_model(layers: int = 6, ch: int = 96) -> onnx.ModelProto:
    """x -> (Conv ch x ch x 3 x 3 -> Relu) x layers: each tail carries MBs of weights, so tails
    weigh what their layers do."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for k in range(layers):
        w = (rng.standard_normal((ch, ch, 3, 3)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{k}"))
        nodes += [helper.make_node("Conv", [prev, f"w{k}"], [f"c{k}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"])]
        prev = f"r{k}"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ch, 8, 8])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, ch, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run_every_cut(node: BackgroundNode, path: Path, rounds: int) -> None:
    from edgeinfer.collab.offload import SplitClient

    client = SplitClient(path, node.url, "chain", compression=Compression("raw", "none"),
                         bandwidth_bps=1e9, rtt_s=0.0)
    import onnxruntime as ort

    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        feeds = {"x": np.random.default_rng(3).standard_normal((1, 96, 8, 8)).astype(np.float32)}
        want = ref.run(None, feeds)[0]
        for _ in range(rounds):
            for cut in client.split.cuts:
                r = client.infer(feeds, cut=cut.tensors)
                assert r.fallback is None, r.fallback
                np.testing.assert_allclose(r.outputs[client.split.outputs[0]], want,
                                           rtol=1e-4, atol=1e-4)
    finally:
        client.close()


@pytest.mark.slow
def test_tails_live_in_the_nodes_model_cache_under_its_budget(tmp_path: Path) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save(_chain_model(), str(path))
    free = BackgroundNode({"chain": path}, threads=1, profile_runs=1)
    try:  # no budget: learn what the tails weigh here (measured footprints, as the cache does)
        _run_every_cut(free, path, 1)
        sizes = {n: m["footprint_bytes"] for n, m in
                 free.app.state.scheduler.stats()["models"].items() if n.startswith("offload:")}
    finally:
        free.stop()
    assert len(sizes) >= 5
    biggest, total = max(sizes.values()), sum(sizes.values())
    budget = (total + biggest) // 2  # every tail fits alone, not all of them together
    node = BackgroundNode({"chain": path}, threads=1, profile_runs=1, memory_budget_bytes=budget)
    try:
        _run_every_cut(node, path, 2)  # every answer still equals the whole model's
        cache = node.app.state.scheduler.cache
        stats = {n: s for n, s in cache.stats().items() if n.startswith("offload:")}
        assert cache.used_bytes() <= budget
        if sum(s["footprint_bytes"] for s in stats.values()) > budget:  # they cannot all fit
            assert sum(s["unloads"] for s in stats.values()) >= 1
            assert len(cache.loaded()) < len(stats)
    finally:
        node.stop()


def _split_node(model: Path, port: int, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "edgeinfer.cli", "split-node", str(model), "--port", str(port),
         "--allow-anonymous", "--threads", "1"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def _use_a_tail(port: int, model: Path) -> None:
    url = f"http://127.0.0.1:{port}/v1/offload"
    end = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < end, "split-node did not start"
        time.sleep(0.1)
    cut = next(c["tensors"] for c in httpx.get(f"{url}/res/profile", timeout=60).json()["cuts"]
               if c["position"] == 2)
    part = load_partition(model)
    frame = encode({t: np.zeros(part.graph.tensors[t].shape, np.float32) for t in cut},
                   Compression("raw", "none"))
    assert httpx.post(f"{url}/res/infer", content=frame, timeout=60).status_code == 200


@pytest.mark.slow
def test_sub_model_files_removed_at_exit_and_swept_after_a_kill(tmp_path: Path,
                                                                 res_path: Path) -> None:
    root = tmp_path / "edgeinfer-split"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        port = free_port()
        proc = _split_node(res_path, port, tmp_path)
        try:
            _use_a_tail(port, res_path)
            mine = root / str(proc.pid)
            assert list(mine.rglob("*.onnx")), "the tails are on disk while it runs"
        finally:
            proc.send_signal(sig)
            proc.wait(30)
        if sig == signal.SIGTERM:
            assert not mine.exists(), "a graceful exit removes its directory"
        else:
            assert mine.exists()  # a kill leaves it behind ...
            killed = mine
    port = free_port()
    proc = _split_node(res_path, port, tmp_path)
    try:  # ... and the next node sweeps it when it starts
        deadline = time.monotonic() + 60
        while killed.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert not killed.exists(), proc.stderr.read() if proc.poll() is not None else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
