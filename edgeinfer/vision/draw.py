"""Annotated copies of frames: detection boxes with labels, or the top classes."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: BGR colours cycled by class id
PALETTE = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (211, 188, 0), (255, 149, 0),
)


def annotate(image: np.ndarray, result: Any) -> np.ndarray:
    """A copy of ``image`` with ``result`` drawn on it: boxes (``Detections`` or a list of
    dicts with ``box``) or classification lines (dicts with ``label`` and ``score``)."""
    out = image.copy()
    scale = max(out.shape[:2]) / 1000
    thick = max(1, round(2 * scale))
    items = result.to_dicts() if hasattr(result, "to_dicts") else list(result or [])
    y = round(30 * scale)
    for item in items:
        label = f"{item.get('label', item.get('class_id', ''))} {item.get('score', 0):.2f}"
        colour = PALETTE[int(item.get("class_id", 0)) % len(PALETTE)]
        if "box" in item:
            x1, y1, x2, y2 = (round(v) for v in item["box"])
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
            cv2.putText(out, label, (x1, max(0, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * max(scale, 0.6), colour, thick, cv2.LINE_AA)
        else:
            cv2.putText(out, label, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * max(scale, 0.6),
                        colour, thick, cv2.LINE_AA)
            y += round(34 * max(scale, 0.6))
    return out
