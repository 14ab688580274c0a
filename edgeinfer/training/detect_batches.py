"""Training batches for the detector: images letterboxed to the model's input size (as the
artifact's preprocessing will feed them), optionally rescaled per batch (multi-scale) and
cropped, defects synthesized onto them, flipped; boxes follow every step.

:class:`BatchMaker` is what :func:`edgeinfer.training.detect_train.fit` draws from. Images are
decoded once and kept letterboxed (uint8) while they fit in ``cache_bytes``; past that they are
decoded again when drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from edgeinfer.artifact import Preprocess
from edgeinfer.training.datasets import LabelledImage
from edgeinfer.vision.preprocess import resize

#: the artifact's preprocessing: letterbox (grey 114 padding), linear interpolation, RGB / 255
PREPROCESS = Preprocess(resize="letterbox", interpolation="linear", channel_order="RGB",
                        scale=1 / 255, pad_value=114)

#: draws defects on a BGR uint8 image, away from the ``taken`` boxes:
#: ``(image, rng, taken=[...]) -> (image, boxes, classes)``
Synthesizer = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Batch:
    """One training batch: ``images`` float32 ``[B, 3, H, W]`` RGB / 255; ``gt`` ``[B, M, 4]``
    boxes (x1 y1 x2 y2, input pixels) padded to the most boxes of an image, ``classes``
    ``[B, M]`` and ``valid`` ``[B, M]`` marking the real ones."""

    images: torch.Tensor
    gt: torch.Tensor
    classes: torch.Tensor
    valid: torch.Tensor


def letterbox(item: LabelledImage, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``item`` as the model sees it: letterboxed to ``size`` x ``size`` BGR uint8, boxes mapped
    into it."""
    img, t = resize(item.read(), (size, size), PREPROCESS)
    boxes = item.boxes * np.float32(t.scale_x) + np.array([t.pad_x, t.pad_y] * 2, np.float32)
    return img, boxes.astype(np.float32)


def content_box(item: LabelledImage, size: int) -> np.ndarray:
    """Where the image lies inside its ``size`` letterbox: x1 y1 x2 y2 (the rest is padding)."""
    r = min(size / item.height, size / item.width)
    rw, rh = round(item.width * r), round(item.height * r)
    left, top = (size - rw) // 2, (size - rh) // 2
    return np.array([left, top, left + rw, top + rh], np.float32)


def padding_boxes(content: np.ndarray, side: int) -> list[tuple[int, int, int, int]]:
    """The padding of a ``side`` x ``side`` window around ``content`` as up to four boxes
    (what synthesized defects must keep off)."""
    x1, y1, x2, y2 = (int(v) for v in np.clip(np.round(content), 0, side))
    rects = [(0, 0, x1, side), (x2, 0, side, side), (0, 0, side, y1), (0, y2, side, side)]
    return [r for r in rects if r[2] > r[0] and r[3] > r[1]]


