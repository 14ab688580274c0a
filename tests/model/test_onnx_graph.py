"""ONNX graph reading: MACs of single ops with known answers, shapes, dynamic inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.errors import ShapeError
from edgeinfer.model.onnx_graph import (
    graph_input_names,
    parse_shape,
    read_onnx_graph,
    resolve_input_shapes,
)


def single_op(
    op_type: str,
    inputs: dict[str, Sequence[int]],
    weights: dict[str, Sequence[int]] | None = None,
    opset: int = 17,
    **attrs,
) -> onnx.ModelProto:
    """A model of one ``op_type`` node: graph inputs ``inputs``, initializers ``weights``."""
    weights = weights or {}
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(tuple(s)).astype(np.float32), n)
        for n, s in weights.items()
    ]
    node = helper.make_node(op_type, [*inputs, *weights], ["y"], name="op", **attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [out], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def only_macs(model: onnx.ModelProto) -> tuple[int | None, tuple[int, ...]]:
    g = read_onnx_graph(model)
    assert len(g.ops) == 1
    return g.ops[0].macs, g.tensors["y"].shape


# --- MACs ------------------------------------------------------------------------------------


def test_conv_plain() -> None:
    # out 1x4x8x8 = 256 values, each 3 channels x 3x3 kernel = 27 MACs
    m = single_op("Conv", {"x": [1, 3, 8, 8]}, {"w": [4, 3, 3, 3]}, pads=[1, 1, 1, 1])
    assert only_macs(m) == (256 * 27, (1, 4, 8, 8))


def test_conv_with_bias_not_counted() -> None:
    m = single_op("Conv", {"x": [1, 3, 8, 8]}, {"w": [4, 3, 3, 3], "b": [4]}, pads=[1, 1, 1, 1])
    assert only_macs(m) == (256 * 27, (1, 4, 8, 8))


def test_conv_stride2() -> None:
    # 9x9, k3, stride 2, no pad -> 4x4; 4 channels x 16 = 64 outputs x 27
    m = single_op("Conv", {"x": [1, 3, 9, 9]}, {"w": [4, 3, 3, 3]}, strides=[2, 2])
    assert only_macs(m) == (64 * 27, (1, 4, 4, 4))


def test_conv_batch2() -> None:
    m = single_op("Conv", {"x": [2, 3, 8, 8]}, {"w": [4, 3, 3, 3]}, pads=[1, 1, 1, 1])
    assert only_macs(m) == (2 * 256 * 27, (2, 4, 8, 8))


def test_conv_grouped() -> None:
    # 4 in channels, 2 groups of 2; 6 out channels, each sees 2 channels x 3x3 = 18
    m = single_op("Conv", {"x": [1, 4, 8, 8]}, {"w": [6, 2, 3, 3]}, group=2, pads=[1, 1, 1, 1])
    assert only_macs(m) == (6 * 64 * 18, (1, 6, 8, 8))


def test_conv_depthwise() -> None:
    m = single_op("Conv", {"x": [1, 4, 8, 8]}, {"w": [4, 1, 3, 3]}, group=4, pads=[1, 1, 1, 1])
    assert only_macs(m) == (4 * 64 * 9, (1, 4, 8, 8))


def test_conv_1x1() -> None:
    m = single_op("Conv", {"x": [1, 8, 5, 5]}, {"w": [16, 8, 1, 1]})
    assert only_macs(m) == (16 * 25 * 8, (1, 16, 5, 5))


def test_conv_transpose() -> None:
    # Every input value (4 ch x 5x5) is scattered to 2 out channels x 3x3 kernel.
    m = single_op("ConvTranspose", {"x": [1, 4, 5, 5]}, {"w": [4, 2, 3, 3]}, strides=[2, 2])
    assert only_macs(m) == (4 * 25 * 2 * 9, (1, 2, 11, 11))


def test_conv_transpose_grouped() -> None:
    # 4 in channels in 2 groups; weight [Cin, Cout/groups, k, k] -> 6 out channels
    m = single_op("ConvTranspose", {"x": [1, 4, 5, 5]}, {"w": [4, 3, 2, 2]}, strides=[2, 2],
                  group=2)
    assert only_macs(m) == (4 * 25 * 3 * 4, (1, 6, 10, 10))


@pytest.mark.parametrize(
    ("a", "b", "attrs"),
    [
        ([3, 5], [5, 7], {}),
        ([5, 3], [5, 7], {"transA": 1}),
        ([3, 5], [7, 5], {"transB": 1}),
        ([5, 3], [7, 5], {"transA": 1, "transB": 1}),
    ],
)
def test_gemm(a: list[int], b: list[int], attrs: dict[str, int]) -> None:
    m = single_op("Gemm", {"a": a}, {"b": b}, **attrs)
    assert only_macs(m) == (3 * 7 * 5, (3, 7))


def test_gemm_with_bias() -> None:
    m = single_op("Gemm", {"a": [2, 10]}, {"b": [4, 10], "c": [4]}, transB=1)
    assert only_macs(m) == (2 * 4 * 10, (2, 4))


def test_matmul_batched() -> None:
    m = single_op("MatMul", {"a": [2, 3, 4, 5]}, {"b": [2, 3, 5, 6]})
    assert only_macs(m) == (2 * 3 * 4 * 6 * 5, (2, 3, 4, 6))


def test_matmul_broadcast() -> None:
    m = single_op("MatMul", {"a": [2, 4, 5]}, {"b": [5, 6]})
    assert only_macs(m) == (2 * 4 * 6 * 5, (2, 4, 6))


def test_matmul_two_inputs() -> None:
    m = single_op("MatMul", {"a": [3, 4], "b": [4, 2]})
    assert only_macs(m) == (3 * 2 * 4, (3, 2))


@pytest.mark.parametrize(
    ("op", "inputs", "attrs"),
    [
        ("Relu", {"x": [1, 3, 4, 4]}, {}),
        ("Add", {"x": [1, 3, 4, 4], "z": [1, 3, 4, 4]}, {}),
        ("MaxPool", {"x": [1, 3, 4, 4]}, {"kernel_shape": [2, 2]}),
        ("GlobalAveragePool", {"x": [1, 3, 4, 4]}, {}),
        ("Sigmoid", {"x": [2, 5]}, {}),
    ],
)
def test_non_counted_ops_have_no_macs(op: str, inputs, attrs) -> None:
    macs, _ = only_macs(single_op(op, inputs, **attrs))
    assert macs is None


def test_tiny_model_totals(tiny_onnx: Path) -> None:
    g = read_onnx_graph(tiny_onnx)
    macs = {op.op_type: op.macs for op in g.ops}
    assert macs == {"Conv": 256 * 27, "Relu": None, "GlobalAveragePool": None, "Flatten": None,
                    "Gemm": 2 * 4}
    assert g.inputs == ("x",)
    assert g.outputs == ("y",)
    assert g.opset == 17
    weights = {t.name: t.shape for t in g.weights()}
    assert weights == {"w": (4, 3, 3, 3), "b": (4,), "fw": (2, 4), "fb": (2,)}
    assert g.tensors["p"].shape == (1, 4, 1, 1)
    assert g.tensors["y"].kind == "output"
    assert g.tensors["c"].kind == "activation"
    assert [op.name for op in g.ops] == ["conv", "relu", "pool", "flatten", "fc"]


# --- parse_shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1x3x640x640", (1, 3, 640, 640)),
        ("1X3X8X8", (1, 3, 8, 8)),
        ("1,3,224,224", (1, 3, 224, 224)),
        ("7", (7,)),
    ],
)
def test_parse_shape(text: str, expected: tuple[int, ...]) -> None:
    assert parse_shape(text) == expected


@pytest.mark.parametrize("text", ["", "x", "1xax3", "1x0x8", "1x-3x8", "1.5x3", "abc"])
def test_parse_shape_bad(text: str) -> None:
    with pytest.raises(ShapeError) as info:
        parse_shape(text)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"'{text}'" in msg


# --- resolve_input_shapes --------------------------------------------------------------------


def test_static_inputs_resolve_without_override(tiny_onnx: Path) -> None:
    assert resolve_input_shapes(onnx.load(str(tiny_onnx))) == {"x": (1, 3, 8, 8)}


def test_dynamic_input_without_override(dynamic_onnx: Path) -> None:
    model = onnx.load(str(dynamic_onnx))
    with pytest.raises(ShapeError) as info:
        resolve_input_shapes(model)
    msg = str(info.value)
    assert "--input-shape x=" in msg
    assert "\n" not in msg
    with pytest.raises(ShapeError, match="--input-shape"):
        read_onnx_graph(dynamic_onnx)


@pytest.mark.parametrize("shape", [(1, 3, 8), (1, 3, 8, 8, 1), (1, 4, 8, 8)])
def test_override_wrong_rank_or_fixed_dim(dynamic_onnx: Path, shape: tuple[int, ...]) -> None:
    model = onnx.load(str(dynamic_onnx))
    with pytest.raises(ShapeError, match="match the model's rank and fixed dimensions"):
        resolve_input_shapes(model, {"x": shape})


def test_override_conflicting_fixed_dim_on_static(tiny_onnx: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    with pytest.raises(ShapeError, match="input 'x'"):
        resolve_input_shapes(model, {"x": (1, 3, 16, 16)})
    assert resolve_input_shapes(model, {"x": (1, 3, 8, 8)}) == {"x": (1, 3, 8, 8)}


def test_unknown_override_name(dynamic_onnx: Path) -> None:
    model = onnx.load(str(dynamic_onnx))
    with pytest.raises(ShapeError) as info:
        resolve_input_shapes(model, {"images": (1, 3, 8, 8)})
    assert "images" in str(info.value)
    assert "['x']" in str(info.value)


def test_initializers_listed_as_inputs_are_not_inputs(make_conv_model) -> None:
    model = make_conv_model([1, 3, 8, 8])
    w = model.graph.initializer[0]
    model.graph.input.append(
        helper.make_tensor_value_info(w.name, w.data_type, list(w.dims))
    )
    assert graph_input_names(model) == ["x"]
    assert resolve_input_shapes(model) == {"x": (1, 3, 8, 8)}


def test_dynamic_model_with_override_is_fully_static(dynamic_onnx: Path) -> None:
    g = read_onnx_graph(dynamic_onnx, {"x": (2, 3, 16, 12)})
    for t in g.tensors.values():
        assert all(isinstance(d, int) and d > 0 for d in t.shape), t
    assert g.tensors["x"].shape == (2, 3, 16, 12)
    assert g.tensors["c"].shape == (2, 4, 16, 12)
    assert g.tensors["y"].shape == (2, 2)
    conv = next(op for op in g.ops if op.op_type == "Conv")
    assert conv.macs == 2 * 4 * 16 * 12 * 27


# --- shapes shape inference leaves open ------------------------------------------------------


def runtime_shape_model() -> onnx.ModelProto:
    """Reshape whose target is computed through float arithmetic, which data propagation
    does not follow: x[1,3,8,8] -> Reshape to [1,3,4,16] -> MatMul [16,5] -> y[1,3,4,5]."""
    factors = numpy_helper.from_array(np.array([1, 1, 0.5, 2], np.float32), "factors")
    w = numpy_helper.from_array(np.ones((16, 5), np.float32), "w")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sf", "factors"], ["sm"]),
        helper.make_node("Floor", ["sm"], ["sfl"]),
        helper.make_node("Cast", ["sfl"], ["target"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "w"], ["y"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes, "runtime_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [factors, w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_shapes_left_open_by_inference_are_measured() -> None:
    model = runtime_shape_model()
    # Precondition: ONNX shape inference really leaves the Reshape output without static dims.
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    vi = {v.name: v for v in inferred.graph.value_info}
    r_dims = [d.dim_value if d.HasField("dim_value") else None
              for d in vi["r"].type.tensor_type.shape.dim] if "r" in vi else [None]
    assert None in r_dims

    g = read_onnx_graph(model)
    assert g.tensors["r"].shape == (1, 3, 4, 16)
    assert g.tensors["y"].shape == (1, 3, 4, 5)
    assert g.tensors["y"].dtype == "float32"
    assert g.tensors["target"].shape == (4,)
    assert g.tensors["target"].dtype == "int64"
    for t in g.tensors.values():
        assert all(isinstance(d, int) for d in t.shape), t
    macs = {op.name: op.macs for op in g.ops}
    assert macs["matmul"] == 3 * 4 * 5 * 16
    assert macs["reshape"] is None
