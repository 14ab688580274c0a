"""Does a converted model compute what the ONNX model computes? Compare outputs on real inputs.

Outputs are compared as lists with one array per model output, each stacked over a batch of
inputs along axis 0 (``[N, ...]``), as ``run_reference_onnx`` and ``run_tflite`` return them.

    ref = run_reference_onnx("m.onnx", calib)                  # onnxruntime, FP32
    got = run_tflite("m_int8.tflite", calib)                   # NCHW in, (de)quantized for you
    compare_outputs(ref, got)  # {'cosine': ..., 'max_abs_error': ..., 'top1_agreement': ...}

``quantize_input`` / ``dequantize`` map float tensors to and from a quantized model's uint8/int8
input and output with the tensor's (scale, zero point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.quantized_io import dequantize, quantize_input

__all__ = [
    "compare_outputs",
    "dequantize",
    "quantize_input",
    "run_reference_onnx",
    "run_tflite",
]


def compare_outputs(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Agreement of ``candidate`` outputs with ``reference`` outputs over a batch of inputs.

    Returns, over all outputs: ``cosine`` (the lowest per-sample cosine similarity),
    ``cosine_mean``, ``max_abs_error``, ``mean_abs_error``, ``top1_agreement`` (share of samples
    whose arg-max class agrees, for outputs shaped ``[N, classes]``; None when there is none),
    ``samples`` and ``per_output`` (the same figures per output). A 4-D candidate in NHWC where the
    reference is NCHW (TFLite feature maps) is transposed before comparing.
    """
    if len(reference) != len(candidate) or not reference:
        raise EdgeInferError(
            f"cannot compare {len(candidate)} candidate outputs with {len(reference)} reference "
            "outputs: both models must have the same outputs, in the same order"
        )
    per_output = []
    for i, (ref, got) in enumerate(zip(reference, candidate, strict=True)):
        ref = np.asarray(ref, dtype=np.float64)
        got = _align(ref, np.asarray(got, dtype=np.float64), i)
        n = ref.shape[0] if ref.ndim else 1
        r = ref.reshape(n, -1)
        g = got.reshape(n, -1)
        cos = _cosine_rows(r, g)
        err = np.abs(r - g)
        top1 = None
        if ref.ndim == 2 and ref.shape[1] > 1:
            top1 = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
        per_output.append(
            {
                "cosine": float(cos.min()),
                "cosine_mean": float(cos.mean()),
                "max_abs_error": float(err.max()),
                "mean_abs_error": float(err.mean()),
                "top1_agreement": top1,
            }
        )
    top1s = [p["top1_agreement"] for p in per_output if p["top1_agreement"] is not None]
    return {
        "samples": int(np.asarray(reference[0]).shape[0]) if np.ndim(reference[0]) else 1,
        "cosine": min(p["cosine"] for p in per_output),
        "cosine_mean": min(p["cosine_mean"] for p in per_output),
        "max_abs_error": max(p["max_abs_error"] for p in per_output),
        "mean_abs_error": max(p["mean_abs_error"] for p in per_output),
        "top1_agreement": min(top1s) if top1s else None,
        "per_output": per_output,
    }


