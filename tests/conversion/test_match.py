"""Converted outputs matched to the source's by name or a verified permutation, never by
position: a unit test of the matcher, then an 8-output detector built in code through TFLite
(LiteRT 2.x returns its outputs in another order) and OpenVINO, FP32 and full integer."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_builders import multi_output_detector

from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.conversion import ConvertConfig, convert
from edgeinfer.conversion.convert import COSINE_WARN, low_cosine_warnings
from edgeinfer.conversion.match import match_outputs
from edgeinfer.errors import ShapeError
from edgeinfer.runtime.backends import is_installed
from edgeinfer.runtime.engine import Engine


def test_matcher_recovers_a_permutation_by_shape_and_values() -> None:
    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(4, 10, 4)), rng.normal(size=(4, 10, 4)), rng.normal(size=(4, 3))]
    perm = [2, 0, 1]  # candidate j holds reference perm[j]
    cand = [ref[p] + rng.normal(scale=1e-3, size=ref[p].shape) for p in perm]
    match = match_outputs(ref, ["a", "b", "c"], cand, ["Identity", "Identity_1", "Identity_2"])
    assert match.by == "shape and values"
    assert match.order == (1, 2, 0)  # a is candidate 1, b is 2, c is 0: values told a from b
    assert match.names(["Identity", "Identity_1", "Identity_2"]) == (
        "Identity_1", "Identity_2", "Identity")
    by_name = match_outputs(ref, ["a", "b", "c"], cand, ["c", "a", "b"])
    assert (by_name.by, by_name.order) == ("name", (1, 2, 0))
    nhwc = [np.moveaxis(rng.normal(size=(2, 3, 5, 5)), 1, -1)]
    assert match_outputs([np.moveaxis(nhwc[0], -1, 1)], ["m"], nhwc, ["t"]).order == (0,)
    with pytest.raises(ShapeError, match="matches no output of the converted model"):
        match_outputs([ref[2]], ["c"], [ref[0]], ["x"])
    with pytest.raises(ShapeError, match="has 2 outputs, the source 3"):
        match_outputs(ref, ["a", "b", "c"], cand[:2], ["x", "y"])


def test_low_cosine_is_flagged_by_the_stated_threshold() -> None:
    outs = [{"source": "boxes", "cosine": 0.9999}, {"source": "scores", "cosine": 0.937}]
    (warning,) = low_cosine_warnings(outs)
    assert "'scores'" in warning and "0.9370" in warning and str(COSINE_WARN) in warning


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    tmp = tmp_path_factory.mktemp("det8")
    model = multi_output_detector()
    onnx.save(model, str(tmp / "det8.onnx"))
    return Artifact.create(
        tmp / "art", tmp / "det8.onnx", name="det8", task="detection",
        inputs=(InputSpec(name="x", shape=(1, 3, 16, 16)),),
        outputs=tuple(o.name for o in model.graph.output), preprocess=Preprocess(scale=1 / 255),
        source=SourceInfo(name="tests"),
    )


def _pixels(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 16, 16)) / 255).astype(np.float32)


def _check_engine_matches_onnx(artifact: Artifact, source: Artifact, atol: float,
                               backend: str | None = None, share: float = 1.0) -> None:
    """Every output through the Engine, in the manifest's order, against ORT's by position:
    at least ``share`` of the values within ``atol`` (outputs in the wrong order differ in
    shape or almost everywhere)."""
    x = _pixels(1, 9)
    want = ort.InferenceSession(str(source.model_path)).run(None, {"x": x})
    nhwc = artifact.manifest.model.format == "tflite"
    with Engine(artifact, backend) as engine:
        got = engine.run({engine.inputs[0].name: x.transpose(0, 2, 3, 1) if nhwc else x})
    assert len(got) == len(want) == 8
    for w, g in zip(want, got, strict=True):
        assert g.dtype == np.float32
        close = np.abs(np.asarray(g).reshape(w.shape) - w) <= atol
        assert close.mean() >= share, (close.mean(), share)


@pytest.mark.slow
@pytest.mark.skipif(not is_installed("litert"), reason="needs ai-edge-litert")
def test_eight_outputs_through_tflite_keep_their_meaning(detector, tmp_path) -> None:
    pytest.importorskip("onnx2tf")
    out = convert(detector.path, tmp_path / "tfl", ConvertConfig(to="tflite"))
    report = out.manifest.reports["convert"]
    assert report["outputs_matched_by"] == "shape and values"
    assert [o["source"] for o in report["outputs"]] == list(detector.manifest.outputs)
    assert report["cosine"] > 0.9999 and report["warnings"] == []
    assert len(out.manifest.outputs) == 8  # the TFLite names, in the source's order
    _check_engine_matches_onnx(out, detector, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (is_installed("litert") and is_installed("openvino")),
                    reason="needs ai-edge-litert and openvino")
def test_full_integer_tflite_runs_the_same_on_litert_and_openvino(detector, tmp_path) -> None:
    pytest.importorskip("onnx2tf")
    calib = tmp_path / "calib.npy"
    np.save(calib, _pixels(32, 1))
    out = convert(detector.path, tmp_path / "int8", ConvertConfig(to="tflite", int8=True),
                  calib=calib)
    report = out.manifest.reports["convert"]
    # the rule, not the outcome: every output under the threshold is flagged, no other
    flagged = {o["source"] for o in report["outputs"] if o["cosine"] < COSINE_WARN}
    assert {w.split("'")[1] for w in report["warnings"]} == flagged
    x = _pixels(1, 5).transpose(0, 2, 3, 1)
    with Engine(out, "litert") as lite, Engine(out, "openvino") as ov:
        assert ov.inputs[0].dtype == "uint8"  # the file's interface is integer...
        a = lite.run({lite.inputs[0].name: x})
        b = ov.run({ov.inputs[0].name: x})  # ...and both take float and give float
    from edgeinfer.model.tflite_graph import io_quantization

    steps = {name: scale for name, _, scale, _ in io_quantization(out.model_path)[1]}
    for ya, yb, name in zip(a, b, out.manifest.outputs, strict=True):
        assert ya.dtype == yb.dtype == np.float32
        # one scale for both, to within each runtime's own INT8 arithmetic: a missing or wrong
        # dequantization is off by the whole range of the output (raw uint8 against floats).
        # Relative to the range, so it holds on any x86 CPU: without VNNI OpenVINO multiplies
        # u8 x s8 with AVX2's saturating pairwise adds, which moves values by up to ~14 steps
        # (mean 1.5-4.2 of 256 on an AVX2-only EPYC; max 3, mean 0.5 with VNNI)
        span = max(float(ya.max() - ya.min()), steps[name])
        diff = np.abs(ya - yb) / span
        assert diff.mean() <= 0.05 and diff.max() <= 0.25, (name, diff.max(), diff.mean())
    # INT8 against the FP32 source: a few values move further without VNNI (see above)
    _check_engine_matches_onnx(out, detector, atol=0.2, backend="openvino", share=0.98)


@pytest.mark.skipif(not is_installed("openvino"), reason="needs openvino")
def test_eight_outputs_through_openvino_match_by_name(detector, tmp_path) -> None:
    out = convert(detector.path, tmp_path / "ov", ConvertConfig(to="openvino"))
    assert out.manifest.reports["convert"]["outputs_matched_by"] == "name"
    assert out.manifest.outputs == detector.manifest.outputs
    _check_engine_matches_onnx(out, detector, atol=1e-4)
