"""Partitioning: every cut composes back to the original model exactly (onnxruntime)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.model.partition import PartitionError, load_partition, sample_cuts

IR = 8


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _split_run(part, cut, feeds):
    """Head on the 'device', tail on the 'node', outputs in the original order."""
    head, tail = part.head(cut.tensors), part.tail(cut.tensors)
    known = dict(feeds)
    if head is not None:
        onnx.checker.check_model(head)
        s = _session(head)
        known.update(zip([o.name for o in s.get_outputs()], s.run(None, {
            i.name: feeds[i.name] for i in s.get_inputs()}), strict=True))
    if tail is not None:
        onnx.checker.check_model(tail)
        s = _session(tail)
        known.update(zip([o.name for o in s.get_outputs()], s.run(None, {
            i.name: known[i.name] for i in s.get_inputs()}), strict=True))
    return [known[o] for o in part.outputs]


def _conv(name, x, cin, cout, rng, inits):
    w = numpy_helper.from_array(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3,
                                f"{name}_w")
    inits.append(w)
    return helper.make_node("Conv", [x, w.name], [f"{name}_o"], name=name, pads=[1, 1, 1, 1])


def chain_model(depth: int = 4) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits, nodes, x = [], [], "x"
    for k in range(depth):
        nodes.append(_conv(f"c{k}", x, 3, 3, rng, inits))
        nodes.append(helper.make_node("Relu", [f"c{k}_o"], [f"r{k}"], name=f"relu{k}"))
        x = f"r{k}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"], name="gap"))
    g = helper.make_graph(nodes, "chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR)


def residual_model() -> onnx.ModelProto:
    """x -> conv a -> relu -> conv b -> add(x) -> relu -> (y, and an early output e), with a
    Constant-fed Mul so constants must stay out of cuts."""
    rng = np.random.default_rng(2)
    inits: list = []
    nodes = [
        _conv("a", "x", 3, 3, rng, inits),
        helper.make_node("Relu", ["a_o"], ["ra"], name="ra"),
        _conv("b", "ra", 3, 3, rng, inits),
        helper.make_node("Constant", [], ["k"], name="k",
                         value=numpy_helper.from_array(np.float32(0.5).reshape(()), "kv")),
        helper.make_node("Mul", ["b_o", "k"], ["bm"], name="mul"),
        helper.make_node("Add", ["bm", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="ry"),
        helper.make_node("ReduceMean", ["ra"], ["e"], name="early", keepdims=1),
    ]
    g = helper.make_graph(nodes, "res",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8]),
                           helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 1, 1, 1])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR)


@pytest.mark.parametrize("build", [chain_model, residual_model])
def test_every_cut_composes_to_the_original(build) -> None:
    model = build()
    part = load_partition(model)
    cuts = part.cuts()
    assert cuts[0].tensors == ("x",) and cuts[0].position == 0
    assert set(cuts[-1].tensors) == set(part.outputs)
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    want = _session(model).run(None, feeds)
    for cut in cuts:
        assert "k" not in cut.tensors
        got = _split_run(part, cut, feeds)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_chain_cuts_are_single_tensors_and_residual_needs_two() -> None:
    assert all(len(c.tensors) == 1 for c in load_partition(chain_model()).cuts())
    res = load_partition(residual_model()).cuts()
    assert ("bm", "x") in {c.tensors[:2] for c in res} or any(
        set(c.tensors) >= {"x", "ra"} for c in res)
    assert max(len(c.tensors) for c in res) >= 2


def test_invalid_cuts_are_rejected() -> None:
    part = load_partition(residual_model())
    with pytest.raises(PartitionError, match="do not separate"):
        part.check(["b_o"])  # the skip connection from x bypasses it
    with pytest.raises(PartitionError, match="not in the model"):
        part.check(["nope"])
    with pytest.raises(PartitionError, match="constant"):
        part.check(["k", "s"])
    with pytest.raises(PartitionError, match="empty"):
        part.check([])
    assert part.check(["b_o", "x", "ra"]) == ("b_o", "ra", "x")


def test_zoo_model_cuts_compose() -> None:
    from edgeinfer.artifact import load_artifact
    from edgeinfer.loading import resolve
    from edgeinfer.zoo import ZOO, installed

    if not installed(ZOO["efficientnet-lite0"]):
        pytest.skip("efficientnet-lite0 package not installed")
    art = load_artifact(resolve("efficientnet-lite0"))
    part = load_partition(art.model_path)
    cuts = part.cuts()
    assert len(cuts) > 50 and any(len(c.tensors) == 2 for c in cuts)  # residual blocks
    feeds = {"input": np.random.default_rng(4).standard_normal((1, 3, 224, 224))
             .astype(np.float32)}
    want = _session(part.model).run(None, feeds)[0]
    for cut in sample_cuts(cuts, 6):
        got = _split_run(part, cut, feeds)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert len(sample_cuts(cuts, 30)) == 30
