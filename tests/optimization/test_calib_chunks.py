"""Calibration in chunks: bounded memory, the same ranges as all at once."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx_builders import conv_model

from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.calibration import CalibrationReader


def _scales(path) -> dict[str, float]:
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.input[1]: float(inits[n.input[1]].ravel()[0])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }


def test_stride_fits_the_budget_and_divides_the_count(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 16, 16]), str(path))
    one = q.calibration_stride(path, 1, budget=1 << 40)
    assert one is None  # everything fits: ORT's own single pass
    per_sample = 3 * 16 * 16 * 4 + 2 * 4 * 16 * 16 * 4  # input, conv and relu outputs dominate
    stride = q.calibration_stride(path, 12, budget=5 * per_sample)
    assert stride is not None and 12 % stride == 0 and stride <= 5


def test_chunked_minmax_calibration_gives_the_same_model(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 16, 16]), str(path))
    x = np.random.default_rng(0).normal(size=(12, 3, 16, 16)).astype(np.float32)
    settings = q.QuantSettings(calib_method="minmax")
    reader = CalibrationReader(x, "x")
    whole = q.quantize_int8_static(path, tmp_path / "whole.onnx", reader, settings)
    monkeypatch.setattr(q, "CALIB_MEMORY_BYTES", 20_000)  # a few samples per chunk
    assert q.calibration_stride(path, 12) not in (None, 12)
    reader.rewind()
    chunked = q.quantize_int8_static(path, tmp_path / "chunked.onnx", reader, settings)
    assert _scales(whole) == _scales(chunked)
    reader.rewind()
    assert len(list(iter(reader.get_next, None))) == 12  # the full range is restored


def test_an_opset_12_model_quantizes_per_channel_into_a_loadable_model(tmp_path):
    import onnxruntime as ort

    path = tmp_path / "m12.onnx"
    onnx.save(conv_model([1, 3, 16, 16], opset=12), str(path))
    x = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32)
    out = q.quantize_int8_static(
        path, tmp_path / "q.onnx", CalibrationReader(x, "x"), q.QuantSettings(per_channel=True)
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # loads
    assert sess.run(None, {"x": x[:1]})[0].shape == (1, 2)
    dyn = q.quantize_int8_dynamic(path, tmp_path / "d.onnx")
    ort.InferenceSession(str(dyn), providers=["CPUExecutionProvider"])


def test_cosine_agreement_of_tiny_identical_maps_is_one():
    from edgeinfer.optimization.evaluate import compare

    tiny = np.random.default_rng(0).random((3, 1, 8, 8)) * 1e-8  # a detector's empty map
    assert compare(tiny, tiny.copy()).value == pytest.approx(1.0, abs=1e-12)  # was 0.93
    zeros = np.zeros((2, 1, 2, 2))
    assert compare(zeros, zeros).value == 1.0
    assert compare(np.ones((2, 1, 2, 2)), zeros).value == 0.0
