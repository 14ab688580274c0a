"""Detection datasets as users have them: the YOLO layout (``data.yaml``, ``images/``,
``labels/*.txt``), COCO JSON, or a folder of good images (defects synthesized on them).

Every reader returns a :class:`DetectionDataset`: class names, train and val lists of
:class:`LabelledImage` (boxes in pixels, ``x1 y1 x2 y2``), and counts of what it met
(background images, unreadable images skipped). Bad labels are one-line
:class:`~edgeinfer.errors.DatasetError` naming the file, the line and the fix.

YOLO, as Ultralytics reads it: ``data.yaml`` holds ``path`` (the root; relative to the yaml's
folder, default that folder), ``train`` and ``val`` (each a folder of images, a ``.txt`` file
listing images, or a list of those, relative to the root) and ``names`` (a list, or a dict
index -> name). An image's label file is its path with the last ``images`` folder replaced by
``labels`` and the suffix by ``.txt``; each line is ``class cx cy w h`` normalised to 0..1 (or
``class x1 y1 x2 y2 ...``, a polygon, boxed). An image without a label file is background.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeinfer.errors import DatasetError
from edgeinfer.vision.image_io import MAX_PIXELS, ImageDecodeError, decode_image
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

__all__ = ["DetectionDataset", "LabelledImage", "open_dataset", "read_coco", "read_good_images",
           "read_yolo", "split_dataset"]

#: corners may overshoot the image by this fraction of its side (rounding in exported labels);
#: they are clipped. Farther out is an error.
EDGE_TOLERANCE = 0.01

Layout = Literal["yolo", "coco", "images"]


@dataclass(frozen=True)
class LabelledImage:
    """One image and its boxes: ``boxes`` float32 ``[N, 4]`` x1 y1 x2 y2 in pixels, ``classes``
    int64 ``[N]``. ``image`` is a file or an in-memory BGR ``uint8`` array."""

    image: Path | np.ndarray = field(repr=False)
    width: int
    height: int
    boxes: np.ndarray = field(repr=False)
    classes: np.ndarray = field(repr=False)
    name: str = ""

    def read(self) -> np.ndarray:
        """The BGR uint8 pixels."""
        if isinstance(self.image, np.ndarray):
            return self.image
        return _decode(Path(self.image))


@dataclass(frozen=True)
class DetectionDataset:
    """Class names, train and val images, and what reading them met."""

    names: tuple[str, ...]
    train: tuple[LabelledImage, ...]
    val: tuple[LabelledImage, ...]
    layout: Layout
    origin: str
    split: str = "given"
    background: int = 0
    skipped: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The dataset's figures for a report (JSON-ready)."""
        return {
            "layout": self.layout, "origin": self.origin, "classes": list(self.names),
            "split": self.split, "train_images": len(self.train), "val_images": len(self.val),
            "train_boxes": int(sum(len(i.boxes) for i in self.train)),
            "val_boxes": int(sum(len(i.boxes) for i in self.val)),
            "background_images": self.background, "skipped_images": len(self.skipped),
        }


