"""Dataset readers: the YOLO layout and COCO JSON read as their users write them, and every bad
input a one-line DatasetError (exit 2 from the CLI) naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.errors import DatasetError
from edgeinfer.training.datasets import open_dataset, read_good_images, yolo_label_path
from tests.training.conftest import SIZE, labelled, surface, write_coco, write_yolo


def test_yolo_reads_names_splits_boxes_and_counts_background(yolo_dir: Path) -> None:
    ds = open_dataset(yolo_dir)
    assert ds.layout == "yolo" and ds.names == ("scratch", "spot") and ds.split == "given"
    assert len(ds.train) == 7 and len(ds.val) == 2 and ds.background == 1
    item = next(i for i in ds.train if i.name == "0.png")
    _, boxes, classes = labelled(0)
    np.testing.assert_allclose(item.boxes, boxes, atol=1e-3)  # normalised -> pixels
    np.testing.assert_array_equal(item.classes, classes)
    assert item.read().shape == (SIZE, SIZE, 3)


def test_yolo_names_as_a_dict_polygons_and_a_file_list(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "d", 3, 0, val=False)
    (root / "labels" / "train" / "0.txt").write_text("1 0.1 0.1 0.5 0.2 0.3 0.6\n")
    (root / "train.txt").write_text("".join(f"./images/train/{k}.png\n" for k in range(3)))
    (root / "data.yaml").write_text("train: train.txt\nnames: {0: scratch, 1: spot}\n")
    ds = open_dataset(root / "data.yaml")
    item = next(i for i in ds.train + ds.val if i.name == "0.png")
    np.testing.assert_allclose(item.boxes, [[0.1 * SIZE, 0.1 * SIZE, 0.5 * SIZE, 0.6 * SIZE]],
                               atol=1e-3)
    assert item.classes.tolist() == [1]


def test_label_path_replaces_the_last_images_folder() -> None:
    assert yolo_label_path(Path("/d/images/x/images/train/a.jpg")) == Path(
        "/d/images/x/labels/train/a.txt")


def test_without_val_a_seeded_split_is_held_out(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "d", 10, 0, val=False)
    a, b = open_dataset(root, seed=3), open_dataset(root, seed=3)
    assert len(a.val) == 2 and len(a.train) == 8 and "held out" in a.split
    assert [i.name for i in a.val] == [i.name for i in b.val]
    assert {i.name for i in a.val}.isdisjoint(i.name for i in a.train)


def test_coco_maps_category_ids_ignores_crowds_and_splits(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "c", 6)
    doc = json.loads(path.read_text())
    doc["annotations"].append({"id": 999, "image_id": 100, "category_id": 9,
                               "bbox": [0, 0, 500, 500], "iscrowd": 1})  # ignored
    path.write_text(json.dumps(doc))
    ds = open_dataset(path.parent)  # the folder holding one .json
    assert ds.layout == "coco" and ds.names == ("scratch", "spot")
    assert len(ds.train) + len(ds.val) == 6
    item = next(i for i in ds.train + ds.val if i.name == "0.png")
    _, boxes, classes = labelled(0)
    np.testing.assert_allclose(item.boxes, boxes, atol=1e-4)
    np.testing.assert_array_equal(item.classes, classes)


def test_unreadable_images_are_skipped_and_counted(yolo_dir: Path) -> None:
    (yolo_dir / "images" / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = open_dataset(yolo_dir)
    assert len(ds.skipped) == 1 and "broken.png" in ds.skipped[0]
    assert ds.summary()["skipped_images"] == 1


@pytest.mark.parametrize(("line", "message"), [
    ("2 0.5 0.5 0.1 0.1", "outside the class list"),
    ("0 0.95 0.5 0.2 0.1", "outside the image"),
    ("0 0.5 0.5 0 0.1", "outside the image or is empty"),
    ("0 half 0.5 0.1 0.1", "is not 'class cx cy w h'"),
])
def test_bad_yolo_labels_name_file_and_line(yolo_dir: Path, line: str, message: str) -> None:
    label = yolo_dir / "labels" / "train" / "1.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        open_dataset(yolo_dir)
    assert f"{label}:2" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"category_id": 77}, "outside the class list"),
    ({"bbox": [100, 100, 60, 20]}, "outside the 128x128 image"),
])
def test_bad_coco_annotations(tmp_path: Path, change: dict, message: str) -> None:
    path = write_coco(tmp_path / "c", 4)
    doc = json.loads(path.read_text())
    doc["annotations"][0].update(change)
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=message):
        open_dataset(path)


def test_missing_data_yaml_and_empty_datasets(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "d", 2, 0)
    (root / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="no data.yaml.*images/ and labels/.*names:"):
        open_dataset(root)
    empty = tmp_path / "e"
    (empty / "images" / "train").mkdir(parents=True)
    (empty / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(DatasetError, match="no usable training images"):
        open_dataset(empty)
    with pytest.raises(DatasetError, match="no usable training images"):
        read_good_images(tmp_path / "e", ["a"])
    with pytest.raises(DatasetError, match="no such dataset"):
        open_dataset(tmp_path / "nowhere")


def test_labels_with_no_box_at_all_point_to_synth(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images" / "train").mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(root / "images" / "train" / f"{k}.png"), surface(k))
    (root / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(DatasetError, match="--synth"):
        open_dataset(root)
    assert len(open_dataset(root / "images", synth=True, names=["a"]).train) == 2


def test_cli_reports_a_bad_dataset_in_one_line_with_exit_2(yolo_dir: Path, tmp_path: Path,
                                                           capsys) -> None:
    (yolo_dir / "labels" / "train" / "0.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    code = main(["train", "detector", "--data", str(yolo_dir), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("edgeinfer: error:") and "outside the class list" in err
