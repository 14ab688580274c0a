"""``edgeinfer convert``: an ONNX artifact to TFLite or OpenVINO IR, verified against ONNX.

The converted model runs on held-out inputs in its own runtime and the figures (cosine, max abs
error, top-1 agreement) go into the new manifest's ``reports.convert``. FP32 conversion needs no
data: without ``calib`` it is verified on seeded random-pixel images run through the manifest's
preprocessing, and the report says so. Full-integer TFLite needs calibration images.

Outputs are matched to the source's by name, or by a permutation verified on shapes and values
(:mod:`edgeinfer.conversion.match`), never by position; the new manifest's ``outputs`` lists the
converted model's names in the source's order, so decoders read the same outputs. A worst
cosine under :data:`COSINE_WARN` is flagged in the report (``warnings``) and by the CLI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import Artifact, InputSpec, write_artifact
from edgeinfer.conversion.common import ConvertConfig, ConvertResult
from edgeinfer.conversion.match import OutputMatch, match_outputs
from edgeinfer.conversion.openvino import to_openvino
from edgeinfer.conversion.tflite import to_tflite
from edgeinfer.conversion.verify import compare_outputs, run_reference_onnx
from edgeinfer.errors import EdgeInferError, ModelLoadError
from edgeinfer.loading import check_manifest_inputs, load, with_input_shapes
from edgeinfer.optimization.calibration import SampleSet, load_samples, split_samples
from edgeinfer.progress import ProgressFn
from edgeinfer.runtime.engine import Engine
from edgeinfer.runtime.feeds import random_pixel_inputs, static_shape

__all__ = ["COSINE_WARN", "SYNTHETIC_SAMPLES", "convert", "low_cosine_warnings",
           "match_converted"]

#: seeded random-pixel images an FP32 conversion is verified on when no calibration data is given
SYNTHETIC_SAMPLES = 8

#: a converted output whose worst per-sample cosine with ONNX is below this is flagged: FP32
#: conversions land above 0.9999; a full-integer model at 0.937 on a softmax output had its
#: top classes reordered
COSINE_WARN = 0.99


def convert(
    artifact: str | Path,
    out: str | Path,
    config: ConvertConfig,
    *,
    calib: str | Path | None = None,
    calib_limit: int = 100,
    progress: ProgressFn | None = None,
    force: bool = False,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Artifact:
    """Convert an ONNX artifact (or model, or zoo name) into a new artifact directory ``out``,
    written all or nothing (an existing ``out`` only with ``force``); ``input_shapes`` fix
    dynamic dims (``--input-shape``)."""
    src = with_input_shapes(load(artifact), input_shapes)
    m = src.manifest
    if m.model.format != "onnx":
        raise ModelLoadError(f"{artifact} holds a {m.model.format} model: convert takes ONNX")
    check_manifest_inputs(src)
    calib_set, check_set, origin = _inputs(src, config, calib, calib_limit, progress)

    def build(stage: Path) -> Artifact:
        with tempfile.TemporaryDirectory(prefix="edgeinfer-convert-") as tmp:
            result = _run_converter(src, config, calib_set.inputs, Path(tmp), progress)
            converted = src.derive(
                stage,
                result.path,
                origin=f"converted from {m.model.path}",
                format=config.to,
                precision=_precision(src, config),
                companions=tuple(f for f in result.files if f != result.path),
                inputs=_converted_inputs(m.inputs, config),
                outputs=(),
            )
            converted_bytes = sum(f.stat().st_size for f in result.files)
        converted = _follow_input_names(converted)
        converted, figures = _verify(src, converted, check_set.inputs)
        report = {
            "to": config.to,
            "precision": _precision(src, config),
            "seconds": result.seconds,
            "bytes": converted_bytes,
            "onnx_bytes": src.model_path.stat().st_size,
            "calibration_samples": len(calib_set) if calib is not None else 0,
            "verified_on": f"{len(check_set)} {origin}",
            **figures,
        }
        return converted.with_report("convert", report)

    return write_artifact(out, build, force=force)


def _inputs(
    src: Artifact, config: ConvertConfig, calib: str | Path | None, limit: int,
    progress: ProgressFn | None,
) -> tuple[SampleSet, SampleSet, str]:
    """Calibration and verification samples, and what the verification samples are."""
    m = src.manifest
    if calib is None:
        if config.int8:
            raise EdgeInferError(
                "--int8 needs --calib IMAGE_DIR|VIDEO|.npy: images like the ones the model will "
                "see, to calibrate the integer ranges on"
            )
        samples = _synthetic_samples(m.inputs[0], src)
        return samples, samples, "seeded random-pixel images (no --calib given)"
    samples = load_samples(calib, m.inputs[0], m.preprocess, limit=limit, progress=progress)
    if config.int8 and len(samples) >= 4:
        calib_set, check_set = split_samples(samples, config.holdout)
        return calib_set, check_set, f"held-out calibration samples from {calib}"
    return samples, samples, f"calibration samples from {calib}"


def _synthetic_samples(spec: InputSpec, src: Artifact) -> SampleSet:
    """Random-pixel images through the manifest's preprocessing (``random_pixel_inputs``)."""
    static_shape(spec)  # a dynamic dimension is a one-line error naming --input-shape
    inputs = random_pixel_inputs(spec.shape, spec.layout, src.manifest.preprocess,
                                 SYNTHETIC_SAMPLES)
    return SampleSet(inputs, tuple(f"random-pixels[{i}]" for i in range(len(inputs))))


