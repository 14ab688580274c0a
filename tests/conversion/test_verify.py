"""edgeinfer.conversion.verify: output comparison, (de)quantization, the onnxruntime reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer.conversion.common import ConvertResult, first_error_line
from edgeinfer.conversion.verify import (
    compare_outputs,
    dequantize,
    quantize_input,
    run_reference_onnx,
)
from edgeinfer.errors import EdgeInferError, ShapeError


def test_identical_outputs_agree_fully() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((16, 10)).astype(np.float32)
    report = compare_outputs([logits], [logits.copy()])
    assert report["samples"] == 16
    assert report["cosine"] == pytest.approx(1.0)
    assert report["max_abs_error"] == 0.0
    assert report["top1_agreement"] == 1.0


def test_figures_match_a_hand_computed_case() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    got = np.array([[1.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    report = compare_outputs([ref], [got])
    # Row 0: 45 degrees apart; row 1: parallel. Arg-max agrees on both (a tie picks index 0).
    assert report["cosine"] == pytest.approx(np.sqrt(0.5))
    assert report["cosine_mean"] == pytest.approx((np.sqrt(0.5) + 1.0) / 2)
    assert report["max_abs_error"] == pytest.approx(1.0)
    assert report["mean_abs_error"] == pytest.approx(0.5)
    assert report["top1_agreement"] == 1.0
    swapped = compare_outputs([ref], [ref[:, ::-1]])
    assert swapped["top1_agreement"] == 0.0
    assert swapped["cosine"] == pytest.approx(0.0)


def test_zero_rows_and_worst_output_are_reported() -> None:
    zeros = np.zeros((2, 3), dtype=np.float32)
    assert compare_outputs([zeros], [zeros])["cosine"] == 1.0
    assert compare_outputs([zeros], [zeros + 1])["cosine"] == 0.0
    good = np.ones((2, 4), dtype=np.float32)
    bad = -good
    report = compare_outputs([good, good], [good, bad])
    assert report["cosine"] == pytest.approx(-1.0)
    assert [p["cosine"] for p in report["per_output"]] == pytest.approx([1.0, -1.0])


def test_nhwc_feature_maps_are_aligned_with_nchw() -> None:
    rng = np.random.default_rng(1)
    nchw = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    report = compare_outputs([nchw], [nchw.transpose(0, 2, 3, 1)])
    assert report["cosine"] == pytest.approx(1.0)
    assert report["top1_agreement"] is None
    with pytest.raises(ShapeError, match="does not match"):
        compare_outputs([nchw], [nchw[:, :2]])
    with pytest.raises(EdgeInferError, match="same outputs"):
        compare_outputs([nchw], [nchw, nchw])


@pytest.mark.parametrize(
    ("dtype", "scale", "zp"), [(np.uint8, 0.05, 128), (np.int8, 0.02, -3), (np.uint8, 1 / 255, 0)]
)
def test_quantize_round_trip_within_half_a_step(dtype, scale, zp) -> None:
    info = np.iinfo(dtype)
    lo, hi = (info.min - zp) * scale, (info.max - zp) * scale
    x = np.linspace(lo, hi, 1001, dtype=np.float32)
    q = quantize_input(x, scale, zp, dtype)
    assert q.dtype == dtype
    assert np.abs(dequantize(q, scale, zp) - x).max() <= scale / 2 + 1e-6
    # Out-of-range values saturate instead of wrapping around.
    clipped = quantize_input(np.array([lo - 10, hi + 10], np.float32), scale, zp, dtype)
    assert clipped.tolist() == [info.min, info.max]


def test_unquantized_tensors_pass_through() -> None:
    x = np.array([0.25, -1.5], dtype=np.float32)
    assert np.array_equal(dequantize(x, 0.0, 0), x)
    assert quantize_input(x, 0.0, 0, np.float32).tolist() == x.tolist()


def test_reference_runs_batch_one_models_sample_by_sample(tiny_onnx: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    (y,) = run_reference_onnx(tiny_onnx, x)
    assert y.shape == (5, 2)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    expected = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_reference_runs_dynamic_models_in_one_batch(dynamic_onnx: Path) -> None:
    x = np.random.default_rng(3).standard_normal((3, 3, 6, 6)).astype(np.float32)
    (y,) = run_reference_onnx(dynamic_onnx, {"x": x})
    assert y.shape == (3, 2)


def test_reference_errors_are_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgeInferError, match="no such file"):
        run_reference_onnx(tmp_path / "missing.onnx", np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(EdgeInferError, match="no data for model inputs"):
        run_reference_onnx(tiny_onnx, {"y": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(EdgeInferError, match="non-empty"):
        run_reference_onnx(tiny_onnx, np.zeros((0, 3, 8, 8), np.float32))


def test_first_error_line_skips_locations_and_headers() -> None:
    ov_style = RuntimeError(
        "Check 'false' failed at src/frontends/x/report.cpp:151:\n"
        "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\n"
        "Summary:\n-- No conversion rule found for operations: com.example.Frob\n"
    )
    line = first_error_line(ov_style)
    assert line == "Model wasn't fully converted.; No conversion rule found for operations: " \
        "com.example.Frob"
    # onnx2tf prints its error, then calls sys.exit(1): the printed line is the message.
    log = "INFO: step\n\x1b[31mERROR:\x1b[0m The Frob OP is not supported\nTraceback (most"
    assert first_error_line(SystemExit(1), log) == "ERROR: The Frob OP is not supported"
    assert "\n" not in first_error_line(RuntimeError("a\n" * 500))


def test_convert_result_is_frozen(tmp_path: Path) -> None:
    result = ConvertResult(tmp_path / "m.xml", (tmp_path / "m.xml",), "openvino", "fp32", 0.1)
    with pytest.raises(AttributeError):
        result.seconds = 1.0  # type: ignore[misc]


def test_importing_convert_loads_no_converter() -> None:
    code = (
        "import sys, edgeinfer.conversion, edgeinfer.conversion.verify, "
        "edgeinfer.conversion.tflite, edgeinfer.conversion.openvino, "
        "edgeinfer.runtime.backends.openvino\n"
        "heavy = [m for m in ('tensorflow', 'onnx2tf', 'openvino', 'tf_keras', "
        "'ai_edge_litert') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
