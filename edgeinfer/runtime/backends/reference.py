"""The reference backend: ONNX's own pure-Python/numpy evaluator (``onnx.reference``).

Slow, but it needs nothing beyond ``onnx`` and computes every op as the specification says,
so tests of everything above the backends (Engine, bench, pipelines) can run on it, and its
outputs are an independent check on the production runtimes for small models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from edgeinfer.errors import ModelLoadError
from edgeinfer.model.formats import load_onnx
from edgeinfer.model.onnx_graph import graph_input_names, value_dims
from edgeinfer.runtime.backends import BackendOptions, TensorSpec


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    elem = vi.type.tensor_type.elem_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name if elem else "float32"
    return TensorSpec(vi.name, tuple(d if isinstance(d, int) else None for d in value_dims(vi)),
                      dtype)


class ReferenceBackend:
    """``onnx.reference.ReferenceEvaluator`` behind the backend interface (CPU, one thread)."""

    name = "reference"
    device = "cpu"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        model = load_onnx(path)
        try:
            self._eval = ReferenceEvaluator(model)
        except Exception as exc:
            raise ModelLoadError(
                f"the reference evaluator cannot load {path} ({str(exc).splitlines()[0][:160]}):"
                " use --backend ort"
            ) from exc
        by_name = {vi.name: vi for vi in model.graph.input}
        self.inputs = tuple(_spec(by_name[n]) for n in graph_input_names(model))
        self.outputs = tuple(_spec(vi) for vi in model.graph.output)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference."""
        outs = self._eval.run(None, {s.name: feeds[s.name] for s in self.inputs})
        return [np.asarray(o) for o in outs]

    def close(self) -> None:
        """Nothing to release beyond the evaluator."""
        self._eval = None


def create(path: Path, options: BackendOptions) -> ReferenceBackend:
    """Backend factory used by the registry."""
    return ReferenceBackend(path, options)
