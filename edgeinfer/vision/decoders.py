"""Output decoders, chosen by name from an artifact's manifest (a registry, filled at import).

Each decoder takes the model's raw outputs (a list of arrays, in output order), the manifest's
``decoder_params`` and the preprocessing transform, and returns plain Python results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.preprocess import Transform

Decoder = Callable[[Sequence[np.ndarray], dict[str, Any], Transform, Sequence[str] | None], Any]
DECODERS: dict[str, Decoder] = {}


def register_decoder(name: str) -> Callable[[Decoder], Decoder]:
    """Register a decoder under ``name``."""

    def deco(fn: Decoder) -> Decoder:
        DECODERS[name] = fn
        return fn

    return deco


def get_decoder(name: str) -> Decoder:
    """Look up a decoder by name, with an error listing the known ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise EdgeInferError(
            f"unknown decoder '{name}': known decoders are {sorted(DECODERS)}"
        ) from None


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


@register_decoder("classification")
def decode_classification(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Top-k classes of output 0 (logits; probabilities if ``params['softmax']`` is False)."""
    scores = np.asarray(outputs[0]).reshape(-1)
    probs = softmax(scores) if params.get("softmax", True) else scores
    k = int(params.get("top_k", 5))
    top = np.argsort(-probs)[:k]
    return [
        {
            "class_id": int(i),
            "label": labels[i] if labels and i < len(labels) else str(int(i)),
            "score": float(probs[i]),
        }
        for i in top
    ]
