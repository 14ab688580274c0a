"""Precision cascade: when the accurate model runs, and what gets counted."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.adapt import (
    CascadeConfig,
    PrecisionCascade,
    classification_uncertain,
    detection_uncertain,
)


@pytest.mark.parametrize(("probs", "unsure"), [([0.7, 0.2, 0.1], False), ([0.5, 0.35, 0.15], True),
                                               ([[0.45, 0.05, 0.5]], True), ([0.61, 0.39], False),
                                               ([0.59, 0.41], True)])
def test_classification_margin(probs, unsure) -> None:
    assert classification_uncertain(np.array(probs), 0.2) is unsure


@pytest.mark.parametrize(("scores", "unsure"), [([0.9, 0.7], False), ([0.9, 0.3], True),
                                                ([0.29, 0.6], False), ([], False),
                                                ([0.59], True)])
def test_detection_band(scores, unsure) -> None:
    assert detection_uncertain(np.array(scores), (0.3, 0.6)) is unsure


def test_accurate_model_runs_only_on_unsure_inputs() -> None:
    calls: list[str] = []

    def fast(x: float) -> np.ndarray:
        calls.append("fast")
        return np.array([x, 1 - x])

    def accurate(x: float) -> np.ndarray:
        calls.append("accurate")
        return np.array([round(x), 1 - round(x)], float)

    cascade = PrecisionCascade(fast, accurate, lambda p: classification_uncertain(p, 0.2))
    out = [cascade(x) for x in (0.95, 0.55, 0.1, 0.45)]
    assert calls == ["fast", "fast", "accurate", "fast", "fast", "accurate"]
    assert cascade.runs == 4 and cascade.fallbacks == 2 and cascade.fallback_rate == 0.5
    np.testing.assert_array_equal(out[1], [1.0, 0.0])  # the accurate model's answer
    np.testing.assert_allclose(out[0], [0.95, 0.05])  # the fast one's, kept


def test_fallback_rate_starts_at_zero() -> None:
    assert PrecisionCascade(abs, abs, lambda r: True).fallback_rate == 0.0


@pytest.mark.parametrize("kwargs", [{"margin": 1.5}, {"band": (0.6, 0.3)}, {"band": (0.2, 1.2)}])
def test_bad_config_is_refused(kwargs) -> None:
    with pytest.raises(EdgeInferError):
        CascadeConfig(**kwargs)
