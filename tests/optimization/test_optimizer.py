"""optimize: graph passes, each precision, the fallback engaging for real, honest reports."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load
from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize, read_labels
from edgeinfer.optimization.passes import op_counts, optimize_graph

torch = pytest.importorskip("torch")
nn = torch.nn


def _export(module, path, shape=(1, 3, 16, 16)):
    from edgeinfer.model.export import export

    torch.manual_seed(0)
    return export(module, torch.zeros(*shape), path, simplify=False)


def _artifact(tmp_path, module, name="net"):
    onnx_path = _export(module, tmp_path / f"{name}.onnx")
    return Artifact.create(
        tmp_path / f"{name}-art", onnx_path, name=name, task="classification",
        inputs=(InputSpec(name="input", shape=(1, 3, 16, 16)),), decoder="classification",
        source=SourceInfo(name=name),
    )


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()


class Outlier(nn.Module):
    """Conv whose first channel is 1000x the others; the head reads only the small channels,
    so per-tensor INT8 activations of that conv crush what the answer depends on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Conv2d(3, 8, 3, padding=1, stride=2)
        self.b = nn.Conv2d(8, 8, 1)
        with torch.no_grad():
            self.b.weight[0] *= 1000
            self.b.bias[0] = 500
        self.head = nn.Linear(8 * 8 * 8, 10)
        with torch.no_grad():
            self.head.weight.view(10, 8, 8, 8)[:, 0] = 0

    def forward(self, x):
        return self.head(self.b(torch.relu(self.a(x))).flatten(1))


def _samples(n_cal=32, n_eval=64, seed=0) -> Samples:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_cal + n_eval, 3, 16, 16)).astype(np.float32)
    return Samples(data[:n_cal], data[n_cal:], origin="synthetic normal noise")


