"""Boxes, Detections and NMS: IoU against a slow reference, NMS against OpenCV's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgeinfer.vision import nms as nms_module
from edgeinfer.vision.boxes import Detections, box_area, box_iou
from edgeinfer.vision.nms import nms

# --- helpers ---------------------------------------------------------------------------------


def slow_iou(a: list[float], b: list[float]) -> float:
    """IoU of two boxes, written out one scalar at a time."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def cv2_nms(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float) -> list[int]:
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]
    return [int(i) for i in np.asarray(
        cv2.dnn.NMSBoxes(xywh, [float(s) for s in scores], score_thr, iou_thr)
    ).reshape(-1)]


@contextmanager
def path(name: str) -> Iterator[None]:
    """Force nms's row path, its sparse path (after one row step, with tiny pair chunks) or
    leave the automatic choice."""
    names = ("_ROW_STEPS", "_SPARSE_MIN", "_STEP_COST", "_PAIR_CHUNK")
    saved = {n: getattr(nms_module, n) for n in names}
    forced = {
        "rows": {"_SPARSE_MIN": 1 << 62},
        "sparse": {"_ROW_STEPS": 1, "_SPARSE_MIN": 0, "_STEP_COST": 1e18, "_PAIR_CHUNK": 7},
        "auto": {},
    }[name]
    try:
        for n, v in forced.items():
            setattr(nms_module, n, v)
        yield
    finally:
        for n, v in saved.items():
            setattr(nms_module, n, v)


@st.composite
def box_sets(draw, max_n: int = 40, max_classes: int = 1):
    """Integer boxes (sides >= 1, so OpenCV and we agree on what an empty box is), distinct
    scores (OpenCV breaks ties by a stable sort, so would we; distinct keeps it unambiguous),
    class ids, an IoU threshold representable in float32 (OpenCV compares in float32)."""
    n = draw(st.integers(0, max_n))
    xy = draw(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 120)), min_size=n,
                       max_size=n))
    wh = draw(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), min_size=n,
                       max_size=n))
    boxes = np.array([[x, y, x + w, y + h] for (x, y), (w, h) in zip(xy, wh, strict=True)],
                     np.float32).reshape(-1, 4)
    perm = draw(st.permutations(list(range(n))))
    scores = ((np.asarray(perm, np.float32) + 1) / (n + 1)).astype(np.float32)
    classes = np.array(draw(st.lists(st.integers(0, max_classes - 1), min_size=n, max_size=n)),
                       np.int64)
    thr = float(np.float32(draw(st.floats(0.05, 0.95))))
    # the IoU of some pair may equal the threshold up to rounding; OpenCV rounds 1 - (1 - IoU)
    # through float32, we compare in float64: such a pair is a coin toss, not a disagreement.
    if n:
        iou = box_iou(boxes.astype(np.float64), boxes.astype(np.float64))
        assume(not np.any(np.abs(iou - thr) < 1e-6))
    return boxes, scores, classes, thr


# --- box_area, box_iou -----------------------------------------------------------------------


def test_box_iou_matches_a_slow_reference() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-50, 150, (60, 2))
    wh = rng.uniform(0, 80, (60, 2))
    wh[:5] = 0  # some boxes without area
    boxes = np.concatenate([xy, xy + wh], 1)
    a, b = boxes[:25], boxes[25:]
    iou = box_iou(a, b)
    assert iou.shape == (25, 35)
    assert iou.dtype == np.float64
    ref = np.array([[slow_iou(list(p), list(q)) for q in b] for p in a])
    np.testing.assert_allclose(iou, ref, rtol=1e-12, atol=1e-12)
    assert ref.max() > 0.3  # the sample does contain real overlaps
    assert (ref == 0).sum() > 100  # and disjoint pairs
    np.testing.assert_allclose(box_iou(b, a), iou.T)
    self_iou = np.diag(box_iou(boxes, boxes))
    np.testing.assert_allclose(self_iou[5:], 1.0)
    np.testing.assert_array_equal(self_iou[:5], 0.0)


def test_box_iou_dtypes_and_shapes() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou(a, b)
    assert iou.dtype == np.float32
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]], rtol=1e-6)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 2)
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)
    # integer boxes are computed in floating point, not truncated
    np.testing.assert_allclose(box_iou(a.astype(int), b.astype(int)), [[1 / 3, 0.0]])


def test_box_area() -> None:
    b = np.array([[0, 0, 10, 5], [3, 3, 3, 9], [5, 5, 2, 9]], np.float32)
    np.testing.assert_array_equal(box_area(b), [50, 0, 0])  # inverted sides count as zero


