"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeinfer.ort_session import numpy_dtype, open_session
from edgeinfer.runtime.backends import BackendOptions, TensorSpec


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, numpy_dtype(arg.type))


class OrtBackend:
    """An onnxruntime InferenceSession; thread-safe for concurrent ``run`` calls (ORT's own)."""

    name = "ort"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        self.session = open_session(
            path, threads=options.threads, allow_spinning=options.allow_spinning
        )
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference."""
        return self.session.run(self._output_names, feeds)


def create(path: Path, options: BackendOptions) -> OrtBackend:
    """Backend factory used by the registry."""
    return OrtBackend(path, options)