def _converted_inputs(inputs: tuple[InputSpec, ...], config: ConvertConfig) -> tuple:
    spec = inputs[0]
    if config.to == "tflite" and spec.layout == "NCHW":
        n, c, h, w = spec.shape
        return (spec.model_copy(update={"shape": (n, h, w, c), "layout": "NHWC"}),)
    return inputs


def _follow_input_names(converted: Artifact) -> Artifact:
    """A converter names inputs its own way (TFLite: serving_default_...): the manifest follows."""
    with Engine(converted) as engine:
        names = [i.name for i in engine.inputs]
    if names == [i.name for i in converted.manifest.inputs]:
        return converted
    renamed = tuple(
        i.model_copy(update={"name": n})
        for i, n in zip(converted.manifest.inputs, names, strict=True)
    )
    converted = Artifact(converted.path, converted.manifest.model_copy(update={"inputs": renamed}))
    converted.save()
    return converted


@dataclass(frozen=True)
class Matched:
    """A converted model run beside its ONNX source, outputs matched."""

    artifact: Artifact  #: in memory, its manifest listing the outputs in the source's order
    match: OutputMatch
    reference: list[np.ndarray]  #: ONNX's outputs, stacked over the inputs, ONNX's order
    candidate: list[np.ndarray]  #: the converted model's, in its own order
    reference_names: list[str]
    candidate_names: list[str]


def match_converted(
    onnx_path: Path, converted: Artifact, inputs: np.ndarray, order_names: tuple[str, ...] = (),
) -> Matched:
    """Run ``converted`` and the ONNX model on ``inputs`` (in the ONNX model's layout) and match
    their outputs; the returned artifact's manifest lists the converted outputs in the order of
    ``order_names`` (ONNX output names; default the ONNX model's order)."""
    feeds = inputs
    spec = converted.manifest.inputs[0]
    if spec.layout == "NHWC" and inputs.ndim == 4 and spec.shape[-1] == inputs.shape[1]:
        feeds = feeds.transpose(0, 2, 3, 1)
    plain = Artifact(converted.path, converted.manifest.model_copy(update={"outputs": ()}))
    with Engine(plain) as engine:
        name = engine.inputs[0].name
        names = [o.name for o in engine.outputs]
        outs = [engine.run({name: np.ascontiguousarray(x[None])}) for x in feeds]
    stacked = [np.concatenate([c[i] for c in outs]) for i in range(len(outs[0]))]
    reference = run_reference_onnx(onnx_path, inputs)
    ref_names = _onnx_output_names(onnx_path)  # run_reference_onnx's order
    match = match_outputs(reference, ref_names, stacked, names)
    by_source = dict(zip(ref_names, match.names(names), strict=True))
    order = [by_source[n] for n in order_names if n in by_source] or list(by_source.values())
    manifest = converted.manifest.model_copy(update={"outputs": tuple(order)})
    return Matched(Artifact(converted.path, manifest), match, reference, stacked, ref_names,
                   names)