def _align(ref: np.ndarray, got: np.ndarray, index: int) -> np.ndarray:
    if got.shape == ref.shape:
        return got
    if ref.ndim == 4 and got.ndim == 4 and got.transpose(0, 3, 1, 2).shape == ref.shape:
        return got.transpose(0, 3, 1, 2)
    if got.size == ref.size and got.squeeze().shape == ref.squeeze().shape:
        return got.reshape(ref.shape)
    raise ShapeError(
        f"output {index}: candidate shape {got.shape} does not match reference shape {ref.shape}: "
        "compare outputs of the same model"
    )


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.sum(a * b, axis=1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.divide(num, na * nb, out=np.zeros_like(num), where=(na * nb) > 0)
    # Two all-zero rows agree perfectly; a zero row against a non-zero one does not.
    return np.where((na == 0) & (nb == 0), 1.0, cos)


def _feeds_per_sample(
    inputs: np.ndarray | Mapping[str, np.ndarray], names: list[str]
) -> tuple[dict[str, np.ndarray], int]:
    if isinstance(inputs, Mapping):
        feeds = {k: np.asarray(v) for k, v in inputs.items()}
    else:
        if len(names) != 1:
            raise EdgeInferError(
                f"the model has inputs {names}: pass a dict of arrays, one per input"
            )
        feeds = {names[0]: np.asarray(inputs)}
    missing = set(names) - set(feeds)
    if missing:
        raise EdgeInferError(f"no data for model inputs {sorted(missing)}: pass every input")
    counts = {len(v) for v in feeds.values()}
    if len(counts) != 1 or 0 in counts:
        raise EdgeInferError("inputs must be non-empty batches [N, ...] with the same N")
    return feeds, counts.pop()


def run_reference_onnx(
    onnx_path: str | Path, inputs: np.ndarray | Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Run a batch ``[N, ...]`` through the ONNX model in onnxruntime (CPU, FP32).

    ``inputs`` is one array (single-input models) or a dict name -> array. Samples are run one at
    a time when the model's batch dimension is fixed, all at once when it is dynamic. Returns one
    array per output, stacked over the N samples.
    """
    from edgeinfer.ort_session import open_session

    path = Path(onnx_path)
    if not path.exists():
        raise EdgeInferError(f"{path}: no such file: check the path")
    sess = open_session(path)  # a load failure is a one-line ModelLoadError
    names = [i.name for i in sess.get_inputs()]
    feeds, n = _feeds_per_sample(inputs, names)
    dynamic_batch = all(not isinstance(i.shape[0], int) for i in sess.get_inputs() if i.shape)
    if dynamic_batch:
        return [np.asarray(o) for o in sess.run(None, feeds)]
    results = [sess.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in results]) for j in range(len(results[0]))]


def run_tflite(
    tflite_path: str | Path,
    inputs: np.ndarray,
    *,
    input_layout: str = "NCHW",
    threads: int | None = None,
) -> list[np.ndarray]:
    """Run a batch ``[N, ...]`` of float inputs through a single-input .tflite, one at a time.

    ``input_layout="NCHW"`` transposes 4-D inputs to the NHWC a converted model takes. Quantized
    (uint8/int8) inputs are quantized and outputs dequantized with the tensors' scale and zero
    point, so the result is comparable with the float model's. Returns one float32 array per
    output, stacked over the N samples.
    """
    interp_mod = require("ai_edge_litert.interpreter", "litert", "running .tflite models")
    path = Path(tflite_path)
    if not path.exists():
        raise EdgeInferError(f"{path}: no such file: check the path")
    try:
        interp = interp_mod.Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except Exception as exc:
        raise EdgeInferError(
            f"LiteRT cannot load {path} ({str(exc).splitlines()[0][:160]}): "
            "check the file with `edgeinfer inspect`"
        ) from exc
    (inp, *more) = interp.get_input_details()
    if more:
        raise EdgeInferError(f"{path} has {1 + len(more)} inputs: run_tflite runs one-input models")
    outs = interp.get_output_details()
    x = np.asarray(inputs)
    if input_layout == "NCHW" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 0 or len(x) == 0:
        raise EdgeInferError("run_tflite needs a non-empty batch [N, ...] of inputs")
    dtype = np.dtype(inp["dtype"])
    scale, zp = inp["quantization"]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        sample = x[i : i + 1]
        if dtype.kind in "iu":
            sample = quantize_input(sample, scale, zp, dtype)
        else:
            sample = sample.astype(dtype)
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
        for j, d in enumerate(outs):
            y = interp.get_tensor(d["index"])
            if np.dtype(d["dtype"]).kind in "iu" and d["quantization"][0]:
                y = dequantize(y, *d["quantization"])
            results[j].append(np.array(y, dtype=np.float32))
    return [np.concatenate(r) for r in results]
