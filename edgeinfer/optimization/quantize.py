"""Quantization and precision passes, built on ``onnxruntime.quantization`` (not rewritten).

* static INT8 in QDQ form (``quantize_static``), calibration ranges cached on disk so the
  fallback search can re-quantize with other layers excluded without recalibrating;
* dynamic INT8 (``quantize_dynamic``);
* FP16 with float32 inputs/outputs (ORT's ``float16`` converter, ``keep_io_types``);
* weight-only INT8 for layers kept in float (our own small pass: the float weight becomes an
  INT8 initializer + per-channel ``DequantizeLinear``; activations stay float). ORT has no
  weight-only INT8 mode for Conv, which is why this one is ours.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeinfer.errors import EdgeInferError

log = logging.getLogger(__name__)

#: op types whose weights and activations static INT8 quantizes and the fallback may return
#: to float.
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize: calibration method, granularity and integer types."""

    calib_method: str = "percentile"  # minmax | entropy | percentile
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"


def quantizable_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes that static INT8 quantization turns into integer compute."""
    inits = {i.name for i in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type in QUANTIZABLE_OPS and len(n.input) > 1 and n.input[1] in inits
    ]


#: activations that follow a layer; a layer kept in float keeps them in float too, otherwise
#: their Q/DQ pair would still quantize the layer's output.
ACTIVATION_OPS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")


def with_activations(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    """``names`` plus the activation nodes that consume those nodes' outputs."""
    wanted = set(names)
    out_of = {o: n.name for n in model.graph.node if n.name in wanted for o in n.output}
    extra = [
        n.name
        for n in model.graph.node
        if n.op_type in ACTIVATION_OPS and n.input and n.input[0] in out_of
    ]
    return [*names, *extra]


def output_tail(model: onnx.ModelProto) -> list[str]:
    """Nodes between the last quantizable layers and the graph outputs (a detector's box
    decoding, sigmoid, reshape and concat), which static INT8 keeps in float.

    INT8 there buys no speed (a few elementwise ops on a small tensor) and rounds the outputs:
    a YOLO head concatenates box coordinates (0..640 px) with class scores (0..1) into one
    tensor, and one INT8 scale for both rounds every score to 0 (seen on the inspection
    detector: cosine 0.99996 against FP32, no detection left). Box coordinates alone would
    still be rounded to 2.5 px steps, too coarse for 10 px defects.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    tail: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in QUANTIZABLE_OPS:
            continue
        if node.name:
            tail[node.name] = None
        stack.extend(i for i in node.input if i)
    return list(tail)


#: memory the calibrator may hold in intermediate outputs at once (all activations of a chunk)
CALIB_MEMORY_BYTES = 1 << 30
#: ORT's percentile/entropy histograms grow new bins of the first chunk's bin width when a later
#: chunk has a larger range: with chunks of one or two samples that runs out of memory (seen on
#: PP-OCR det at 640). Below this chunk size calibration uses min/max, which merges exactly.
MIN_HISTOGRAM_CHUNK = 8
_WARNED: set[str] = set()  # sources already warned about (the fallback re-quantizes often)


#: per-channel DequantizeLinear (its ``axis`` attribute) needs opset 13
PER_CHANNEL_OPSET = 13


def at_least_opset(src: str | Path, opset: int, scratch: Path) -> Path:
    """``src``, or a copy converted to ``opset`` in ``scratch`` when its default-domain opset is
    older. ORT's quantizer writes per-channel ``DequantizeLinear(axis=...)`` into the model's own
    opset, which an opset-12 model (PP-OCRv4 det from paddle2onnx) then fails to load with."""
    model = onnx.load(str(src), load_external_data=False)
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return Path(src)
    from onnx import version_converter

    model = onnx.load(str(src))
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as exc:
        raise EdgeInferError(
            f"{src} uses opset {current}; INT8 per-channel needs opset {opset} and the "
            f"conversion failed ({str(exc).splitlines()[0][:120]}): re-export with opset >= {opset}"
        ) from exc
    onnx.save(converted, str(scratch))
    return scratch


def calibration_stride(
    src: str | Path, samples: int, budget: int | None = None
) -> int | None:
    """Samples per calibration chunk so that their activations fit ``budget``, or None when all
    fit at once.

    onnxruntime's calibrators keep every intermediate output of every sample until they compute
    ranges: PP-OCRv4 det at 640x640 holds about 0.5 GB per sample, so 140 samples need 70 GB.
    With ``CalibStridedMinMax`` ORT calibrates chunk by chunk and merges (the histograms of the
    percentile and entropy methods accumulate across chunks; min/max ranges merge). The stride
    must divide the sample count, so it is the largest divisor that fits.
    """
    from edgeinfer.model.onnx_graph import read_onnx_graph

    try:
        graph = read_onnx_graph(src)
    except EdgeInferError:  # dynamic dimensions: no estimate, calibrate as ORT does
        return None
    budget = CALIB_MEMORY_BYTES if budget is None else budget
    per_sample = sum(t.nbytes for t in graph.tensors.values() if t.kind != "weight")
    if samples * per_sample <= budget:
        return None
    fit = max(1, budget // max(1, per_sample))
    return max(d for d in range(1, min(fit, samples) + 1) if samples % d == 0)


def quantize_int8_static(
    src: str | Path,
    dst: str | Path,
    reader: object,
    settings: QuantSettings,
    *,
    exclude: Sequence[str] = (),
    only: Sequence[str] | None = None,
    cache_path: str | Path | None = None,
) -> Path:
    """Static INT8 (QDQ) with ``exclude`` kept in float (or only ``only`` quantized)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if settings.calib_method not in methods:
        raise EdgeInferError(
            f"unknown calibration method '{settings.calib_method}': choose one of {sorted(methods)}"
        )
    extra: dict[str, object] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if settings.calib_method == "percentile":
        extra["CalibPercentile"] = 99.999
    stride = calibration_stride(src, len(reader)) if hasattr(reader, "set_range") else None
    method = settings.calib_method
    if stride:
        extra["CalibStridedMinMax"] = stride
        if stride < MIN_HISTOGRAM_CHUNK and method in ("percentile", "entropy"):
            warn = log.warning if str(src) not in _WARNED else log.debug
            _WARNED.add(str(src))
            warn(
                "%s: calibrating %s in chunks of %d samples to bound memory; %s histograms "
                "cannot merge chunks that small, so min/max ranges are used",
                src, method, stride, method,
            )
            method = "minmax"
    graph = onnx.load(str(src), load_external_data=False)
    keep_float = [*with_activations(graph, exclude), *output_tail(graph)]
    src = at_least_opset(src, PER_CHANNEL_OPSET, Path(dst).with_suffix(".opset13.onnx"))
    try:
        # ORT prints calibration chatter on stdout and advice on the root logger.
        with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=getattr(QuantType, settings.activation_type),
                weight_type=getattr(QuantType, settings.weight_type),
                nodes_to_exclude=keep_float,
                nodes_to_quantize=with_activations(graph, only) if only else None,
                calibrate_method=methods[method],
                extra_options=extra,
                calibration_cache_path=str(cache_path) if cache_path else None,
            )
    except EdgeInferError:
        raise
    except MemoryError as exc:
        raise EdgeInferError(
            f"INT8 calibration of {src} ran out of memory: calibrate on fewer samples "
            "(--calib-limit) or a smaller input size"
        ) from exc
    except Exception as exc:
        raise EdgeInferError(
            f"INT8 quantization of {src} failed "
            f"({str(exc).splitlines()[0][:160]}): try --calib-method minmax "
            "or --per-tensor"
        ) from exc
    finally:
        if stride:  # ORT left the reader on its last chunk
            reader.set_range(0, len(reader))  # type: ignore[attr-defined]
    return Path(dst)