def _verify(src: Artifact, converted: Artifact, inputs: np.ndarray
            ) -> tuple[Artifact, dict[str, Any]]:
    """The converted model against onnxruntime on the same inputs, sample by sample, its
    outputs matched to the source's (the manifest records the order)."""
    m = match_converted(src.model_path, converted, inputs, src.manifest.outputs)
    figures = compare_outputs(m.reference, [m.candidate[j] for j in m.match.order])
    per_output = figures.pop("per_output")
    figures["outputs_matched_by"] = m.match.by
    figures["outputs"] = [
        {"source": r, "converted": n, "cosine": p["cosine"]}
        for r, n, p in zip(m.reference_names, m.match.names(m.candidate_names), per_output,
                           strict=True)
    ]
    figures["cosine_warn"] = COSINE_WARN
    figures["warnings"] = low_cosine_warnings(figures["outputs"])
    m.artifact.save()
    return m.artifact, figures


def low_cosine_warnings(outputs: list[dict[str, Any]], threshold: float = COSINE_WARN
                        ) -> list[str]:
    """One warning per output whose worst per-sample cosine with ONNX is under ``threshold``."""
    return [
        f"output '{o['source']}' has worst cosine {o['cosine']:.4f} against ONNX (below "
        f"{threshold}): check its answers before use (a full-integer model may need more "
        "calibration data, or keep this output in float)"
        for o in outputs if o["cosine"] < threshold
    ]


def _onnx_output_names(path: Path) -> list[str]:
    from edgeinfer.model.formats import load_onnx

    return [o.name for o in load_onnx(path).graph.output]


def _run_converter(
    src: Artifact, config: ConvertConfig, calib: np.ndarray, workdir: Path,
    progress: ProgressFn | None,
) -> ConvertResult:
    stem = _converted_stem(src.model_path.stem, _precision(src, config))
    if config.to == "openvino":
        return to_openvino(src.model_path, workdir, fp16=config.fp16, progress=progress,
                           stem=stem)
    layout = src.manifest.inputs[0].layout
    return to_tflite(
        src.model_path,
        workdir,
        calib,
        int8=config.int8,
        input_layout="NHWC" if layout == "NHWC" else "NCHW",
        progress=progress,
        stem=stem,
    )


def _converted_stem(stem: str, precision: str) -> str:
    """The converted file's name says what it holds: ``net.fp32`` -> ``net.fp16`` for FP16
    weights, ``net`` -> ``net.int8`` for full integer; an FP32 conversion keeps the name."""
    base, dot, tag = stem.rpartition(".")
    if dot and tag in ("fp32", "fp16", "int8", "mixed"):
        return f"{base}.{precision}"
    return stem if precision == "fp32" else f"{stem}.{precision}"


def _precision(src: Artifact, config: ConvertConfig) -> str:
    """What the converted model holds: full-integer TFLite is int8; OpenVINO keeps the source's
    precision (an INT8 ONNX model stays INT8), with FP16 weights where asked of an FP32 one."""
    if config.int8:
        return "int8"
    if config.to == "openvino":
        source = src.manifest.model.precision
        return "fp16" if config.fp16 and source == "fp32" else source
    return "fp32"
