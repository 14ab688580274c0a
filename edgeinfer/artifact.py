"""The artifact: a directory holding model file(s) and an ``edgeinfer.json`` manifest.

The manifest says everything a runner needs without code: input spec, preprocessing, labels,
decoder, precision, where the model came from, tool versions, and measured reports. It is a
versioned pydantic model validated on load; writes go through a temporary file and a rename,
so a failed write never leaves a half-written manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeinfer.errors import ArtifactError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "Artifact",
    "InputSpec",
    "Manifest",
    "ModelFile",
    "Preprocess",
    "RuntimeConfig",
    "SourceInfo",
    "file_sha256",
    "load_artifact",
    "tool_versions",
]

MANIFEST_NAME = "edgeinfer.json"
MANIFEST_VERSION = 1

Layout = Literal["NCHW", "NHWC", "other"]
Precision = Literal["fp32", "fp16", "int8", "int8-dynamic", "mixed"]
ModelFormatName = Literal["onnx", "tflite", "openvino"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """One model input: the static shape it is fed at, its dtype and memory layout."""

    name: str = Field(description="The input's name in the model file.")
    shape: tuple[int, ...] = Field(
        description="The shape fed, e.g. [1, 3, 640, 640]; -1 marks a dimension nobody fixed "
        "yet (fix it with `edgeinfer import --input-shape` or a verb's --input-shape)."
    )
    dtype: str = Field("float32", description="numpy dtype name of the fed tensor.")
    layout: Layout = Field(
        "NCHW", description="Where the channels are: NCHW (channels first, ONNX habit), NHWC "
        "(channels last, TFLite habit) or other (not an image)."
    )


class Preprocess(_Frozen):
    """How an image becomes the input tensor: resized as ``resize`` says, channels put in
    ``channel_order``, then ``((pixel * scale) - mean) / std`` per channel."""

    resize: Literal["stretch", "letterbox", "center-crop", "none"] = Field(
        "stretch", description="stretch: to the input size, aspect ratio lost; letterbox: "
        "aspect kept, padded with pad_value; center-crop: shorter side to size/0.875, then the "
        "centre cut out (ImageNet habit); none: the image must already have the input size."
    )
    interpolation: Literal["area", "linear", "nearest", "cubic"] = Field(
        "area", description="OpenCV interpolation used to resize.")
    channel_order: Literal["RGB", "BGR"] = Field(
        "RGB", description="Channel order the model was trained on (OpenCV reads BGR; "
        "PyTorch and TensorFlow pipelines mostly feed RGB, PaddleOCR feeds BGR).")
    scale: float = Field(
        1.0, description="Multiplies the 0-255 pixel first: 1/255 for models trained on 0..1.")
    mean: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0), description="Subtracted per channel after scale, in channel_order.")
    std: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="Divides per channel after the mean, in channel_order.")
    pad_value: int = Field(114, description="Pixel value (0-255) of letterbox padding.")
    declared: bool = Field(
        True, description="False when nobody declared the preprocessing (a bare model file): "
        "the defaults above feed raw 0-255 pixels and every verb warns.")


class ModelFile(_Frozen):
    """A model file inside the artifact directory."""

    path: str = Field(description="File name inside the artifact directory.")
    format: ModelFormatName = Field(description="onnx, tflite or openvino (.xml).")
    precision: Precision = Field(
        "fp32", description="What the file computes in: fp32, fp16, int8 (everything that can "
        "be), int8-dynamic (weights only), mixed (INT8 with some layers kept in float).")
    sha256: str = Field(description="SHA-256 of the file, checked by reports and sources.")
    bytes: int = Field(description="Size of the file.")
    companions: tuple[str, ...] = Field(
        (), description="Files the model needs beside it (OpenVINO's .bin).")


class SourceInfo(_Frozen):
    """Where the model came from: a zoo name, a file, or a PyTorch module."""

    name: str = Field(description="The file, zoo entry or module the model was made from.")
    sha256: str | None = Field(None, description="SHA-256 of that source file.")
    license: str | None = Field(None, description="The source's license, when known.")
    origin: str | None = Field(
        None, description="How this model was made from the source (exported, imported, "
        "optimized from, converted from...).")


class RuntimeConfig(_Frozen):
    """The backend and options chosen for this artifact (by ``edgeinfer tune``); ``Engine``
    uses them unless the caller names others."""

    backend: str = Field(description="ort, litert or openvino.")
    threads: int = Field(0, description="Intra-op threads; 0: the backend's default.")
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    hint: Literal["latency", "throughput"] = Field(
        "latency", description="OpenVINO's performance hint.")
    streams: int = Field(0, description="OpenVINO streams; 0: from the hint.")
    compute_precision: Literal["f32", "bf16", "f16", "default"] = Field(
        "f32", description="What OpenVINO computes in.")
    spinning: Literal["run", "always", "never"] = Field(
        "run", description="ONNX Runtime worker spinning (run: only inside a run).")
    chosen_by: str = Field("tune", description="What chose these settings.")


class Manifest(_Frozen):
    """The artifact manifest (``edgeinfer.json``): everything a runner needs without code.

    Write one with ``edgeinfer import MODEL -o ARTIFACT`` (it validates the fields against the
    model); every other verb carries it forward into the artifacts it makes.
    """

    version: Literal[1] = Field(MANIFEST_VERSION, description="Manifest format version.")
    name: str = Field(description="The model's name (used in file names and reports).")
    task: Literal[
        "classification", "detection", "text-detection", "text-recognition", "face-detection",
        "landmarks", "anomaly-detection", "other",
    ] = Field(description="What the model does; informs reports and the default decoder.")
    model: ModelFile
    inputs: tuple[InputSpec, ...] = Field(description="The model's inputs, in model order.")
    outputs: tuple[str, ...] = Field(
        (), description="The model file's output names in the order the decoder reads them "
        "(a converted model's outputs matched to the source's by name or by verified values); "
        "empty: the file's own order.")
    preprocess: Preprocess = Preprocess()
    labels_file: str | None = Field(
        None, description="A file in the artifact, one label per line: class names for "
        "classification and detection, the character set for the ctc text decoder.")
    decoder: str | None = Field(
        None, description="The output decoder (`edgeinfer import --help` lists them): "
        "classification, yolo, blazeface, db, ctc, landmarks, raw...; None: no decoding "
        "declared (run asks for one).")
    decoder_params: dict[str, Any] = Field(
        default_factory=dict, description="The decoder's parameters (thresholds, top_k, "
        "softmax...): see each decoder's documentation.")
    source: SourceInfo
    tools: dict[str, str] = Field(
        default_factory=dict, description="Versions of the tools that wrote the artifact.")
    runtime: RuntimeConfig | None = Field(
        None, description="Backend and options chosen by `edgeinfer tune`.")
    reports: dict[str, Any] = Field(
        default_factory=dict, description="Measured reports by verb (import, optimize, "
        "convert, tune): what was checked, on what data, with what result.")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of edgeinfer and the model tooling present, for the manifest."""
    out = {}
    for dist in ("edgeinfer", "onnx", "onnxruntime", "torch", "ai-edge-litert", "openvino"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class Artifact:
    """An artifact directory with its validated manifest. Immutable once loaded."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def model_path(self) -> Path:
        """Absolute path of the primary model file."""
        return self.path / self.manifest.model.path

    def labels(self) -> list[str] | None:
        """Class labels, one per line of the labels file, or None."""
        if not self.manifest.labels_file:
            return None
        return (self.path / self.manifest.labels_file).read_text(encoding="utf-8").splitlines()

    @classmethod
    def create(
        cls,
        directory: str | Path,
        model_file: str | Path,
        *,
        labels: list[str] | None = None,
        format: ModelFormatName = "onnx",
        precision: Precision = "fp32",
        companions: tuple[str | Path, ...] = (),
        **fields: Any,
    ) -> Artifact:
        """Write a new artifact: copy ``model_file``, its ``companions`` and ``labels`` in, then
        the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        src = Path(model_file)
        dest = directory / src.name
        for f in (src, *map(Path, companions)):
            if f.resolve() != (directory / f.name).resolve():
                shutil.copyfile(f, directory / f.name)
        labels_file = None
        if labels is not None:
            labels_file = "labels.txt"
            _atomic_write(directory / labels_file, "\n".join(labels) + "\n")
        tools = {**tool_versions(), **fields.pop("tools", {})}
        manifest = Manifest(
            model=ModelFile(
                path=dest.name,
                format=format,
                precision=precision,
                sha256=file_sha256(dest),
                bytes=dest.stat().st_size,
                companions=tuple(Path(c).name for c in companions),
            ),
            labels_file=labels_file,
            tools=tools,
            **fields,
        )
        artifact = cls(directory, manifest)
        artifact.save()
        return artifact

    def derive(self, directory: str | Path, model_file: str | Path, *, origin: str,
               **changes: Any) -> Artifact:
        """A new artifact made from this one (optimized, converted, tuned): the same name,
        task, labels, inputs, outputs, pre/post-processing and reports unless ``changes``
        (any :meth:`create` argument) say otherwise; its source records this artifact's model
        file (sha256) and ``origin``."""
        m = self.manifest
        fields: dict[str, Any] = {
            "labels": self.labels(), "name": m.name, "task": m.task, "inputs": m.inputs,
            "outputs": m.outputs, "preprocess": m.preprocess, "decoder": m.decoder,
            "decoder_params": m.decoder_params, "reports": m.reports,
            "source": SourceInfo(name=m.source.name, sha256=file_sha256(self.model_path),
                                 license=m.source.license, origin=origin),
        }
        return Artifact.create(directory, model_file, **{**fields, **changes})

    def save(self) -> None:
        """Write the manifest atomically."""
        text = json.dumps(self.manifest.model_dump(mode="json"), indent=2) + "\n"
        _atomic_write(self.path / MANIFEST_NAME, text)

    def with_report(self, key: str, report: dict[str, Any]) -> Artifact:
        """Return a copy with ``report`` stored under ``reports[key]``, saved to disk."""
        reports = {**self.manifest.reports, key: report}
        updated = Artifact(self.path, self.manifest.model_copy(update={"reports": reports}))
        updated.save()
        return updated


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_existing(out: str | Path, force: bool) -> None:
    """A one-line error when ``out`` exists and is not an empty directory, unless ``force``
    (verbs call it before long work, so a wrong ``-o`` fails at once)."""
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ArtifactError(
            f"{out} exists and is not empty: choose another -o/--out, or pass --force to "
            "replace it"
        )


def write_artifact(
    out: str | Path, build: Callable[[Path], Artifact], *, force: bool = False
) -> Artifact:
    """Make an artifact at ``out`` all or nothing: ``build(stage)`` writes it into a staging
    directory beside ``out``, which replaces ``out`` only once ``build`` has returned. A failed
    or interrupted build leaves ``out`` as it was. An existing non-empty ``out`` is an error
    unless ``force``."""
    out = Path(out)
    refuse_existing(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        built = build(stage)
        if out.exists():
            old = stage.with_suffix(".old")
            os.replace(out, old)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return Artifact(out, built.manifest)


def load_artifact(path: str | Path) -> Artifact:
    """Load and validate an artifact directory; every problem is a one-line ArtifactError."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such artifact directory: check the path")
    if not manifest_path.exists():
        raise ArtifactError(
            f"{path} has no {MANIFEST_NAME}: it is not an edgeinfer artifact "
            "(create one with `edgeinfer zoo get` or `edgeinfer optimize`)"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"{manifest_path} is not valid JSON ({exc}): restore it or re-create the artifact"
        ) from exc
    version = raw.get("version") if isinstance(raw, dict) else None
    if version != MANIFEST_VERSION:
        raise ArtifactError(
            f"{manifest_path} has manifest version {version!r}, this edgeinfer reads version "
            f"{MANIFEST_VERSION}: upgrade edgeinfer or re-create the artifact"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(
            f"{manifest_path}: invalid manifest field '{where}' ({first['msg']}): "
            "fix the field or re-create the artifact"
        ) from exc
    artifact = Artifact(path, manifest)
    if not artifact.model_path.exists():
        raise ArtifactError(
            f"{path}: model file '{manifest.model.path}' named in {MANIFEST_NAME} is missing: "
            "restore it or re-create the artifact"
        )
    for companion in manifest.model.companions:
        if not (path / companion).exists():
            raise ArtifactError(
                f"{path}: file '{companion}' that '{manifest.model.path}' needs is missing: "
                "restore it or re-create the artifact"
            )
    if manifest.labels_file and not (path / manifest.labels_file).exists():
        raise ArtifactError(
            f"{path}: labels file '{manifest.labels_file}' is missing: restore it or re-create "
            "the artifact"
        )
    return artifact
