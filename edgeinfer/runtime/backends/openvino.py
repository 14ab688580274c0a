"""OpenVINO backend: an IR (``.xml`` + ``.bin``) or ONNX file compiled for the CPU plugin."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import ModelLoadError
from edgeinfer.runtime.backends import BackendOptions, TensorSpec


def _spec(port: Any) -> TensorSpec:
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic:
        shape: tuple[int | None, ...] = ()
    else:
        shape = tuple(d.get_length() if d.is_static else None for d in pshape)
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except Exception:  # an element type numpy has no name for
        dtype = str(port.get_element_type())
    return TensorSpec(port.get_any_name(), shape, dtype)


class OpenVINOBackend:
    """A model compiled by OpenVINO for the CPU, with a latency hint and FP32 inference.

    One infer request, serialised by a lock: a request is not re-entrant. Inference precision
    is pinned to FP32 so results do not depend on whether the CPU has bf16 units (the plugin's
    default would switch to bf16 there); an FP16 IR stores FP16 weights, computed in FP32.
    """

    name = "openvino"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        ov = require("openvino", "openvino", "running OpenVINO IR models")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        try:
            self._compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:
            raise ModelLoadError(
                f"OpenVINO cannot load {path} ({str(exc).strip().splitlines()[0][:160]}): "
                "check the file (an IR needs its .bin beside the .xml)"
            ) from exc
        self.inputs = tuple(_spec(p) for p in self._compiled.inputs)
        self.outputs = tuple(_spec(p) for p in self._compiled.outputs)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference; outputs are copies (the request reuses its buffers)."""
        with self._lock:
            self._request.infer({i: feeds[s.name] for i, s in enumerate(self.inputs)})
            return [
                self._request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))
            ]


def create(path: Path, options: BackendOptions) -> OpenVINOBackend:
    """Backend factory used by the registry."""
    return OpenVINOBackend(path, options)
