"""The SYNTHETIC inspection generator: deterministic, exact tight boxes, balanced classes."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.synthetic import defects as gen


@pytest.fixture(scope="module")
def frame_pair() -> tuple[tuple, tuple]:
    """One default 5 MP frame drawn with and without its defects."""
    return gen.make_frame(11), gen.make_frame(11, defects=False)


def test_frame_is_5mp_bgr_with_3_to_12_defects(frame_pair) -> None:
    img, boxes, classes = frame_pair[0]
    assert img.shape == (1944, 2592, 3) and img.dtype == np.uint8
    assert 3 <= len(boxes) <= 12 and boxes.shape == (len(classes), 4)
    assert classes.min() >= 0 and classes.max() < len(gen.CLASSES)
    assert gen.CLASSES == ("scratch", "spot", "crack", "dent")


def test_frames_are_deterministic_per_seed(frame_pair) -> None:
    img, boxes, classes = frame_pair[0]
    again = gen.make_frame(11)
    assert np.array_equal(img, again[0])
    assert np.array_equal(boxes, again[1]) and np.array_equal(classes, again[2])
    other = gen.make_frame(12, 640, 480)
    assert not np.array_equal(gen.make_frame(11, 640, 480)[0], other[0])


def test_boxes_hold_every_changed_pixel_and_are_tight(frame_pair) -> None:
    (img, boxes, classes), (clean, clean_boxes, clean_classes) = frame_pair
    assert np.array_equal(boxes, clean_boxes) and np.array_equal(classes, clean_classes)
    changed = (img != clean).any(-1)
    inside = np.zeros_like(changed)
    for x1, y1, x2, y2 in boxes.astype(int):
        inside[y1:y2, x1:x2] = True
        ys, xs = np.nonzero(changed[y1:y2, x1:x2])
        # tight: the defect's changed pixels reach every side of its box (within a pixel:
        # lighting can round a faint edge pixel back to its old value)
        assert xs.min() <= 1 and ys.min() <= 1
        assert xs.max() >= x2 - x1 - 2 and ys.max() >= y2 - y1 - 2
    assert changed.any()
    assert not (changed & ~inside).any(), "pixels changed outside every box"


def test_classes_are_balanced_and_sizes_span_10_to_120_px() -> None:
    classes, sides = [], []
    for seed in range(60):
        _, boxes, cls = gen.make_frame(1000 + seed, 1024, 768)
        classes.append(cls)
        sides.append(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
    counts = np.bincount(np.concatenate(classes), minlength=len(gen.CLASSES))
    share = counts / counts.sum()
    assert counts.sum() > 300
    assert share.min() > 0.18 and share.max() < 0.32, share
    side = np.concatenate(sides)
    assert 9 <= side.min() <= 16 and 110 <= side.max() <= 130, (side.min(), side.max())


def test_tiles_are_deterministic_and_boxes_lie_inside() -> None:
    tiles = list(gen.make_tiles(3, 6, 320, per_frame=3, width=1024, height=768))
    again = list(gen.make_tiles(3, 6, 320, per_frame=3, width=1024, height=768))
    assert len(tiles) == 6
    for (img, boxes, classes), (img2, boxes2, classes2) in zip(tiles, again, strict=True):
        assert img.shape == (320, 320, 3)
        assert np.array_equal(img, img2) and np.array_equal(boxes, boxes2)
        assert np.array_equal(classes, classes2)
        assert (boxes >= 0).all() and (boxes <= 320).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert sum(len(t[1]) for t in tiles) >= 3  # most tiles are cut around a defect
