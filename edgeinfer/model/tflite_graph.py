"""Read a TFLite (LiteRT) model into a :class:`GraphInfo`: static shapes, dtypes, MACs per op.

The LiteRT interpreter (``ai_edge_litert``, the ``litert`` extra) does the parsing: it validates
the flatbuffer, and ``allocate_tensors()`` runs every kernel's shape propagation. Default
delegates (XNNPACK) are disabled, so the node list is the model's own operator list in
execution order, which is topological.

Only the primary subgraph is described (control-flow bodies of WHILE/IF are not expanded).

MACs (multiply-accumulates) follow the ONNX reader's convention: counted for CONV_2D,
DEPTHWISE_CONV_2D, TRANSPOSE_CONV, CONV_3D, CONV_3D_TRANSPOSE, FULLY_CONNECTED and
BATCH_MATMUL; bias, fused activations, pooling and element-wise ops are not counted (``macs`` is
None).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import ModelLoadError
from edgeinfer.model.graph import GraphInfo, OpInfo, TensorInfo, TensorKind
from edgeinfer.model.shapes import check_names, fix_shape

Shape = tuple[int, ...]
#: ``(input shapes, output shapes) -> MACs``; an absent optional input has shape None.
MacCounter = Callable[[Sequence[Shape | None], Sequence[Shape]], int]

_FIX = "re-export or re-download the model"
_UNRESOLVED_OP = re.compile(r"unresolved custom op|didn't find op|op resolver", re.IGNORECASE)


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _conv2d_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    filt = ins[1]  # [Cout, kh, kw, Cin/groups]
    assert filt is not None
    return _prod(outs[0]) * filt[1] * filt[2] * filt[3]


def _depthwise_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    filt = ins[1]  # [1, kh, kw, Cout]
    assert filt is not None
    return _prod(outs[0]) * filt[1] * filt[2]


def _transpose_conv_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # inputs: (output_shape, filter [Cout, kh, kw, Cin], input [N, H, W, Cin], bias?)
    filt, x = ins[1], ins[2]
    assert filt is not None and x is not None
    return _prod(x) * filt[0] * filt[1] * filt[2]


def _conv3d_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    filt = ins[1]  # [kd, kh, kw, Cin, Cout]
    assert filt is not None
    return _prod(outs[0]) * _prod(filt[:4])


def _conv3d_transpose_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # inputs: (output_shape, filter [kd, kh, kw, Cout, Cin], input [N, D, H, W, Cin], bias?)
    filt, x = ins[1], ins[2]
    assert filt is not None and x is not None
    return _prod(x) * _prod(filt[:4])


def _fully_connected_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    weights = ins[1]  # [units, in_units]; output holds rows * units elements
    assert weights is not None
    return _prod(outs[0]) * weights[-1]


def _batch_matmul_macs(ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    lhs, out = ins[0], outs[0]  # lhs [..., M, K] (or [..., K, M] with adj_x), out [..., M, N]
    assert lhs is not None
    if len(lhs) < 2:
        return _prod(out) * (lhs[-1] if lhs else 1)
    k = lhs[-1] if lhs[-2] == out[-2] else lhs[-2]
    return _prod(out) * k


#: TFLite builtin op name -> MAC counter.
MAC_COUNTERS: dict[str, MacCounter] = {
    "CONV_2D": _conv2d_macs,
    "DEPTHWISE_CONV_2D": _depthwise_macs,
    "TRANSPOSE_CONV": _transpose_conv_macs,
    "CONV_3D": _conv3d_macs,
    "CONV_3D_TRANSPOSE": _conv3d_transpose_macs,
    "FULLY_CONNECTED": _fully_connected_macs,
    "BATCH_MATMUL": _batch_matmul_macs,
}


def _count_macs(op_type: str, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int | None:
    counter = MAC_COUNTERS.get(op_type)
    if counter is None or not outs:
        return None
    try:
        return int(counter(ins, outs))
    except (AssertionError, IndexError, TypeError, ValueError):
        return None  # unexpected operand layout: leave the op uncounted rather than guess


def _unique_names(details: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Tensor index -> unique name: its own, ``t{index}`` if empty, ``#{index}`` on repeats."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for d in sorted(details, key=lambda d: int(d["index"])):
        index = int(d["index"])
        base = str(d["name"]) or f"t{index}"
        name = base if base not in taken else f"{base}#{index}"
        while name in taken:  # a tensor may literally be called "x#7"
            name += "_"
        taken.add(name)
        names[index] = name
    return names


def _has_constant_data(interpreter: Any, index: int) -> bool:
    """True if the tensor holds a buffer before allocation, i.e. constant data in the file."""
    try:
        view = interpreter.tensor(index)()
    except (ValueError, RuntimeError, TypeError):  # "Tensor data is null": an arena tensor
        return False
    del view
    return True


def _model_meta(content: bytes) -> dict[str, str]:
    """Schema version, description and runtime hint from the flatbuffer header (best effort)."""
    meta: dict[str, str] = {}
    try:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(content, 0)
        meta["tflite_schema_version"] = str(model.Version())
        if model.Description():
            meta["description"] = model.Description().decode("utf-8", "replace")
        meta["subgraphs"] = str(model.SubgraphsLength())
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == b"min_runtime_version":
                buf = model.Buffers(entry.Buffer())
                raw = bytes(buf.DataAsNumpy()) if buf.DataLength() else b""
                meta["min_runtime_version"] = raw.rstrip(b"\0").decode("ascii", "replace")
    except Exception:  # metadata is decoration: never fail a read over it
        pass
    return meta


def tflite_input_dims(interpreter: Any) -> dict[str, list[int]]:
    """Each input's dims as the file declares them (``shape_signature``: -1 where dynamic)."""
    return {d["name"]: [int(v) for v in d.get("shape_signature", d["shape"])]
            for d in interpreter.get_input_details()}


