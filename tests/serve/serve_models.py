"""Tiny models and repositories for the edge node's tests, built in code (no files, no
network): a classifier artifact, a bare .onnx, a slow model, and corrupt entries."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import slow_model

from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Debian's chromium, driven by Playwright, with no network beyond the page's own server
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IR_VERSION = 8


def conv_model(input_dims: list[int], seed: int = 0) -> onnx.ModelProto:
    """x[1,3,H,W] -> Conv 4x3x3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm 4->2."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w", (4, 3, 3, 3)), ("b", (4,)), ("fw", (2, 4)), ("fb", (2,)))]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_dims[0], 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=IR_VERSION)


def make_repository(root: Path, *, corrupt: bool = True, slow_layers: int = 12) -> Path:
    """tiny (classifier artifact), raw.onnx (bare), slow (tensor-only artifact) and, with
    ``corrupt``, 'broken' (model bytes changed after the manifest) and 'badjson'."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f"{root.name}-src"
    work.mkdir(exist_ok=True)
    onnx.save(conv_model([1, 3, 8, 8]), str(work / "tiny.onnx"))
    Artifact.create(
        root / "tiny", work / "tiny.onnx", labels=["cat", "dog"], name="tiny",
        task="classification", inputs=(InputSpec(name="x", shape=(1, 3, 8, 8)),),
        outputs=("y",), preprocess=Preprocess(scale=1 / 255), decoder="classification",
        decoder_params={"top_k": 2}, source=SourceInfo(name="tests"),
    )
    onnx.save(conv_model([1, 3, 8, 8], seed=1), str(root / "raw.onnx"))
    onnx.save(slow_model(layers=slow_layers), str(work / "slow.onnx"))
    Artifact.create(
        root / "slow", work / "slow.onnx", name="slow", task="other",
        inputs=(InputSpec(name="x", shape=(1, 384), layout="other"),), outputs=("y",),
        source=SourceInfo(name="tests"),
    )
    if corrupt:
        Artifact.create(
            root / "broken", work / "tiny.onnx", name="broken", task="classification",
            inputs=(InputSpec(name="x", shape=(1, 3, 8, 8)),), decoder="classification",
            source=SourceInfo(name="tests"),
        )
        (root / "broken" / "tiny.onnx").write_bytes(b"not an onnx model at all")
        (root / "badjson").mkdir()
        (root / "badjson" / "edgeinfer.json").write_text("{ this is not json")
    return root


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """Poll /readyz until the node answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {timeout} s")
