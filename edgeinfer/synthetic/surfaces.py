"""Tiles of REAL surfaces: photographs that PyPI packages carry, cut into train and test splits.

These are photographs, not renderings, of surfaces no model of this project was trained on:

=========  ==========================================  ==========================================
name       origin (file in the installed wheel)        licence
=========  ==========================================  ==========================================
brick      scikit-image ``skimage/data/brick.png``,    CC0 (CC0Textures "Bricks25", per
           a section of a brick wall, 512x512 grey     ``skimage.data.brick``'s docstring)
grass      ``skimage/data/grass.png``, grass,          CC0 (DeviantArt linolafett "Grass-01",
           512x512 grey                                per ``skimage.data.grass``)
gravel     ``skimage/data/gravel.png``, gravel,        CC0 (CC0Textures "Gravel04", per
           512x512 grey                                ``skimage.data.gravel``)
moon       ``skimage/data/moon.png``, the surface of   no separate notice; shipped under
           the moon, low contrast, 512x512 grey        scikit-image's BSD-3-Clause licence
=========  ==========================================  ==========================================

scikit-image comes with the ``dev`` and ``bench`` extras (``pip install 'edgeinfer[bench]'``);
the files are read straight from the installed package (nothing is downloaded, scikit-image
is not imported).

**Splits never share a pixel of the photograph.** Each 512x512 photograph is cut into three
regions: ``train`` is the left half (256 x 512 px), ``good`` (held-out defect-free tiles) the
top-right quadrant and ``defect`` (held-out tiles that get defects drawn on them) the
bottom-right quadrant (256 x 256 px each). A tile is a square window of its split's region,
scaled up to the tile size (scale 2.5-3.2: a 640 px tile comes from a window of 200-256 px),
then turned by one of the eight flips/quarter-turns. Tiles of one split overlap one another
(the regions are small); tiles of different splits never do.

Large frames (:func:`surface_frame`) extend a region by mirroring it (a real photograph has
512 x 512 pixels, a 5 MP frame 2592 x 1944); ``surface_tiles(..., mirror=True)`` cuts tiles
that may straddle such mirror seams, so a model trained on them has seen seams too.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import MissingDependencyError

__all__ = [
    "SPLITS",
    "SURFACES",
    "Surface",
    "split_region",
    "surface_frame",
    "surface_image",
    "surface_tiles",
]

#: ``train``: training tiles; ``good``: held-out defect-free tiles; ``defect``: held-out tiles
#: for defects to be drawn on
SPLITS = ("train", "good", "defect")
#: scale range of a tile (tile side / window side)
SCALE = (2.5, 3.2)


@dataclass(frozen=True)
class Surface:
    """One photograph of a surface and where it comes from."""

    name: str
    module: str  #: the package that carries it (found without importing it)
    file: str  #: path inside the package
    origin: str
    license: str


SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface("brick", "skimage", "data/brick.png",
                "scikit-image sample data: a section of a brick wall (CC0Textures Bricks25)",
                "CC0"),
        Surface("grass", "skimage", "data/grass.png",
                "scikit-image sample data: grass (DeviantArt linolafett, Grass-01)", "CC0"),
        Surface("gravel", "skimage", "data/gravel.png",
                "scikit-image sample data: gravel (CC0Textures Gravel04)", "CC0"),
        Surface("moon", "skimage", "data/moon.png",
                "scikit-image sample data: the surface of the moon",
                "no separate notice; scikit-image's BSD-3-Clause"),
    )
}

#: (x0, y0, x1, y1) of each split's region, as fractions of the photograph
_REGIONS = {
    "train": (0.0, 0.0, 0.5, 1.0),
    "good": (0.5, 0.0, 1.0, 0.5),
    "defect": (0.5, 0.5, 1.0, 1.0),
}


def _surface(name: str) -> Surface:
    try:
        return SURFACES[name]
    except KeyError:
        raise ValueError(f"unknown surface {name!r}: choose one of {sorted(SURFACES)}") from None


@cache
def surface_image(name: str) -> np.ndarray:
    """The whole photograph as BGR uint8 (grey photographs get three equal channels)."""
    surface = _surface(name)
    spec = importlib.util.find_spec(surface.module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"surface '{name}' is a photograph that scikit-image carries: run "
            "`pip install 'edgeinfer[bench]'` (or scikit-image alone)"
        )
    path = Path(spec.submodule_search_locations[0]) / surface.file
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MissingDependencyError(f"surface '{name}': cannot read {path}: reinstall "
                                     "scikit-image")
    image.flags.writeable = False
    return image


def split_region(name: str, split: str) -> np.ndarray:
    """The pixels of the photograph that belong to ``split`` (a view, read-only)."""
    if split not in _REGIONS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    image = surface_image(name)
    h, w = image.shape[:2]
    fx0, fy0, fx1, fy1 = _REGIONS[split]
    return image[round(fy0 * h): round(fy1 * h), round(fx0 * w): round(fx1 * w)]


def _dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the eight flips/quarter-turns of a square image (k in 0..7)."""
    out = np.rot90(image, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def surface_tiles(
    name: str,
    split: str,
    n: int,
    seed: int = 0,
    tile: int = 640,
    *,
    scale: tuple[float, float] = SCALE,
    mirror: bool = False,
) -> list[np.ndarray]:
    """``n`` BGR ``tile`` x ``tile`` tiles of surface ``name`` from ``split`` (see the module
    docstring). ``mirror``: windows may extend past the region into its mirror images
    (reflected at the region's edges), as in :func:`surface_frame`. Deterministic per
    argument list."""
    region = split_region(name, split)
    rh, rw = region.shape[:2]
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), tile,
                                                        sorted(SURFACES).index(name)]))
    lo, hi = scale
    out = []
    for _ in range(n):
        s = rng.uniform(lo, hi)
        side = math.ceil(tile / s)
        if mirror:
            canvas = cv2.copyMakeBorder(region, rh, rh, rw, rw, cv2.BORDER_REFLECT)
            x = int(rng.integers(0, 3 * rw - side + 1))
            y = int(rng.integers(0, 3 * rh - side + 1))
        else:
            if side > min(rh, rw):
                raise ValueError(
                    f"surface {name!r}, split {split!r}: a {tile} px tile at scale {s:.2f} "
                    f"needs a {side} px window, the region is {rw}x{rh}: raise the scale"
                )
            canvas = region
            x = int(rng.integers(0, rw - side + 1))
            y = int(rng.integers(0, rh - side + 1))
        window = _dihedral(canvas[y: y + side, x: x + side], int(rng.integers(0, 8)))
        out.append(cv2.resize(window, (tile, tile), interpolation=cv2.INTER_CUBIC))
    return out


