"""Roll out the aggregated model: ONNX export, INT8 re-optimization, a new artifact version.

Versions live side by side under one root (``v1/``, ``v2/``, ...; the FP32 export of each in
``vN-fp32/``) so that a node can keep serving the old one while the new one is checked. The
manifest's ``reports.federated`` records the version, the round it came from, the strategy and
the global accuracy, so a deployed model can always be traced back to its federated run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.collab.fl.data import CLASSES, IMAGE_SHAPE
from edgeinfer.collab.fl.model import make_model, set_arrays

__all__ = ["export_version", "next_version", "onnx_accuracy"]


def next_version(root: str | Path) -> int:
    """One more than the highest ``vN`` directory under ``root`` (1 when there is none)."""
    root = Path(root)
    found = [int(m.group(1)) for p in root.glob("v*") if (m := re.fullmatch(r"v(\d+)", p.name))]
    return max(found, default=0) + 1


def onnx_accuracy(model_path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX classifier on ``(x, y)`` with onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: x[i:i + 1]})[0].argmax()) for i in range(len(x))]
    return float((np.asarray(pred) == y).mean())


def export_version(
    arrays: dict[str, np.ndarray],
    root: str | Path,
    meta: dict[str, Any],
    calib: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
) -> Artifact:
    """Write the aggregated ``arrays`` as the next INT8 artifact version under ``root``.

    ``calib`` (server-side synthetic images, never site data) calibrates the INT8 model;
    ``test`` measures FP32 and INT8 accuracy, recorded with ``meta`` in ``reports.federated``.
    The optimizer may keep FP32 (it refuses an INT8 model that is slower or less accurate):
    ``precision`` and ``optimize_problems`` say what was shipped and why.
    """
    import torch

    from edgeinfer.model.export import export
    from edgeinfer.optimization.optimizer import OptimizeConfig
    from edgeinfer.optimization.optimizer import optimize_with_calibration as optimize

    root = Path(root)
    version = next_version(root)
    fp32_dir = root / f"v{version}-fp32"
    fp32_dir.mkdir(parents=True, exist_ok=True)
    model = make_model()
    set_arrays(model, arrays)
    onnx_path = export(model, torch.zeros(1, *IMAGE_SHAPE), fp32_dir / "fl-classifier.onnx")
    spec = InputSpec(name="input", shape=(1, *IMAGE_SHAPE))
    Artifact.create(fp32_dir, onnx_path, labels=list(CLASSES), name="fl-classifier",
                    task="classification", inputs=(spec,), outputs=("output",),
                    decoder="classification",
                    source=SourceInfo(name="fl-classifier", origin="federated (Flower)"))
    calib_path = fp32_dir / "calib.npy"
    np.save(calib_path, calib.astype(np.float32))
    # the full calibration even where INT8 will not pay: the report scores the INT8 model
    config = OptimizeConfig(speed_check=False)
    art = optimize(fp32_dir, root / f"v{version}", config, calib=calib_path,
                   calib_limit=len(calib))
    opt = art.manifest.reports.get("optimize", {})
    int8 = next(iter(art.path.glob("*.int8*.onnx")), None)  # shipped or rejected candidate
    report = {
        **meta,
        "version": version,
        "fp32_artifact": fp32_dir.name,
        "precision": art.manifest.model.precision,
        "optimize_problems": opt.get("problems", []),
        "accuracy_fp32": onnx_accuracy(onnx_path, *test),
        "accuracy_int8": onnx_accuracy(int8, *test) if int8 else None,
        "accuracy_shipped": onnx_accuracy(art.model_path, *test),
    }
    return art.with_report("federated", report)
