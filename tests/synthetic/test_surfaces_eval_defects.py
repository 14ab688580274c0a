"""The real-surface evaluation set and the evaluation-only defect renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeinfer.synthetic.eval_defects as eval_defects
from edgeinfer.synthetic.eval_defects import CHANGE_LEVELS, EVAL_CLASSES, render_defects

pytest.importorskip("skimage")

from edgeinfer.synthetic import surfaces


def _rect(split: str) -> tuple[int, int, int, int]:
    h, w = surfaces.surface_image("brick").shape[:2]
    fx0, fy0, fx1, fy1 = surfaces._REGIONS[split]
    return round(fx0 * w), round(fy0 * h), round(fx1 * w), round(fy1 * h)


def test_splits_share_no_pixel_and_cover_the_photograph() -> None:
    rects = [_rect(s) for s in surfaces.SPLITS]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects)
    assert area == 512 * 512


@pytest.mark.parametrize("name", sorted(surfaces.SURFACES))
def test_tiles_are_real_photo_crops_deterministic_per_split(name: str) -> None:
    a = surfaces.surface_tiles(name, "good", 3, seed=4, tile=128)
    b = surfaces.surface_tiles(name, "good", 3, seed=4, tile=128)
    assert all(x.shape == (128, 128, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = surfaces.surface_tiles(name, "defect", 3, seed=4, tile=128)
    assert not any(np.array_equal(x, y) for x, y in zip(a, other, strict=True))
    assert float(np.std(a[0])) > 3  # a photograph, not a flat fill


def test_tile_windows_stay_inside_their_region() -> None:
    with pytest.raises(ValueError, match="raise the scale"):
        surfaces.surface_tiles("moon", "good", 1, tile=640, scale=(1.0, 1.1))
    frame = surfaces.surface_frame("gravel", width=700, height=500)
    assert frame.shape == (500, 700, 3)


def test_defects_boxes_masks_and_classes_are_exact() -> None:
    rng = np.random.default_rng(3)
    base = surfaces.surface_tiles("brick", "defect", 1, tile=640)[0]
    seen = set()
    for k in range(10):
        img, boxes, classes, mask = render_defects(base, rng, 3)
        changed = np.abs(img.astype(int) - base.astype(int)).max(-1) >= 1
        assert not (changed & ~mask).any()  # every changed pixel belongs to a defect
        assert mask.sum() and (mask & changed).sum() >= 0.9 * mask.sum()
        inside = np.zeros_like(mask)
        for x1, y1, x2, y2 in boxes.astype(int):
            inside[y1:y2, x1:x2] = True
            assert mask[y1:y2, x1:x2].any()
        assert not (mask & ~inside).any()  # boxes hold every defect pixel
        for i, a in enumerate(boxes):  # no two defects overlap
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        seen |= set(classes.tolist())
        if k < 5:
            one = render_defects(base, np.random.default_rng(k), 1, classes=(k,))[2]
            assert one.tolist() in ([k], [])
    assert seen == set(range(len(EVAL_CLASSES)))
    assert CHANGE_LEVELS >= 1


def test_grey_images_stay_grey() -> None:
    grey = np.full((200, 200), 120, np.uint8)
    img, boxes, _, mask = render_defects(grey, np.random.default_rng(0), 2)
    assert img.shape == grey.shape and len(boxes) >= 1 and mask.any()


def test_renderer_is_independent_of_the_training_renderer() -> None:
    source = Path(eval_defects.__file__).read_text()
    assert "synthetic.defects" not in source.replace(":mod:`edgeinfer.synthetic.defects`", "")
    assert "evaluation" in eval_defects.__doc__.lower()
    assert "polylines" not in source.split('"""', 2)[2]  # draws with fields, not OpenCV strokes
