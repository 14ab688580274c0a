"""Axis-aligned boxes and the :class:`Detections` container that detection decoders return.

Boxes are ``x1, y1, x2, y2`` (corners, ``x2 >= x1``, ``y2 >= y1``) in pixels of the original
image; a box's area is ``(x2 - x1) * (y2 - y1)`` (continuous coordinates, no ``+1``), as
OpenCV's ``Rect2d``, torchvision and Ultralytics count it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def box_area(b: np.ndarray) -> np.ndarray:
    """Areas of ``[N, 4]`` x1 y1 x2 y2 boxes (``[N]``); inverted sides count as zero."""
    b = np.asarray(b)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``[N, 4]`` and ``[M, 4]`` boxes: ``[N, M]``.

    Vectorised by broadcasting (memory ``O(N * M)``). Two boxes without area have IoU 0.
    Computed in float64 unless both inputs are float32 (then float32).
    """
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(b).dtype, np.float32)
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.where(union > 0, iou, 0).astype(dtype, copy=False)


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes, scores and class ids of one image, with the class names they index.

    Fields are coerced on construction: ``boxes`` to float32 ``[N, 4]``, ``scores`` to float32
    ``[N]``, ``class_ids`` to int64 ``[N]``, ``labels`` to a tuple. Instances are immutable
    values; every helper returns a new one. (``eq=False``: equality of array fields has no
    single truth value, so ``==`` is identity; compare the arrays.)
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(class_ids):
            raise ValueError(
                f"Detections: {len(boxes)} boxes, {len(scores)} scores and {len(class_ids)} "
                "class ids: give one score and one class id per box"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))

    def __len__(self) -> int:
        """Number of detections."""
        return len(self.scores)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, labels={'yes' if self.labels else 'no'})"

    @classmethod
    def empty(cls, labels: Sequence[str] | None = None) -> Detections:
        """No detections (arrays of length 0 with the right shapes and dtypes)."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            tuple(labels) if labels is not None else None,
        )

    @staticmethod
    def concat(parts: Sequence[Detections]) -> Detections:
        """All detections of ``parts`` in order; labels from the first part (empty if none)."""
        if not parts:
            return Detections.empty()
        return Detections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            parts[0].labels,
        )

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same detections with boxes moved by ``(dx, dy)`` (tile -> image coordinates)."""
        offset = np.array([dx, dy, dx, dy], np.float32)
        return Detections(self.boxes + offset, self.scores, self.class_ids, self.labels)

    def select(self, index: np.ndarray) -> Detections:
        """A subset (or reordering) by a boolean mask of length N or by integer indices."""
        index = np.asarray(index)
        if index.dtype != bool:
            index = index.astype(np.int64, copy=False)
        return Detections(
            self.boxes[index], self.scores[index], self.class_ids[index], self.labels
        )

    def clipped(self, width: int, height: int) -> Detections:
        """Boxes clipped to a ``width`` x ``height`` image. Boxes stay (N unchanged), even those
        that end up with zero area; drop them with ``select(box_area(d.boxes) > 0)``."""
        boxes = self.boxes.copy()
        np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
        return Detections(boxes, self.scores, self.class_ids, self.labels)

    def label_of(self, class_id: int) -> str:
        """The name of ``class_id``: its label when known, else the id as a string."""
        if self.labels is not None and 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return str(class_id)

    def to_dicts(self) -> list[dict[str, Any]]:
        """JSON-ready plain values, one dict per detection in stored order:
        ``{"box": [x1, y1, x2, y2], "score": s, "class_id": c, "label": name}``.

        Box coordinates are rounded to 0.01 px and scores to 6 significant digits (float32
        carries no more; the rounding keeps printed JSON readable).
        """
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "score": float(f"{float(score):.6g}"),
                "class_id": int(cid),
                "label": self.label_of(int(cid)),
            }
            for box, score, cid in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]
