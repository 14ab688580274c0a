"""Per-layer sensitivity to INT8: activation matching, and one layer quantized at a time.

For each quantized layer we compare its input and its output in the QDQ model against the
FP32 model on the same samples, as signal-to-quantization-noise ratios (SQNR, dB; ORT's
``qdq_loss_debug`` formula). The noise a layer *adds* is ``SQNR(input) - SQNR(output)``:
layers that lose the most dB are the first to return to float. Two runs (FP32 and QDQ, every
needed tensor exposed as an output) describe all layers.

Activation matching misplaces blame when a layer's output range is dominated by a few large
channels (the output SQNR stays high while small channels that later layers need are crushed),
so the ranking the fallback uses is :func:`rank_isolated`: quantize one layer at a time
(calibration ranges come from ORT's cache, so this costs one re-quantization per layer, not a
recalibration) and measure the SQNR of the model's final output against FP32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeinfer.optimization.quantize import ACTIVATION_OPS, quantizable_nodes
from edgeinfer.ort_session import open_session, with_outputs


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer: SQNR (dB) at its input and output in the QDQ model, and the dB it loses."""

    name: str
    op_type: str
    sqnr_in: float
    sqnr_out: float

    @property
    def loss_db(self) -> float:
        """Noise added by this layer: SQNR lost between its input and its output."""
        return self.sqnr_in - self.sqnr_out


def sqnr(reference: np.ndarray, noisy: np.ndarray) -> float:
    """20·log10(‖x‖ / ‖x − x̂‖), capped at 200 dB for identical tensors."""
    ref = reference.astype(np.float64).ravel()
    diff = np.linalg.norm(ref - noisy.astype(np.float64).ravel())
    if diff == 0:
        return 200.0
    return 20 * math.log10(max(np.linalg.norm(ref), 1e-30) / diff)


def _post_qdq_names(model: onnx.ModelProto) -> dict[str, str]:
    """tensor -> the name of its dequantized copy in a QDQ model (Q then DQ)."""
    q_out = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {t: dq_of[q] for t, q in q_out.items() if q in dq_of}


def _paired_sqnr(
    float_path: Path,
    qdq_path: Path,
    pairs: dict[str, tuple[str, str]],
    samples: np.ndarray,
) -> dict[str, float]:
    """SQNR (dB) of each ``key: (float tensor, qdq tensor)`` over all samples, one sample at a
    time: signal and noise energies accumulate, so memory does not grow with the sample count
    (PP-OCR det at 640 exposes ~0.7 GB of tensors per sample)."""
    f_names = sorted({f for f, _ in pairs.values()})
    q_names = sorted({q for _, q in pairs.values()})
    f_sess = open_session(with_outputs(onnx.load(str(float_path)), f_names))
    q_sess = open_session(with_outputs(onnx.load(str(qdq_path)), q_names))
    f_in, q_in = f_sess.get_inputs()[0].name, q_sess.get_inputs()[0].name
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for x in samples:
        fv = dict(zip(f_names, f_sess.run(f_names, {f_in: x[None]}), strict=True))
        qv = dict(zip(q_names, q_sess.run(q_names, {q_in: x[None]}), strict=True))
        for key, (f, q) in pairs.items():
            ref = fv[f].astype(np.float64).ravel()
            signal[key] += float(ref @ ref)
            d = ref - qv[q].astype(np.float64).ravel()
            noise[key] += float(d @ d)
    return {
        k: 200.0 if noise[k] == 0 else 10 * math.log10(max(signal[k], 1e-60) / noise[k])
        for k in pairs
    }


def rank_layers(float_path: Path, qdq_path: Path, samples: np.ndarray) -> list[LayerSensitivity]:
    """All quantized layers, most sensitive (most dB lost) first.

    Layers are matched by node name. In the QDQ model a layer's input is what it computes with
    (the dequantized tensor) and its output is taken after its own Q/DQ pair.
    """
    fmodel = onnx.load(str(float_path))
    qmodel = onnx.load(str(qdq_path))
    post = _post_qdq_names(qmodel)
    qnodes = {n.name: n for n in qmodel.graph.node}
    weighted = {n.name for n in quantizable_nodes(fmodel)}
    # Every node the quantizer touched: weighted layers, and ops whose output it re-quantized
    # (Add, pooling, Reshape, ...). Activations follow their producer (see with_activations).
    layers = [
        n
        for n in fmodel.graph.node
        if n.name in qnodes
        and n.input
        and n.output
        and n.op_type not in ACTIVATION_OPS
        and (n.name in weighted or qnodes[n.name].output[0] in post)
    ]
    f_in = {n.name: (n.input[0], n.output[0]) for n in layers}
    q_in = {
        n.name: (
            qnodes[n.name].input[0],
            post.get(qnodes[n.name].output[0], qnodes[n.name].output[0]),
        )
        for n in layers
    }
    pairs = {}
    for n in layers:
        pairs[(n.name, 0)] = (f_in[n.name][0], q_in[n.name][0])
        pairs[(n.name, 1)] = (f_in[n.name][1], q_in[n.name][1])
    db = _paired_sqnr(float_path, qdq_path, pairs, samples)
    out = [LayerSensitivity(n.name, n.op_type, db[(n.name, 0)], db[(n.name, 1)]) for n in layers]
    return sorted(out, key=lambda s: s.loss_db, reverse=True)


@dataclass(frozen=True)
class IsolatedSensitivity:
    """SQNR (dB) of the model's output when only this layer is quantized."""

    name: str
    op_type: str
    output_sqnr: float


def rank_isolated(
    float_path: Path,
    layers: list[tuple[str, str]],
    quantize_only: Callable[[str, Path], Path],
    samples: np.ndarray,
    workdir: Path,
) -> list[IsolatedSensitivity]:
    """Layers ``(name, op_type)``, most sensitive (lowest output SQNR) first."""
    from edgeinfer.optimization.evaluate import run_outputs

    reference = run_outputs(float_path, samples)
    out = []
    for name, op_type in layers:
        path = quantize_only(name, workdir / "isolated.onnx")
        out.append(IsolatedSensitivity(name, op_type, sqnr(reference, run_outputs(path, samples))))
    return sorted(out, key=lambda s: s.output_sqnr)
