"""Annotated copies of frames: detection boxes with labels, the top classes, or an anomaly
heat map with its regions."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeinfer.vision.anomaly import AnomalyResult

#: BGR colours cycled by class id
PALETTE = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (211, 188, 0), (255, 149, 0),
)


def annotate(image: np.ndarray, result: Any) -> np.ndarray:
    """A copy of ``image`` with ``result`` drawn on it: boxes (``Detections`` or a list of
    dicts with ``box``) or classification lines (dicts with ``label`` and ``score``)."""
    out = heat_map(image, result) if isinstance(result, AnomalyResult) else image.copy()
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


def heat_map(image: np.ndarray, result: AnomalyResult, alpha: float = 0.45) -> np.ndarray:
    """``image`` with the anomaly map blended over it and the score written on it. Colours
    run (JET) from the map's median (a typical good cell) to red at the threshold and above;
    cells less than halfway from the median to the threshold are left uncoloured."""
    h, w = image.shape[:2]
    amap = result.map.astype(np.float32)
    if not amap.size:
        return image.copy()
    cells = cv2.resize(amap, (round(amap.shape[1] * result.cell_w),
                              round(amap.shape[0] * result.cell_h)),
                       interpolation=cv2.INTER_LINEAR)[:h, :w]
    if cells.shape != (h, w):
        cells = cv2.copyMakeBorder(cells, 0, h - cells.shape[0], 0, w - cells.shape[1],
                                   cv2.BORDER_REPLICATE)
    floor = float(np.median(amap))
    level = np.clip((cells - floor) / max(result.threshold - floor, 1e-6), 0, 1)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * np.clip((level - 0.5) * 4, 0, 1))[..., None]
    out = (image.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    scale = max(h, w) / 1000
    text = f"anomaly {result.score:.3g} / {result.threshold:.3g}"
    cv2.putText(out, text, (10, round(30 * max(scale, 0.6))), cv2.FONT_HERSHEY_SIMPLEX,
                0.8 * max(scale, 0.6), (0, 0, 255) if result.anomalous else (0, 200, 0),
                max(1, round(2 * scale)), cv2.LINE_AA)
    return out
