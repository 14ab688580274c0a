"""Backends declare what they can do; orchestrators read the flags, never backend names."""

from __future__ import annotations

import dataclasses

import pytest

from edgeinfer.artifact import RuntimeConfig
from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.backends import (
    KNOWN_BACKENDS,
    BackendOptions,
    capabilities,
    check_options,
    is_installed,
)


def test_every_declared_option_is_a_backend_option() -> None:
    fields = {f.name for f in dataclasses.fields(BackendOptions)}
    for name, info in KNOWN_BACKENDS.items():
        assert set(info.capabilities.options) <= fields, name
        if info.capabilities.spinning:
            assert "spinning" in info.capabilities.options, name


def test_the_manifest_runtime_section_names_backend_options_with_their_defaults() -> None:
    """RuntimeConfig repeats the option fields (the manifest sits below the runtime): they
    must keep BackendOptions' names and defaults."""
    defaults = BackendOptions()
    for name, field in RuntimeConfig.model_fields.items():
        if name in ("backend", "chosen_by"):
            continue
        assert field.default == getattr(defaults, name), name


def test_an_option_the_backend_does_not_read_is_refused_in_one_line() -> None:
    check_options("openvino", BackendOptions(threads=2, hint="throughput"))
    with pytest.raises(EdgeInferError, match="backend 'ort' does not use hint") as exc:
        check_options("ort", BackendOptions(hint="throughput"))
    assert "\n" not in str(exc.value)
    with pytest.raises(EdgeInferError, match="unknown backend 'tpu'"):
        capabilities("tpu")


@pytest.mark.parametrize("name", [n for n in KNOWN_BACKENDS if is_installed(n)])
def test_the_engine_reports_the_declared_capabilities(name: str, tmp_path) -> None:
    from edgeinfer.loading import load
    from edgeinfer.runtime.engine import Engine
    from tests.onnx_builders import conv_model

    info = KNOWN_BACKENDS[name]
    if "onnx" not in info.formats:
        pytest.skip(f"{name} does not read ONNX")
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(conv_model([1, 3, 8, 8]), str(path))
    with Engine(load(path), name) as engine:
        assert engine.capabilities == info.capabilities
        assert engine.cancellable == info.capabilities.cancel
