"""Synthetic labelled data for the federated task: each site makes its own, non-IID.

SYNTHETIC: small 16x16 RGB images of four part-defect shapes (spot, scratch, ring, cross) drawn
with numpy. Each site is skewed twice over, as real plants are: by label (a site mostly sees two
defect classes, rarely the others) and by style (its own background brightness, tint and sensor
noise). The union test set draws every class in every site's style, so a model trained on one
site alone does badly on it and only pooling what the sites learned does well.

The data is generated inside the site's process from ``(site, seed)``; it never leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = [
    "CLASSES",
    "IMAGE_SHAPE",
    "NUM_SITES",
    "SiteStyle",
    "site_class_weights",
    "site_data",
    "union_test_set",
]

CLASSES = ("spot", "scratch", "ring", "cross")
IMAGE_SHAPE = (3, 16, 16)  #: C, H, W
NUM_SITES = 3


@dataclass(frozen=True)
class SiteStyle:
    """How one site's camera and parts look: background level, colour tint, sensor noise."""

    background: float
    tint: tuple[float, float, float]
    noise: float


STYLES = (
    SiteStyle(background=0.15, tint=(1.0, 0.9, 0.8), noise=0.05),
    SiteStyle(background=0.45, tint=(0.7, 1.0, 0.8), noise=0.10),
    SiteStyle(background=0.30, tint=(0.8, 0.8, 1.0), noise=0.15),
)

# Label skew: each site mostly sees two classes (90 %), and the rest rarely.
_MAJOR = ((0, 1), (1, 2), (2, 3))


def site_class_weights(site: int) -> np.ndarray:
    """Class probabilities at ``site``: 45 % for each of its two main classes, 5 % for the rest."""
    _check_site(site)
    w = np.full(len(CLASSES), 0.05)
    for c in _MAJOR[site]:
        w[c] = 0.45
    return w / w.sum()


def _check_site(site: int) -> None:
    if not 0 <= site < NUM_SITES:
        raise EdgeInferError(f"site {site} does not exist: give a site id 0..{NUM_SITES - 1}")


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 16x16 mask of one defect shape at a random place and size."""
    h, w = IMAGE_SHAPE[1:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(5, h - 5), rng.uniform(5, w - 5)
    r = rng.uniform(2.5, 4.5)
    d = np.hypot(yy - cy, xx - cx)
    if label == 0:  # spot: filled disc
        return (d <= r).astype(np.float32)
    if label == 1:  # scratch: thin diagonal line
        angle = rng.uniform(0, np.pi)
        dist = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        return ((dist <= 0.8) & (d <= r + 3)).astype(np.float32)
    if label == 2:  # ring: hollow circle
        return (np.abs(d - r) <= 0.9).astype(np.float32)
    # cross: two short perpendicular bars
    bar_y = (np.abs(yy - cy) <= 0.8) & (np.abs(xx - cx) <= r)
    bar_x = (np.abs(xx - cx) <= 0.8) & (np.abs(yy - cy) <= r)
    return (bar_y | bar_x).astype(np.float32)


def _render(labels: np.ndarray, style: SiteStyle, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((len(labels), *IMAGE_SHAPE), dtype=np.float32)
    tint = np.asarray(style.tint, dtype=np.float32)[:, None, None]
    for i, label in enumerate(labels):
        mask = _draw(int(label), rng)
        contrast = rng.uniform(0.4, 0.6)
        img = style.background + contrast * mask
        out[i] = img[None] * tint + rng.normal(0, style.noise, IMAGE_SHAPE)
    return np.clip(out, 0.0, 1.0)


def site_data(site: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``[n, 3, 16, 16]`` float32 and labels ``[n]`` int64 in ``site``'s skew."""
    _check_site(site)
    if n < 1:
        raise EdgeInferError(f"a site needs at least 1 sample, got {n}: raise --samples")
    rng = np.random.default_rng([seed, site, 1])
    labels = rng.choice(len(CLASSES), size=n, p=site_class_weights(site)).astype(np.int64)
    return _render(labels, STYLES[site], rng), labels


def union_test_set(n_per_site: int = 200, seed: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """A balanced held-out set: every class in every site's style (``seed`` apart from sites)."""
    xs, ys = [], []
    for site, style in enumerate(STYLES):
        rng = np.random.default_rng([seed, site, 2])
        labels = np.arange(n_per_site, dtype=np.int64) % len(CLASSES)
        xs.append(_render(labels, style, rng))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)
