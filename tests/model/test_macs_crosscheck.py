"""Total MACs of our readers on each zoo model agree (within 5%) with independent counters.

Independent counters (see tests/_independent_macs.py): torch ``FlopCounterMode`` on the
PyTorch EfficientNet-Lite0, onnx-tool on the ONNX files, tflite2onnx + onnx-tool for the
BlazeFace TFLite. Our total is the sum of ``op.macs`` over the ops that have one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgeinfer.errors import MissingDependencyError
from edgeinfer.model.graph import GraphInfo

TOLERANCE = 0.05


def _load_independent() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "_independent_macs.py"
    spec = importlib.util.spec_from_file_location("_independent_macs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_independent_macs", module)
    spec.loader.exec_module(module)
    return module


independent = _load_independent()


def _total(graph: GraphInfo) -> int:
    return sum(op.macs for op in graph.ops if op.macs is not None)


def _agree(ours: int, theirs: int) -> None:
    assert theirs > 0
    assert abs(ours - theirs) <= TOLERANCE * theirs, (
        f"ours {ours:,} vs independent {theirs:,} ({(ours - theirs) / theirs:+.2%})"
    )


@pytest.fixture(scope="module")
def zoo_model(tmp_path_factory: pytest.TempPathFactory):
    """Build a zoo artifact and return its model file; skip if its packages are missing."""
    from edgeinfer import zoo

    def build(name: str) -> Path:
        try:
            return zoo.get(name, tmp_path_factory.mktemp(name) / "artifact").model_path
        except MissingDependencyError as exc:
            pytest.skip(str(exc))

    return build


def test_efficientnet_lite0(zoo_model) -> None:
    pytest.importorskip("onnx_tool")
    pytest.importorskip("torch")
    from edgeinfer.model.onnx_graph import read_onnx_graph

    path = zoo_model("efficientnet-lite0")
    ours = _total(read_onnx_graph(path, {"input": (1, 3, 224, 224)}))
    _agree(ours, independent.torch_macs_efficientnet_lite0())
    _agree(ours, independent.onnx_tool_macs(path, {"input": (1, 3, 224, 224)}))
    assert 380e6 < ours < 390e6  # EfficientNet-Lite0 is quoted at ~0.39 GMACs


def test_ppocrv4_det(zoo_model) -> None:
    pytest.importorskip("onnx_tool")
    pytest.importorskip("torch")  # the ConvTranspose formula comes from torch.utils.flop_counter
    from edgeinfer.model.onnx_graph import read_onnx_graph

    path = zoo_model("ppocrv4-det")
    shapes = {"x": (1, 3, 640, 640)}
    _agree(_total(read_onnx_graph(path, shapes)), independent.onnx_tool_macs(path, shapes))


def test_blazeface_short_range(zoo_model) -> None:
    pytest.importorskip("onnx_tool")
    pytest.importorskip("tflite2onnx")
    pytest.importorskip("ai_edge_litert.interpreter")
    from edgeinfer.model.tflite_graph import read_tflite_graph

    path = zoo_model("blazeface-short")
    _agree(_total(read_tflite_graph(path)), independent.blazeface_macs_via_tflite2onnx(path))