def _decode(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return decode_image(data, MAX_PIXELS)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc


def _size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file: decoded once to be sure it reads (ImageDecodeError)."""
    img = _decode(path)
    return img.shape[1], img.shape[0]


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


# --- YOLO -------------------------------------------------------------------------------------


def _yolo_names(raw: Any, yaml_path: Path) -> tuple[str, ...]:
    names = raw.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            keys = []
        if keys != list(range(len(names))):
            raise DatasetError(f"{yaml_path}: 'names' must map 0, 1, 2, ... to class names")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names or not all(isinstance(n, str | int)
                                                           for n in names):
        raise DatasetError(
            f"{yaml_path} has no class list: add 'names: [scratch, dent]' (index order)"
        )
    if "nc" in raw and raw["nc"] != len(names):
        raise DatasetError(f"{yaml_path}: nc is {raw['nc']} but 'names' lists {len(names)}")
    return tuple(str(n) for n in names)


def _yolo_sources(value: Any, root: Path, yaml_path: Path, key: str) -> list[Path]:
    """The image files of one split entry (folder, .txt list, image, or a list of those)."""
    entries = value if isinstance(value, list) else [value]
    files: list[Path] = []
    for entry in entries:
        p = Path(str(entry))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            files += _images_under(p)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    q = Path(line.strip())
                    files.append(q if q.is_absolute() else (p.parent / q).resolve()
                                 if line.startswith(".") else root / q)
        elif p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"{yaml_path}: {key} '{entry}' is not a folder, an image list "
                               f"(.txt) or an image under {root}: fix the path")
    return files


def yolo_label_path(image: Path) -> Path:
    """Where Ultralytics looks for an image's labels: the last ``images`` folder of its path
    becomes ``labels`` and the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo_boxes(
    label: Path, width: int, height: int, nc: int
) -> tuple[np.ndarray, np.ndarray]:
    boxes, classes = [], []
    for lineno, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label}:{lineno}"
        try:
            cls_f, *vals = (float(v) for v in fields)
        except ValueError:
            raise DatasetError(
                f"{where}: '{line.strip()}' is not 'class cx cy w h' numbers"
            ) from None
        if cls_f != int(cls_f) or not 0 <= cls_f < nc:
            raise DatasetError(
                f"{where}: class {fields[0]} is outside the class list (0..{nc - 1} in "
                "data.yaml 'names'): fix the label or add the class"
            )
        if len(vals) == 4:
            cx, cy, w, h = vals
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        elif len(vals) >= 6 and len(vals) % 2 == 0:  # a polygon (segmentation label)
            xs, ys = vals[0::2], vals[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        else:
            raise DatasetError(f"{where}: {len(vals)} coordinates; a box is 'class cx cy w h'")
        lo, hi = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
        if not (lo <= x1 and lo <= y1 and x2 <= hi and y2 <= hi) or x2 <= x1 or y2 <= y1:
            raise DatasetError(
                f"{where}: box ({x1:.3f}, {y1:.3f})-({x2:.3f}, {y2:.3f}) lies outside the "
                f"image or is empty: YOLO boxes are normalised to 0..1 of the image size"
            )
        b = np.clip([x1, y1, x2, y2], 0, 1) * [width, height, width, height]
        boxes.append(b)
        classes.append(int(cls_f))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def _yolo_split(
    files: Iterable[Path], nc: int
) -> tuple[list[LabelledImage], int, list[str]]:
    items, background, skipped = [], 0, []
    for path in files:
        try:
            width, height = _size(path)
        except ImageDecodeError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(path))
            continue
        label = yolo_label_path(path)
        if label.is_file():
            boxes, classes = _yolo_boxes(label, width, height, nc)
        else:
            boxes, classes = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        background += not len(boxes)
        items.append(LabelledImage(path, width, height, boxes, classes, path.name))
    return items, background, skipped


