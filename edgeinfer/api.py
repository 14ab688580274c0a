"""The small public Python API, re-exported by ``edgeinfer/__init__.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.artifact import Artifact
from edgeinfer.errors import EdgeInferError, ModelLoadError
from edgeinfer.loading import load

if TYPE_CHECKING:
    from edgeinfer.conversion import ConvertConfig
    from edgeinfer.optimization.optimizer import OptimizeConfig


def inspect(
    path: str | Path,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    budget: int | str | None = None,
) -> dict[str, Any]:
    """The inspect report of a model file or artifact (see ``edgeinfer inspect``)."""
    from edgeinfer.model.inspect import inspect_model, parse_bytes

    if isinstance(budget, str):
        budget = parse_bytes(budget)
    return inspect_model(path, input_shapes, budget)


def optimize(
    model: str | Path,
    out: str | Path,
    config: OptimizeConfig | None = None,
    *,
    calib: str | Path,
    eval_source: str | Path | None = None,
    labels: str | Path | None = None,
    calib_limit: int = 200,
) -> Artifact:
    """Quantize an ONNX model or artifact into a new artifact (see ``edgeinfer optimize``)."""
    from edgeinfer.optimization.optimizer import OptimizeConfig, build_samples
    from edgeinfer.optimization.optimizer import optimize as run

    samples = build_samples(
        load(model), calib, eval_source=eval_source, labels_file=labels, limit=calib_limit
    )
    return run(model, out, config or OptimizeConfig(), samples)


def convert(
    artifact: str | Path,
    out: str | Path,
    config: ConvertConfig,
    *,
    calib: str | Path | None = None,
    calib_limit: int = 100,
) -> Artifact:
    """Convert an ONNX artifact to TFLite or OpenVINO IR, checked against the ONNX model.

    The converted model runs on held-out calibration inputs in its own runtime and the figures
    (cosine, max abs error, top-1 agreement) go into the new manifest's ``reports.convert``.
    """
    import tempfile

    import numpy as np

    from edgeinfer.conversion import compare_outputs, run_reference_onnx
    from edgeinfer.optimization.calibration import load_samples, split_samples
    from edgeinfer.runtime.engine import Engine

    src = load(artifact)
    m = src.manifest
    if m.model.format != "onnx":
        raise ModelLoadError(f"{artifact} holds a {m.model.format} model: convert takes ONNX")
    if calib is None:
        raise EdgeInferError(
            "convert needs --calib IMAGE_DIR|VIDEO|.npy: inputs to translate, calibrate and "
            "verify the converted model on"
        )
    samples = load_samples(calib, m.inputs[0], m.preprocess, limit=calib_limit)
    calib_set, check_set = samples, samples
    if config.int8 and len(samples) >= 4:
        calib_set, check_set = split_samples(samples, config.holdout)
    with tempfile.TemporaryDirectory(prefix="edgeinfer-convert-") as tmp:
        result = _run_converter(src, config, calib_set.inputs, Path(tmp))
        spec = m.inputs[0]
        inputs = m.inputs
        if config.to == "tflite" and spec.layout == "NCHW":
            n, c, h, w = spec.shape
            inputs = (spec.model_copy(update={"shape": (n, h, w, c), "layout": "NHWC"}),)
        converted = src.derive(
            out,
            result.path,
            origin=f"converted from {m.model.path}",
            format=config.to,
            precision=config.precision,
            companions=tuple(f for f in result.files if f != result.path),
            inputs=inputs,
            outputs=(),
        )
        converted_bytes = sum(f.stat().st_size for f in result.files)
    engine = Engine(converted)
    # A converter names inputs its own way (TFLite: serving_default_...): the manifest follows.
    names = [i.name for i in engine.inputs]
    if names != [i.name for i in converted.manifest.inputs]:
        renamed = tuple(
            i.model_copy(update={"name": n})
            for i, n in zip(converted.manifest.inputs, names, strict=True)
        )
        converted = Artifact(
            converted.path, converted.manifest.model_copy(update={"inputs": renamed})
        )
        converted.save()
    feeds = check_set.inputs
    if config.to == "tflite" and spec.layout == "NCHW":
        feeds = feeds.transpose(0, 2, 3, 1)
    name = engine.inputs[0].name
    candidate = [engine.run({name: np.ascontiguousarray(x[None])}) for x in feeds]
    stacked = [np.concatenate([c[i] for c in candidate]) for i in range(len(candidate[0]))]
    reference = run_reference_onnx(src.model_path, check_set.inputs)
    figures = compare_outputs(reference, stacked)
    figures.pop("per_output", None)
    report = {
        "to": config.to,
        "precision": config.precision,
        "seconds": result.seconds,
        "bytes": converted_bytes,
        "onnx_bytes": src.model_path.stat().st_size,
        "calibration_samples": len(calib_set),
        "verified_on": f"{len(check_set)} "
        + ("held-out calibration samples" if check_set is not calib_set else "calibration samples")
        + f" from {calib}",
        **figures,
    }
    return converted.with_report("convert", report)


def _run_converter(src: Artifact, config: ConvertConfig, calib: Any, workdir: Path) -> Any:
    from edgeinfer.conversion.openvino import to_openvino
    from edgeinfer.conversion.tflite import to_tflite

    if config.to == "openvino":
        return to_openvino(src.model_path, workdir, fp16=config.fp16)
    layout = src.manifest.inputs[0].layout
    return to_tflite(
        src.model_path,
        workdir,
        calib,
        int8=config.int8,
        input_layout="NHWC" if layout == "NHWC" else "NCHW",
    )