def surface_frame(
    name: str,
    splits: tuple[str, ...] = ("good", "defect"),
    width: int = 2592,
    height: int = 1944,
    seed: int = 0,
    scale: float = 2.8,
) -> np.ndarray:
    """A BGR ``width`` x ``height`` frame of surface ``name`` built from the regions of
    ``splits`` only (side by side; the held-out right half by default), scaled by ``scale``
    and extended by mirroring to the frame's size, from a random offset."""
    parts = [split_region(name, s) for s in splits]
    if len({p.shape[1] for p in parts}) != 1:
        raise ValueError(f"splits {splits} have regions of different widths: stack others")
    region = np.concatenate(parts, axis=0)
    scaled = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    sh, sw = scaled.shape[:2]
    rng = np.random.default_rng(np.random.SeedSequence([seed, width, height]))
    ox, oy = int(rng.integers(0, sw)), int(rng.integers(0, sh))
    reps_x, reps_y = math.ceil((width + ox) / sw) + 1, math.ceil((height + oy) / sh) + 1
    # mirror tiling: even copies as they are, odd ones flipped, so every seam is continuous
    row = np.concatenate([scaled if i % 2 == 0 else scaled[:, ::-1] for i in range(reps_x)], 1)
    grid = np.concatenate([row if j % 2 == 0 else row[::-1] for j in range(reps_y)], 0)
    return np.ascontiguousarray(grid[oy: oy + height, ox: ox + width])
