"""One image through an artifact: preprocess -> Engine -> decoder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.decoders import DECODERS, get_decoder
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES, read_image, to_tensor


@dataclass(frozen=True)
class Prediction:
    """Decoded result of one image, with per-stage times in milliseconds."""

    source: str
    result: Any
    times_ms: dict[str, float]


class Predictor:
    """Runs images through an Engine with the artifact's preprocessing and decoder."""

    def __init__(self, engine: Engine) -> None:
        manifest = engine.artifact.manifest
        if not manifest.decoder:
            raise EdgeInferError(
                f"'{manifest.name}' names no decoder: declare one with `edgeinfer import "
                f"MODEL -o ARTIFACT --decoder NAME` (NAME: {', '.join(sorted(DECODERS))}; raw "
                "gives the outputs as they are)"
            )
        self.engine = engine
        self.decoder = get_decoder(manifest.decoder)
        self.labels = engine.artifact.labels()
        self.spec = manifest.inputs[0]

    def predict(self, image: np.ndarray, source: str = "") -> Prediction:
        """Predict one BGR image."""
        manifest = self.engine.artifact.manifest
        t0 = time.perf_counter()
        x, transform = to_tensor(image, self.spec, manifest.preprocess)
        t1 = time.perf_counter()
        outputs = self.engine.run({self.spec.name: x})
        t2 = time.perf_counter()
        result = self.decoder(outputs, manifest.decoder_params, transform, self.labels)
        t3 = time.perf_counter()
        times = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}
        return Prediction(source, result, times)


def iter_images(source: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, BGR image) from an image file or a directory of images (sorted)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeInferError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for p in files:
            yield str(p), read_image(p)
    else:
        yield str(source), read_image(source)
