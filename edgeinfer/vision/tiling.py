"""Tiles of a large frame and the merge of their detections (pure numpy, no backend).

A frame far larger than a detector's input (a 2592 x 1944 inspection camera, a 640 x 640
model) loses small objects when squeezed into the input. Tiling runs the detector on crops of
the model's own size instead, then merges what the tiles found into detections of the frame.

**Grid** (:func:`tile_grid`). Square tiles of exactly ``tile`` px; neighbours share
``ceil(tile * overlap)`` px, so the stride is ``tile - ceil(tile * overlap)``. The last column
(row) is moved back to end at the frame's right (bottom) edge, so no tile sticks out of the
frame; it overlaps its neighbour by more than asked. A side shorter than ``tile`` gets one tile
as long as that side (the caller pads it to ``tile``).

**Merge** (:class:`TileMerger`, :func:`merge_detections`). Tile detections (already shifted into
frame coordinates) are folded in one tile at a time; each step does these things to the
detections the new tile can touch:

1. *Border fusion* -- the rule. A box is **cut** on a side when that side lies within
   ``edge_tol`` px (default 2) of its tile's edge and that tile edge is inside the frame (a tile
   edge on the frame's own edge cuts nothing). Box ``a``, cut on its right side at the tile
   edge ``x = E``, is fused with box ``b`` when all of these hold (left, top and bottom are the
   mirror images):

   - same class;
   - ``b`` goes on past ``a``'s cut side: ``b.x2 > a.x2``;
   - they touch or overlap along x: ``b.x1 <= a.x2 + edge_tol``;
   - they line up across the cut: their y-extents overlap by at least ``align`` (default 0.5)
     of the shorter one;
   - ``b`` is the rest of the same object, not a neighbour: either ``b`` is itself cut on its
     left side at a tile edge at or before ``E`` (two pieces of an object larger than the
     overlap; with ``overlap=0`` the pieces only touch), or ``b``, grown by ``edge_tol`` on
     each side, covers at least ``align`` of ``a``'s x-extent (``b`` saw, uncut, the part ``a``
     saw: an object cut in one tile and whole in its neighbour, or in the full-frame pass).

   Fusion is transitive (connected components: the four pieces of an object on a tile corner,
   the three of an object wider than a tile become one box). The fused box is the union of the
   component's boxes, with the highest score; it stays cut on a side where the box that gives
   that side was cut (so it fuses again with the next tile's piece).
2. *NMS across tiles*: per-class greedy NMS (:func:`edgeinfer.vision.nms.nms`) at
   ``iou_threshold`` removes the duplicates that overlapping tiles (and the full-frame pass)
   see of the same whole object.
3. *Contained boxes* (only with ``contain_threshold``, off by default): a box lying at least
   that fraction of its own area inside a higher-scoring box of its class is dropped. This is
   SAHI's "intersection over smaller" matching as suppression; it removes the partial
   duplicates a detector itself leaves beside a whole box (its NMS compares IoU, which a box
   half inside another does not reach), at the price of also dropping a genuinely distinct
   object nested in another of its class.

Only boxes near the new tile (within ``edge_tol`` of it) take part in a step; the rest are
settled. The merged set is all that is kept: memory is O(detections), not O(tiles).

**Merge strategies** are a registry keyed by decoder name (:func:`register_tile_merge`,
:func:`tile_merge`): a strategy takes each tile's decoded result with its tile and gives the
frame's result. :class:`DetectionTileMerge` (the default, for every detection decoder) clips
each tile's boxes to the tile, shifts them into the frame and folds them into a
:class:`TileMerger`; ``edgeinfer.vision.anomaly`` registers the merge of anomaly maps.

**Against SAHI** (``GREEDYNMM`` default, ``NMM``; ``match_metric="IOS"``,
``match_threshold=0.5``): SAHI fuses *any* two same-class boxes whose intersection over the
smaller box's area is at least 0.5, wherever they are in the frame, into their union; GREEDYNMM
lets each high-scoring box absorb its matches (not transitive), NMM follows matches of matches.
Differences: (a) SAHI has no notion of a cut box -- pieces that only touch (zero overlap) or
overlap less than half the smaller piece are never fused, whereas the rule above fuses them at
the tile edge; (b) SAHI also fuses two genuinely distinct objects away from any border when one
lies mostly inside the other (nested or crowded defects of one class), which loses one of them;
here a box that no tile cut is only subject to NMS (and to step 3 when asked for); (c) SAHI
(0.12.8) keeps every slice's predictions as Python objects and merges them after the last
slice (``merge_buffer_length`` merges the whole list early, "may affect the AP"), whereas here
each tile is merged as it arrives, with the same result whatever the batching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.boxes import Detections, box_area
from edgeinfer.vision.nms import nms

__all__ = [
    "DetectionTileMerge",
    "Tile",
    "TileMerge",
    "TileMergeOptions",
    "TileMerger",
    "axis_starts",
    "merge_detections",
    "register_tile_merge",
    "tile_grid",
    "tile_merge",
    "tile_stride",
]

#: px: ``b`` goes on past ``a`` when its edge lies further out than this
_EPS = 1e-3
#: side order of the per-box cut lines: left, top, right, bottom (as in x1 y1 x2 y2)
_LEFT, _TOP, _RIGHT, _BOTTOM = 0, 1, 2, 3


@dataclass(frozen=True)
class Tile:
    """A rectangle of the frame in pixels: columns ``x0:x1``, rows ``y0:y1`` (end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.y1 - self.y0

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's pixels of ``image`` (H, W, ...) as a view: nothing is copied."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


def tile_stride(tile: int, overlap: float) -> int:
    """Step between tile origins: ``tile - ceil(tile * overlap)``, at least 1 px."""
    if tile < 1:
        raise ValueError(f"tile must be at least 1 px, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is a fraction of the tile in [0, 1), got {overlap}")
    shared = math.ceil(tile * overlap - 1e-9)  # 640 * 0.2 -> 128, not 129 from rounding
    return max(1, tile - shared)


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one axis of ``length`` px: every stride, the last aligned to the end."""
    if length < 1:
        raise ValueError(f"a frame side must be at least 1 px, got {length}")
    stride = tile_stride(tile, overlap)
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # > starts[-1], since range stops before length - tile
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: float = 0.2) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` frame, row by row (see the module docstring).

    Every tile is ``tile`` x ``tile`` px and lies inside the frame, except along a side shorter
    than ``tile``, where it is that side's length (pad it to ``tile`` before inference).
    """
    xs = axis_starts(width, tile, overlap)
    ys = axis_starts(height, tile, overlap)
    tw, th = min(tile, width), min(tile, height)
    return [Tile(x, y, x + tw, y + th) for y in ys for x in xs]


class TileMerger:
    """Merges tile detections into frame detections as they arrive (see the module docstring).

    ``width`` x ``height`` is the frame (it tells tile edges inside the frame from its border).
    ``add(detections, tile)`` takes one tile's detections in frame coordinates (``tile=None``
    for a full-frame pass: its boxes are never cut); ``result()`` gives the merged detections,
    score-descending. ``border_merge=False`` leaves out the fusion (plain NMS across tiles);
    ``contain_threshold`` adds step 3 of the module docstring.
    """

    def __init__(
        self,
        width: int,
        height: int,
        iou_threshold: float = 0.45,
        *,
        border_merge: bool = True,
        edge_tol: float = 2.0,
        align: float = 0.5,
        contain_threshold: float | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.width, self.height = width, height
        self.contain_threshold = contain_threshold
        self.iou_threshold = iou_threshold
        self.border_merge = border_merge
        self.edge_tol = float(edge_tol)
        self.align = float(align)
        self.labels = tuple(labels) if labels is not None else None
        self._boxes = np.zeros((0, 4), np.float32)
        self._scores = np.zeros(0, np.float32)
        self._classes = np.zeros(0, np.int64)
        self._cuts = np.zeros((0, 4), np.float64)  # tile-edge line per side, NaN: not cut

    def __len__(self) -> int:
        """Detections merged so far."""
        return len(self._scores)

    def cut_lines(self, boxes: np.ndarray, tile: Tile | None) -> np.ndarray:
        """``[N, 4]`` cut lines (left, top, right, bottom; NaN where not cut) of boxes from
        ``tile`` in frame coordinates."""
        cuts = np.full((len(boxes), 4), np.nan)
        if tile is None or not len(boxes):
            return cuts
        tol = self.edge_tol
        if tile.x0 > 0:
            cuts[boxes[:, 0] <= tile.x0 + tol, _LEFT] = tile.x0
        if tile.y0 > 0:
            cuts[boxes[:, 1] <= tile.y0 + tol, _TOP] = tile.y0
        if tile.x1 < self.width:
            cuts[boxes[:, 2] >= tile.x1 - tol, _RIGHT] = tile.x1
        if tile.y1 < self.height:
            cuts[boxes[:, 3] >= tile.y1 - tol, _BOTTOM] = tile.y1
        return cuts

    def add(self, detections: Detections, tile: Tile | None = None) -> None:
        """Fold one tile's detections (frame coordinates) into the merged set."""
        if self.labels is None and detections.labels is not None:
            self.labels = detections.labels
        if not len(detections):
            return
        boxes, scores, classes = detections.boxes, detections.scores, detections.class_ids
        cuts = self.cut_lines(boxes, tile) if self.border_merge else np.full((len(boxes), 4),
                                                                                 np.nan)
        # Settled boxes: those the new tile cannot reach keep out of this step.
        if tile is None:
            near = np.ones(len(self._scores), bool)
        else:
            t = self.edge_tol
            b = self._boxes
            near = (
                (b[:, 0] <= tile.x1 + t) & (b[:, 2] >= tile.x0 - t)
                & (b[:, 1] <= tile.y1 + t) & (b[:, 3] >= tile.y0 - t)
            )
        far = ~near
        pool_boxes = np.concatenate([self._boxes[near], boxes])
        pool_scores = np.concatenate([self._scores[near], scores])
        pool_classes = np.concatenate([self._classes[near], classes])
        pool_cuts = np.concatenate([self._cuts[near], cuts])
        if len(pool_scores) > 1:  # one box alone has nothing to fuse with or suppress
            if self.border_merge:
                pool_boxes, pool_scores, pool_classes, pool_cuts = self._fuse(
                    pool_boxes, pool_scores, pool_classes, pool_cuts
                )
            keep = nms(pool_boxes, pool_scores, self.iou_threshold, class_ids=pool_classes)
            if self.contain_threshold is not None and len(keep) > 1:
                keep = keep[_not_contained(pool_boxes[keep], pool_classes[keep],
                                           self.contain_threshold)]
        else:
            keep = np.arange(len(pool_scores))
        self._boxes = np.concatenate([self._boxes[far], pool_boxes[keep]])
        self._scores = np.concatenate([self._scores[far], pool_scores[keep]])
        self._classes = np.concatenate([self._classes[far], pool_classes[keep]])
        self._cuts = np.concatenate([self._cuts[far], pool_cuts[keep]])

    def result(self) -> Detections:
        """The merged detections, score-descending (ties keep their order of arrival)."""
        order = np.argsort(-self._scores, kind="stable")
        return Detections(
            self._boxes[order], self._scores[order], self._classes[order], self.labels
        )

    # --- border fusion -------------------------------------------------------------------

    def _continues(self, boxes: np.ndarray, classes: np.ndarray, cuts: np.ndarray) -> np.ndarray:
        """``[N, N]`` bool: box i is cut and box j continues it across the cut (the rule)."""
        n = len(boxes)
        rel = np.zeros((n, n), bool)
        tol, align = self.edge_tol, self.align
        x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
        same = classes[:, None] == classes[None, :]

        def overlap(lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, grow: float = 0.0
                    ) -> np.ndarray:
            """Length shared by [lo, hi] of each row box and of each box grown by ``grow``."""
            top = np.minimum(hi[rows, None], hi[None, :] + grow)
            return np.clip(top - np.maximum(lo[rows, None], lo[None, :] - grow), 0, None)

        # side: (cut column, facing cut column, along lo/hi, across lo/hi, direction)
        for side, facing, lo, hi, alo, ahi, sign in (
            (_RIGHT, _LEFT, x1, x2, y1, y2, 1.0),
            (_LEFT, _RIGHT, x1, x2, y1, y2, -1.0),
            (_BOTTOM, _TOP, y1, y2, x1, x2, 1.0),
            (_TOP, _BOTTOM, y1, y2, x1, x2, -1.0),
        ):
            rows = np.flatnonzero(~np.isnan(cuts[:, side]))
            if not rows.size:
                continue
            e = cuts[rows, side][:, None]
            if sign > 0:  # cut on the high side: b goes on past a, starts before a ends
                beyond = hi[None, :] > hi[rows, None] + _EPS
                touches = lo[None, :] <= hi[rows, None] + tol
                piece = cuts[None, :, facing] <= e + tol  # NaN compares False
            else:
                beyond = lo[None, :] < lo[rows, None] - _EPS
                touches = hi[None, :] >= lo[rows, None] - tol
                piece = cuts[None, :, facing] >= e - tol
            across = overlap(alo, ahi, rows)
            shorter = np.minimum((ahi - alo)[rows, None], (ahi - alo)[None, :])
            lined_up = across >= align * shorter
            covers = overlap(lo, hi, rows, tol) >= align * (hi - lo)[rows, None]
            rel[rows] |= same[rows] & beyond & touches & lined_up & (piece | covers)
        np.fill_diagonal(rel, False)
        return rel

    def _fuse(
        self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, cuts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not np.any(~np.isnan(cuts)):
            return boxes, scores, classes, cuts
        rel = self._continues(boxes, classes, cuts)
        pairs = np.argwhere(rel | rel.T)
        if not pairs.size:
            return boxes, scores, classes, cuts
        parent = list(range(len(boxes)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in pairs:
            ri, rj = root(int(i)), root(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
        roots = np.array([root(i) for i in range(len(boxes))])
        heads = np.flatnonzero(roots == np.arange(len(boxes)))  # first member of each component
        out_boxes = boxes[heads].copy()
        out_scores = scores[heads].copy()
        out_cuts = cuts[heads].copy()
        tol = self.edge_tol
        for k, h in enumerate(heads):
            members = np.flatnonzero(roots == h)
            if members.size == 1:
                continue
            mb, mc = boxes[members], cuts[members]
            union = np.concatenate([mb[:, :2].min(0), mb[:, 2:].max(0)])
            out_boxes[k] = union
            out_scores[k] = scores[members].max()
            for side in range(4):
                # the members that give the union this side; cut only if all of them are
                at = np.abs(mb[:, side] - union[side]) <= tol
                lines = mc[at, side]
                if np.isnan(lines).any():
                    out_cuts[k, side] = np.nan
                else:
                    out_cuts[k, side] = lines.min() if side < 2 else lines.max()
        return out_boxes, out_scores, classes[heads], out_cuts


def _not_contained(boxes: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Mask over score-descending boxes: False for a box that lies ``threshold`` or more of its
    own area inside a kept, higher-scoring box of its class."""
    b = boxes.astype(np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    alive = np.ones(len(b), bool)
    for i in range(len(b)):
        if not alive[i]:
            continue
        rest = np.arange(i + 1, len(b))
        w = np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])
        h = np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        inside = inter >= threshold * area[rest]
        inside &= (area[rest] > 0) & (classes[rest] == classes[i])
        alive[rest[inside]] = False
    return alive


def merge_detections(
    parts: Sequence[Detections],
    iou_threshold: float = 0.45,
    *,
    tiles: Sequence[Tile | None] | None = None,
    border_merge: bool = True,
    frame_size: tuple[int, int] | None = None,
    edge_tol: float = 2.0,
    align: float = 0.5,
    contain_threshold: float | None = None,
) -> Detections:
    """Merge per-tile detections (frame coordinates) into one set, score-descending.

    ``tiles[i]`` is the tile ``parts[i]`` came from (``None``: a full-frame pass). Without
    ``tiles`` nothing is known to be cut and the merge is per-class NMS only. ``frame_size``
    is ``(height, width)``; by default the extent of the tiles (a :func:`tile_grid` ends at the
    frame's edges). The result is exactly what :class:`TileMerger` gives when fed the parts in
    this order, as :class:`~edgeinfer.pipeline.tiled.TiledPredictor` does.
    """
    if tiles is not None and len(tiles) != len(parts):
        raise ValueError(f"merge_detections: {len(parts)} parts but {len(tiles)} tiles")
    real = [t for t in tiles or () if t is not None]
    if frame_size is not None:
        height, width = frame_size
    elif real:
        height, width = max(t.y1 for t in real), max(t.x1 for t in real)
    else:  # no tile known: no border is inside the frame
        height = width = 0
    labels = next((p.labels for p in parts if p.labels is not None), None)
    merger = TileMerger(
        width,
        height,
        iou_threshold,
        border_merge=border_merge and tiles is not None,
        edge_tol=edge_tol,
        align=align,
        contain_threshold=contain_threshold,
        labels=labels,
    )
    for i, part in enumerate(parts):
        merger.add(part, tiles[i] if tiles is not None else None)
    return merger.result()


# --- merge strategies --------------------------------------------------------------------------


@dataclass(frozen=True)
class TileMergeOptions:
    """What a merge strategy may need: the box merge's settings and the decoder's params."""

    iou_threshold: float = 0.45
    border_merge: bool = True
    edge_tol: float = 2.0
    contain_threshold: float | None = None
    labels: tuple[str, ...] | None = None
    decoder: str | None = None
    decoder_params: Mapping[str, Any] = field(default_factory=dict)


class TileMerge(Protocol):
    """Folds decoded tile results into the result of the frame."""

    def add(self, result: Any, tile: Tile | None) -> None:
        """One tile's decoded result, in the tile's own coordinates (``tile=None``: a result
        of the whole frame, in frame coordinates)."""

    def result(self) -> Any:
        """The frame's result."""


TileMergeFactory = Callable[[int, int, TileMergeOptions], TileMerge]
TILE_MERGES: dict[str, TileMergeFactory] = {}


def register_tile_merge(decoder: str) -> Callable[[TileMergeFactory], TileMergeFactory]:
    """Register the merge strategy for results of decoder ``decoder``."""

    def deco(factory: TileMergeFactory) -> TileMergeFactory:
        TILE_MERGES[decoder] = factory
        return factory

    return deco


def tile_merge(width: int, height: int, options: TileMergeOptions) -> TileMerge:
    """A fresh merge for one ``width`` x ``height`` frame: the strategy registered for
    ``options.decoder``, else :class:`DetectionTileMerge`."""
    factory = TILE_MERGES.get(options.decoder or "", DetectionTileMerge)
    return factory(width, height, options)


class DetectionTileMerge:
    """The merge of detections: boxes clipped to their tile (its padding is no frame), shifted
    into the frame and folded into a :class:`TileMerger`."""

    def __init__(self, width: int, height: int, options: TileMergeOptions) -> None:
        self.decoder = options.decoder
        self.merger = TileMerger(
            width, height, options.iou_threshold, border_merge=options.border_merge,
            edge_tol=options.edge_tol, contain_threshold=options.contain_threshold,
            labels=options.labels,
        )

    def add(self, result: Any, tile: Tile | None) -> None:
        """Fold one tile's detections (tile coordinates; frame coordinates for ``None``)."""
        if not isinstance(result, Detections):
            raise EdgeInferError(
                f"decoder '{self.decoder}' does not return Detections: tiled inference needs "
                "a detection decoder (e.g. 'yolo') or one with a registered tile merge"
            )
        if tile is not None:
            b = result.boxes
            if len(b) and (b.min() < 0 or b[:, 0::2].max() > tile.width
                           or b[:, 1::2].max() > tile.height):
                result = result.clipped(tile.width, tile.height)
                result = result.select(box_area(result.boxes) > 0)
            result = result.shifted(tile.x0, tile.y0)
        self.merger.add(result, tile)

    def result(self) -> Detections:
        """The merged detections, score-descending."""
        return self.merger.result()
