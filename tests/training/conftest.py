"""Tiny detection datasets built in the test: smooth random surfaces 128 px wide with defects
drawn by ``edgeinfer.synthetic.defects.draw_defects`` (exact boxes), in the YOLO layout or as
COCO JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.synthetic.defects import draw_defects

SIZE = 128


def surface(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth grey-brown random surface (BGR uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 18, (6, 6)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(90, 160) + field + rng.normal(0, 3, (size, size)).astype(np.float32)
    tint = np.array([1.0, 1.02, 1.05], np.float32)
    return np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)


def labelled(seed: int, kinds: Sequence[int] = (0, 1), count: tuple[int, int] = (1, 3),
             size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A surface with defects of the generator's class indices ``kinds``."""
    img = surface(seed, size)
    return draw_defects(img, np.random.default_rng(seed + 7), count, classes=tuple(kinds),
                        margin=4, min_contrast=12)


def yolo_line(box: np.ndarray, cls: int, w: int, h: int) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} " \
           f"{(y2 - y1) / h:.6f}"


def write_yolo(root: Path, n_train: int, n_val: int, names: Sequence[str] = ("scratch", "spot"),
               kinds: Sequence[int] = (0, 1), remap: dict[int, int] | None = None,
               background: int = 0, val: bool = True) -> Path:
    """A YOLO dataset: ``images/{train,val}``, ``labels/...``, ``data.yaml``; ``background``
    extra train images without a label file. ``remap``: generator class -> dataset class."""
    for split, n, base in (("train", n_train, 0), ("val", n_val if val else 0, 1000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img, boxes, classes = labelled(base + k, kinds)
            cv2.imwrite(str(root / "images" / split / f"{k}.png"), img)
            lines = [yolo_line(b, (remap or {}).get(int(c), int(c)), SIZE, SIZE)
                     for b, c in zip(boxes, classes, strict=True)]
            (root / "labels" / split / f"{k}.txt").write_text("\n".join(lines) + "\n")
    for k in range(background):
        cv2.imwrite(str(root / "images" / "train" / f"bg{k}.png"), surface(5000 + k))
    splits = "train: images/train\n" + ("val: images/val\n" if val else "")
    (root / "data.yaml").write_text(f"path: .\n{splits}names: [{', '.join(names)}]\n")
    return root


def write_coco(root: Path, n: int, names: Sequence[str] = ("scratch", "spot")) -> Path:
    """A COCO dataset: ``images/*.png`` and ``annotations.json`` (category ids 5, 9, ...)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    cat_ids = [5 + 4 * i for i in range(len(names))]
    for k in range(n):
        img, boxes, classes = labelled(k)
        cv2.imwrite(str(root / "images" / f"{k}.png"), img)
        images.append({"id": 100 + k, "file_name": f"{k}.png", "width": SIZE, "height": SIZE})
        for b, c in zip(boxes, classes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in b)
            anns.append({"id": len(anns) + 1, "image_id": 100 + k,
                         "category_id": cat_ids[int(c)], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": i, "name": nm} for i, nm in zip(cat_ids, names, strict=True)]}
    path = root / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def yolo_dir(tmp_path: Path) -> Path:
    return write_yolo(tmp_path / "yolo", 6, 2, background=1)