def crop_boxes(
    img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, x: int, y: int, side: int,
    min_visible: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``side`` x ``side`` window at (x, y): boxes clipped to it, those with less than
    ``min_visible`` of their area inside dropped."""
    b = boxes - np.array([x, y, x, y], np.float32)
    clipped = np.clip(b, 0, side)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    vis = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = vis >= min_visible * area
    return img[y : y + side, x : x + side], clipped[keep], classes[keep]


class BatchMaker:
    """Batches from labelled images (and, with ``synth``, defects drawn onto them).

    ``size`` is the model's input side; ``scales`` (lo, hi) draws each batch's side from
    lo..hi in steps of 32 (multi-scale); ``crop`` trains on windows of that side (cheaper: the
    network is fully convolutional), placed around a random box with probability
    ``p_object`` when the image has one; ``flips``: ``all`` (horizontal, vertical, transpose:
    surfaces have no up), ``horizontal`` or ``none``. A ``synth`` with a ``scale`` (lo, hi)
    draws on a window of ``crop / f`` pixels (f drawn from lo..hi) resized to ``crop``.
    """

    def __init__(
        self,
        items: Sequence[LabelledImage],
        size: int = 640,
        *,
        scales: tuple[int, int] | None = None,
        crop: int | None = None,
        flips: str = "all",
        p_object: float = 0.85,
        synth: Synthesizer | None = None,
        cache_bytes: int = 1 << 30,
    ) -> None:
        self.items = list(items)
        self.size = size
        self.scales = scales
        self.crop = crop
        self.flips = flips
        self.p_object = p_object
        self.synth = synth
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            return self._cache[i]
        img, boxes = letterbox(self.items[i], self.size)
        if img.nbytes <= self._cache_left:
            self._cache[i] = (img, boxes)
            self._cache_left -= img.nbytes
        return img, boxes

    def side(self, rng: np.random.Generator) -> int:
        """The input side of the next batch (the model's size without multi-scale)."""
        if self.scales is None:
            return self.size
        lo, hi = (round(s / 32) for s in self.scales)
        return 32 * int(rng.integers(lo, hi + 1))

    def sample(
        self, i: int, side: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``i`` at ``side``, cropped, synthesized on and flipped: BGR uint8, boxes,
        classes."""
        img, boxes = self._image(i)
        classes = self.items[i].classes
        if side != self.size:
            f = side / self.size
            img = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
            boxes = boxes * np.float32(f)
        c = self.crop if self.crop is not None and self.crop < side else side
        if self.synth is None:
            if c < side:
                img, boxes, classes = self._crop(img, boxes, classes, c, rng)
            return (*self._flip(img, boxes, rng), classes)
        # synthesized defects: drawn on a window of c / f pixels then resized to c, so their
        # size varies by the synthesizer's scale f (and the surface's texture with them); they
        # keep off the letterbox padding
        lo, hi = getattr(self.synth, "scale", (1.0, 1.0))
        win = min(side, max(32, round(c / rng.uniform(lo, hi))))
        content = content_box(self.items[i], self.size) * np.float32(side / self.size)
        if win < side:
            img, boxes, classes, x, y = self._crop(img, boxes, classes, win, rng, offset=True)
            content = content - np.array([x, y, x, y], np.float32)
        img, new_boxes, new_classes = self.synth(np.ascontiguousarray(img), rng,
                                                 taken=padding_boxes(content, win))
        if win != c:
            img = cv2.resize(img, (c, c), interpolation=cv2.INTER_LINEAR)
        k = np.float32(c / win)
        boxes = np.concatenate([boxes, new_boxes]).astype(np.float32) * k
        classes = np.concatenate([classes, new_classes]).astype(np.int64)
        return (*self._flip(img, boxes, rng), classes)

    def _crop(self, img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, c: int,
              rng: np.random.Generator, offset: bool = False) -> tuple:
        """A ``c`` px window (around a box with probability ``p_object``): image, boxes,
        classes, and with ``offset`` its top-left corner."""
        side = img.shape[0]
        if len(boxes) and rng.random() < self.p_object:
            b = boxes[int(rng.integers(0, len(boxes)))]
            lo_x, hi_x = max(0, int(b[2]) - c), min(side - c, int(b[0]))
            lo_y, hi_y = max(0, int(b[3]) - c), min(side - c, int(b[1]))
            x = int(rng.integers(lo_x, max(lo_x, hi_x) + 1))
            y = int(rng.integers(lo_y, max(lo_y, hi_y) + 1))
        else:
            x, y = (int(v) for v in rng.integers(0, side - c + 1, 2))
        out = crop_boxes(img, boxes, classes, x, y, c)
        return (*out, x, y) if offset else out

    def _flip(self, img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape[:2]
        b = boxes.copy()
        draws = rng.random(3) < 0.5
        if self.flips != "none" and draws[0]:
            img, b[:, [0, 2]] = img[:, ::-1], w - b[:, [2, 0]]
        if self.flips == "all" and draws[1]:
            img, b[:, [1, 3]] = img[::-1], h - b[:, [3, 1]]
        if self.flips == "all" and draws[2] and h == w:
            img, b = img.transpose(1, 0, 2), b[:, [1, 0, 3, 2]]
        return np.ascontiguousarray(img), b

    def batch(self, index: Sequence[int], rng: np.random.Generator) -> Batch:
        """The batch of images ``index`` (one side for all, see :meth:`side`)."""
        side = self.side(rng)
        samples = [self.sample(int(i), side, rng) for i in index]
        return collate(samples)


def collate(samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Batch:
    """Stack (BGR uint8 image, boxes, classes) samples of one size into a :class:`Batch`."""
    imgs = np.stack([s[0][..., ::-1] for s in samples]).transpose(0, 3, 1, 2)
    images = torch.from_numpy(np.ascontiguousarray(imgs)).float().div_(255)
    m = max(1, max(len(s[1]) for s in samples))
    gt = torch.zeros(len(samples), m, 4)
    cls = torch.zeros(len(samples), m, dtype=torch.long)
    valid = torch.zeros(len(samples), m, dtype=torch.bool)
    for j, (_, b, c) in enumerate(samples):
        gt[j, : len(b)] = torch.from_numpy(np.asarray(b, np.float32))
        cls[j, : len(c)] = torch.from_numpy(np.asarray(c, np.int64))
        valid[j, : len(b)] = True
    return Batch(images, gt, cls, valid)
