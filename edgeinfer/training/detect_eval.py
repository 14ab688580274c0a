"""Detector evaluation on labelled images: COCO mAP@0.5 and mAP@0.5:0.95 by pycocotools, per
class, and recall / precision at the deployment score threshold.

Detections come through edgeinfer's own ``yolo`` decoder, as the artifact runs them (best class
per cell, score threshold, per-class NMS): scores down to 0.001, NMS IoU 0.6 and at most 100
per image for mAP (COCO's protocol); the artifact's threshold for recall and precision
(:class:`edgeinfer.vision.metrics.DetectionScore`, class-blind matching at IoU 0.5).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.vision.decoders import decode_yolo
from edgeinfer.vision.metrics import DetectionScore
from edgeinfer.vision.preprocess import Transform

__all__ = ["best_threshold", "coco_map", "decode", "evaluate_outputs", "fitness", "score_at",
           "to_input"]

Dets = tuple[np.ndarray, np.ndarray, np.ndarray]
GroundTruth = tuple[np.ndarray, np.ndarray]


def to_input(bgr: np.ndarray) -> np.ndarray:
    """A BGR uint8 image (already at the model's size) as its input: RGB, /255, float32
    ``[1, 3, H, W]``."""
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0


def decode(
    output: np.ndarray, conf: float, iou: float, num_classes: int, max_det: int = 100,
    agnostic: bool = False,
) -> Dets:
    """One image's output ``[4 + C, N]`` (or ``[1, 4 + C, N]``) through the ``yolo`` decoder
    (NMS per class, or over all classes with ``agnostic``): boxes xyxy in input pixels
    ``[K, 4]``, scores ``[K]``, classes ``[K]``."""
    out = output.reshape(1, *output.shape[-2:])
    det = decode_yolo(
        [out],
        {"conf_threshold": conf, "iou_threshold": iou, "max_detections": max_det,
         "num_classes": num_classes, "class_agnostic": agnostic},
        Transform(1.0, 1.0, 0.0, 0.0),
        None,
    )
    return det.boxes, det.scores, det.class_ids


def coco_map(gts: Sequence[GroundTruth], dets: Sequence[Dets], names: Sequence[str],
             sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Any]:
    """COCO bbox mAP@0.5, mAP@0.5:0.95 (pycocotools) overall and per class (None for a class
    absent from the ground truth). ``sizes``
    (width, height) per image default to 640x640 (they only bound pycocotools' areas)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, ((gb, gc), (db, ds, dc)) in enumerate(zip(gts, dets, strict=True)):
        w, h = sizes[i] if sizes is not None else (640, 640)
        images.append({"id": i, "width": w, "height": h})
        for b, c in zip(gb, gc, strict=True):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1,
                         "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh,
                         "iscrowd": 0})
        for b, s, c in zip(db, ds, dc, strict=True):
            results.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                     float(b[3] - b[1])]})
    empty = {"map50": 0.0, "map": 0.0,
             "per_class": {n: {"ap50": None, "ap": None} for n in names}}
    if not results or not anns:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class = {}
    for k, name in enumerate(names):
        p, p50 = prec[:, :, k, 0, -1], prec[0, :, k, 0, -1]
        per_class[name] = {
            "ap50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None,
            "ap": float(p[p > -1].mean()) if (p > -1).any() else None,
        }
    return {"map50": max(0.0, float(ev.stats[1])), "map": max(0.0, float(ev.stats[0])),
            "per_class": per_class}


def fitness(metrics: dict[str, Any]) -> float:
    """The figure early stopping and model selection follow: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95
    (Ultralytics' ``fitness``: box quality counts, mAP@0.5 breaks ties)."""
    return 0.1 * float(metrics["map50"]) + 0.9 * float(metrics["map"])


def evaluate_outputs(
    outputs: Sequence[np.ndarray], gts: Sequence[GroundTruth], names: Sequence[str],
    conf: float = 0.5, iou: float = 0.5, agnostic: bool = False,
) -> dict[str, Any]:
    """Every figure of the module docstring from the model's raw outputs (one ``[4 + C, N]``
    per image, in input pixels) and the ground truth in the same pixels; recall and precision
    at ``conf`` with the artifact's NMS (``iou``, ``agnostic``)."""
    nc = len(names)
    dets_map = [decode(out, 0.001, 0.6, nc) for out in outputs]
    report = coco_map(gts, dets_map, names)
    report.update(score_at(outputs, gts, nc, conf, iou, agnostic))
    report["fitness"] = fitness(report)
    return report


def score_at(
    outputs: Sequence[np.ndarray], gts: Sequence[GroundTruth], num_classes: int, conf: float,
    iou: float = 0.5, agnostic: bool = False,
) -> dict[str, Any]:
    """Recall, precision and class accuracy at score threshold ``conf``."""
    score = DetectionScore(num_classes)
    for out, (gb, gc) in zip(outputs, gts, strict=True):
        db, ds, dc = decode(out, conf, iou, num_classes, agnostic=agnostic)
        score.add(db, ds, dc, gb, gc)
    s = score.summary()
    return {"images": len(gts), "boxes": int(sum(len(g[1]) for g in gts)), "conf": conf,
            "recall": s["recall"] or 0.0, "precision": s["precision"] or 0.0,
            "class_accuracy": s["class_accuracy"], "detections": s["detections"]}


#: score thresholds :func:`best_threshold` tries
THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))  # 0.1 .. 0.9


def best_threshold(
    outputs: Sequence[np.ndarray], gts: Sequence[GroundTruth], num_classes: int,
    iou: float = 0.5, agnostic: bool = False,
) -> float:
    """The score threshold of best F1 (recall and precision at once) on these images: the
    artifact's threshold, chosen on validation data (ties: the higher threshold)."""
    best, best_f1 = 0.5, -1.0
    for conf in THRESHOLDS:
        s = score_at(outputs, gts, num_classes, conf, iou, agnostic)
        r, p = s["recall"], s["precision"]
        f1 = 2 * r * p / (r + p) if r + p else 0.0
        if f1 >= best_f1:
            best, best_f1 = conf, f1
    return best
