"""The shared onnxruntime session helper: options, intermediate outputs, one-line load errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_builders import conv_model

from edgeinfer.errors import ModelLoadError, ShapeError
from edgeinfer.loading import load
from edgeinfer.ort_session import numpy_dtype, open_session, with_outputs
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.engine import Engine


def test_with_outputs_exposes_intermediate_tensors():
    model = conv_model([1, 3, 8, 8])
    sess = open_session(with_outputs(model, ["c", "r"]), optimize=False)
    c, r = sess.run(["c", "r"], {"x": np.ones((1, 3, 8, 8), np.float32)})
    assert c.shape == (1, 4, 8, 8)
    np.testing.assert_array_equal(r, np.maximum(c, 0))
    assert [o.name for o in model.graph.output] == ["y"]  # the original is untouched


def test_spinning_stops_between_runs_by_default_and_threads_are_set(tiny_onnx):
    sess = open_session(tiny_onnx, threads=1)
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
    spinning = open_session(tiny_onnx, spinning="always").get_session_options()
    with pytest.raises(RuntimeError):  # ORT's default: no such entry, workers keep spinning
        spinning.get_session_config_entry("session.force_spinning_stop")
    never = open_session(tiny_onnx, spinning="never").get_session_options()
    assert never.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError):
        never.get_session_config_entry("session.force_spinning_stop")
    with pytest.raises(ValueError, match="run, always or never"):
        open_session(tiny_onnx, spinning="sometimes")


def test_load_failure_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not really a model")
    with pytest.raises(ModelLoadError) as err:
        open_session(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_numpy_dtype():
    assert numpy_dtype("tensor(uint8)") == "uint8"
    assert numpy_dtype("tensor(something-new)") == "float32"


def test_bare_dynamic_model_refuses_images_instead_of_resizing_to_1x1(dynamic_onnx):
    artifact = load(dynamic_onnx)
    assert artifact.manifest.inputs[0].shape == (-1, 3, -1, -1)
    artifact = artifact.__class__(artifact.path, artifact.manifest.model_copy(
        update={"decoder": "classification"}))
    with pytest.raises(ShapeError, match="dynamic size"):
        Predictor(Engine(artifact)).predict(np.zeros((20, 20, 3), np.uint8))
