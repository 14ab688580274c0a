"""LiteRT (TFLite) backend through ``ai_edge_litert``'s Interpreter with XNNPACK."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import ModelLoadError
from edgeinfer.quantized_io import dequantize, quantize_input
from edgeinfer.runtime.backends import BackendOptions, TensorSpec


class LiteRTBackend:
    """A LiteRT interpreter. Calls are serialised by a lock: an interpreter is not re-entrant."""

    name = "litert"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        interp_mod = require("ai_edge_litert.interpreter", "litert", "running .tflite models")
        try:
            self._interp = interp_mod.Interpreter(
                model_path=str(path), num_threads=options.threads or None
            )
            self._interp.allocate_tensors()
        except Exception as exc:
            raise ModelLoadError(
                f"LiteRT cannot load {path} ({str(exc).splitlines()[0][:160]}): "
                "check the file with `edgeinfer inspect`"
            ) from exc
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = tuple(
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._in
        )
        self.outputs = tuple(
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._out
        )
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference; outputs are copies (the interpreter reuses its buffers).

        Integer (full-integer) inputs take float feeds, quantized with the tensor's scale and
        zero point; integer outputs come back dequantized to float32.
        """
        with self._lock:
            for d in self._in:
                x = feeds[d["name"]]
                dtype = np.dtype(d["dtype"])
                if dtype.kind in "iu" and np.asarray(x).dtype.kind == "f":
                    x = quantize_input(x, *d["quantization"], dtype)
                self._interp.set_tensor(d["index"], x)
            self._interp.invoke()
            outs = []
            for d in self._out:
                y = self._interp.get_tensor(d["index"])
                if np.dtype(d["dtype"]).kind in "iu" and d["quantization"][0]:
                    y = dequantize(y, *d["quantization"])  # a new array, not the interpreter's
                outs.append(np.array(y, copy=True))
            return outs


def create(path: Path, options: BackendOptions) -> LiteRTBackend:
    """Backend factory used by the registry."""
    return LiteRTBackend(path, options)
