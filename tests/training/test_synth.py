"""Defects drawn onto ANY image (a photograph here) with exact boxes, and the training source
that synthesizes them onto the user's good images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeinfer.synthetic.defects import CLASSES, draw_defects
from edgeinfer.training.datasets import LabelledImage
from edgeinfer.training.detect_batches import BatchMaker
from edgeinfer.training.synth import DefectSynthesizer, synth_val


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photograph (scikit-image's camera man) as BGR, 512x512."""
    from skimage import data

    return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)


def test_boxes_hold_every_changed_pixel_and_are_tight(photo) -> None:
    original = photo.copy()
    img, boxes, classes = draw_defects(photo, 3, 12)
    np.testing.assert_array_equal(photo, original)  # the input is left alone
    assert len(boxes) >= 6 and set(classes.tolist()) <= set(range(len(CLASSES)))
    changed = (img != photo).any(-1)
    inside = np.zeros_like(changed)
    for x1, y1, x2, y2 in boxes.astype(int):
        assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
        inside[y1:y2, x1:x2] = True
        window = changed[y1:y2, x1:x2]
        # tight: the first and last row and column of each box hold a changed pixel
        assert window[0].any() and window[-1].any()
        assert window[:, 0].any() and window[:, -1].any()
    assert not (changed & ~inside).any()  # no change outside the boxes


def test_drawing_is_deterministic_and_respects_classes_and_margin(photo) -> None:
    a = draw_defects(photo, np.random.default_rng(5), (2, 5), classes=(1, 3), margin=60)
    b = draw_defects(photo, np.random.default_rng(5), (2, 5), classes=(1, 3), margin=60)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert set(a[2].tolist()) <= {1, 3}


def test_min_contrast_leaves_out_what_nobody_could_see(photo) -> None:
    img, boxes, _ = draw_defects(photo, 1, 8, min_contrast=1000)
    assert len(boxes) == 0
    np.testing.assert_array_equal(img, photo)


def test_refuses_an_image_that_is_not_bgr_uint8(photo) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_defects(photo[..., 0], 0)


def test_batches_of_good_images_carry_the_synthesized_boxes(photo) -> None:
    good = [LabelledImage(photo[y : y + 256, x : x + 256].copy(), 256, 256,
                          np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
            for x, y in ((0, 0), (256, 256))]
    maker = BatchMaker(good, 256, crop=128, synth=DefectSynthesizer(count=(2, 2), p_empty=0))
    batch = maker.batch([0, 1, 0, 1], np.random.default_rng(0))
    assert batch.images.shape == (4, 3, 128, 128)
    assert int(batch.valid.sum()) >= 4
    b = batch.gt[batch.valid]
    assert (b >= 0).all() and (b <= 128).all() and (b[:, 2:] > b[:, :2]).all()
    val = synth_val(good, 256, seed=0)
    again = synth_val(good, 256, seed=0)
    assert sum(len(v.boxes) for v in val) >= 2
    np.testing.assert_array_equal(val[0].image, again[0].image)  # a fixed validation set


def test_synthesized_defects_keep_off_the_letterbox_padding(photo) -> None:
    """A wide good image is letterboxed with grey bands above and below: no defect there."""
    wide = [LabelledImage(photo[:128].copy(), 512, 128, np.zeros((0, 4), np.float32),
                          np.zeros(0, np.int64))]
    maker = BatchMaker(wide, 256, synth=DefectSynthesizer(count=(4, 4), p_empty=0,
                                                          scale=(1.0, 1.0)), flips="none")
    rng = np.random.default_rng(1)
    boxes = np.concatenate([maker.sample(0, 256, rng)[1] for _ in range(5)])
    assert len(boxes) >= 5
    assert (boxes[:, 1] >= 96 - 1).all() and (boxes[:, 3] <= 160 + 1).all()  # band 96..160
    val = synth_val(wide, 256, seed=0, synth=DefectSynthesizer(count=(4, 4)))
    assert len(val[0].boxes) and (val[0].boxes[:, 1] >= 95).all()
