"""Backends, one module each, imported only when used (``edgeinfer.runtime.backends.<name>``).

A backend module defines ``create(path, options) -> Backend``. Backends never import each other.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeinfer.errors import EdgeInferError


@dataclass(frozen=True)
class TensorSpec:
    """A backend input or output: name, shape (None for dynamic dims) and dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class BackendOptions:
    """Options common to backends."""

    threads: int = 0  # 0: the backend's default
    allow_spinning: bool = False


class Backend(Protocol):
    """What the Engine needs from a runtime: specs and a run call."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference and return the outputs in ``outputs`` order."""
        ...


#: backend name -> (module, extra that installs it)
KNOWN_BACKENDS: dict[str, tuple[str, str]] = {
    "ort": ("edgeinfer.runtime.backends.ort", "core"),
    "litert": ("edgeinfer.runtime.backends.litert", "litert"),
    "openvino": ("edgeinfer.runtime.backends.openvino", "openvino"),
}

#: model file format -> the backend used when none is named
DEFAULT_BACKEND = {"onnx": "ort", "tflite": "litert", "openvino": "openvino"}


def create_backend(name: str, path: str | Path, options: BackendOptions | None = None) -> Backend:
    """Load ``path`` in the backend called ``name``."""
    try:
        module_name, _extra = KNOWN_BACKENDS[name]
    except KeyError:
        raise EdgeInferError(
            f"unknown backend '{name}': choose one of {sorted(KNOWN_BACKENDS)}"
        ) from None
    module = importlib.import_module(module_name)
    return module.create(Path(path), options or BackendOptions())
