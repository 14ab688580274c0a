"""Shared fixtures: tiny ONNX models built in code with onnx.helper (no files, no network)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx_builders import IR_VERSION, conv_model  # noqa: F401 (re-exported)


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    """A valid static conv model (input x: 1x3x8x8, output y: 1x2), opset 17."""
    model = conv_model([1, 3, 8, 8])
    onnx.checker.check_model(model)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def dynamic_onnx(tmp_path: Path) -> Path:
    """The same conv model with input dims ['N', 3, 'H', 'W']."""
    model = conv_model(["N", 3, "H", "W"])
    onnx.checker.check_model(model)
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_conv_model():
    """The builder behind ``tiny_onnx``: ``make_conv_model(input_dims, opset=17)``."""
    return conv_model