def _set_input_shapes(interpreter: Any, shapes: Mapping[str, Shape] | None) -> None:
    dims = tflite_input_dims(interpreter)
    check_names(shapes, list(dims))
    for d in interpreter.get_input_details():
        if shapes and d["name"] in shapes:
            shape = fix_shape(d["name"], dims[d["name"]], shapes[d["name"]])
            if list(shape) != [int(v) for v in d["shape"]]:
                interpreter.resize_tensor_input(int(d["index"]), list(shape), strict=True)


def read_tflite_graph(
    path: str | Path, input_shapes: Mapping[str, Shape] | None = None
) -> GraphInfo:
    """Build a GraphInfo of the ``.tflite`` model at ``path``.

    ``input_shapes`` (``--input-shape``) are checked as for ONNX (input names, rank, fixed
    dimensions) and set on the dynamic inputs before shapes are propagated.

    Tensors: names are made unique (an empty name becomes ``t{index}``; a repeated name gets
    ``#{index}``). Weights are the tensors that hold constant buffer data (not produced by any
    op and not graph inputs); quantized tensors keep their stored dtype (int8, float16, ...);
    sparse weights (fed to DENSIFY) are reported at their dense shape.
    Dynamic dimensions (``shape_signature`` -1) are resolved to the static ``shape`` the
    interpreter reports after ``allocate_tensors()``, i.e. the sizes stored in the file
    (usually 1) propagated through the graph; ``meta["dynamic_inputs"]`` names such inputs.

    Raises ModelLoadError when the file is missing or not a valid TFLite flatbuffer, or when
    LiteRT cannot resolve one of its ops.
    """
    litert = require("ai_edge_litert.interpreter", "litert", "reading .tflite models")
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a model file" if path.is_dir() else "no such file"
        raise ModelLoadError(f"{path}: {what}: check the path")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"{path}: cannot read the file ({exc.strerror}): check its permissions"
        ) from exc
    if not content:
        raise ModelLoadError(f"{path} is empty: {_FIX}")
    try:
        interpreter = litert.Interpreter(
            model_content=content,
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        if _UNRESOLVED_OP.search(detail):
            raise ModelLoadError(
                f"{path} uses an op this LiteRT build cannot resolve ({detail}): "
                "upgrade ai-edge-litert or re-export the model with builtin ops"
            ) from exc
        raise ModelLoadError(
            f"{path} is not a valid TFLite model (truncated or corrupt: {detail}): {_FIX}"
        ) from exc

    details = interpreter.get_tensor_details()
    model_tensors = {int(d["index"]) for d in details}
    # Constant data must be probed before allocation, when arena tensors still have none.
    constant = {i for i in model_tensors if _has_constant_data(interpreter, i)}
    _set_input_shapes(interpreter, input_shapes)
    try:
        interpreter.allocate_tensors()  # propagates shapes through every kernel's Prepare
        # Kernels may add scratch tensors (im2col, ...) while preparing: not model tensors.
        details = [d for d in interpreter.get_tensor_details() if int(d["index"]) in model_tensors]
    except (ValueError, RuntimeError):
        pass  # keep the shapes as stored in the file

    names = _unique_names(details)
    by_index = {int(d["index"]): d for d in details}
    op_details = interpreter._get_ops_details()
    input_idx = [int(d["index"]) for d in interpreter.get_input_details()]
    output_idx = [int(d["index"]) for d in interpreter.get_output_details()]
    produced = {int(i) for op in op_details for i in op["outputs"]}

    tensors: dict[str, TensorInfo] = {}
    for index, d in sorted(by_index.items()):
        kind: TensorKind
        if index in input_idx:
            kind = "input"
        elif index in output_idx:
            kind = "output"
        elif index not in produced and index in constant:
            kind = "weight"
        else:
            kind = "activation"
        shape = tuple(int(s) for s in d["shape"])
        tensors[names[index]] = TensorInfo(names[index], shape, np.dtype(d["dtype"]).name, kind)

    ops: list[OpInfo] = []
    for op in op_details:
        op_type = str(op["op_name"])
        in_idx = [int(i) for i in op["inputs"]]
        out_idx = [int(i) for i in op["outputs"] if int(i) in names]
        in_shapes = [tuple(tensors[names[i]].shape) if i in names else None for i in in_idx]
        out_shapes = [tensors[names[i]].shape for i in out_idx]
        ops.append(
            OpInfo(
                name=f"{op_type}_{int(op['index'])}",
                op_type=op_type,
                inputs=tuple(names[i] for i in in_idx if i in names),
                outputs=tuple(names[i] for i in out_idx),
                macs=_count_macs(op_type, in_shapes, out_shapes),
            )
        )

    meta = _model_meta(content)
    dynamic = [
        names[i]
        for i in input_idx
        if any(int(s) < 0 for s in by_index[i].get("shape_signature", ()))
    ]
    if dynamic:
        meta["dynamic_inputs"] = ",".join(dynamic)
    return GraphInfo(
        format="tflite",
        inputs=tuple(names[i] for i in input_idx),
        outputs=tuple(names[i] for i in output_idx),
        tensors=tensors,
        ops=tuple(ops),
        opset=None,
        meta=meta,
    )


#: one quantized tensor of a model's interface: (name, dtype name, scale, zero point)
QuantizedIO = tuple[str, str, float, int]


def io_quantization(path: str | Path) -> tuple[list[QuantizedIO], list[QuantizedIO]]:
    """The inputs' and outputs' dtype, scale and zero point as the ``.tflite`` file declares
    them (scale 0: not quantized), in the file's order: what a runtime that does not
    (de)quantize a full-integer model's interface itself needs to feed and read it."""
    litert = require("ai_edge_litert.interpreter", "litert", "reading .tflite models")
    try:
        interp = litert.Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path} is not a readable TFLite model ({exc}): {_FIX}") from exc

    def rows(details: list[dict[str, Any]]) -> list[QuantizedIO]:
        return [(d["name"], np.dtype(d["dtype"]).name, float(d["quantization"][0]),
                 int(d["quantization"][1])) for d in details]

    return rows(interp.get_input_details()), rows(interp.get_output_details())
