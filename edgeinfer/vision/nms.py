"""Greedy non-maximum suppression, per class or class-agnostic, in vectorised numpy.

Why not ``cv2.dnn.NMSBoxes``: it takes Python sequences of ``x, y, w, h`` boxes (every call
converts them element by element), is class-agnostic, and its ``top_k`` caps the *candidates*
before suppression, not the detections kept. OpenCV >= 4.7 adds ``cv2.dnn.NMSBoxesBatched``
for classes (the coordinate-offset trick, same list interface). Decoders and the merge of
tile detections need per-class NMS on numpy arrays with a cap on what is kept, so we write it.

The result is the same as OpenCV's greedy NMS (a box is dropped when its IoU with a kept
higher-scoring box is greater than the threshold; equal scores keep input order): the tests
check it against ``cv2.dnn.NMSBoxes`` on random boxes. Per class, a box is only suppressed by
a kept box of its own class (exact; no coordinate offsets, so no precision loss on large
coordinates).

How: one vectorised IoU row per kept box while few boxes are kept (a dense cluster of
candidates goes with its best box); when many remain and the rows would cost more, the rest is
solved on the sparse graph of overlapping pairs (an x sweep, IoU in chunks, then one pass in
score order). Both paths use one IoU formula and are tested against OpenCV separately.

Speed (min of 40 / 12 interleaved runs, against ``cv2.dnn.NMSBoxes`` / ``NMSBoxesBatched``
including their list conversion; IoU 0.45, OpenCV 5.0, numpy 2.4, on the shared 2-core
development machine under load, so +-30%):

- random boxes, 1000 x 1000 image, sides 10-100 px (most kept): 1000 boxes 2.2 ms vs 4.2 ms,
  10000 boxes 156 ms vs 215 ms; per class (80 classes) 1.7 vs 2.0 ms and 75 vs 250 ms.
- clusters of 100 jittered boxes per object (few kept): 1000 boxes 0.17 vs 0.18 ms, 10000
  boxes 7.5 vs 4.4 ms (per class 8.1 vs 4.0 ms). Each IoU row costs ~13 us of numpy overhead:
  50 objects x 20 candidates (52 kept) take 0.7 ms, OpenCV 0.23 ms.
"""

from __future__ import annotations

import numpy as np

#: first checkpoint (kept boxes) at which rows may hand over to the sparse overlap graph
_ROW_STEPS = 16
#: fewer remaining boxes than this are always finished by IoU rows
_SPARSE_MIN = 256
#: relative costs, in IoU-row elements (measured: ~10 ns an element, ~15 us a row step's
#: overhead, ~30 ns a candidate pair, ~1 us a source box in the sparse pass)
_STEP_COST, _PAIR_COST, _SOURCE_COST = 1500.0, 3.0, 100.0
#: candidate pairs examined at once by the sparse path (bounds its memory to ~25 MB)
_PAIR_CHUNK = 1 << 18


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = 0.45,
    *,
    class_ids: np.ndarray | None = None,
    score_threshold: float = 0.0,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, ordered by score descending (int64).

    ``boxes`` are ``[N, 4]`` x1 y1 x2 y2, ``scores`` ``[N]``. Boxes scoring below
    ``score_threshold`` are dropped first (``score >= score_threshold`` stays; NaN scores go).
    A box is suppressed when its IoU with a kept, higher-scoring box is greater than
    ``iou_threshold`` -- and, when ``class_ids`` is given, of the same class (per-class NMS);
    with ``class_ids=None`` NMS is class-agnostic. At most ``max_detections`` indices come back.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if not iou_threshold >= 0:
        raise ValueError(f"nms: iou_threshold {iou_threshold} is negative: use 0..1")
    classes = None
    if class_ids is not None:
        classes = np.asarray(class_ids).reshape(-1)
        if len(classes) != len(scores):
            raise ValueError(f"nms: {len(scores)} scores but {len(classes)} class ids")
    limit = len(boxes) if max_detections is None else max(int(max_detections), 0)

    candidates = np.flatnonzero(scores >= score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    b = boxes[order]
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    cls = classes[order] if classes is not None else None
    keep = _greedy(b, areas, cls, iou_threshold, limit)
    return order[keep]


def _suppresses(
    cols: tuple[np.ndarray, ...], areas: np.ndarray, i: np.ndarray | int, j: np.ndarray, thr: float
) -> np.ndarray:
    """Whether box(es) ``i`` and boxes ``j`` overlap with IoU > ``thr`` (``cols``: x1, y1, x2,
    y2 arrays). One formula for every path, so the row and sparse paths decide identically."""
    x1, y1, x2, y2 = cols
    w = np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j])
    h = np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    union = areas[i] + areas[j] - inter
    # IoU > t  <=>  inter > t * union (union > 0); boxes without area never suppress.
    return (inter > thr * union) & (union > 0)