def read_yolo(data: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DetectionDataset:
    """A YOLO dataset from its ``data.yaml`` (or the folder holding it); see the module doc.
    Without a ``val`` entry, ``val_fraction`` of the train images are held out (``seed``)."""
    import yaml

    path = Path(data)
    yaml_path = _find_yaml(path) if path.is_dir() else path
    try:
        raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{yaml_path} is not a readable YAML file ({exc})") from exc
    if not isinstance(raw, dict) or "train" not in raw:
        raise DatasetError(f"{yaml_path} has no 'train' entry: add 'train: images/train'")
    names = _yolo_names(raw, yaml_path)
    root = Path(str(raw.get("path") or "."))
    root = root if root.is_absolute() else (yaml_path.parent / root)
    train, bg, skipped = _yolo_split(_yolo_sources(raw["train"], root, yaml_path, "train"),
                                     len(names))
    val: list[LabelledImage] = []
    if raw.get("val"):
        val, bg_val, skipped_val = _yolo_split(_yolo_sources(raw["val"], root, yaml_path, "val"),
                                               len(names))
        bg, skipped = bg + bg_val, skipped + skipped_val
    ds = DetectionDataset(names, tuple(train), tuple(val), "yolo", f"YOLO {yaml_path}",
                          background=bg, skipped=tuple(skipped))
    return _checked(ds if val else split_dataset(ds, val_fraction, seed))


def _find_yaml(folder: Path) -> Path:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (folder / name).is_file():
            return folder / name
    hint = " (it has images/ and labels/)" if (folder / "labels").is_dir() else ""
    raise DatasetError(
        f"{folder} has no data.yaml{hint}: write one naming the splits and classes, e.g. "
        "'train: images/train', 'val: images/val', 'names: [scratch, dent]'"
    )


# --- COCO -------------------------------------------------------------------------------------


def _coco_image_path(root: Path, file_name: str) -> Path:
    for base in (root, root / "images", root.parent / "images", root.parent):
        if (base / file_name).is_file():
            return base / file_name
    return root / file_name


def read_coco(path: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DetectionDataset:
    """A COCO detection JSON (``images``, ``annotations`` with ``bbox`` [x, y, w, h] in
    pixels, ``categories``); images resolve beside the file or in an ``images/`` folder next
    to it. Crowd annotations are ignored; one split, so ``val_fraction`` is held out."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not a readable JSON file ({exc})") from exc
    if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= raw.keys():
        raise DatasetError(f"{path} is not COCO: it needs 'images', 'annotations', 'categories'")
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    names = tuple(str(c["name"]) for c in cats)
    per_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in raw["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    items, background, skipped = [], 0, []
    for im in raw["images"]:
        file = _coco_image_path(path.parent, im["file_name"])
        try:
            width, height = _size(file)
        except ImageDecodeError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(file))
            continue
        boxes, classes = _coco_boxes(per_image.get(im["id"], []), index, width, height, path, im)
        background += not len(boxes)
        items.append(LabelledImage(file, width, height, boxes, classes, file.name))
    ds = DetectionDataset(names, tuple(items), (), "coco", f"COCO {path}", background=background,
                          skipped=tuple(skipped))
    return _checked(split_dataset(ds, val_fraction, seed))


def _coco_boxes(
    anns: Sequence[dict[str, Any]], index: dict[Any, int], width: int, height: int, path: Path,
    im: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    boxes, classes = [], []
    tol_x, tol_y = EDGE_TOLERANCE * width, EDGE_TOLERANCE * height
    for ann in anns:
        if ann.get("iscrowd"):
            continue
        where = f"{path}: annotation {ann.get('id')} of {im['file_name']}"
        if ann.get("category_id") not in index:
            raise DatasetError(f"{where}: category_id {ann.get('category_id')} is outside the "
                               f"class list (categories {sorted(index)}): fix it or add it")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if (x < -tol_x or y < -tol_y or x + w > width + tol_x or y + h > height + tol_y
                or w <= 0 or h <= 0):
            raise DatasetError(f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the "
                               f"{width}x{height} image or is empty: COCO boxes are [x, y, w, h] "
                               "in pixels")
        boxes.append(np.clip([x, y, x + w, y + h], 0, [width, height, width, height]))
        classes.append(index[ann["category_id"]])
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


# --- good images ------------------------------------------------------------------------------


def read_good_images(
    folder: str | Path, names: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> DetectionDataset:
    """Every image under ``folder`` as defect-free (no boxes): the surface that defects of the
    classes ``names`` are synthesized on. Unreadable images are skipped and counted."""
    folder = Path(folder)
    items, skipped = [], []
    for p in _images_under(folder):
        try:
            width, height = _size(p)
        except ImageDecodeError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(p))
            continue
        items.append(LabelledImage(p, width, height, np.zeros((0, 4), np.float32),
                                   np.zeros(0, np.int64), p.name))
    ds = DetectionDataset(tuple(names), tuple(items), (), "images", f"good images {folder}",
                          background=len(items), skipped=tuple(skipped))
    return _checked(split_dataset(ds, val_fraction, seed), need_boxes=False)


# --- split, checks, dispatch ------------------------------------------------------------------


def split_dataset(ds: DetectionDataset, val_fraction: float = 0.2, seed: int = 0
                  ) -> DetectionDataset:
    """Hold out ``val_fraction`` of ``ds.train`` (at least one image) as val, drawn with
    ``seed``; the split is recorded in ``ds.split``."""
    n = len(ds.train)
    if n == 0:
        _checked(ds)  # raises: no usable images
    if n < 2:
        raise DatasetError(f"{ds.origin}: {n} usable image(s); training needs at least 2 "
                           "(one to train on, one to validate)")
    k = min(n - 1, max(1, round(n * val_fraction)))
    order = np.random.default_rng(seed).permutation(n)
    val = tuple(ds.train[i] for i in sorted(order[:k]))
    train = tuple(ds.train[i] for i in sorted(order[k:]))
    return replace(ds, train=train, val=val,
                   split=f"random {k} of {n} images held out for val (seed {seed})")


def _checked(ds: DetectionDataset, need_boxes: bool = True) -> DetectionDataset:
    if not ds.train:
        extra = f" ({len(ds.skipped)} unreadable skipped)" if ds.skipped else ""
        raise DatasetError(f"{ds.origin}: no usable training images{extra}: check the paths")
    if need_boxes and not any(len(i.boxes) for i in ds.train):
        raise DatasetError(
            f"{ds.origin}: no labelled box in {len(ds.train)} training images, nothing to "
            "learn: add labels, or train on good images with --synth"
        )
    return ds


def open_dataset(
    data: str | Path, *, synth: bool = False, names: Sequence[str] = (),
    val_fraction: float = 0.2, seed: int = 0,
) -> DetectionDataset:
    """Read ``data`` in whichever layout it is: a ``data.yaml`` (or a folder with one) is YOLO,
    a ``.json`` (or a folder with exactly one) is COCO; with ``synth``, a folder is good
    images onto which defects of ``names`` are drawn."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file or folder: check the path")
    if synth:
        if not path.is_dir():
            raise DatasetError(f"--synth takes a folder of good images, not the file {path}")
        return read_good_images(path, names, val_fraction, seed)
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_yolo(path, val_fraction, seed)
    if path.suffix.lower() == ".json":
        return read_coco(path, val_fraction, seed)
    if path.is_dir():
        jsons = sorted(path.glob("*.json"))
        if any((path / n).is_file() for n in ("data.yaml", "data.yml", "dataset.yaml")):
            return read_yolo(path, val_fraction, seed)
        if len(jsons) == 1:
            return read_coco(jsons[0], val_fraction, seed)
        return read_yolo(path, val_fraction, seed)  # raises: no data.yaml
    raise DatasetError(f"{path}: give a YOLO data.yaml, a COCO .json, or a folder of them")
