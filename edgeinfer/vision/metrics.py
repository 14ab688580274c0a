"""Detection scoring against labelled boxes: matching, recall, precision, class accuracy.

COCO mAP needs the whole ranked list of every image and lives with pycocotools (see
``examples/inspection/evaluate.py``); this module scores detections *at the deployment
threshold*, frame by frame, which is what an inspection line sees: how many defects were found
(overall and by size), how many detections were false alarms, and how often a found defect got
the right class. Matching is greedy by score and class-blind (IoU >= 0.5 by default), so that a
found-but-misclassified defect counts as found and shows up in the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.vision.boxes import box_iou

#: COCO's "small" objects: longest side under 32 px
SMALL_SIDE = 32.0


def match_boxes(
    boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """For each detection, the index of the ground-truth box it matches, or -1: detections in
    descending score order take the still unmatched box of highest IoU >= ``iou_threshold``."""
    out = np.full(len(boxes), -1, np.int64)
    if not len(boxes) or not len(gt):
        return out
    ious = box_iou(np.asarray(boxes, np.float32), np.asarray(gt, np.float32))
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(taken, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou_threshold:
            out[i], taken[j] = j, True
    return out


@dataclass
class DetectionScore:
    """Running totals over frames; :meth:`add` one frame at a time, read :meth:`summary`."""

    num_classes: int
    iou_threshold: float = 0.5
    small_side: float = SMALL_SIDE
    gt: int = 0
    gt_small: int = 0
    found: int = 0
    found_small: int = 0
    detections: int = 0
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def add(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
    ) -> np.ndarray:
        """Score one frame's detections; returns the matched ground-truth index per detection."""
        m = match_boxes(boxes, scores, gt_boxes, self.iou_threshold)
        gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
        small = np.maximum(gt_boxes[:, 2] - gt_boxes[:, 0], gt_boxes[:, 3] - gt_boxes[:, 1])
        small = small < self.small_side
        hit = m >= 0
        self.gt += len(gt_boxes)
        self.gt_small += int(small.sum())
        self.found += int(hit.sum())
        self.found_small += int(small[m[hit]].sum())
        self.detections += len(boxes)
        np.add.at(self.confusion, (np.asarray(gt_classes)[m[hit]], np.asarray(classes)[hit]), 1)
        return m

    def summary(self, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """Recall (all and small), precision, classification accuracy of the matched
        detections, the share found with the right class, and the confusion matrix
        (rows: truth, columns: predicted)."""
        matched = int(self.confusion.sum())
        correct = int(np.trace(self.confusion))
        return {
            "defects": self.gt,
            "small_defects": self.gt_small,
            "detections": self.detections,
            "recall": self.found / self.gt if self.gt else None,
            "recall_small": self.found_small / self.gt_small if self.gt_small else None,
            "precision": self.found / self.detections if self.detections else None,
            "class_accuracy": correct / matched if matched else None,
            "found_and_classified": correct / self.gt if self.gt else None,
            "confusion": self.confusion.tolist(),
            "labels": list(labels) if labels is not None else None,
            "iou_threshold": self.iou_threshold,
            "small_side": self.small_side,
        }
