"""What every converter shares: the target config, the result, and keeping tools quiet."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeinfer.errors import EdgeInferError

__all__ = ["ConvertConfig", "ConvertResult", "conversion_error", "first_error_line", "tool_output"]

ConvertFormat = Literal["openvino", "tflite"]
ConvertPrecision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class ConvertConfig:
    """What ``edgeinfer convert`` makes: the target format and its precision."""

    to: ConvertFormat
    int8: bool = False  #: TFLite only: full integer, uint8 input/output
    fp16: bool = False  #: OpenVINO only: FP16 weights (compress_to_fp16)
    holdout: float = 0.3  #: share of the calibration samples kept for verification (int8)

    def __post_init__(self) -> None:
        if self.to not in ("openvino", "tflite"):
            raise EdgeInferError(f"unknown target '{self.to}': choose tflite or openvino")
        if self.int8 and self.to != "tflite":
            raise EdgeInferError(
                "--int8 is for --to tflite; OpenVINO takes the INT8 ONNX model "
                "from `edgeinfer optimize` as it is"
            )
        if self.fp16 and self.to != "openvino":
            raise EdgeInferError("--fp16 is for --to openvino")

    @property
    def precision(self) -> ConvertPrecision:
        """The precision of the converted model."""
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote."""

    path: Path  #: the main converted file (.xml for OpenVINO, .tflite)
    files: tuple[Path, ...]  #: every file written (e.g. .xml + .bin)
    format: ConvertFormat
    precision: ConvertPrecision
    seconds: float  #: wall time of the conversion itself (tool imports excluded)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERROR_WORDS = re.compile(r"error|exception|failed|not supported|unsupported", re.IGNORECASE)
# Lines that locate an error rather than say what it is: source positions, traceback frames.
_LOCATION = re.compile(r"\.(?:cpp|cc|c|h|hpp|py)\b[\":]|^Traceback \(|^File \"")


def first_error_line(exc: BaseException, log: str = "") -> str:
    """What went wrong, in one line: the exception's first informative lines, else the first
    error lines the tool printed (onnx2tf prints its error, then calls ``sys.exit(1)``)."""

    def informative(text: str) -> list[str]:
        out = []
        for raw in text.splitlines():
            line = _ANSI.sub("", raw).strip().lstrip("-*> ").strip()
            # Headers ("Summary:") and source positions say where, not what.
            if line and not line.endswith(":") and not _LOCATION.search(line):
                out.append(line)
        return out

    lines = [] if isinstance(exc, SystemExit) else informative(str(exc))
    if not lines:
        lines = [ln for ln in informative(log) if _ERROR_WORDS.search(ln)]
    text = "; ".join(lines[:2]) if lines else type(exc).__name__
    return text[:200]


def conversion_error(model: Path, tool: str, exc: BaseException, log: str = "") -> EdgeInferError:
    """A one-line EdgeInferError naming the model, the tool and the tool's first error line."""
    return EdgeInferError(
        f"{tool} could not convert {model} ({first_error_line(exc, log)}): check that the "
        "model runs in onnxruntime (`edgeinfer inspect`) and uses only standard ONNX ops"
    )


@contextlib.contextmanager
def tool_output() -> Iterator[io.StringIO]:
    """Divert what converters print (Python and C++ alike) into a buffer while they run.

    Yields ``log``, which collects the tools' output (read it after the block). The CLI's
    progress display writes to its own copy of the terminal, so it stays visible meanwhile.
    """
    log = io.StringIO()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as native:
        try:
            os.dup2(native.fileno(), 1)
            os.dup2(native.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            native.seek(0)
            log.write(native.read().decode("utf-8", errors="replace"))