def _conv_bn_relu(path):
    """A hand-built Conv -> BatchNormalization -> Relu graph (torch's exporter folds BN itself)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "shift"),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"],
                         name="bn"),
        helper.make_node("Relu", ["n"], ["output"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "cbr", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_graph_pass_folds_batchnorm_and_keeps_numerics(tmp_path):
    src = _conv_bn_relu(tmp_path / "m.onnx")
    assert op_counts(src) == {"Conv": 1, "BatchNormalization": 1, "Relu": 1}
    dst = optimize_graph(src, tmp_path / "opt.onnx")
    assert op_counts(dst) == {"Conv": 1, "Relu": 1}
    assert {o.domain for o in onnx.load(str(dst)).opset_import} <= {"", "ai.onnx"}  # portable
    from edgeinfer.optimization.evaluate import run_outputs

    x = _samples().evaluation[:8]
    np.testing.assert_allclose(run_outputs(src, x), run_outputs(dst, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8-dynamic", "mixed"])
def test_each_precision_writes_an_artifact_with_a_report(tmp_path, precision):
    art = _artifact(tmp_path, _classifier())
    config = OptimizeConfig(precision=precision, max_drop=1.0, latency_rounds=1)
    result = optimize(art.path, tmp_path / "out", config, _samples())
    report = load(result.path).manifest.reports["optimize"]
    assert report["precision_requested"] == precision
    assert {"fp32", "result", "ratios", "problems", "recommended"} <= set(report)
    assert report["samples"] == {"calibration": 32, "evaluation": 64,
                                 "origin": "synthetic normal noise", "labels": False}
    kept = onnx.load(str(result.model_path))
    counts = op_counts(kept)
    if report["recommended"] == "fp32":
        assert result.manifest.model.precision == "fp32"
        assert (tmp_path / "out").joinpath(f"net.{precision}.rejected.onnx").exists() or \
            precision == "fp32"
    elif precision in ("int8", "mixed"):
        assert counts["QuantizeLinear"] > 0
        assert report["ratios"]["size"] < 0.5
    elif precision == "int8-dynamic":
        assert counts.get("DynamicQuantizeLinear", 0) + counts.get("ConvInteger", 0) > 0
    elif precision == "fp16":
        elem = kept.graph.input[0].type.tensor_type.elem_type
        assert elem == onnx.TensorProto.FLOAT  # float32 I/O kept
        assert report["ratios"]["size"] < 0.7


def test_fallback_engages_and_names_the_layers_it_kept(tmp_path):
    art = _artifact(tmp_path, Outlier(), "outlier")
    samples = _samples(48, 96)
    # the speed check is off: this tests the fallback, which runs only where INT8 pays
    plain = optimize(art.path, tmp_path / "plain", OptimizeConfig(
        precision="int8", per_channel=False, fallback=False, max_drop=0.05, latency_rounds=1,
        speed_check=False), samples)
    plain_report = plain.manifest.reports["optimize"]
    assert plain_report["result"]["drop"] > 0.05  # plain INT8 breaks this model
    assert plain_report["recommended"] == "fp32"
    assert any("exceeds --max-drop" in p for p in plain_report["problems"])

    fixed = optimize(art.path, tmp_path / "fixed", OptimizeConfig(
        precision="int8", per_channel=False, max_drop=0.05, latency_rounds=1,
        speed_check=False), samples)
    report = fixed.manifest.reports["optimize"]
    assert report["result"]["drop"] <= 0.05
    # The culprit is /b/Conv's output range; the fallback finds it and keeps little else.
    assert "/b/Conv" in report["kept_in_float"]
    assert len(report["kept_in_float"]) <= 2
    assert report["sensitivity"][0]["name"] in ("/b/Conv", "/head/Gemm")
    assert report["fallback_trials"][-1]["drop"] <= 0.05
    assert report["fallback_latency"]["ratio"] > 0  # what the float layers cost is measured
    # Accuracy is within budget now; on a model this tiny, Q/DQ overhead may still make it
    # slower than FP32, and then the report must say that (and only that).
    assert not any("max-drop" in p for p in report["problems"])
    if report["problems"]:
        assert fixed.manifest.model.precision == "fp32"
        assert all("slower than FP32" in p for p in report["problems"])
    else:
        assert fixed.manifest.model.precision == "mixed"


def test_weight_only_int8_keeps_float_activations(tmp_path):
    src = optimize_graph(_export(_classifier(), tmp_path / "m.onnx"), tmp_path / "f.onnx")
    model = onnx.load(str(src))
    names = [n.name for n in q.quantizable_nodes(model)]
    dst = q.weight_only_int8(src, tmp_path / "w8.onnx", names)
    w8 = onnx.load(str(dst))
    assert op_counts(w8)["DequantizeLinear"] == len(names)
    assert "QuantizeLinear" not in op_counts(w8)
    assert dst.stat().st_size < 0.5 * src.stat().st_size
    from edgeinfer.optimization.evaluate import compare, run_outputs

    x = _samples().evaluation
    assert compare(run_outputs(src, x), run_outputs(dst, x)).value >= 0.95


def test_labels_without_eval_set_and_too_little_data_are_errors(tmp_path):
    from edgeinfer.optimization.optimizer import build_samples

    art = _artifact(tmp_path, _classifier())
    npy = tmp_path / "calib.npy"
    np.save(npy, _samples().calib[:3])
    with pytest.raises(EdgeInferError, match="--labels needs --eval"):
        build_samples(art, npy, labels_file=tmp_path / "labels.txt")
    with pytest.raises(EdgeInferError, match="at least 4"):
        build_samples(art, npy)


def test_read_labels(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("a.jpg 3\nb.jpg cat\n# comment\n")
    assert read_labels(f, ("dir/a.jpg", "b.jpg"), ["dog", "cat"]) == (3, 1)
    with pytest.raises(EdgeInferError, match="no label for evaluation sample 'c.jpg'"):
        read_labels(f, ("c.jpg",), None)
    with pytest.raises(EdgeInferError, match="no such labels file"):
        read_labels(tmp_path / "nope.txt", ("a.jpg",), None)


def test_cli_optimize_from_npy_and_errors(tmp_path, capsys):
    art = _artifact(tmp_path, _classifier())
    npy = tmp_path / "calib.npy"
    np.save(npy, _samples().calib)
    rc = main(["optimize", str(art.path), "-o", str(tmp_path / "o"), "--precision", "int8",
               "--calib", str(npy), "--max-drop", "100%"])
    assert rc == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "o" / "edgeinfer.json").read_text())
    report = manifest["reports"]["optimize"]
    # the rule, not this CPU's timing: a stopped speed check says so and ships FP32; otherwise
    # the agreement was measured and is shown
    if "stopped" in report:
        assert "stopped" in out and report["recommended"] == "fp32"
    else:
        assert "top-1 agreement" in out
    assert "p50 latency" in out
    page = (tmp_path / "o" / manifest["reports"]["optimize"]["html"]).read_text()
    assert "<svg" in page and "p50 latency" in page and "calibration" in page
    assert main(["optimize", str(art.path), "-o", str(tmp_path / "x")]) == 2
    assert "needs calibration data" in capsys.readouterr().err
    assert main(["optimize", str(art.path), "-o", str(tmp_path / "x"), "--calib", str(npy),
                 "--precision", "int4"]) == 2
    assert "unknown --precision" in capsys.readouterr().err
    assert main(["optimize", str(art.path), "-o", str(tmp_path / "x"), "--calib",
                 str(tmp_path / "missing")]) == 2
