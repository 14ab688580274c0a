"""Latency of candidate ONNX files on this machine, through the Engine, timed side by side.

All files run in one interleaved timing loop (:func:`edgeinfer.timing.time_rounds`) per
backend, so the ratios between them hold on a noisy machine; the figure is the median.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeinfer.artifact import Artifact, SourceInfo
from edgeinfer.compression.sources import Subject
from edgeinfer.runtime.backends import BackendOptions, available_backends
from edgeinfer.runtime.engine import Engine
from edgeinfer.stats import percentile
from edgeinfer.timing import time_rounds

__all__ = ["measure_latency"]


def _runner(path: Path, subject: Subject, backend: str, tmp: Path, x: np.ndarray
            ) -> Callable[[], object]:
    art = Artifact.create(tmp / path.stem, path, name=path.stem, task="other",
                          inputs=subject.inputs, preprocess=subject.preprocess,
                          source=_source())
    engine = Engine(art, backend, BackendOptions())
    feeds = {subject.inputs[0].name: x}
    return lambda: engine.run(feeds)


def _source() -> SourceInfo:
    return SourceInfo(name="compress candidate", license=None, origin="edgeinfer compress")


def measure_latency(files: Sequence[Path], subject: Subject, backends: Sequence[str],
                    rounds: int = 5, runs: int = 10) -> dict[str, list[float]]:
    """Median ms of one batch-1 inference of each file, per backend that is installed and
    reads ONNX (OpenVINO, ONNX Runtime): ``{backend: [ms of files[0], ms of files[1], ...]}``."""
    usable = set(available_backends("onnx"))
    x = np.random.default_rng(0).random(subject.input_shape, dtype=np.float32)
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeinfer-compress-") as tmp:
        for backend in backends:
            if backend not in usable:
                continue
            runners = [_runner(Path(f), subject, backend, Path(tmp), x) for f in files]
            samples = time_rounds(runners, rounds, runs)
            out[backend] = [float(percentile(s, 50)) for s in samples]
    return out
