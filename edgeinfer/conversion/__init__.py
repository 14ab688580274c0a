"""Conversion of ONNX models to other runtimes' formats: OpenVINO IR and TFLite.

    to_openvino("m.onnx", "out/")                    # out/m.xml + out/m.bin (FP32, or fp16=True)
    to_tflite("m.onnx", "out/", calib)               # out/m.tflite (FP32, NHWC input)
    to_tflite("m.onnx", "out/", calib, int8=True)    # out/m_int8.tflite (full integer, uint8 I/O)

``verify`` compares a converted model's outputs with onnxruntime's on a batch of inputs.

``convert`` does it for an artifact: the converted model is verified against the ONNX model on
held-out inputs in its own runtime and written as a new artifact.

The converters themselves (openvino, tensorflow, onnx2tf) are optional extras imported only when
a conversion runs, so ``import edgeinfer.conversion`` needs none of them. A conversion never touches
the network. While one runs, what the tools print is kept out of the terminal (progress goes to
the caller's callback instead); when a tool fails, its first error line goes into a one-line
:class:`EdgeInferError` that names the model.
"""

from edgeinfer.conversion.common import ConvertConfig, ConvertResult
from edgeinfer.conversion.convert import convert
from edgeinfer.conversion.openvino import to_openvino
from edgeinfer.conversion.tflite import to_tflite
from edgeinfer.conversion.verify import (
    compare_outputs,
    dequantize,
    quantize_input,
    run_reference_onnx,
    run_tflite,
)

__all__ = [
    "ConvertConfig",
    "ConvertResult",
    "compare_outputs",
    "convert",
    "dequantize",
    "quantize_input",
    "run_reference_onnx",
    "run_tflite",
    "to_openvino",
    "to_tflite",
]
