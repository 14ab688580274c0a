"""Natural colour photographs that installed PyPI packages carry, for INT8 calibration and eval.

Nothing here downloads anything: every photograph is a plain image file inside an installed
wheel, found through the package's installed-files record (``importlib.metadata``) without
importing the package (``ai_benchmark`` would import TensorFlow, ``foolbox`` eagerpy).

Sources, in the order ``photo_paths()`` returns them:

- ``ai-benchmark`` 0.1.2 (Apache-2.0, Copyright 2019-2020 Andrey Ignatov; the package's image
  files carry no separate notice), the test data of the AI Benchmark suite (ETH Zurich):
  ``data/classification``: 100 object-centric photos, 512x512, one ImageNet-1k class each
  (flamingo, red panda, goldfinch, bow tie, bullet train, ...), unlabelled;
  ``data/enhancement``: 100 street and park scenes, 1024x682, in the style of the DPED dataset;
  ``data/segmentation``: 30 photos of cats, 625 to 800 px wide (the ``*_segmented.jpg`` mask
  overlays next to them are left out).
- ``foolbox`` 3.3.4 (MIT): ``data/imagenet_NN_LABEL.jpg``: 20 ImageNet photos, 512x512, with
  their ImageNet-1k class index in the file name (see ``imagenet_labelled()``). They are
  ImageNet images, so ImageNet's terms of access (non-commercial research and education)
  apply to them.
- ``scikit-image`` (BSD-3-Clause code; these images are public domain or CC0): astronaut,
  chelsea (a cat), coffee, rocket, motorcycle_left (one of a Middlebury 2014 stereo pair;
  the right view is left out as a near-duplicate).
- ``scikit-learn`` (BSD-3-Clause code; the images are CC-BY-2.0, Flickr users danielbuechele
  and vultilion): china.jpg, flower.jpg.
- ``matplotlib``, where installed: grace_hopper.jpg (US Navy photo, public domain).

Every file is checked when listed: it must open, be at least 128 px on its short side and
have colour in it (a greyscale image stored as RGB is dropped). Charts, textures,
microscopy, astronomy, medical and logo images in these packages are never listed.

Install: ``.venv/bin/pip install ai-benchmark==0.1.2 foolbox==3.3.4`` (scikit-image comes
with the ``dev`` extra). Run this file to print ``describe()``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

MIN_SHORT_SIDE = 128
# Greyscale: no pixel of a 128x128 thumbnail has |R-G| + |G-B| of this or more (0-510 scale).
# A greyscale photo stored as RGB JPEG scores 0; the least colourful kept photo (a black laptop
# on white, ai-benchmark classification/40.jpg) scores 12.
_GREY_MAX_SPREAD = 8


@dataclass(frozen=True)
class PhotoSource:
    """One installed distribution and which of its files are natural colour photographs."""

    name: str  # short name used in describe() and photo_paths(sources=...)
    distribution: str  # the PyPI name
    license: str
    note: str
    include: tuple[str, ...]  # fnmatch patterns on the file's path inside the wheel
    exclude: tuple[str, ...] = ()


SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource(
        "ai-benchmark",
        "ai-benchmark",
        "Apache-2.0 (package licence; no separate notice for the images)",
        "AI Benchmark test data: 100 ImageNet-class objects 512x512, 100 street scenes "
        "1024x682, 30 cats",
        (
            "ai_benchmark/data/classification/*.jpg",
            "ai_benchmark/data/enhancement/*.jpg",
            "ai_benchmark/data/segmentation/*.jpg",
        ),
        ("*_segmented.jpg",),
    ),
    PhotoSource(
        "foolbox",
        "foolbox",
        "MIT (package); ImageNet images, ImageNet terms of access apply",
        "20 labelled ImageNet photos 512x512 (class index in the file name)",
        ("foolbox/data/imagenet_*.jpg",),
    ),
    PhotoSource(
        "scikit-image",
        "scikit-image",
        "public domain / CC0 (per skimage.data docstrings)",
        "astronaut, chelsea, coffee, rocket, motorcycle_left",
        tuple(
            f"skimage/data/{n}"
            for n in (
                "astronaut.png",
                "chelsea.png",
                "coffee.png",
                "rocket.jpg",
                "motorcycle_left.png",
            )
        ),
    ),
    PhotoSource(
        "scikit-learn",
        "scikit-learn",
        "CC-BY-2.0 (sklearn/datasets/images/README.txt)",
        "china.jpg, flower.jpg",
        ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
    ),
    PhotoSource(
        "matplotlib",
        "matplotlib",
        "public domain (US Navy photograph)",
        "grace_hopper.jpg",
        ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
    ),
)

_BY_NAME = {s.name: s for s in SOURCES}


def _natural_key(path: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path))


def _version(source: PhotoSource) -> str | None:
    try:
        return metadata.version(source.distribution)
    except metadata.PackageNotFoundError:
        return None


def _is_colour_photo(path: Path) -> bool:
    """At least MIN_SHORT_SIDE px on the short side and not greyscale."""
    import numpy as np
    from PIL import Image  # pillow: a dependency of scikit-image and ai-benchmark

    try:
        with Image.open(path) as im:
            if min(im.size) < MIN_SHORT_SIDE or im.mode not in ("RGB", "RGBA", "P", "YCbCr"):
                return False
            im.draft("RGB", (128, 128))  # JPEG: decode at reduced scale, much faster
            rgb = np.asarray(im.convert("RGB").resize((128, 128)), dtype=np.int16)
    except OSError:
        return False
    spread = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    return int(spread.max()) >= _GREY_MAX_SPREAD


@cache
def _source_paths(name: str) -> tuple[Path, ...]:
    source = _BY_NAME[name]
    try:
        dist = metadata.distribution(source.distribution)
    except metadata.PackageNotFoundError:
        return ()
    if dist.files is not None:
        rels = [str(f).replace("\\", "/") for f in dist.files]
    else:  # no installed-files record (some non-pip installs): look in the install root
        root = Path(dist.locate_file(""))
        rels = [p.relative_to(root).as_posix() for pat in source.include for p in root.glob(pat)]
    found = []
    for rel in rels:
        if not any(fnmatch.fnmatchcase(rel, p) for p in source.include):
            continue
        if any(fnmatch.fnmatchcase(Path(rel).name, p) for p in source.exclude):
            continue
        path = Path(dist.locate_file(rel)).resolve()
        if path.is_file() and _is_colour_photo(path):
            found.append((_natural_key(rel), path))
    return tuple(p for _, p in sorted(found))


def photo_paths(sources: tuple[str, ...] | list[str] | None = None) -> list[Path]:
    """The natural colour photographs from installed packages, in a fixed order.

    Ordered by source (the order of ``SOURCES``), then by natural sort of the path inside
    the package (``classification/2.jpg`` before ``classification/10.jpg``). ``sources``
    restricts the result to those source names (e.g. ``("ai-benchmark",)``); packages that
    are not installed contribute nothing.
    """
    names = [s.name for s in SOURCES] if sources is None else list(sources)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown photo source(s) {unknown}: choose from {sorted(_BY_NAME)}")
    order = [s.name for s in SOURCES if s.name in names]
    return [p for n in order for p in _source_paths(n)]


def imagenet_labelled() -> list[tuple[Path, int]]:
    """The foolbox ImageNet photos with their ImageNet-1k class index (0-999), in order."""
    out = []
    for p in _source_paths("foolbox"):
        m = re.fullmatch(r"imagenet_\d+_(\d+)\.jpg", p.name)
        if m:
            out.append((p, int(m.group(1))))
    return out


def describe() -> str:
    """One line per source: package, version, how many photos it gives, licence."""
    lines = []
    total = 0
    for s in SOURCES:
        version = _version(s)
        if version is None:
            lines.append(f"- {s.distribution}: not installed (0 photos)")
            continue
        n = len(_source_paths(s.name))
        total += n
        lines.append(f"- {s.distribution} {version}: {n} photos; licence {s.license}; {s.note}")
    return f"{total} natural colour photographs from installed packages:\n" + "\n".join(lines)


if __name__ == "__main__":
    print(describe())
