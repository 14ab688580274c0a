"""What a model costs before anyone optimizes it: the ``inspect`` report.

Combines a :class:`GraphInfo` (from an ONNX or TFLite file, or an artifact) with the arena
planner into one JSON-ready report: inputs/outputs, op histogram, parameters by dtype, MACs per
op and in total (with the op types not counted), activation memory (naive, lower bound, each
planner's arena, the best), and whether weights + arena fit a memory budget.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeinfer.errors import EdgeInferError, ModelLoadError
from edgeinfer.model.formats import detect_format
from edgeinfer.model.graph import GraphInfo
from edgeinfer.model.memory import memory_report
from edgeinfer.model.shapes import is_fixed

Shape = tuple[int, ...]

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "GIB": 1024**3,
}


def parse_bytes(text: str) -> int:
    """Parse a memory size such as ``512KB``, ``1.5 MB`` or ``2GiB`` (binary units) into bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise EdgeInferError(f"bad memory size '{text}': write it like 512KB, 64MB or 1GB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def read_graph(path: str | Path, input_shapes: Mapping[str, Shape] | None = None) -> GraphInfo:
    """Read an ONNX or TFLite model file, or an artifact directory, into a GraphInfo."""
    path = Path(path)
    if path.is_dir():
        from edgeinfer.artifact import load_artifact

        artifact = load_artifact(path)
        shapes = {i.name: i.shape for i in artifact.manifest.inputs
                  if all(is_fixed(d) for d in i.shape)}
        shapes.update(input_shapes or {})
        onnx_model = artifact.manifest.model.format == "onnx"
        return read_graph(artifact.model_path, shapes if onnx_model or input_shapes else None)
    fmt = detect_format(path)
    if fmt == "onnx":
        from edgeinfer.model.onnx_graph import read_onnx_graph

        return read_onnx_graph(path, input_shapes)
    if fmt == "tflite":
        from edgeinfer.model.tflite_graph import read_tflite_graph

        return read_tflite_graph(path, input_shapes)
    if fmt == "torch":
        raise ModelLoadError(
            f"{path} is a PyTorch checkpoint, not a model graph: export it first "
            "with edgeinfer.export(module, example_input, 'model.onnx')"
        )
    raise ModelLoadError(f"{path} is a {fmt} model: inspect reads ONNX and TFLite files")


def inspect_graph(
    graph: GraphInfo, budget: int | None = None, alignment: int = 64
) -> dict[str, Any]:
    """The inspect report of a graph, as plain JSON-ready data."""
    weights = graph.weights()
    by_dtype: dict[str, dict[str, int]] = {}
    for w in weights:
        entry = by_dtype.setdefault(w.dtype, {"count": 0, "bytes": 0})
        entry["count"] += w.numel
        entry["bytes"] += w.nbytes
    weight_bytes = sum(w.nbytes for w in weights)
    counted = [op for op in graph.ops if op.macs is not None]
    not_counted = Counter(op.op_type for op in graph.ops if op.macs is None)
    mem = memory_report(graph, alignment=alignment)
    report: dict[str, Any] = {
        "format": graph.format,
        "opset": graph.opset,
        "meta": graph.meta,
        "inputs": [_tensor(graph, n) for n in graph.inputs],
        "outputs": [_tensor(graph, n) for n in graph.outputs],
        "ops": {
            "count": len(graph.ops),
            "histogram": dict(Counter(o.op_type for o in graph.ops).most_common()),
        },
        "params": {
            "count": sum(w.numel for w in weights),
            "bytes": weight_bytes,
            "by_dtype": by_dtype,
        },
        "macs": {
            "total": sum(op.macs for op in counted),  # type: ignore[misc]
            "counted_op_types": sorted({op.op_type for op in counted}),
            "not_counted": dict(not_counted.most_common()),
            "per_op": [
                {
                    "name": op.name,
                    "op_type": op.op_type,
                    "macs": op.macs,
                    "output_shape": list(graph.tensors[op.outputs[0]].shape) if op.outputs else [],
                }
                for op in graph.ops
            ],
        },
        "memory": {
            "alignment": mem.alignment,
            "arena_tensors": mem.num_tensors,
            "naive_bytes": mem.naive_bytes,
            "lower_bound_bytes": mem.lower_bound_bytes,
            "peak_step": mem.peak_step,
            "peak_op": graph.ops[mem.peak_step].name if graph.ops else None,
            "plans": {p.strategy: p.arena_bytes for p in mem.plans},
            "best": {"strategy": mem.best.strategy, "arena_bytes": mem.best.arena_bytes},
            "saving_vs_naive": (1 - mem.best.arena_bytes / mem.naive_bytes)
            if mem.naive_bytes
            else 0.0,
            "best_over_lower_bound": (mem.best.arena_bytes / mem.lower_bound_bytes)
            if mem.lower_bound_bytes
            else 1.0,
        },
    }
    if budget is not None:
        need = weight_bytes + mem.best.arena_bytes
        report["budget"] = {
            "budget_bytes": budget,
            "needed_bytes": need,
            "fits": need <= budget,
            "margin_bytes": budget - need,
        }
    return report


def _tensor(graph: GraphInfo, name: str) -> dict[str, Any]:
    t = graph.tensors[name]
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes}


def inspect_model(
    path: str | Path,
    input_shapes: Mapping[str, Shape] | None = None,
    budget: int | str | None = None,
) -> dict[str, Any]:
    """Read a model or artifact and return its inspect report (see :func:`inspect_graph`);
    ``budget`` in bytes or as text like ``64MB``."""
    if isinstance(budget, str):
        budget = parse_bytes(budget)
    return inspect_graph(read_graph(path, input_shapes), budget=budget)
