"""The one CLI dialect: every verb's ``--json`` prints exactly one JSON document on stdout
(``python -m json.tool`` reads it) and nothing else there."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli import main
from tests.onnx_builders import conv_model, tiny_classifier


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("json")
    onnx.save(conv_model(["N", 3, 16, 16]), str(root / "net.onnx"))
    art = Artifact.create(
        root / "net-art", root / "net.onnx", name="net", task="other",
        inputs=(InputSpec(name="x", shape=(1, 3, 16, 16)),),
        source=SourceInfo(name="net", origin="built in the test"),
    )
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (20, 24, 3), np.uint8))
    calib = root / "calib.npy"
    np.save(calib, rng.normal(size=(12, 3, 16, 16)).astype(np.float32))
    (root / "classifier").mkdir()
    classifier = tiny_classifier(root / "classifier")
    return {"root": root, "art": art.path, "images": images, "calib": calib,
            "classifier": classifier.path}


VERBS = {
    "inspect": lambda w: ["inspect", w["art"]],
    "bench": lambda w: ["bench", w["art"], "--backend", "ort", "--threads", "1", "--runs", "3",
                        "--warmup", "0"],
    "optimize": lambda w: ["optimize", w["art"], "-o", w["root"] / "opt", "--calib", w["calib"],
                           "--precision", "fp32"],
    "convert": lambda w: ["convert", w["art"], "--to", "openvino", "-o", w["root"] / "ov"],
    "tune": lambda w: ["tune", w["art"], "-o", w["root"] / "tuned", "--calib", w["calib"],
                       "--backend", "ort", "--threads", "1", "--precision", "fp32",
                       "--no-tflite"],
    "run": lambda w: ["run", w["classifier"], "--source", w["images"]],
    "train detector": lambda w: ["train", "detector", "--data", w["images"], "--synth",
                                 "-o", w["root"] / "det", "--from", "scratch", "--epochs", "1",
                                 "--imgsz", "64", "--batch", "4"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_json_is_one_document_on_stdout(verb: str, workspace, capsys) -> None:
    if verb == "convert":
        pytest.importorskip("openvino")
    args = [str(a) for a in VERBS[verb](workspace)]
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    doc = json.loads(out)  # raises on a table, a second document or any stray line
    assert isinstance(doc, dict) and doc
