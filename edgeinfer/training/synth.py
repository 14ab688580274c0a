"""Defects synthesized on the user's own good images, for training a detector with no real
defect label: :func:`edgeinfer.synthetic.defects.draw_defects` (scratches, spots, cracks, dents
with exact boxes) applied to each training image as it is drawn, a new set every time; and a
fixed validation set drawn once onto held-out good images.

Validation on these images measures how well the detector learned the SYNTHESIZED defects on
the user's surface (it selects the epoch); how it does on real or differently drawn defects
needs data made another way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeinfer.synthetic.defects import CLASSES, draw_defects
from edgeinfer.training.datasets import DetectionDataset, LabelledImage
from edgeinfer.training.detect_batches import content_box, letterbox, padding_boxes

__all__ = ["SYNTH_CLASSES", "DefectSynthesizer", "generated_defects", "synth_val"]

#: the classes ``--synth`` draws (the generator's, in its order)
SYNTH_CLASSES: tuple[str, ...] = CLASSES

#: seeds of the validation drawings are offset from the training seed by this much
VAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class DefectSynthesizer:
    """Draws ``count`` (lo, hi) defects onto an image, none with probability ``p_empty``
    (defect-free examples keep false alarms down); defects moving their pixels by less than
    ``min_contrast`` grey levels on average are left out (nobody could see them).

    Generic augmentations, since real defects are not drawn like these: ``soften`` blurs each
    defect by up to that sigma (px); ``scale`` (lo, hi) sizes them (the batch maker draws on a
    smaller or larger window, see :class:`~edgeinfer.training.detect_batches.BatchMaker`);
    then, over the whole image, defocus blur (probability ``p_blur``, sigma up to ``blur``)
    and gain / offset jitter (``p_photometric``, +-``gain``, +-``offset`` grey levels).
    """

    count: tuple[int, int] = (1, 4)
    p_empty: float = 0.1
    min_contrast: float = 12.0
    soften: float = 0.0
    scale: tuple[float, float] = (0.75, 2.0)
    p_blur: float = 0.3
    blur: float = 1.2
    p_photometric: float = 0.5
    gain: float = 0.15
    offset: float = 15.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 taken: list[tuple[int, int, int, int]] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Defects on a copy of ``image``, off the ``taken`` boxes (letterbox padding)."""
        if rng.random() < self.p_empty:
            img, boxes, classes = image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        else:
            img, boxes, classes = draw_defects(image, rng, self.count, soften=self.soften,
                                               min_contrast=self.min_contrast, taken=taken)
        return self._photometric(img, rng), boxes, classes

    def _photometric(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_blur:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, self.blur))
        if rng.random() < self.p_photometric:
            a = rng.uniform(1 - self.gain, 1 + self.gain)
            b = rng.uniform(-self.offset, self.offset)
            img = cv2.convertScaleAbs(img, alpha=a, beta=b)
        return img


def synth_val(
    items: Sequence[LabelledImage], imgsz: int, seed: int,
    synth: DefectSynthesizer = DefectSynthesizer(),
) -> list[LabelledImage]:
    """``items`` (good images) letterboxed to ``imgsz`` with defects drawn once (seeded per
    image): a fixed validation set, in memory."""
    out = []
    for k, item in enumerate(items):
        img, _ = letterbox(item, imgsz)
        rng = np.random.default_rng([seed + VAL_SEED_OFFSET, k])
        padding = padding_boxes(content_box(item, imgsz), imgsz)
        drawn, boxes, classes = draw_defects(img, rng, synth.count, taken=padding,
                                             min_contrast=synth.min_contrast)
        out.append(LabelledImage(drawn, imgsz, imgsz, boxes, classes, f"{item.name} +synth"))
    return out


def generated_defects(train: int = 1600, val: int = 160, tile: int = 256, seed: int = 0
                      ) -> DetectionDataset:
    """A SYNTHETIC detection dataset from :func:`edgeinfer.synthetic.defects.make_tiles`, the
    generator the shipped ``defect-detector`` was trained on: ``train`` crops of ``tile``
    pixels (frames of ``seed``, 20 crops per frame, 85% around a defect, 16-28 defects per
    frame, as ``examples/inspection/train.py`` draws them) and ``val`` 640x640 tiles of the
    held-out test frames (seed 9999, as ``examples/inspection/evaluate.py``). A ``--data``
    entry point for ``edgeinfer compress`` (``edgeinfer.training.synth:generated_defects``)."""
    from edgeinfer.synthetic.defects import make_tiles

    def items(frames: Any, prefix: str) -> tuple[LabelledImage, ...]:
        return tuple(LabelledImage(img, img.shape[1], img.shape[0],
                                   np.asarray(boxes, np.float32).reshape(-1, 4),
                                   np.asarray(classes, np.int64), f"{prefix}{i}")
                     for i, (img, boxes, classes) in enumerate(frames))

    cv2.setNumThreads(1)
    return DetectionDataset(
        names=SYNTH_CLASSES,
        train=items(make_tiles(seed, train, tile, per_frame=20, p_defect=0.85,
                               frame_defects=(16, 28)), "train"),
        val=items(make_tiles(9999, val, 640), "val"), layout="images",
        origin=f"SYNTHETIC defects (edgeinfer.synthetic.defects, seed {seed}; val seed 9999)",
        split="generated: train and val frames never overlap",
    )
