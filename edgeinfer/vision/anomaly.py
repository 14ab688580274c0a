"""Anomaly maps -> an image score and regions; the merge of tile maps (pure numpy/OpenCV).

An anomaly model outputs a map ``[1, 1, h, w]``: each cell's distance from the nearest good
patch the model has seen, on a grid of the input (a cell covers ``stride`` x ``stride``
input pixels). The **image score** is the map's maximum; the image is anomalous when its
score exceeds the calibrated ``threshold``. **Regions** are the connected components
(8-connectivity, OpenCV) of the cells above the threshold, each with its box in image pixels
(the cells' extent), its area in image pixels and its score (the highest cell inside); those
smaller than ``min_area`` image pixels are dropped.

Tiled frames (:class:`AnomalyMapMerge`): each tile's map is placed into one frame map at
the tile's offset (cells averaged where tiles overlap), and the score and regions come from
the frame map, so a region crossing a tile border is one region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import ShapeError
from edgeinfer.vision.boxes import Detections
from edgeinfer.vision.preprocess import Transform
from edgeinfer.vision.tiling import Tile, TileMergeOptions, register_tile_merge

__all__ = ["LABELS", "AnomalyMapMerge", "AnomalyResult", "anomaly_result", "map_regions"]

LABELS = ("anomaly",)


@dataclass(frozen=True, eq=False)
class AnomalyResult:
    """One image's anomaly score, threshold, regions (class 0, ``anomaly``; image pixels) and
    the map they came from (``cell_w`` x ``cell_h`` image pixels per cell)."""

    score: float
    threshold: float
    regions: Detections
    map: np.ndarray
    cell_w: float
    cell_h: float

    @property
    def anomalous(self) -> bool:
        """Whether the score exceeds the threshold."""
        return self.score > self.threshold

    def __len__(self) -> int:
        """Regions found."""
        return len(self.regions)

    def to_dicts(self) -> list[dict[str, Any]]:
        """The regions as JSON-ready dicts (as :meth:`Detections.to_dicts`)."""
        return self.regions.to_dicts()

    def describe(self) -> str:
        """One line: score against threshold and the verdict."""
        verdict = "ANOMALOUS" if self.anomalous else "good"
        return (f"anomaly score {self.score:.4g} (threshold {self.threshold:.4g}): {verdict}, "
                f"{len(self.regions)} region(s)")

    def to_json(self) -> dict[str, Any]:
        """Score, threshold, verdict and regions, JSON-ready."""
        return {"score": round(self.score, 6), "threshold": round(self.threshold, 6),
                "anomalous": self.anomalous, "regions": self.to_dicts()}


def map_regions(
    amap: np.ndarray,
    threshold: float,
    cell_w: float,
    cell_h: float,
    *,
    min_area: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    size: tuple[int, int] | None = None,
) -> Detections:
    """Connected components of ``amap > threshold`` as boxes in image pixels: cell ``(i, j)``
    covers ``offset + (j * cell_w, i * cell_h)`` to the next cell; boxes clipped to ``size``
    (width, height) when given; components under ``min_area`` image pixels dropped; score =
    the component's highest cell. Score-descending."""
    hot = (amap > threshold).astype(np.uint8)
    if not hot.any():
        return Detections.empty(LABELS)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    best = np.full(count, -np.inf, np.float32)
    np.maximum.at(best, labels.ravel(), amap.ravel().astype(np.float32))
    x, y, w, h, cells = (stats[1:, k].astype(np.float32) for k in range(5))
    boxes = np.stack([x * cell_w, y * cell_h, (x + w) * cell_w, (y + h) * cell_h], 1)
    boxes += np.array([*offset, *offset], np.float32)
    if size is not None:
        boxes = np.clip(boxes, 0, np.array([*size, *size], np.float32))
    keep = cells * cell_w * cell_h >= min_area
    order = np.argsort(-best[1:][keep], kind="stable")
    return Detections(boxes[keep][order], best[1:][keep][order],
                      np.zeros(int(keep.sum()), np.int64), LABELS)


