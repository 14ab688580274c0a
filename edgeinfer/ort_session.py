"""One way to open an onnxruntime CPU session, shared by every layer that needs one.

Graph reading (shape measurement), optimization (evaluation, sensitivity), conversion checks
and the runtime backend all open sessions; they do it here so that options (quiet logs, no
spinning worker threads) and the one-line load error stay the same everywhere. onnxruntime is
a core dependency, so this module sits at the bottom of the import graph beside ``errors``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime as ort

from edgeinfer.errors import ModelLoadError

#: onnxruntime type strings -> numpy dtype names
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def numpy_dtype(ort_type: str) -> str:
    """The numpy dtype name of an onnxruntime type string (float32 when unknown)."""
    return ORT_DTYPES.get(ort_type, "float32")


def open_session(
    model: str | Path | bytes,
    *,
    threads: int = 0,
    allow_spinning: bool = False,
    optimize: bool = True,
) -> ort.InferenceSession:
    """A CPU InferenceSession; idle worker threads do not spin unless ``allow_spinning``.

    ``model`` is a path or serialized bytes; ``optimize=False`` runs the graph as written.
    """
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        name = "the model" if isinstance(model, bytes) else str(model)
        raise ModelLoadError(
            f"onnxruntime cannot load {name} ({str(exc).splitlines()[0][:160]}): "
            "check the file with `edgeinfer inspect`"
        ) from exc


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """A serialized copy of ``model`` that also returns the intermediate tensors ``names``."""
    probe = copy.deepcopy(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    return probe.SerializeToString()
