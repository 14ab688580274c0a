"""Update compression: int8 deltas with one float scale per tensor, and their byte counts.

Written here because it is a dozen lines of numpy and Flower ships no update codec for its
Message API. A client sends ``q = round((w_local - w_global) / scale)`` as int8 with
``scale = max|delta| / 127`` per tensor; the server, which holds ``w_global``, adds
``q * scale`` back. Deltas shrink to a quarter of float32 and the error is at most
``scale / 2`` per weight, small next to a round's update.
"""

from __future__ import annotations

import numpy as np

from edgeinfer.errors import EdgeInferError

__all__ = ["compress_delta", "decompress_delta", "nbytes"]


def compress_delta(
    local: dict[str, np.ndarray], base: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """int8 deltas ``local - base`` per tensor and their scales (same keys as ``local``)."""
    _same_keys(local, base)
    q, scales = {}, {}
    for k, w in local.items():
        delta = np.asarray(w, np.float32) - np.asarray(base[k], np.float32)
        peak = float(np.abs(delta).max()) if delta.size else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        q[k] = np.clip(np.rint(delta / scale), -127, 127).astype(np.int8)
        scales[k] = scale
    return q, scales


def decompress_delta(
    q: dict[str, np.ndarray], scales: dict[str, float], base: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Rebuild float32 weights ``base + q * scale`` from a compressed update."""
    _same_keys(q, base)
    missing = set(q) - set(scales)
    if missing:
        raise EdgeInferError(f"compressed update lacks scales for {sorted(missing)[:3]}: "
                             "the client must send one scale per tensor")
    return {k: (np.asarray(base[k], np.float32) + q[k].astype(np.float32) * np.float32(
        scales[k])).astype(np.float32) for k in q}


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    """Bytes of array data in ``arrays`` (what crosses the network, less framing)."""
    return int(sum(np.asarray(a).nbytes for a in arrays.values()))


def _same_keys(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))[:3]
        raise EdgeInferError(f"update and global model differ in tensors {diff}: both sides "
                             "must run the same model definition")