def _map_2d(output: np.ndarray) -> np.ndarray:
    a = np.asarray(output, np.float32)
    if a.ndim < 2 or a.size != a.shape[-1] * a.shape[-2]:
        raise ShapeError(
            f"anomaly decoder: output 0 has shape {list(a.shape)}, expected a map [1, 1, h, w] "
            "(decode one image at a time)"
        )
    return a.reshape(a.shape[-2:])


def anomaly_result(
    amap: np.ndarray, params: dict[str, Any], cell_w: float, cell_h: float, *,
    offset: tuple[float, float] = (0.0, 0.0), size: tuple[int, int] | None = None,
) -> AnomalyResult:
    """The :class:`AnomalyResult` of a 2-D map under ``params`` (``threshold``, ``min_area``)."""
    if "threshold" not in params:
        raise ShapeError("anomaly decoder: decoder_params has no 'threshold': retrain the "
                         "artifact with `edgeinfer train anomaly`")
    threshold = float(params["threshold"])
    regions = map_regions(amap, threshold, cell_w, cell_h,
                          min_area=float(params.get("min_area", 0.0)), offset=offset, size=size)
    score = float(amap.max()) if amap.size else 0.0
    return AnomalyResult(score, threshold, regions, amap, cell_w, cell_h)


def decode_anomaly_map(
    outputs: list[np.ndarray], params: dict[str, Any], transform: Transform
) -> AnomalyResult:
    """Output 0 (the map over the input tensor) -> an :class:`AnomalyResult` in image pixels.

    The tensor's size is ``params['input_size']`` ([width, height]); a cell is
    ``input / map`` tensor pixels, mapped to the image through ``transform`` (its scale; a
    letterbox's padding shifts the boxes)."""
    amap = _map_2d(outputs[0])
    tw, th = params.get("input_size", (amap.shape[1] * 8, amap.shape[0] * 8))
    cell_w = tw / amap.shape[1] / transform.scale_x
    cell_h = th / amap.shape[0] / transform.scale_y
    offset = (-transform.pad_x / transform.scale_x, -transform.pad_y / transform.scale_y)
    size = None
    if transform.image_width is not None and transform.image_height is not None:
        size = (transform.image_width, transform.image_height)
    return anomaly_result(amap, params, cell_w, cell_h, offset=offset, size=size)


@register_tile_merge("anomaly")
class AnomalyMapMerge:
    """Tile maps folded into one frame map (mean where tiles overlap); the frame's score and
    regions come from it. Memory: two float32 maps of ``frame / cell`` cells."""

    def __init__(self, width: int, height: int, options: TileMergeOptions) -> None:
        self.width, self.height = width, height
        self.params = options.decoder_params
        self._sum: np.ndarray | None = None
        self._count: np.ndarray | None = None
        self._cell = (1.0, 1.0)

    def add(self, result: Any, tile: Tile | None) -> None:
        """Fold one tile's :class:`AnomalyResult` (tile coordinates) in at ``tile``."""
        if tile is None:
            raise ShapeError("anomaly maps merge tile by tile: run without --full-frame")
        if not isinstance(result, AnomalyResult):
            raise ShapeError("anomaly merge: the decoder did not return an anomaly map")
        cw, ch = result.cell_w, result.cell_h
        if self._sum is None or self._count is None:
            self._cell = (cw, ch)
            shape = (int(np.ceil(self.height / ch)), int(np.ceil(self.width / cw)))
            self._sum = np.zeros(shape, np.float32)
            self._count = np.zeros(shape, np.uint16)
        x0, y0 = round(tile.x0 / self._cell[0]), round(tile.y0 / self._cell[1])
        rows = min(int(np.ceil(tile.height / ch)), result.map.shape[0], self._sum.shape[0] - y0)
        cols = min(int(np.ceil(tile.width / cw)), result.map.shape[1], self._sum.shape[1] - x0)
        self._sum[y0: y0 + rows, x0: x0 + cols] += result.map[:rows, :cols]
        self._count[y0: y0 + rows, x0: x0 + cols] += 1

    def result(self) -> AnomalyResult:
        """The frame's :class:`AnomalyResult` (frame pixels)."""
        if self._sum is None or self._count is None:
            return anomaly_result(np.zeros((0, 0), np.float32), self.params, 1.0, 1.0)
        amap = self._sum / np.maximum(self._count, 1)
        return anomaly_result(amap, self.params, *self._cell, size=(self.width, self.height))
