"""INT8 on real labelled data: a small CNN trained here on scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` is 1797 real, labelled 8x8 handwritten digits shipped inside
scikit-learn (no download). The test trains deterministically (seeds, deterministic algorithms,
one thread), splits stratified into disjoint train / calibration / test, and checks that
``optimize`` at INT8 keeps the accuracy on the test labels within 1 point, and that its report's
accuracy really is accuracy against those labels. Self-contained: nothing is cached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

# The data split, model and training are the benchmark's own (benchmarks/digits_int8.py), so
# what CI asserts is what the benchmark measures.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
digits = pytest.importorskip("digits_int8")

SIDE = 16


def _ort_accuracy(path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy computed directly with a plain onnxruntime session, independent of edgeinfer."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: s[None]})[0].argmax()) for s in x]
    return float((np.asarray(pred) == y).mean())


def test_int8_on_digits_keeps_accuracy_within_one_point(tmp_path):
    d = digits.load_digits_splits(SIDE)
    x_cal, x_te, y_te = d.x_calib, d.x_test, d.y_test
    assert len(x_cal) == 180 and len(x_te) == 540
    model = digits.train(d.x_train, d.y_train, (16, 32, 64), epochs=12)
    art = digits.make_artifact(model, SIDE, tmp_path, "digits")
    fp32_acc = _ort_accuracy(art.model_path, x_te, y_te)
    assert fp32_acc >= 0.95  # a real classifier on real labelled data

    samples = Samples(
        calib=x_cal, evaluation=x_te, labels=tuple(int(t) for t in y_te), origin="sklearn digits"
    )
    config = OptimizeConfig(precision="int8", max_drop=0.01, speed_check=False)  # accuracy
    out = optimize(art.path, tmp_path / "digits-int8", config, samples)
    rep = out.manifest.reports["optimize"]
    assert rep["samples"]["labels"] is True
    assert rep["samples"]["calibration"] == 180 and rep["samples"]["evaluation"] == 540
    # the report's accuracies are accuracies against the test labels, not agreement with FP32
    assert rep["fp32"]["accuracy"] == pytest.approx(fp32_acc, abs=1e-9)
    int8_acc = rep["result"]["agreement"]["accuracy"]
    assert rep["result"]["drop"] == pytest.approx(fp32_acc - int8_acc, abs=1e-9)
    # the INT8 model itself (shipped, or kept beside FP32 as *.rejected.onnx if it was slower)
    rejected = sorted(out.path.glob("*.rejected.onnx"))
    int8_file = rejected[0] if rejected else out.model_path
    assert int8_acc == pytest.approx(_ort_accuracy(int8_file, x_te, y_te), abs=1e-9)
    assert fp32_acc - int8_acc <= 0.01
    # whether INT8 ships can depend on the latency check (a ~20 us model): only accuracy is
    # asserted; a rejection must be for speed, never for accuracy
    assert not any("accuracy drop" in p for p in rep["problems"])
