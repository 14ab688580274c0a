"""ONNX -> OpenVINO IR (``.xml`` graph + ``.bin`` weights) with ``openvino.convert_model``.

FP16 (``fp16=True``) compresses the stored weights to half precision (``save_model``'s
``compress_to_fp16``): the file is about half the size, and the CPU plugin still computes in
FP32 (it decompresses the weights at load). Dynamic dimensions stay dynamic in the IR.
The files are written to a temporary folder beside the target and renamed into place, so a
failed conversion never leaves a half-written IR.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from edgeinfer._deps import require
from edgeinfer.conversion.common import ConvertResult, conversion_error, tool_output
from edgeinfer.model.formats import load_onnx
from edgeinfer.progress import ProgressFn, Tracker

__all__ = ["to_openvino"]


def to_openvino(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    fp16: bool = False,
    progress: ProgressFn | None = None,
    stem: str | None = None,
) -> ConvertResult:
    """Convert ``onnx_path`` to OpenVINO IR ``out_dir/<stem>.xml`` + ``.bin`` (``stem``: the
    ONNX file's by default)."""
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    load_onnx(onnx_path)  # one-line ModelLoadError for a missing, corrupt or non-ONNX file
    ov = require("openvino", "openvino", "converting ONNX to OpenVINO IR")
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / f"{stem or onnx_path.stem}.xml"
    bin_ = xml.with_suffix(".bin")
    precision = "fp16" if fp16 else "fp32"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
        tmp_xml = Path(tmp) / xml.name
        log = None
        try:
            step = f"OpenVINO: converting {onnx_path.name} to {precision} IR"
            track = Tracker(progress)
            track.start(step)
            with tool_output() as log:
                model = ov.convert_model(str(onnx_path))
                ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
            track.finish(step)
        except Exception as exc:
            text = log.getvalue() if log is not None else ""
            raise conversion_error(onnx_path, "OpenVINO", exc, text) from exc
        os.replace(tmp_xml.with_suffix(".bin"), bin_)
        os.replace(tmp_xml, xml)
    return ConvertResult(
        path=xml,
        files=(xml, bin_),
        format="openvino",
        precision=precision,
        seconds=time.perf_counter() - start,
    )