#: what ORT's quantizer logs on the root logger that says nothing to a user: its generic advice,
#: and per-channel axis notes on rank-1 weights (quantized per tensor, as they must be)
_ORT_CHATTER = ("pre-processing before quantization", "is out-of-range for weight")


class _DropOrtAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(c in message for c in _ORT_CHATTER)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    flt = _DropOrtAdvice()
    targets = [root, *root.handlers]
    for t in targets:
        t.addFilter(flt)
    try:
        yield
    finally:
        for t in targets:
            t.removeFilter(flt)


def quantize_int8_dynamic(src: str | Path, dst: str | Path, per_channel: bool = True) -> Path:
    """Dynamic INT8: weights INT8 offline, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = at_least_opset(src, PER_CHANNEL_OPSET, Path(dst).with_suffix(".opset13.onnx"))
    quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    return Path(dst)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and compute, float32 inputs and outputs kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return Path(dst)


def weight_only_int8(src: str | Path, dst: str | Path, node_names: Sequence[str]) -> Path:
    """Store the weights of ``node_names`` as per-channel symmetric INT8 + DequantizeLinear."""
    model = onnx.load(str(src))
    wanted = set(node_names)
    inits = {i.name: i for i in model.graph.initializer}
    new_nodes = []
    for node in model.graph.node:
        if node.name in wanted and len(node.input) > 1 and node.input[1] in inits:
            w_init = inits[node.input[1]]
            w = numpy_helper.to_array(w_init).astype(np.float32)
            if w.ndim < 2:
                new_nodes.append(node)
                continue
            axis = 1 if node.op_type == "ConvTranspose" else 0
            if node.op_type in ("Gemm", "MatMul"):
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                axis = 0 if (node.op_type == "Gemm" and trans_b) else w.ndim - 1
            reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
            scale = np.abs(w).max(axis=reduce_axes) / 127.0
            scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            base = node.input[1]
            q_name, s_name, z_name = f"{base}_w8", f"{base}_w8_scale", f"{base}_w8_zp"
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, q_name),
                    numpy_helper.from_array(scale, s_name),
                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), z_name),
                ]
            )
            deq_out = f"{base}_w8_dequant"
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [q_name, s_name, z_name],
                    [deq_out],
                    name=f"{node.name}_w8_dq",
                    axis=axis,
                )
            )
            node.input[1] = deq_out
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    if _opset(model) < 13:
        raise EdgeInferError(
            "weight-only INT8 needs opset >= 13 (per-channel DequantizeLinear): "
            "re-export the model with opset 17"
        )
    onnx.save(model, str(dst))
    return Path(dst)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
