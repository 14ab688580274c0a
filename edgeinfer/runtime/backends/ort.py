"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeinfer.errors import ModelLoadError
from edgeinfer.runtime.backends import BackendOptions, TensorSpec

_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _TYPES.get(arg.type, "float32"))


class OrtBackend:
    """An onnxruntime InferenceSession; thread-safe for concurrent ``run`` calls (ORT's own)."""

    name = "ort"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if options.allow_spinning else "0"
        )
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(
                f"onnxruntime cannot load {path} ({str(exc).splitlines()[0][:160]}): "
                "check the file with `edgeinfer inspect`"
            ) from exc
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference."""
        return self.session.run(self._output_names, feeds)


def create(path: Path, options: BackendOptions) -> OrtBackend:
    """Backend factory used by the registry."""
    return OrtBackend(path, options)
