"""ONNX models built in code for the tests (onnx.helper; no files, no network).

A module with its own name, not conftest.py: several test folders have their own conftest, and
``from conftest import ...`` would find whichever of them pytest loaded last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo

#: IR version 8 goes with opset 17 and is read by every onnxruntime we support.
IR_VERSION = 8


def conv_model(input_dims: Sequence[int | str], opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,H,W] -> Conv 4x3x3x3 pad 1 -> Relu -> GlobalAveragePool -> Flatten -> Gemm 4->2."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fw = numpy_helper.from_array(rng.standard_normal((2, 4)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "fb")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    n = input_dims[0]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, 2])],
        [w, b, fw, fb],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION,
        producer_name="edgeinfer-tests",
    )
    return model


def tiny_classifier(tmp_path: Path) -> Artifact:
    """A classification artifact (labels dark/bright) of ``conv_model`` at 1x3x32x32, written
    under ``tmp_path``."""
    path = tmp_path / "tiny.onnx"
    onnx.save(conv_model([1, 3, 32, 32]), str(path))
    return Artifact.create(
        tmp_path / "art", path, name="tiny", task="classification", labels=["dark", "bright"],
        inputs=(InputSpec(name="x", shape=(1, 3, 32, 32)),), decoder="classification",
        source=SourceInfo(name="tiny"),
    )


def slow_model(size: int = 384, layers: int = 12) -> onnx.ModelProto:
    """x[1,size] -> Expand to [size,size] -> MatMul by a fixed matrix ``layers`` times ->
    ReduceSum over rows -> y[1,size]: a small body, tens of ms of compute on 2 cores."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.array([size, size], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "axes")]
    nodes = [helper.make_node("Expand", ["x", "shape"], ["e"])]
    prev = "e"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"m{i}"]))
        prev = f"m{i}"
    nodes.append(helper.make_node("ReduceSum", [prev, "axes"], ["y"], keepdims=1))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=IR_VERSION)


def softmax_classifier(input_dims: Sequence[int | str]) -> onnx.ModelProto:
    """``conv_model`` ending in Softmax: its output already holds probabilities."""
    model = conv_model(input_dims)
    g = model.graph
    g.node[-1].output[0] = "logits"
    g.node.append(helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1))
    return model


def multi_output_detector(classes: int = 6) -> onnx.ModelProto:
    """x[1,3,16,16] -> Conv 8 -> 4 branches at strides 1, 2, 4, 8, each with a box head
    [1, S*S, 4] and a score head [1, S*S, C] (branch 0's score head has 4 channels, so two
    outputs share a shape and only values tell them apart): 8 outputs, box0, score0, box1 ..."""
    rng = np.random.default_rng(3)

    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32),
                                       name)

    inits = [w("tw", (8, 3, 3, 3)), w("tb", (8,))]
    nodes = [helper.make_node("Conv", ["x", "tw", "tb"], ["t"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["t"], ["tr"])]
    outputs = []
    for k in range(4):
        s = 16 >> k
        src = "tr"
        if k:
            nodes.append(helper.make_node("AveragePool", ["tr"], [f"p{k}"],
                                          kernel_shape=[1 << k] * 2, strides=[1 << k] * 2))
            src = f"p{k}"
        for head, ch in (("box", 4), ("score", 4 if k == 0 else classes)):
            name = f"{head}{k}"
            inits += [w(f"{name}_w", (ch, 8, 1, 1)), w(f"{name}_b", (ch,))]
            inits.append(numpy_helper.from_array(np.array([1, s * s, ch], np.int64),
                                                 f"{name}_shape"))
            nodes += [
                helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_c"]),
                helper.make_node("Transpose", [f"{name}_c"], [f"{name}_t"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]),
            ]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [1, s * s, ch]))
    graph = helper.make_graph(
        nodes, "eight_heads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=IR_VERSION, producer_name="edgeinfer-tests")
