"""compress end to end on tiny models: every point reported, the kept point chosen by the
rule, an artifact every verb can run, the CLI's one JSON document, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from compress_nets import classifier
from typer.testing import CliRunner

from edgeinfer.cli import app
from edgeinfer.compression.compress import CompressConfig, choose, compress, ladder
from edgeinfer.compression.tasks import FineTune
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load
from edgeinfer.runtime.engine import Engine

QUICK = FineTune(epochs=1, steps_per_epoch=3, batch=4)


def _row(name: str, ms: float, drop: float, macs: int = 1) -> dict:
    return {"name": name, "latency_ms": {"ort": ms}, "drop": drop, "macs": macs}


def test_choose_takes_the_fastest_point_within_the_drop_and_else_the_original() -> None:
    rows = [_row("original", 10, 0), _row("a", 6, 0.005), _row("b", 4, 0.02), _row("c", 5, 0.01)]
    assert choose(rows, 0.01) == 3
    assert choose(rows, 0.001) == 0
    assert choose(rows, 0.05) == 2


def test_ladder_steps_down_geometrically_to_the_target() -> None:
    steps = ladder(0.25, 2)
    assert steps == pytest.approx([0.5, 0.25])


def test_compress_reports_every_point_and_writes_a_runnable_artifact(photo_dir: Path,
                                                                     tmp_path: Path) -> None:
    events: list = []
    art = compress(classifier(), tmp_path / "small", data=photo_dir,
                   config=CompressConfig(macs=0.4, steps=2, max_drop=0.5, tune=QUICK),
                   input_shape=(1, 3, 64, 64), progress=events.append)
    report = art.manifest.reports["compress"]
    points = report["points"]
    assert [p["name"] for p in points] == ["original", "step1", "step2"]
    assert points[0]["macs"] > points[1]["macs"] > points[2]["macs"]
    assert points[2]["macs"] <= 0.4 * points[0]["macs"]
    assert points[0]["agreement"] == 1.0  # the teacher agrees with itself
    chosen = report["chosen_index"]
    assert chosen == choose(points, 0.5)
    assert points[chosen]["drop"] <= 0.5
    assert all("ort" in p["latency_ms"] for p in points)
    html = (art.path / "compress.html").read_text()
    assert "<svg" in html and "step2" in html
    engine = Engine(load(art.path), "ort")
    (y,) = engine.run({"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert y.shape == (1, 5)
    assert any(e.task == "distill" for e in events) and any(e.task == "compress" for e in events)


def test_the_cli_prints_one_json_document(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-small"
    result = CliRunner().invoke(app, [
        "compress", "compress_nets:classifier", "-o", str(out), "--data", str(photo_dir),
        "--input-shape", "1x3x64x64", "--macs", "0.5", "--steps", "1", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch", "4", "--backend", "ort", "--max-drop", "50%",
        "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["artifact"] == str(out) and len(doc["points"]) == 2
    assert (out / "edgeinfer.json").is_file()


def test_the_detector_compresses_with_its_decoder_kept(tmp_path: Path) -> None:
    from edgeinfer.training.detector_model import DefectDetector
    from edgeinfer.training.synth import generated_defects

    torch.manual_seed(0)
    det = DefectDetector(num_classes=4, width=8, head=16).eval()
    data = generated_defects(train=24, val=4, tile=128)
    art = compress(det, tmp_path / "det", data=data, like="defect-detector",
                   input_shape=(1, 3, 128, 128),
                   config=CompressConfig(macs=0.5, steps=1, max_drop=1.0, backends=("ort",),
                                         tune=FineTune(epochs=1, steps_per_epoch=2, batch=4,
                                                       scales=(0.5, 1.0))))
    m = art.manifest
    assert m.decoder == "yolo" and m.task == "detection"
    assert m.reports["compress"]["metric"] == "map50"
    assert len(m.reports["compress"]["points"]) == 2
    (y,) = Engine(load(art.path), "ort").run({"images": np.zeros((1, 3, 128, 128), np.float32)})
    assert y.shape[:2] == (1, 8)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"model": "no_such_pkg_xyz:make"}, "cannot import no_such_pkg_xyz"),
    ({"model": "compress_nets:not_a_module"}, "not a torch.nn.Module"),
    ({"model": "compress_nets:classifier", "weights": "MISSING"}, "no such weights file"),
])
def test_bad_models_are_one_line_errors(kwargs: dict, words: str, photo_dir: Path,
                                        tmp_path: Path) -> None:
    model = kwargs.pop("model")
    with pytest.raises(EdgeInferError, match=words) as info:
        compress(model, tmp_path / "x", data=photo_dir, config=CompressConfig(macs=0.5),
                 input_shape=(1, 3, 64, 64), **kwargs)
    assert "\n" not in str(info.value)


def test_a_state_dict_of_another_model_is_refused(photo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"head.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(EdgeInferError, match="does not match the model"):
        compress("compress_nets:classifier", tmp_path / "x", data=photo_dir, weights=path,
                 config=CompressConfig(macs=0.5), input_shape=(1, 3, 64, 64))


def test_an_empty_folder_and_a_missing_target_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeInferError):
        compress(classifier(), tmp_path / "x", data=empty, config=CompressConfig(macs=0.5),
                 input_shape=(1, 3, 64, 64))
    with pytest.raises(EdgeInferError, match="give one target"):
        CompressConfig()
    with pytest.raises(EdgeInferError, match="between 0 and 1"):
        CompressConfig(macs=3)


def test_int8_goes_through_optimize_and_ships_only_what_it_recommends(photo_dir: Path,
                                                                     tmp_path: Path) -> None:
    art = compress(classifier(), tmp_path / "small8", data=photo_dir,
                   config=CompressConfig(macs=0.5, steps=1, max_drop=1.0, int8=True, tune=QUICK,
                                         backends=("ort",)),
                   input_shape=(1, 3, 64, 64))
    reports = art.manifest.reports
    assert "compress" in reports and "optimize" in reports  # the compress report carried on
    shipped = art.manifest.model.precision
    assert (shipped == "fp32") == (reports["optimize"]["recommended"] == "fp32")
