"""Greedy coreset subsampling of a memory bank (PatchCore's approximate greedy k-center).

The coreset keeps ``size`` of ``N`` patch features chosen so that every feature left out lies
close to a kept one: start from the mean distance to ten random features, then repeatedly keep
the feature farthest from everything kept so far and update each feature's distance to its
nearest kept one. Distances are taken after a Gaussian random projection to ``project_dim``
dimensions (Johnson-Lindenstrauss: distances kept within a small factor; PatchCore projects to
128), which makes each step one matrix-vector product over the ``N x project_dim`` features.
The kept features themselves are the full-dimensional rows.

No library does this: scikit-learn has no k-center, faiss is not a dependency; the loop is
``N x project_dim`` float32 multiply-adds per kept feature.
"""

from __future__ import annotations

import logging

import numpy as np

from edgeinfer.progress import ProgressFn, Tracker

log = logging.getLogger(__name__)

__all__ = ["greedy_coreset", "random_projection"]

#: features the first distances are averaged over (PatchCore's number_of_starting_points)
STARTS = 10


def random_projection(dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """A ``[dim, out_dim]`` Gaussian projection scaled so lengths are kept on average."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim, out_dim)) / np.sqrt(out_dim)).astype(np.float32)


def greedy_coreset(
    features: np.ndarray,
    size: int,
    *,
    project_dim: int = 128,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Indices of ``size`` rows of ``features`` ([N, D]) forming a greedy k-center coreset, in
    the order chosen. ``size >= N`` keeps every row."""
    n, dim = features.shape
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    feats = np.ascontiguousarray(features, np.float32)
    if project_dim and project_dim < dim:
        feats = feats @ random_projection(dim, project_dim, seed)
    sq = np.einsum("ij,ij->i", feats, feats)
    starts = rng.choice(n, min(STARTS, n), replace=False)
    start_d = sq[:, None] - 2 * feats @ feats[starts].T + sq[starts][None, :]
    nearest = np.sqrt(np.maximum(start_d, 0)).mean(1).astype(np.float32)
    chosen = np.empty(size, np.int64)
    track = Tracker(progress)
    track.start("coreset", total=size, detail=f"{n} patches -> {size}")
    step = max(1, size // 100)
    dist = np.empty(n, np.float32)
    reported = 0
    for k in range(size):
        i = int(np.argmax(nearest))
        chosen[k] = i
        np.dot(feats, feats[i], out=dist)
        dist *= -2.0
        dist += sq
        dist += sq[i]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        np.minimum(nearest, dist, out=nearest)
        if (k + 1) % step == 0 or k + 1 == size:
            track.advance("coreset", steps=k + 1 - reported)
            reported = k + 1
    track.finish("coreset")
    return chosen
