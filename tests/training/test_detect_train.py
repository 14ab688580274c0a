"""The training loop (early stopping, hooks, multi-scale, progress) on a tiny detector, and
``train detector`` end to end: class lists, a run that improves val mAP, the artifact through
``edgeinfer run``, and --synth on good images."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeinfer.cli import main
from edgeinfer.loading import load
from edgeinfer.progress import Step
from edgeinfer.synthetic.defects import CLASSES
from edgeinfer.training.datasets import LabelledImage
from edgeinfer.training.detect_batches import BatchMaker
from edgeinfer.training.detect_train import TrainConfig, fit
from edgeinfer.training.detector import train_detector
from edgeinfer.training.detector_model import DefectDetector
from tests.training.conftest import labelled, surface, write_yolo


def tiny_items(n: int = 4, size: int = 64) -> list[LabelledImage]:
    out = []
    for k in range(n):
        img, boxes, classes = labelled(k, size=size, count=(1, 1))
        out.append(LabelledImage(img, size, size, boxes, classes, str(k)))
    return out


def tiny_model() -> DefectDetector:
    torch.manual_seed(0)
    return DefectDetector(2, width=4, head=8)


def test_early_stopping_returns_the_best_epochs_weights() -> None:
    fitness = iter([0.1, 0.5, 0.2, 0.3, 0.9, 0.9])
    seen: dict[int, dict] = {}

    def evaluate(model) -> dict:
        seen[len(seen) + 1] = copy.deepcopy(model.state_dict())
        return {"fitness": next(fitness), "map50": 0.0, "map": 0.0}

    config = TrainConfig(epochs=6, batch=2, imgsz=64, patience=2, threads=1, warmup_steps=1)
    result = fit(tiny_model(), BatchMaker(tiny_items(), 64), config, evaluate=evaluate)
    assert result.stopped_early and len(result.history) == 4  # epochs 3, 4 did not beat 2
    assert result.best_epoch == 2 and result.best["fitness"] == 0.5
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, seen[2][key])
    assert result.steps == 4 * 2


def test_extra_loss_hook_sees_the_neck_features_and_steers_training() -> None:
    calls = []

    def run(hook: bool) -> float:
        model = tiny_model()
        bias = model.heads[0].cls[-1].bias

        def extra(batch, out) -> torch.Tensor:
            calls.append([tuple(f.shape) for f in out.features])
            return 50 * (bias - 2.0).pow(2).sum()

        config = TrainConfig(epochs=2, batch=2, imgsz=64, threads=1, warmup_steps=1, ema=0.0,
                             lr=0.05)
        fit(model, BatchMaker(tiny_items(), 64), config, extra_loss=extra if hook else None)
        return float(bias.detach().mean())

    plain, pulled = run(False), run(True)
    assert calls[0] == [(2, 16, 8, 8), (2, 32, 4, 4)]  # strides 8 and 16, 4w and 8w channels
    assert len(calls) == 4 and pulled > plain + 0.05  # the extra term moved the bias to 2


def test_multi_scale_draws_sides_in_range_and_scales_boxes() -> None:
    items = tiny_items(2, 128)
    maker = BatchMaker(items, 128, scales=(64, 128), flips="none")
    rng = np.random.default_rng(0)
    sides = {maker.batch([0, 1], rng).images.shape[-1] for _ in range(20)}
    assert sides <= {64, 96, 128} and len(sides) >= 2
    img, boxes, _ = maker.sample(0, 64, rng)
    assert img.shape == (64, 64, 3)
    np.testing.assert_allclose(boxes, items[0].boxes / 2, atol=1e-4)


def test_progress_is_reported_per_epoch_and_step() -> None:
    events: list[Step] = []
    config = TrainConfig(epochs=2, batch=2, imgsz=64, threads=1, scales=(64, 96))
    fit(tiny_model(), BatchMaker(tiny_items(), 64, scales=(64, 96)), config,
        progress=events.append)
    epochs = [e for e in events if e.task == "epochs"]
    assert [e.kind for e in epochs] == ["start", "advance", "advance", "finish"]
    assert epochs[0].total == 2 and "loss" in epochs[1].detail
    assert sum(e.kind == "advance" for e in events if e.task == "steps") == 4


@pytest.mark.slow
def test_fine_tuning_a_new_class_list_improves_val_map(tmp_path: Path) -> None:
    """New names -> a new class head (nothing carried): the start scores near zero and a
    short run must clearly learn both classes."""
    root = write_yolo(tmp_path / "d", 16, 6, names=("blob", "line"), kinds=(1, 0),
                      remap={1: 0, 0: 1})
    config = TrainConfig(epochs=4, batch=8, imgsz=128, patience=4, threads=2, lr=3e-3)
    art = train_detector(root, tmp_path / "art", config=config)
    r = art.manifest.reports["train"]
    assert r["base"]["head"] == "new" and r["base"]["carried_classes"] == []
    assert art.labels() == ["blob", "line"]
    assert r["val"]["map50"] >= r["before"]["map50"] + 0.25, (r["before"], r["val"])


def test_a_matching_class_list_keeps_the_head(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "d", 4, 2, names=CLASSES, kinds=(0, 1, 2, 3))
    config = TrainConfig(epochs=1, batch=4, imgsz=128, threads=2)
    r = train_detector(root, tmp_path / "art", config=config).manifest.reports["train"]
    assert r["base"]["head"] == "kept" and r["base"]["recovered_max_abs_diff"] < 1e-2


def test_cli_trains_exports_and_the_artifact_runs(yolo_dir: Path, tmp_path: Path,
                                                  capsys) -> None:
    out = tmp_path / "art"
    args = ["train", "detector", "--data", str(yolo_dir), "-o", str(out), "--from", "scratch",
            "--epochs", "1", "--imgsz", "128", "--batch", "4", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)  # ONE JSON document on stdout
    assert report["data"]["background_images"] == 1 and report["base"]["from"] == "scratch"
    assert {"map50", "map", "recall", "precision"} <= report["val"].keys()
    m = load(out).manifest
    assert m.decoder == "yolo" and m.inputs[0].shape == (1, 3, 128, 128)
    assert m.preprocess.resize == "letterbox" and m.reports["train"]["epochs_run"] == 1
    image = yolo_dir / "images" / "val" / "0.png"
    assert main(["run", str(out), "--source", str(image), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    frame = doc["frames"][0]
    assert frame["source"].endswith("0.png") and isinstance(frame["result"], list)
    assert main(args) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err


def test_synth_trains_on_good_images_alone(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for k in range(6):
        cv2.imwrite(str(good / f"{k}.png"), surface(k, 128))
    out = tmp_path / "art"
    assert main(["train", "detector", "--data", str(good), "--synth", "-o", str(out),
                 "--epochs", "1", "--imgsz", "128", "--batch", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["synthetic_defects"] and r["data"]["train_boxes"] == 0
    assert r["data"]["val_boxes"] > 0 and "SYNTHESIZED" in r["val_note"]
    assert load(out).labels() == list(CLASSES)
