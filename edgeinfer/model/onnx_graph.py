"""Read an ONNX model into a :class:`GraphInfo`: static shapes, dtypes, and MACs per op.

Shapes come from ONNX shape inference (with data propagation) after the graph inputs are made
static. Where inference leaves a tensor without a static shape (shapes computed at run time,
custom ops), the missing shapes are measured by running the model once in onnxruntime on zero
inputs with those tensors exposed as outputs, so the picture is complete rather than guessed.

MACs (multiply-accumulates) are counted for Conv, ConvTranspose, Gemm, MatMul and their
quantized forms; bias, activations, pooling, normalisation and element-wise ops are not counted
(their ``macs`` is None and the report lists them).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from edgeinfer.errors import ShapeError
from edgeinfer.model.formats import load_onnx, onnx_opset
from edgeinfer.model.graph import GraphInfo, OpInfo, TensorInfo
from edgeinfer.model.shapes import check_names, fix_shape
from edgeinfer.model.shapes import parse_shape as parse_shape  # re-exported
from edgeinfer.ort_session import numpy_dtype, open_session, with_outputs

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
MacCounter = Callable[[onnx.NodeProto, Callable[[str], Shape]], int]

#: op type -> MAC counter; fill with :func:`register_macs`.
MAC_COUNTERS: dict[str, MacCounter] = {}


def register_macs(*op_types: str) -> Callable[[MacCounter], MacCounter]:
    """Register a MAC counter for the given ONNX op types."""

    def deco(fn: MacCounter) -> MacCounter:
        for op in op_types:
            MAC_COUNTERS[op] = fn
        return fn

    return deco


def _prod(values: Sequence[int]) -> int:
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def _attr(node: onnx.NodeProto, name: str, default: int = 0) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(helper.get_attribute_value(a))
    return default


@register_macs("Conv", "ConvInteger", "QLinearConv")
def _conv_macs(node: onnx.NodeProto, shape: Callable[[str], Shape]) -> int:
    w_index = 3 if node.op_type == "QLinearConv" else 1
    weight = shape(node.input[w_index])  # [Cout, Cin/groups, *kernel]
    out = shape(node.output[0])  # [N, Cout, *spatial]
    return _prod(out) * weight[1] * _prod(weight[2:])


@register_macs("ConvTranspose")
def _conv_transpose_macs(node: onnx.NodeProto, shape: Callable[[str], Shape]) -> int:
    x = shape(node.input[0])  # [N, Cin, *spatial_in]
    weight = shape(node.input[1])  # [Cin, Cout/groups, *kernel]
    return _prod(x) * weight[1] * _prod(weight[2:])


@register_macs("Gemm")
def _gemm_macs(node: onnx.NodeProto, shape: Callable[[str], Shape]) -> int:
    a = shape(node.input[0])
    k = a[0] if _attr(node, "transA") else a[-1]
    return _prod(shape(node.output[0])) * k


@register_macs("MatMul", "MatMulInteger", "QLinearMatMul")
def _matmul_macs(node: onnx.NodeProto, shape: Callable[[str], Shape]) -> int:
    a = shape(node.input[0])
    return _prod(shape(node.output[0])) * (a[-1] if a else 1)


def value_dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    """Dimensions of a value: ints, symbolic names, or None where unknown."""
    if not vi.type.tensor_type.HasField("shape"):
        return [None]
    out: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def graph_input_names(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that are real inputs (not initializers listed as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def resolve_input_shapes(
    model: onnx.ModelProto, overrides: Mapping[str, Shape] | None = None
) -> dict[str, Shape]:
    """Static shape of every graph input: its own or from ``overrides``; error if still dynamic
    (a -1 or symbolic dimension is dynamic: see :mod:`edgeinfer.model.shapes`)."""
    overrides = dict(overrides or {})
    inputs = {vi.name: vi for vi in model.graph.input}
    names = graph_input_names(model)
    check_names(overrides, names)
    return {name: fix_shape(name, value_dims(inputs[name]), overrides.get(name))
            for name in names}


def _with_static_inputs(model: onnx.ModelProto, shapes: Mapping[str, Shape]) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    for vi in model.graph.input:
        if vi.name in shapes:
            tt = vi.type.tensor_type
            tt.shape.Clear()
            for d in shapes[vi.name]:
                tt.shape.dim.add().dim_value = int(d)
    # Stale intermediate shapes (e.g. from a dynamic export) would conflict with new input sizes.
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    return model


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # inconsistent shapes given by the user, or a broken graph
        raise ShapeError(
            f"shape inference failed ({str(exc).splitlines()[0][:160]}): "
            "check --input-shape against the model's expected input"
        ) from exc


def _measure_shapes(
    model: onnx.ModelProto, names: list[str], inputs: Mapping[str, Shape]
) -> dict[str, tuple[Shape, str]]:
    """Run the model once in onnxruntime with ``names`` exposed, to read their shapes."""
    try:
        sess = open_session(with_outputs(model, names), optimize=False)
        dtypes = {i.name: numpy_dtype(i.type) for i in sess.get_inputs()}
        feeds = {n: np.zeros(s, dtype=dtypes[n]) for n, s in inputs.items()}
        values = sess.run(names, feeds)
    except Exception as exc:
        raise ShapeError(
            f"could not determine shapes of {len(names)} tensors by shape inference or by running "
            f"the model ({str(exc).splitlines()[0][:160]}): check --input-shape"
        ) from exc
    return {n: (tuple(v.shape), str(v.dtype)) for n, v in zip(names, values, strict=True)}


def read_onnx_graph(
    model: onnx.ModelProto | str | Path, input_shapes: Mapping[str, Shape] | None = None
) -> GraphInfo:
    """Build a GraphInfo with every tensor's static shape, dtype and each op's MACs."""
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    shapes_in = resolve_input_shapes(model, input_shapes)
    inferred = _infer(_with_static_inputs(model, shapes_in))
    g = inferred.graph

    tensors: dict[str, TensorInfo] = {}
    for init in g.initializer:
        tensors[init.name] = TensorInfo(
            init.name, tuple(init.dims), _np_dtype(init.data_type), "weight"
        )
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            value = _constant_value(node)
            if value is not None:
                tensors[node.output[0]] = TensorInfo(
                    node.output[0], tuple(value.shape), str(value.dtype), "weight"
                )

    typed = {vi.name: vi for vi in list(g.value_info) + list(g.input) + list(g.output)}
    outputs = tuple(o.name for o in g.output)
    produced = [o for n in g.node if n.op_type != "Constant" for o in n.output if o]
    missing = [
        n
        for n in produced
        if n not in typed or not all(isinstance(d, int) for d in value_dims(typed[n]))
    ]
    measured = _measure_shapes(model, missing, shapes_in) if missing else {}
    if missing:
        log.info("measured %d shapes that shape inference left open", len(missing))

    for name, shape in shapes_in.items():
        tensors[name] = TensorInfo(name, shape, _vi_dtype(typed[name]), "input")
    for name in produced:
        kind = "output" if name in outputs else "activation"
        if name in measured:
            shape, dtype = measured[name]
        else:
            shape, dtype = tuple(value_dims(typed[name])), _vi_dtype(typed[name])  # type: ignore[assignment]
        tensors[name] = TensorInfo(name, shape, dtype, kind)

    def shape_of(name: str) -> Shape:
        return tensors[name].shape

    ops = []
    for i, node in enumerate(g.node):
        if node.op_type == "Constant":
            continue
        counter = MAC_COUNTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        macs = counter(node, shape_of) if counter else None
        ops.append(
            OpInfo(
                name=node.name or f"{node.op_type}_{i}",
                op_type=node.op_type
                if node.domain in ("", "ai.onnx")
                else f"{node.domain}.{node.op_type}",
                inputs=tuple(x for x in node.input if x),
                outputs=tuple(x for x in node.output if x),
                macs=macs,
            )
        )
    meta = {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ir_version": str(model.ir_version),
        **{p.key: p.value for p in model.metadata_props},
    }
    return GraphInfo(
        format="onnx",
        inputs=tuple(shapes_in),
        outputs=outputs,
        tensors=tensors,
        ops=tuple(ops),
        opset=onnx_opset(model),
        meta=meta,
    )


def _np_dtype(elem_type: int) -> str:
    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return "uint8"


def _vi_dtype(vi: onnx.ValueInfoProto) -> str:
    return _np_dtype(vi.type.tensor_type.elem_type)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(helper.get_attribute_value(a))
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(helper.get_attribute_value(a))
    return None
