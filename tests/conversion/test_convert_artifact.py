"""`edgeinfer convert` / edgeinfer.convert: converted artifacts that run and carry their checks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import edgeinfer
from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.cli import main
from edgeinfer.errors import ArtifactError, EdgeInferError
from edgeinfer.loading import load
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.engine import Engine

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory):
    """A small conv classifier artifact (1x3x32x32, RGB /255) and a folder of 12 images."""
    root = tmp_path_factory.mktemp("conv")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 5),
    ).eval()
    onnx_path = edgeinfer.export(net, torch.zeros(1, 3, 32, 32), root / "net.onnx")
    art = Artifact.create(
        root / "art", onnx_path, name="net", task="classification",
        inputs=(InputSpec(name="input", shape=(1, 3, 32, 32)),),
        preprocess=Preprocess(scale=1 / 255), labels=list("abcde"), decoder="classification",
        source=SourceInfo(name="test"),
    )
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        img = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(images / f"{i:02d}.png"), img)
    return art, images


def test_openvino_artifact_has_its_bin_runs_and_reports(onnx_artifact, tmp_path):
    pytest.importorskip("openvino")
    art, images = onnx_artifact
    out = edgeinfer.convert(art.path, tmp_path / "ov", edgeinfer.ConvertConfig("openvino"),
                            calib=images)
    m = load(out.path).manifest
    assert m.model.format == "openvino" and m.model.companions == ("net.bin",)
    r = m.reports["convert"]
    assert r["cosine"] >= 0.9999 and r["top1_agreement"] == 1.0 and r["samples"] == 12
    pred = Predictor(Engine(out)).predict(cv2.imread(str(images / "00.png")))
    ref = Predictor(Engine(art)).predict(cv2.imread(str(images / "00.png")))
    assert pred.result[0]["class_id"] == ref.result[0]["class_id"]
    (out.path / "net.bin").unlink()
    with pytest.raises(ArtifactError, match="net.bin"):
        load(out.path)


@pytest.mark.slow
def test_tflite_full_integer_artifact_runs_with_float_feeds(onnx_artifact, tmp_path):
    pytest.importorskip("onnx2tf")
    art, images = onnx_artifact
    out = edgeinfer.convert(art.path, tmp_path / "tfl",
                            edgeinfer.ConvertConfig("tflite", int8=True), calib=images)
    m = load(out.path).manifest
    assert m.model.precision == "int8" and m.inputs[0].layout == "NHWC"
    assert m.inputs[0].shape == (1, 32, 32, 3)
    engine = Engine(out)
    assert engine.inputs[0].name == m.inputs[0].name  # the manifest follows the converter
    assert engine.inputs[0].dtype == "uint8"
    r = m.reports["convert"]
    assert "held-out" in r["verified_on"] and r["cosine_mean"] > 0.9
    pred = Predictor(engine).predict(cv2.imread(str(images / "00.png")))
    assert 0.99 < sum(p["score"] for p in pred.result) <= 1.0 + 1e-5


def test_bad_requests_are_one_line_errors(onnx_artifact, tmp_path, capsys):
    art, images = onnx_artifact
    with pytest.raises(EdgeInferError, match="--int8 is for --to tflite"):
        edgeinfer.ConvertConfig("openvino", int8=True)
    assert main(["convert", str(art.path), "--to", "coreml", "-o", str(tmp_path / "x"),
                 "--calib", str(images)]) == 2
    assert "unknown target 'coreml'" in capsys.readouterr().err
    assert main(["convert", str(art.path), "--to", "tflite", "--int8",
                 "-o", str(tmp_path / "x")]) == 2
    assert "--int8 needs --calib" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # a refused or failed convert leaves nothing behind


def test_fp32_conversion_needs_no_calibration_data(onnx_artifact, tmp_path, capsys):
    art, _ = onnx_artifact
    out = tmp_path / "ov"
    assert main(["convert", str(art.path), "--to", "openvino", "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"]["verified_on"].endswith("seeded random-pixel images (no --calib given)")
    assert doc["report"]["calibration_samples"] == 0 and doc["report"]["cosine"] > 0.9999
    assert main(["convert", str(art.path), "--to", "openvino", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and err.count("\n") == 1
    assert main(["convert", str(art.path), "--to", "openvino", "-o", str(out), "--force"]) == 0


def test_converted_file_names_say_what_they_hold(onnx_artifact, tmp_path, capsys):
    pytest.importorskip("openvino")
    art, _ = onnx_artifact
    out = tmp_path / "ov16"
    assert main(["convert", str(art.path), "--to", "openvino", "--fp16", "-o", str(out)]) == 0
    m = load(out).manifest
    assert m.model.precision == "fp16" and m.model.path == "net.fp16.xml"
    assert m.model.companions == ("net.fp16.bin",)
