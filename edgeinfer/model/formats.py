"""Model file formats: detection by content, and loading with one-line errors.

The file's bytes decide the format (a ``.onnx`` that is really a TFLite flatbuffer is read as
TFLite); the extension is only a hint used in messages.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import onnx

from edgeinfer.errors import ModelLoadError, UnsupportedOpsetError

ModelFormat = Literal["onnx", "tflite", "openvino", "torch"]

#: ONNX default-domain opsets we accept: 7 (first with the ops modern exporters emit) up to
#: what the installed ``onnx`` package knows.
MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()

_REEXPORT = "re-export the model or copy it again"


def detect_format(path: str | Path) -> ModelFormat:
    """Return the format of the model file at ``path``, judged by its content."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file: check the path")
    if path.is_dir():
        raise ModelLoadError(
            f"{path} is a directory, not a model file: pass the model file inside it"
        )
    with path.open("rb") as fh:
        head = fh.read(64)
    if not head:
        raise ModelLoadError(f"{path} is empty: {_REEXPORT}")
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.lstrip().startswith(b"<?xml") and b"<net" in path.read_bytes()[:4096]:
        return "openvino"
    if head.startswith(b"PK\x03\x04") and _is_torch_zip(path):
        return "torch"
    if head[:2] in (b"\x80\x02", b"\x80\x04", b"\x80\x05"):
        return "torch"
    if head[0] in (0x08, 0x0A, 0x12, 0x1A, 0x22, 0x3A, 0x42):
        # Protobuf field tags that open an ONNX ModelProto (ir_version, opset_import, ...).
        return "onnx"
    raise ModelLoadError(
        f"{path}: unknown model format (not ONNX, TFLite or OpenVINO IR): "
        "pass a .onnx or .tflite file, or export a PyTorch module with edgeinfer.export()"
    )


def _is_torch_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("data.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def load_onnx(path: str | Path, *, check_opset: bool = True) -> onnx.ModelProto:
    """Load and validate an ONNX model, mapping every failure to a one-line ModelLoadError."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "torch":
        raise ModelLoadError(
            f"{path} is a PyTorch checkpoint, not a model graph: "
            "export it first with edgeinfer.export(module, example_input, 'model.onnx')"
        )
    if fmt != "onnx":
        raise ModelLoadError(f"{path} is a {fmt} model, not ONNX: use a .onnx file here")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        raise ModelLoadError(
            f"{path} is not a valid ONNX model (truncated or corrupt: {_short(exc)}): {_REEXPORT}"
        ) from exc
    if not model.graph.node or not model.opset_import:
        raise ModelLoadError(f"{path} holds no ONNX graph (truncated or corrupt): {_REEXPORT}")
    if check_opset:
        check_onnx_opset(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelLoadError(f"{path} fails the ONNX checker ({_short(exc)}): {_REEXPORT}") from exc
    return model


def onnx_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset of an ONNX model."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def check_onnx_opset(model: onnx.ModelProto, path: str | Path = "model") -> None:
    """Raise UnsupportedOpsetError if the model's opset is outside MIN_OPSET..MAX_OPSET."""
    opset = onnx_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOpsetError(
            f"{path} uses ONNX opset {opset}, outside the supported {MIN_OPSET}..{MAX_OPSET}: "
            "re-export with opset 17 (edgeinfer.export(..., opset=17)) "
            "or convert it with onnx.version_converter"
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:160]