# --- Detections ------------------------------------------------------------------------------


def _dets() -> Detections:
    return Detections(
        [[0, 0, 10, 10], [5, 5, 25, 15], [-4, 90, 8, 130]],
        [0.9, 0.5, 0.7],
        [1, 0, 1],
        ["cat", "dog"],
    )


def test_detections_coerces_fields() -> None:
    d = _dets()
    assert len(d) == 3
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (3, 4)
    assert d.scores.dtype == np.float32 and d.scores.shape == (3,)
    assert d.class_ids.dtype == np.int64
    assert d.labels == ("cat", "dog")
    with pytest.raises(ValueError, match="3 boxes, 2 scores"):
        Detections(d.boxes, [0.1, 0.2], [0, 0, 0])


def test_detections_empty_and_concat() -> None:
    e = Detections.empty(["a"])
    assert len(e) == 0
    assert e.boxes.shape == (0, 4) and e.scores.shape == (0,) and e.class_ids.shape == (0,)
    assert e.labels == ("a",)
    assert e.to_dicts() == []
    assert len(Detections.concat([])) == 0
    d = _dets()
    other = Detections([[1, 2, 3, 4]], [0.3], [0], ["x", "y"])
    both = Detections.concat([d, e, other])
    assert len(both) == 4
    assert both.labels == d.labels  # labels from the first part
    np.testing.assert_array_equal(both.boxes[3], [1, 2, 3, 4])
    np.testing.assert_array_equal(both.class_ids, [1, 0, 1, 0])


def test_detections_shifted_select_clipped() -> None:
    d = _dets()
    s = d.shifted(100, -5)
    np.testing.assert_array_equal(s.boxes[0], [100, -5, 110, 5])
    np.testing.assert_array_equal(d.boxes[0], [0, 0, 10, 10])  # the original is untouched
    np.testing.assert_allclose(d.select(np.array([True, False, True])).scores, [0.9, 0.7])
    picked = d.select(np.array([2, 0]))
    np.testing.assert_array_equal(picked.class_ids, [1, 1])
    np.testing.assert_array_equal(picked.boxes[0], [-4, 90, 8, 130])
    assert len(d.select(np.array([], np.int64))) == 0
    c = d.clipped(20, 100)
    np.testing.assert_array_equal(c.boxes, [[0, 0, 10, 10], [5, 5, 20, 15], [0, 90, 8, 100]])
    assert len(c) == 3


def test_detections_to_dicts_is_json() -> None:
    d = _dets()
    out = d.to_dicts()
    assert out[0] == {"box": [0.0, 0.0, 10.0, 10.0], "score": 0.9, "class_id": 1, "label": "dog"}
    assert out[1]["label"] == "cat"
    assert json.loads(json.dumps(out)) == out
    unlabelled = Detections([[0.123456, 1, 2, 3]], [1 / 3], [7])
    assert unlabelled.to_dicts() == [
        {"box": [0.12, 1.0, 2.0, 3.0], "score": 0.333333, "class_id": 7, "label": "7"}
    ]
    # a class id beyond the labels falls back to the number
    assert Detections([[0, 0, 1, 1]], [1.0], [5], ["a"]).to_dicts()[0]["label"] == "5"


# --- nms against OpenCV ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rows", "sparse", "auto"])
@settings(max_examples=150, deadline=None)
@given(data=box_sets(), score_q=st.floats(0.0, 1.0))
def test_nms_agrees_with_opencv(which: str, data, score_q: float) -> None:
    boxes, scores, _, thr = data
    score_thr = float(np.float32(score_q))
    assume(not np.any(scores == np.float32(score_thr)))  # OpenCV keeps s > t, we keep s >= t
    expected = cv2_nms(boxes, scores, score_thr, thr)
    with path(which):
        got = nms(boxes, scores, thr, score_threshold=score_thr)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert np.all(np.diff(scores[got]) < 0)  # ordered by score, descending


@pytest.mark.parametrize("which", ["rows", "sparse", "auto"])
@settings(max_examples=150, deadline=None)
@given(data=box_sets(max_classes=4))
def test_per_class_nms_is_nms_on_each_class(which: str, data) -> None:
    boxes, scores, classes, thr = data
    with path(which):
        got = nms(boxes, scores, thr, class_ids=classes)
        expected: list[int] = []
        for c in np.unique(classes):
            members = np.flatnonzero(classes == c)
            expected += members[nms(boxes[members], scores[members], thr)].tolist()
    expected.sort(key=lambda i: -scores[i])
    assert got.tolist() == expected
    # and OpenCV's batched NMS (the coordinate-offset trick; exact on integer boxes)
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]
    batched = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), 0.0, thr)
    assert got.tolist() == np.asarray(batched, np.int64).reshape(-1).tolist()