def _sweep(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes sorted by x1 (``ox``) and, for each in that order, how many of the following ones
    start before it ends (``counts``): the candidate pairs of the sparse path."""
    ox = np.argsort(x1, kind="stable")
    ends = np.searchsorted(x1[ox], x2[ox], side="left")
    return ox, np.maximum(ends - np.arange(1, len(x1) + 1), 0)


def _greedy(
    b: np.ndarray, areas: np.ndarray, cls: np.ndarray | None, thr: float, limit: int
) -> np.ndarray:
    """Greedy NMS over boxes already in score order: positions kept (at most ``limit``).

    One vectorised IoU row per kept box, which suits few kept boxes (a dense cluster goes with
    its first box). At checkpoints (16, 32, 64... kept) the cost of going on with rows
    (remaining boxes over the boxes removed per kept one so far, times the row length) is set
    against the sparse path's (candidate pairs of an x sweep); when the sparse path is cheaper,
    the remaining boxes -- a problem of their own, as none overlaps a kept box -- go there.
    """
    cols = tuple(np.ascontiguousarray(b[:, k]) for k in range(4))
    n = len(b)
    keep: list[int] = []
    rest = np.arange(n)
    checkpoint = _ROW_STEPS
    while rest.size and len(keep) < limit:
        if len(keep) == checkpoint:
            checkpoint *= 2
            if rest.size > _SPARSE_MIN:
                per_step = (n - rest.size) / len(keep)  # boxes a row step removed, on average
                steps = min(rest.size / per_step, limit - len(keep))
                row_cost = steps * (_STEP_COST + rest.size / 2)
                sweep = _sweep(cols[0][rest], cols[2][rest])
                if _PAIR_COST * sweep[1].sum() + _SOURCE_COST * rest.size < row_cost:
                    sub = cls[rest] if cls is not None else None
                    tail = _sparse(b[rest], areas[rest], sub, thr, limit - len(keep), sweep)
                    return np.concatenate([np.asarray(keep, np.int64), rest[tail]])
        i, rest = rest[0], rest[1:]
        keep.append(int(i))
        if rest.size:
            suppressed = _suppresses(cols, areas, i, rest, thr)
            if cls is not None:
                suppressed &= cls[rest] == cls[i]
            rest = rest[~suppressed]
    return np.asarray(keep, np.int64)


def _sparse(
    b: np.ndarray,
    areas: np.ndarray,
    cls: np.ndarray | None,
    thr: float,
    limit: int,
    sweep: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Greedy NMS over boxes in score order through the graph of overlapping pairs.

    Pairs are found by a sweep along x (boxes sorted by x1; a box meets the following ones whose
    x1 lies before its x2), filtered by class, y overlap and IoU in chunks of ``_PAIR_CHUNK``;
    then one pass in score order marks the children of each box not yet suppressed. Work ~
    pairs in an x band, not N x kept.
    """
    n = len(b)
    cols = tuple(np.ascontiguousarray(b[:, k]) for k in range(4))
    y1, y2 = cols[1], cols[3]
    ox, counts = sweep if sweep is not None else _sweep(cols[0], cols[2])
    cum = np.cumsum(counts)
    his, los = [], []
    start = 0
    while start < n:
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), start + 1)
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            p = np.repeat(np.arange(start, stop), c)
            q = p + 1 + np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            i, j = ox[p], ox[q]
            if cls is not None:
                same = cls[i] == cls[j]
                i, j = i[same], j[same]
            # x overlap holds by the sweep; keep pairs that meet along y too, then IoU
            meet = np.minimum(y2[i], y2[j]) > np.maximum(y1[i], y1[j])
            i, j = i[meet], j[meet]
            hit = _suppresses(cols, areas, i, j, thr)
            i, j = i[hit], j[hit]
            his.append(np.minimum(i, j))
            los.append(np.maximum(i, j))
        start = stop
    suppressed = np.zeros(n, bool)
    hi = np.concatenate(his) if his else np.zeros(0, np.int64)
    if hi.size:
        lo = np.concatenate(los)
        by_hi = np.argsort(hi, kind="stable")
        hi, lo = hi[by_hi], lo[by_hi]
        sources, first = np.unique(hi, return_index=True)
        last = np.append(first[1:], len(hi))
        for s, f, e in zip(sources.tolist(), first.tolist(), last.tolist(), strict=True):
            if not suppressed[s]:
                suppressed[lo[f:e]] = True
    return np.flatnonzero(~suppressed)[:limit]
