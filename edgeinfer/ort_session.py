"""One way to open an onnxruntime CPU session, shared by every layer that needs one.

Graph reading (shape measurement), optimization (evaluation, sensitivity), conversion checks
and the runtime backend all open sessions; they do it here so that options (quiet logs, worker
threads that stop spinning when a run ends) and the one-line load error stay the same everywhere.

Spinning, measured on EfficientNet-Lite0 with 2 threads (docs/benchmarks/): ORT's default
(workers spin after every run) costs a few percent of a core while idle; turning spinning off
(``session.intra_op.allow_spinning=0``) makes each run about 35% slower, because workers then
sleep between the ~60 small ops of one run. ``session.force_spinning_stop=1`` keeps spinning
inside a run and parks the workers when it ends: default latency, no idle cost. onnxruntime is
a core dependency, so this module sits at the bottom of the import graph beside ``errors``.
"""

from __future__ import annotations

import copy
import re
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
    spinning: str = "run",
    optimize: bool = True,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> ort.InferenceSession:
    """An InferenceSession whose worker threads spin inside a run and stop when it ends
    (``spinning="run"``); ``"always"`` is ORT's default (they keep spinning after each run,
    burning idle CPU), ``"never"`` makes them sleep between ops (for cores shared with others).

    ``model`` is a path or serialized bytes; ``optimize=False`` runs the graph as written.
    """
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if spinning == "run":
        so.add_session_config_entry("session.force_spinning_stop", "1")
    elif spinning == "never":
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    elif spinning != "always":
        raise ValueError(f"spinning must be run, always or never, not {spinning!r}")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, so, providers=list(providers))
    except Exception as exc:
        name = "the model" if isinstance(model, bytes) else str(model)
        op = unsupported_op(str(exc))
        if op:
            raise ModelLoadError(
                f"onnxruntime cannot run {name}: it has no kernel for op {op}; replace the op, "
                "or run the model in another backend (--backend openvino)"
            ) from exc
        raise ModelLoadError(
            f"onnxruntime cannot load {name} ({str(exc).splitlines()[0][:160]}): "
            "check the file with `edgeinfer inspect`"
        ) from exc


#: how onnxruntime names an op it cannot run, in its load errors
_OP_PATTERNS = (
    re.compile(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'"),
    re.compile(r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"[Nn]o (?:[Oo]p|schema) registered for (\w+) with domain_version of (\d+)"),
)


def unsupported_op(message: str) -> str | None:
    """``'Foo'`` (with node name or opset where known) if ``message`` is ORT's missing-op error."""
    for pattern in _OP_PATTERNS:
        m = pattern.search(message)
        if m:
            op = f"'{m.group(1)}'"
            if len(m.groups()) == 3:
                op += f" (opset {m.group(2)}, node '{m.group(3)}')"
            elif len(m.groups()) == 2:
                op += f" (opset {m.group(2)})"
            return op
    return None


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """A serialized copy of ``model`` that also returns the intermediate tensors ``names``."""
    probe = copy.deepcopy(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    return probe.SerializeToString()
