"""``train_detector``: a dataset in, an ordinary detection artifact out.

Reads the dataset (YOLO, COCO, or good images with ``synth``), starts from the shipped
``defect-detector`` (its weights recovered exactly from the ONNX initializers and checked
against ONNX Runtime on the user's images), from another detector artifact made here, or from
scratch; keeps the class head when the class list matches and gives it a new one otherwise;
fine-tunes on the CPU with :func:`~edgeinfer.training.detect_train.fit`; evaluates on val
(pycocotools); exports ONNX with dynamic height and width and writes the artifact: ``yolo``
decoder, labels, letterbox preprocessing, and ``reports.train`` with every figure.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.artifact import (
    Artifact,
    InputSpec,
    SourceInfo,
    file_sha256,
    refuse_existing,
    write_artifact,
)
from edgeinfer.errors import EdgeInferError, ModelLoadError
from edgeinfer.loading import load
from edgeinfer.machine import usable_cpus
from edgeinfer.progress import ProgressFn
from edgeinfer.training.threads import prefer_passive_threads

prefer_passive_threads()  # before torch is imported (below, lazily): see training.threads

log = logging.getLogger(__name__)

__all__ = ["SCRATCH", "train_detector"]

#: ``base`` value that trains a fresh network
SCRATCH = "scratch"
#: largest difference (input pixels, scores) tolerated between the recovered torch model and
#: the ONNX file it came from, and between the trained model and its export (float rounding
#: on boxes of up to 640 px is ~1e-3)
MATCH_ATOL = 1e-2


def _max_diff_onnx(model: Any, onnx_path: Path, images: list[np.ndarray]) -> float:
    """Largest abs difference between ``model``'s outputs and ONNX Runtime's on ``images``."""
    import onnxruntime as ort

    from edgeinfer.training.detect_train import model_outputs

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = model_outputs(model, images)
    worst = 0.0
    for img, y in zip(images, ours, strict=True):
        x = np.ascontiguousarray(img[None, ..., ::-1].transpose(0, 3, 1, 2), np.float32) / 255
        (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
        worst = max(worst, float(np.abs(ref[0] - y).max()))
    return worst


def _start_model(base: str | Path, names: tuple[str, ...], width: int,
                 probe: list[np.ndarray]) -> tuple[Any, dict[str, Any]]:
    """The network to train and what it came from (``reports.train.base``)."""
    from edgeinfer.training.detector_model import (
        DefectDetector,
        detector_from_onnx,
        replace_class_head,
    )

    if str(base) == SCRATCH:
        return DefectDetector(len(names), width), {"from": SCRATCH, "head": "new"}
    art = load(base)
    if art.manifest.model.format != "onnx" or art.manifest.decoder != "yolo":
        raise ModelLoadError(f"--from {base}: a yolo-decoded ONNX detector is needed "
                             "('defect-detector' or an artifact of `edgeinfer train detector`)")
    model = detector_from_onnx(art.model_path)
    diff = _max_diff_onnx(model, art.model_path, probe)
    if diff > MATCH_ATOL:
        raise ModelLoadError(f"--from {base}: the recovered weights differ from the ONNX file "
                             f"by {diff:.3g}: it is not a DefectDetector export")
    old = tuple(art.labels() or ())
    info: dict[str, Any] = {"from": str(base), "sha256": file_sha256(art.model_path),
                            "labels": list(old), "recovered_max_abs_diff": diff}
    if old == names:
        info["head"] = "kept"
    else:
        info["head"] = "new"
        info["carried_classes"] = replace_class_head(model, names, old)
    return model, info


def train_detector(
    data: str | Path,
    out: str | Path,
    *,
    base: str | Path = "defect-detector",
    synth: Any = False,
    config: Any = None,
    width: int = 16,
    conf: float | None = None,
    val_fraction: float = 0.2,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Train a detector on ``data`` and write its artifact to ``out`` (see the module doc).

    ``base``: a zoo name or artifact of a detector made here (fine-tuning), or ``"scratch"``
    (a fresh network of ``width``); ``synth``: ``data`` is a folder of good images and the
    defects are synthesized (True, or a :class:`~edgeinfer.training.synth.DefectSynthesizer`
    saying how); ``config``: a :class:`~edgeinfer.training.detect_train.TrainConfig`;
    ``conf``: the artifact's score threshold (recall and precision are reported at it); None
    picks the threshold of best F1 on val. With ``synth`` the artifact's NMS runs over all
    classes at once (defects do not overlap: one place, one defect, whatever its class).
    """
    require("torch", "train", "training a detector")
    require("pycocotools", "train", "the validation mAP of a detector")
    import torch

    from edgeinfer.training.datasets import open_dataset
    from edgeinfer.training.detect_batches import PREPROCESS, BatchMaker, letterbox
    from edgeinfer.training.detect_eval import best_threshold
    from edgeinfer.training.detect_train import TrainConfig, ValSet, fit, model_outputs
    from edgeinfer.training.detector_model import (
        calibrate_batchnorm,
        export_detector,
    )
    from edgeinfer.training.synth import SYNTH_CLASSES, DefectSynthesizer, synth_val

    config = config or TrainConfig()
    synthesizer = synth if isinstance(synth, DefectSynthesizer) else DefectSynthesizer()
    synth = bool(synth)
    if synth and config.monitor is None:
        # boxes are exact only for the renderer that drew them: select on finding the
        # synthesized defects (mAP@0.5), not on fitting their boxes to the pixel
        config = dataclasses.replace(config, monitor="map50")
    conf_given = conf is not None
    out = Path(out)
    refuse_existing(out, force)  # before the long work
    ds = open_dataset(data, synth=synth, names=SYNTH_CLASSES, val_fraction=val_fraction,
                      seed=config.seed)
    torch.manual_seed(config.seed)
    val_items = synth_val(ds.val, config.imgsz, config.seed) if synth else list(ds.val)
    probe = [letterbox(it, config.imgsz)[0] for it in val_items[:2]]
    model, base_info = _start_model(base, ds.names, width, probe)
    batches = BatchMaker(ds.train, config.imgsz, scales=config.scales, crop=config.crop,
                         flips=config.flips, synth=synthesizer if synth else None)
    if base_info["from"] != SCRATCH:  # BatchNorms get the statistics of the user's images
        rng = np.random.default_rng(config.seed)
        n = min(len(batches), 4 * config.batch)
        calib = [batches.batch(range(i, min(n, i + config.batch)), rng).images
                 for i in range(0, n, config.batch)]
        calibrate_batchnorm(model, calib)
    val = ValSet(val_items, ds.names, config.imgsz, 0.5 if conf is None else conf,
                 agnostic=synth)
    before = val(model) if base_info["from"] != SCRATCH else None
    result = fit(model, batches, config, evaluate=val, progress=progress)
    if conf is None:
        conf = best_threshold(model_outputs(result.model, val.images), val.gts, len(ds.names),
                              agnostic=synth)
    final = val(result.model, conf)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_detector(result.model, Path(tmp) / "detector.onnx", config.imgsz)
        export_diff = _max_diff_onnx(result.model, onnx_path, probe)
        if export_diff > MATCH_ATOL:
            raise EdgeInferError(f"the exported ONNX differs from the trained model by "
                                 f"{export_diff:.3g}: report this as a bug")
        data_summary = ds.summary()
        data_summary["val_boxes"] = int(sum(len(i.boxes) for i in val_items))  # synthesized too
        report = {
            "data": data_summary, "synthetic_defects": synth,
            "synthesizer": dataclasses.asdict(synthesizer) if synth else None, "base": base_info,
            "config": dataclasses.asdict(config), "threads": config.threads or usable_cpus(),
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            "steps": result.steps, "seconds": round(result.seconds, 1),
            "before": _brief(before), "val": _brief(final, per_class=True),
            "conf": conf, "conf_from": "given" if conf_given else "best F1 on val",
            "history": [{"epoch": r["epoch"], "loss": round(r["loss"], 4),
                         **_brief(r.get("val"))} for r in result.history],
            "export_max_abs_diff": export_diff,
            "val_note": ("val defects are SYNTHESIZED onto held-out good images (the training "
                         "renderer): they select the epoch, they do not show generalisation")
            if synth else "val: " + ds.split,
        }
        return write_artifact(out, lambda stage: Artifact.create(
            stage, onnx_path, name=out.name, task="detection",
            inputs=(InputSpec(name="images", shape=(1, 3, config.imgsz, config.imgsz)),),
            outputs=("output0",), preprocess=PREPROCESS, labels=list(ds.names),
            decoder="yolo",
            decoder_params={"conf_threshold": conf, "iou_threshold": 0.5,
                            "num_classes": len(ds.names), "class_agnostic": synth},
            source=SourceInfo(
                name=f"edgeinfer train detector ({ds.origin})", license=None,
                origin=("trained from scratch" if base_info["from"] == SCRATCH
                        else f"fine-tuned from {base_info['from']}") + f" on {ds.origin}"
                + (" with SYNTHESIZED defects" if synth else ""),
            ),
            reports={"train": report},
        ), force=force)


def _brief(metrics: dict[str, Any] | None, per_class: bool = False) -> dict[str, Any]:
    """The figures of one evaluation worth keeping in the manifest."""
    if not metrics:
        return {}
    keys = ("map50", "map", "recall", "precision", "fitness")
    out = {k: round(float(metrics[k]), 4) for k in keys if k in metrics}
    if per_class:
        out["per_class"] = metrics.get("per_class", {})
        out["conf"] = metrics.get("conf")
    return out