@pytest.mark.parametrize("n", [3000, 6000])
def test_nms_agrees_with_opencv_on_many_boxes(n: int) -> None:
    """Enough sparse boxes that the automatic choice takes the sparse path (checked)."""
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 1000, (n, 2))
    wh = rng.uniform(10, 100, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = (rng.permutation(n) + 1.0) / n  # none 0: OpenCV drops s <= 0, we keep s >= 0
    calls = []
    original = nms_module._sparse

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    nms_module._sparse = spy
    try:
        got = nms(boxes, scores, 0.3)
    finally:
        nms_module._sparse = original
    assert calls, "the sparse path was not taken"
    assert got.tolist() == cv2_nms(boxes, scores, 0.0, 0.3)
    assert 0.3 * n < len(got) < n  # many kept, many suppressed: both matter


def test_dense_clusters_stay_on_rows() -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1000, (20, 2))
    boxes = np.repeat(np.concatenate([centres, centres + 80], 1), 200, 0)
    boxes += rng.normal(0, 3, boxes.shape)
    scores = rng.permutation(len(boxes)) / len(boxes)
    original = nms_module._sparse
    nms_module._sparse = None  # would raise if called
    try:
        got = nms(boxes, scores, 0.5)
    finally:
        nms_module._sparse = original
    assert got.tolist() == cv2_nms(boxes, scores, 0.0, 0.5)


# --- nms options -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(data=box_sets(max_classes=3), k=st.integers(0, 12), agnostic=st.booleans())
def test_max_detections_is_a_prefix(data, k: int, agnostic: bool) -> None:
    boxes, scores, classes, thr = data
    cls = None if agnostic else classes
    full = nms(boxes, scores, thr, class_ids=cls)
    assert nms(boxes, scores, thr, class_ids=cls, max_detections=k).tolist() == full[:k].tolist()


@settings(max_examples=100, deadline=None)
@given(data=box_sets(max_classes=3), q=st.integers(0, 40))
def test_score_threshold_is_nms_of_the_boxes_above_it(data, q: int) -> None:
    boxes, scores, classes, thr = data
    t = float(np.sort(scores)[q]) if q < len(scores) else 2.0  # a score itself: kept (>=)
    above = np.flatnonzero(scores >= t)
    got = nms(boxes, scores, thr, class_ids=classes, score_threshold=t)
    expected = above[nms(boxes[above], scores[above], thr, class_ids=classes[above])]
    assert got.tolist() == expected.tolist()
    assert np.all(scores[got] >= t)


def test_nms_small_cases() -> None:
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    s = np.array([0.6, 0.9, 0.5, 0.6], np.float32)
    # IoU(0, 1) = 81 / 119 = 0.68
    assert nms(b, s, 0.5).tolist() == [1, 2]
    assert nms(b, s, 0.7).tolist() == [1, 0, 2]  # 3 is a copy of 0: IoU 1 > 0.7
    assert nms(b, s, 1.0).tolist() == [1, 0, 3, 2]  # IoU > 1 never: nothing suppressed
    assert nms(b, s, 0.5, class_ids=[0, 1, 0, 0]).tolist() == [1, 0, 2]
    assert nms(b, s, 0.5, max_detections=1).tolist() == [1]
    assert nms(b, s, 0.5, max_detections=0).tolist() == []
    assert nms(b, s, 0.5, score_threshold=0.6).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert nms(b[:1], s[:1]).tolist() == [0]
    # boxes without area neither suppress nor are suppressed
    flat = np.array([[0, 0, 0, 10], [0, 0, 0, 10]], np.float32)
    assert nms(flat, np.array([0.9, 0.8]), 0.1).tolist() == [0, 1]
    # NaN scores are dropped, not sorted anywhere
    assert nms(b[:3], np.array([np.nan, 0.1, 0.2]), 0.5).tolist() == [2, 1]


def test_nms_rejects_bad_input() -> None:
    b = np.zeros((2, 4))
    with pytest.raises(ValueError, match="2 boxes but 3 scores"):
        nms(b, np.zeros(3))
    with pytest.raises(ValueError, match="2 scores but 1 class ids"):
        nms(b, np.zeros(2), class_ids=[0])
    with pytest.raises(ValueError, match="negative"):
        nms(b, np.zeros(2), -0.1)
