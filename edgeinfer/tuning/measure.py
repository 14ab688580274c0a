"""Measuring candidates: outputs on the evaluation samples, latency, throughput.

Every candidate is checked on the same held-out samples against the FP32 reference (ONNX
Runtime on the FP32 graph), with the drop measure ``optimize`` uses. Latency is timed with
:func:`edgeinfer.timing.time_rounds` (interleaved rounds): a short screening pass over all
candidates, then a longer pass over the finalists together with the baseline (ONNX Runtime FP32
with its own defaults).
"""

from __future__ import annotations

import numpy as np

from edgeinfer.runtime.engine import Engine


def to_layout(batch: np.ndarray, src: str, dst: str) -> np.ndarray:
    """A ``[N, ...]`` image batch moved from layout ``src`` to ``dst`` (NCHW <-> NHWC)."""
    if src == dst or batch.ndim != 4:
        return batch
    return batch.transpose(0, 2, 3, 1) if dst == "NHWC" else batch.transpose(0, 3, 1, 2)


def align(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """``candidate`` in ``reference``'s layout when a converter moved channels last."""
    if candidate.shape == reference.shape or candidate.ndim != 4:
        return candidate
    moved = candidate.transpose(0, 3, 1, 2)
    return moved if moved.shape == reference.shape else candidate


def outputs(engine: Engine, batch: np.ndarray) -> np.ndarray:
    """The first output for each sample of ``batch`` (batch 1 each), stacked."""
    name = engine.inputs[0].name
    dtype = engine.inputs[0].dtype
    feed_dtype = np.float32 if np.dtype(dtype).kind in "iu" else np.dtype(dtype)
    outs = [
        engine.run({name: np.ascontiguousarray(x[None], dtype=feed_dtype)})[0][0] for x in batch
    ]
    return np.stack(outs)


