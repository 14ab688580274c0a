"""``edgeinfer import``: any model a user brings becomes an artifact whose manifest says how to
feed it and read it, checked against the model before anything is written.

What is declared: fixed input shapes (``--input-shape``), the preprocessing (``--like
ZOO_NAME`` copies a known family's; single fields override it), labels (or a CTC charset), the
decoder and its parameters. What is checked: input names, ranks and fixed dims against the
file; the channel count against the layout; the output count and shapes (shape inference, then
one run on a seeded random-pixel image through the declared preprocessing) against the layout
the decoder declares; the labels' count against the classes. What cannot be checked (the
preprocessing values, the order of the labels, thresholds) is listed in ``reports.import``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from edgeinfer import zoo
from edgeinfer.artifact import Artifact, InputSpec, Manifest, Preprocess, write_artifact
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.loading import check_manifest_inputs, load, with_input_shapes
from edgeinfer.model.shapes import format_dims, is_fixed
from edgeinfer.vision.decoders import (
    DECODER_LAYOUTS,
    DECODERS,
    check_outputs,
    fitting_decoders,
    get_decoder,
    is_probabilities,
)
from edgeinfer.vision.layouts import class_count

__all__ = ["ImportSpec", "import_model", "parse_decoder_params", "parse_floats"]

log = logging.getLogger(__name__)

#: the task a decoder implies when neither --task nor --like says
DECODER_TASKS = {
    "classification": "classification", "yolo": "detection", "db": "text-detection",
    "ctc": "text-recognition", "blazeface": "face-detection", "landmarks": "landmarks",
    "anomaly": "other", "raw": "other",
}
#: the Preprocess fields ``--preprocess`` options may set
PREPROCESS_FIELDS = ("resize", "interpolation", "channel_order", "scale", "mean", "std",
                     "pad_value")


@dataclass(frozen=True)
class ImportSpec:
    """What the user declares about a model (every field optional: None keeps what the source
    or the ``like`` family says)."""

    input_shapes: dict[str, tuple[int, ...]] | None = None
    like: str | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)  #: Preprocess fields to set
    layout: str | None = None  #: NCHW | NHWC for the image input
    labels: Path | None = None
    decoder: str | None = None
    decoder_params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    task: str | None = None


def parse_floats(text: str, what: str, count: int | None = 3) -> tuple[float, ...] | float:
    """``"0.485,0.456,0.406"``, ``"127.5"`` (one value for every channel) or ``"1/255"``."""
    def one(part: str) -> float:
        num, sep, den = part.strip().partition("/")
        try:
            return float(num) / (float(den) if sep else 1.0)
        except (ValueError, ZeroDivisionError):
            raise EdgeInferError(
                f"bad {what} '{text}': write numbers like 0.5, 1/255 or 0.485,0.456,0.406"
            ) from None

    values = [one(p) for p in text.split(",") if p.strip()]
    if count is None:
        if len(values) != 1:
            raise EdgeInferError(f"bad {what} '{text}': give one number, like 1/255")
        return values[0]
    if len(values) == 1:
        values *= count
    if len(values) != count:
        raise EdgeInferError(f"bad {what} '{text}': give 1 or {count} numbers, comma-separated")
    return tuple(values)


def parse_decoder_params(values: list[str] | None) -> dict[str, Any]:
    """``["conf_threshold=0.4", "softmax=false"]`` -> ``{"conf_threshold": 0.4, ...}`` (values
    read as JSON where they parse: numbers, true/false, lists; else kept as text)."""
    out: dict[str, Any] = {}
    for v in values or []:
        key, sep, text = v.partition("=")
        if not sep or not key.strip():
            raise EdgeInferError(f"bad --decoder-param '{v}': write it as KEY=VALUE")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def import_model(model: str | Path, out: str | Path, spec: ImportSpec | None = None, *,
                 force: bool = False) -> Artifact:
    """Import ``model`` (a .onnx/.tflite file, an artifact to re-declare, or a zoo name) into
    the artifact directory ``out``, written all or nothing once every check has passed."""
    spec = spec or ImportSpec()
    src = load(model, warn=False)
    manifest, labels = _declared_manifest(src, spec)
    report = check_artifact(Artifact(src.path, manifest), labels)

    def build(stage: Path) -> Artifact:
        m = manifest
        fields = {k: getattr(m, k) for k in ("name", "task", "inputs", "outputs", "preprocess",
                                             "decoder", "decoder_params")}
        source = m.source.model_copy(update={"origin": f"imported from {src.model_path.name}"})
        companions = tuple(src.path / c for c in m.model.companions)
        art = Artifact.create(stage, src.model_path, labels=labels, format=m.model.format,
                              precision=m.model.precision, companions=companions,
                              source=source, reports={**m.reports, "import": report}, **fields)
        return art

    return write_artifact(out, build, force=force)


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise EdgeInferError(f"{path}: no such labels file: check --labels")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise EdgeInferError(f"{path} is empty: give one label (or character) per line")
    return [ln.rstrip("\r") for ln in lines]


def _declared_manifest(src: Artifact, spec: ImportSpec) -> tuple[Manifest, list[str] | None]:
    """The source's manifest with the family and the user's declarations applied (in memory,
    without a labels file) and the labels it declares."""
    m = with_input_shapes(src, spec.input_shapes).manifest
    fam = zoo.family(spec.like) if spec.like else None
    pre = fam.preprocess if fam else m.preprocess
    if spec.preprocess:
        unknown = set(spec.preprocess) - set(PREPROCESS_FIELDS)
        if unknown:
            raise EdgeInferError(f"unknown preprocessing fields {sorted(unknown)}")
        try:
            pre = Preprocess(**{**pre.model_dump(), **spec.preprocess, "declared": True})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]).replace("_", "-")
            raise EdgeInferError(f"bad --{field} {first.get('input')!r}: {first['msg']}"
                                 ) from None
    decoder = spec.decoder or (fam.decoder if fam else m.decoder)
    if decoder is not None and decoder not in DECODERS:
        get_decoder(decoder)  # the one-line error listing the known decoders
    params = dict(fam.decoder_params) if fam and fam.decoder == decoder else (
        dict(m.decoder_params) if decoder == m.decoder else {})
    params.update(spec.decoder_params)
    if decoder == "raw":
        params.setdefault("output_names", list(m.outputs))
    inputs = m.inputs
    if spec.layout is not None:
        if spec.layout not in ("NCHW", "NHWC"):
            raise EdgeInferError(f"bad --layout '{spec.layout}': choose NCHW or NHWC")
        inputs = (inputs[0].model_copy(update={"layout": spec.layout}), *inputs[1:])
    elif fam is not None and len(inputs[0].shape) == 4:
        inputs = (_guess_layout(inputs[0], fam.layout), *inputs[1:])
    task = spec.task or (fam.task if fam and fam.decoder == decoder else None) or (
        DECODER_TASKS.get(decoder or "", m.task) if decoder != m.decoder else m.task)
    if spec.labels is not None:
        labels = _read_labels(spec.labels)
    elif fam is not None and fam.labels is not None and fam.decoder == decoder:
        labels = fam.labels()
    else:
        labels = src.labels()
    updates: dict[str, Any] = {
        "name": spec.name or m.name, "task": task, "inputs": inputs, "preprocess": pre,
        "decoder": decoder, "decoder_params": params, "labels_file": None,
    }
    try:
        return Manifest.model_validate({**m.model_dump(), **updates}), labels
    except Exception as exc:
        raise EdgeInferError(f"the declared manifest is invalid ({str(exc).splitlines()[0]})"
                             ) from exc


def _guess_layout(spec: InputSpec, default: str) -> InputSpec:
    """The layout the shape shows (channels of 1 or 3 on one side only), else ``default``."""
    s = spec.shape
    nchw, nhwc = s[1] in (1, 3), s[3] in (1, 3)
    layout = "NCHW" if nchw and not nhwc else "NHWC" if nhwc and not nchw else default
    return spec.model_copy(update={"layout": layout})


def check_artifact(artifact: Artifact, labels: list[str] | None = None) -> dict[str, Any]:
    """Check a manifest (and ``labels``, default the artifact's) against its model; a one-line
    error at the first mismatch, else the report: what was checked, what could not be, and
    the warnings."""
    m = artifact.manifest
    labels = labels if labels is not None else artifact.labels()
    checked: list[str] = []
    not_checked: list[str] = []
    warnings: list[str] = []
    check_manifest_inputs(artifact)
    checked.append("input names, ranks and fixed dimensions against the model file")
    spec = m.inputs[0]
    static = all(is_fixed(d) for d in spec.shape)
    if len(spec.shape) == 4:
        channels = spec.shape[1] if spec.layout == "NCHW" else spec.shape[3]
        if is_fixed(channels) and channels not in (1, 3, 4):
            other = "NHWC" if spec.layout == "NCHW" else "NCHW"
            raise ShapeError(
                f"input '{spec.name}' {format_dims(spec.shape)} has {channels} channels as "
                f"{spec.layout}: declare --layout {other} if the channels are on the other side"
            )
        checked.append(f"image input {spec.layout} with {channels} channels")
    if not static:
        warnings.append(
            f"input '{spec.name}' is {format_dims(spec.shape)}: not fixed, so verbs will ask "
            "for --input-shape (or import with --input-shape to fix it here)")
    shapes = _output_shapes(artifact)
    checked.append(f"{len(shapes)} output(s) {_names_shapes(m.outputs, shapes)} by shape "
                   "inference")
    ran = _run_once(artifact) if static else None
    if ran is not None:
        shapes = [tuple(int(d) for d in o.shape) for o in ran]
        checked.append("one run on a seeded random-pixel image through the declared "
                       "preprocessing (outputs as inferred)")
    else:
        not_checked.append("running the model (an input is not fixed)")
    _check_decoder(m, shapes, labels, spec, ran, checked, not_checked, warnings)
    if not m.preprocess.declared:
        warnings.append(
            "no preprocessing declared: the model is fed raw 0-255 RGB pixels (scale 1, mean 0, "
            "std 1); declare it with --like ZOO_NAME or --mean/--std/--scale/--channel-order")
    not_checked.append("the preprocessing values (resize, channel order, scale, mean, std): "
                       "only the model's training pipeline knows them")
    if labels:
        not_checked.append("the order of the labels")
    return {"checked": checked, "not_checked": not_checked, "warnings": warnings,
            "outputs": [{"name": n, "shape": list(s)} for n, s in
                        zip(m.outputs or [f"output_{i}" for i in range(len(shapes))], shapes,
                            strict=False)]}


def _names_shapes(names: tuple[str, ...], shapes: list) -> str:
    return ", ".join(f"{n} {format_dims(s)}" for n, s in zip(names, shapes, strict=False)) or \
        ", ".join(format_dims(s) for s in shapes)


def _output_shapes(artifact: Artifact) -> list[tuple[int | None, ...]]:
    """Output shapes by shape inference at the manifest's input shapes (dims left dynamic
    are None)."""
    from edgeinfer.model.inspect import read_graph

    m = artifact.manifest
    shapes = {i.name: i.shape for i in m.inputs if all(is_fixed(d) for d in i.shape)}
    if len(shapes) == len(m.inputs) and m.model.format in ("onnx", "tflite"):
        graph = read_graph(artifact.model_path, shapes)
        return [tuple(graph.tensors[o].shape) for o in graph.outputs]
    if m.model.format == "onnx":
        from edgeinfer.model.formats import load_onnx
        from edgeinfer.model.onnx_graph import value_dims

        model = load_onnx(artifact.model_path)
        return [tuple(d if is_fixed(d) else None for d in value_dims(o))
                for o in model.graph.output]
    return []


def _run_once(artifact: Artifact) -> list[np.ndarray] | None:
    """The model's outputs on one seeded random-pixel image, or a one-line error when it does
    not run at the declared shapes."""
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.runtime.feeds import random_pixel_inputs, synthetic_feeds

    m = artifact.manifest
    spec = m.inputs[0]
    try:
        with Engine(artifact, warmup=False) as engine:
            feeds = synthetic_feeds(engine.inputs, {i.name: i.shape for i in m.inputs},
                                    preprocess=m.preprocess)
            if len(spec.shape) == 4:
                x = random_pixel_inputs(spec.shape, spec.layout, m.preprocess, 1)
                feeds[engine.inputs[0].name] = x.astype(np.float32)
            return engine.run(feeds)
    except EdgeInferError:
        raise
    except Exception as exc:
        raise ShapeError(
            f"{artifact.model_path.name} does not run at input {format_dims(spec.shape)} "
            f"({str(exc).splitlines()[0][:160]}): check --input-shape and --layout"
        ) from exc


def _check_decoder(m: Manifest, shapes: list, labels: list[str] | None, spec: InputSpec,
                   ran: list[np.ndarray] | None, checked: list[str], not_checked: list[str],
                   warnings: list[str]) -> None:
    if m.decoder is None:
        fits = fitting_decoders(shapes, labels, spec.shape)
        warnings.append(f"no decoder declared: `run` will ask for one; decoders whose layout "
                        f"the outputs fit: {', '.join(fits)}")
        return
    if m.decoder not in DECODER_LAYOUTS:
        not_checked.append(f"decoder '{m.decoder}' declares no output layout")
        return
    check_outputs(m.decoder, shapes, m.decoder_params, labels, spec.shape)
    checked.append(f"outputs fit decoder '{m.decoder}' ({DECODER_LAYOUTS[m.decoder].text})")
    if m.decoder == "classification" and labels:
        classes = class_count(shapes)
        if classes is not None and classes != len(labels):
            raise ShapeError(
                f"decoder 'classification': output 0 has {classes} classes, the labels file "
                f"{len(labels)} lines: give one label per class (--labels)")
        checked.append(f"{len(labels)} labels, one per class")
    if m.decoder == "ctc" and not labels:
        raise EdgeInferError("decoder 'ctc' needs the character set: pass --labels CHARSET.txt "
                             "(one character per line)")
    if m.decoder == "classification" and ran is not None:
        probs = is_probabilities(np.asarray(ran[0]).reshape(-1))
        mode = m.decoder_params.get("softmax", "auto")
        if probs:
            checked.append("output 0 already holds probabilities (sums to 1): softmax "
                           + ("is applied anyway (softmax=true)" if mode is True else
                              "is not applied"))
            if mode is True:
                warnings.append("output 0 already holds probabilities but softmax=true "
                                "applies it again: drop --decoder-param softmax=true")
    not_checked.append("the decoder's thresholds and parameters")
