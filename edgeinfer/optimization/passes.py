"""Graph optimization before quantization, keeping a portable ONNX.

Uses ONNX Runtime's offline optimizer at the *basic* level: constant folding, redundant-node
elimination and the semantics-preserving fusions (Conv+BatchNorm, Conv+Add/Mul, Relu+Clip,
Reshape). Basic-level output uses only standard ONNX ops, so any runtime can load it; the
extended level would emit ORT-only contrib ops (FusedConv) and is not used here. Conv+activation
fusion happens inside each runtime at load time (ORT, OpenVINO and LiteRT all do it), so keeping
activations as separate standard ops in the file costs nothing at run time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort

from edgeinfer.errors import EdgeInferError


def op_counts(model: onnx.ModelProto | str | Path) -> Counter[str]:
    """Histogram of op types in a model."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return Counter(n.op_type for n in model.graph.node)


def optimize_graph(src: str | Path, dst: str | Path) -> Path:
    """Fold BatchNorm into Conv, fold constants, drop redundant nodes; write a portable ONNX."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EdgeInferError(
            f"graph optimization of {src} failed ({str(exc).splitlines()[0][:160]}): "
            "check the model with `edgeinfer inspect`"
        ) from exc
    # ORT declares every domain it knows; keep only those the nodes use, for other tools.
    model = onnx.load(str(dst))
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save(model, str(dst))
    return Path(dst)
