"""ONNX -> TFLite, FP32 or full-integer INT8, through onnx2tf and TensorFlow's TFLite converter.

How it runs:

1. The ONNX model is validated and written into a private temporary folder (onnx2tf rewrites
   its input file in place). Dynamic input dimensions are fixed from the calibration batch
   (batch 1 unless the model fixes another) and the graph re-simplified with onnxslim.
2. ``onnx2tf.convert(..., disable_model_save=True)`` translates the graph into an in-memory
   Keras model whose 4-D input is NHWC. While translating, onnx2tf runs the ONNX model once in
   onnxruntime on a sample of images, which it reads from
   ``calibration_image_sample_data_20x128x128x3_float32.npy`` in the *current directory* and
   downloads from GitHub when the file is not there. So the conversion runs with the temporary
   folder as its working directory, after writing that file from our own calibration batch (NHWC,
   float32, already preprocessed, at most 20 samples). onnx2tf only takes the first ``batch``
   samples, resizes them to the model's input size with ``tf.image.resize`` (a no-op: they
   already have that size) and uses the outputs to check and fix its layout decisions; it also
   reads the file for its own INT8 calibration, a path we do not use. Nothing is downloaded and
   nothing is left behind in the caller's directory.
3. TensorFlow's ``TFLiteConverter`` (``from_concrete_functions`` on that model) writes the
   ``.tflite`` with builtin ops only (a model that would need Flex ops fails here, instead of
   producing a file LiteRT cannot run). With ``int8=True``: ``optimizations=[DEFAULT]``, a
   ``representative_dataset`` yielding our calibration samples (NHWC), ``supported_ops=
   [TFLITE_BUILTINS_INT8]`` and uint8 input and output, i.e. full-integer quantization.

Why not onnx2tf's own ``output_integer_quantized_tflite`` (with our data passed as
``custom_input_op_name_np_data_path``): it always writes seven models (FP32, FP16, dynamic-range,
integer, full-integer and two 16x8 variants), each a full TFLite conversion (15-20 s apiece for
EfficientNet-Lite0), normalizes the calibration data once more with its own mean/std, and its
input/output renaming step needs a ``flatc`` binary and then downloads TFLite's schema.
Why the in-memory model rather than ``from_saved_model``: writing and re-reading a SavedModel
costs time and disk and changes nothing in the result; the converter and its options are the
same.

The working-directory change is process-wide: conversions are serialised by a lock, and other
threads should not rely on the current directory while one runs.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import onnx

from edgeinfer._deps import require
from edgeinfer.conversion.common import ConvertResult, conversion_error, tool_output
from edgeinfer.errors import EdgeInferError
from edgeinfer.model.export import simplify_onnx
from edgeinfer.model.formats import load_onnx
from edgeinfer.model.onnx_graph import _with_static_inputs, graph_input_names, value_dims
from edgeinfer.progress import ProgressFn, Tracker

__all__ = ["ONNX2TF_SAMPLE_FILE", "to_tflite"]

#: The file onnx2tf downloads into the working directory unless it is already there.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
_SAMPLE_COUNT = 20

_CWD_LOCK = threading.Lock()

#: onnx2tf 1.28 declares no dependencies; these are the modules it imports, in an order that
#: names the real missing package (importing onnx2tf without tf_keras fails inside onnx2tf).
_STACK = (
    "tensorflow",
    "tf_keras",
    "onnx_graphsurgeon",
    "sng4onnx",
    "psutil",
    "ai_edge_litert.interpreter",
    "onnx2tf",
)


def to_tflite(
    onnx_path: str | Path,
    out_dir: str | Path,
    calib: np.ndarray,
    *,
    int8: bool = False,
    input_layout: Literal["NCHW", "NHWC"] = "NCHW",
    progress: ProgressFn | None = None,
    stem: str | None = None,
) -> ConvertResult:
    """Convert ``onnx_path`` to ``out_dir/<stem>.tflite`` (FP32) or ``<stem>_int8.tflite``
    (``stem``: the ONNX file's by default; a given ``stem`` is used as it is).

    ``calib`` is a float32 batch ``[N, ...]`` of preprocessed model inputs in the ONNX model's
    layout (``input_layout``). The TFLite model takes NHWC input either way. With ``int8=True``
    it is fully integer: weights and activations int8, input and output uint8 (read the
    tensors' scale and zero point to quantize and dequantize, see ``verify.quantize_input``).
    """
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    if input_layout not in ("NCHW", "NHWC"):
        raise EdgeInferError(f"input_layout '{input_layout}' is not supported: use NCHW or NHWC")
    model = load_onnx(onnx_path)
    names = graph_input_names(model)
    if len(names) != 1:
        raise EdgeInferError(
            f"{onnx_path} has {len(names)} inputs {names}: to_tflite converts models with one "
            "image input"
        )
    name = names[0]
    dims = value_dims(next(vi for vi in model.graph.input if vi.name == name))
    samples = _calibration_batch(calib, dims, onnx_path)
    if input_layout == "NCHW" and dims[1] not in (1, 3, 4) and dims[3] in (1, 3, 4):
        want = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
        raise EdgeInferError(
            f"{onnx_path} input '{name}' is {want}, which looks NHWC: pass input_layout='NHWC'"
        )
    batch = dims[0] if isinstance(dims[0], int) else 1
    if len(samples) < batch:
        raise EdgeInferError(
            f"{onnx_path} has a fixed batch of {batch} but the calibration data holds only "
            f"{len(samples)} samples: pass at least {batch}"
        )
    static = (batch, *samples.shape[1:])
    dynamic = any(not isinstance(d, int) for d in dims)
    nhwc = samples.transpose(0, 2, 3, 1) if input_layout == "NCHW" else samples
    nhwc = np.ascontiguousarray(nhwc, dtype=np.float32)
    precision = "int8" if int8 else "fp32"
    file_stem = stem or (f"{onnx_path.stem}_int8" if int8 else onnx_path.stem)
    target = out_dir / f"{file_stem}.tflite"

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines
    track = Tracker(progress)
    track.start("loading TensorFlow")
    with tool_output():
        tf, onnx2tf = _require_stack()
    track.finish("loading TensorFlow")

    with _CWD_LOCK, tempfile.TemporaryDirectory(prefix="edgeinfer-tflite-") as tmp_dir:
        tmp = Path(tmp_dir)
        work_onnx = tmp / "model.onnx"
        onnx.save(_with_static_inputs(model, {name: static}) if dynamic else model, str(work_onnx))
        if dynamic:
            simplify_onnx(work_onnx)  # fold the shape arithmetic the fixed sizes now decide
        np.save(tmp / ONNX2TF_SAMPLE_FILE, nhwc[:_SAMPLE_COUNT])
        start = time.perf_counter()
        cwd = os.getcwd()
        tool, log = "onnx2tf", None
        try:
            os.chdir(tmp)
            with tool_output() as log:
                step = f"onnx2tf: translating {onnx_path.name}"
                track.start(step)
                keras_model = onnx2tf.convert(
                    input_onnx_file_path=str(work_onnx),
                    output_folder_path=str(tmp / "onnx2tf"),
                    disable_model_save=True,
                    not_use_onnxsim=True,
                    verbosity="error",
                    keep_shape_absolutely_input_names=[name] if input_layout == "NHWC" else None,
                )
                track.finish(step)
                tool = "TFLite converter"
                step = f"TFLite converter: {precision}" + (
                    f", calibrating on {len(nhwc)} samples" if int8 else "")
                track.start(step)
                data = _convert(tf, keras_model, nhwc if int8 else None, batch)
                track.finish(step)
        except (Exception, SystemExit) as exc:  # onnx2tf calls sys.exit(1) on some errors
            text = log.getvalue() if log is not None else ""
            raise conversion_error(onnx_path, tool, exc, text) from exc
        finally:
            os.chdir(cwd)
        seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")
    partial.write_bytes(data)
    os.replace(partial, target)
    return ConvertResult(
        path=target, files=(target,), format="tflite", precision=precision, seconds=seconds
    )


def _require_stack() -> tuple[ModuleType, ModuleType]:
    mods = {m: require(m, "tflite", "converting ONNX to TFLite") for m in _STACK}
    return mods["tensorflow"], mods["onnx2tf"]


def _calibration_batch(
    calib: np.ndarray, dims: list[int | str | None], onnx_path: Path
) -> np.ndarray:
    """Check ``calib`` against the model input's dims and return it as float32."""
    try:
        arr = np.asarray(calib, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EdgeInferError(
            f"calibration data for {onnx_path} is not numeric ({exc}): pass a float32 array"
        ) from exc
    if arr.size == 0 or arr.ndim == 0:
        raise EdgeInferError(
            f"calibration data for {onnx_path} is empty (shape {arr.shape}): pass a batch "
            "[N, ...] of preprocessed inputs, N >= 1 (a few hundred for INT8)"
        )
    if len(dims) != 4:
        raise EdgeInferError(
            f"{onnx_path} has a {len(dims)}-D input: to_tflite converts image models with one "
            "4-D input"
        )
    if arr.ndim != 4 or any(
        isinstance(d, int) and d != s for d, s in zip(dims[1:], arr.shape[1:], strict=True)
    ):
        want = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
        raise EdgeInferError(
            f"calibration data for {onnx_path} has shape {arr.shape}, the model input is {want}: "
            "pass a batch [N, ...] of inputs in the model's layout"
        )
    if not np.isfinite(arr).all():
        raise EdgeInferError(f"calibration data for {onnx_path} holds NaN or inf: clean it")
    return arr


def _convert(tf: Any, keras_model: Any, calib_nhwc: np.ndarray | None, batch: int) -> bytes:
    """TFLite flatbuffer of ``keras_model``: FP32, or full integer when calibration is given."""
    specs = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in keras_model.inputs]
    fn = tf.function(lambda *xs: keras_model(xs), input_signature=specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], keras_model
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if calib_nhwc is not None:

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for i in range(0, len(calib_nhwc) - batch + 1, batch):
                yield [calib_nhwc[i : i + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()
