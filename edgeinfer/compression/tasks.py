"""The two kinds of work ``compress`` does: a detector (labelled boxes: fine-tuned with the
detection loss plus distillation, scored by mAP@0.5 on val) and any other model (unlabelled
inputs: distilled from the unpruned model's outputs, scored by agreement with it on held-out
inputs). Each says which layers must keep their channels, how to fine-tune, score and export.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from edgeinfer.compression.distill import DetectorDistillation, distill_outputs
from edgeinfer.compression.sources import Subject, call_entry_point, is_entry_point
from edgeinfer.errors import DatasetError, EdgeInferError
from edgeinfer.progress import ProgressFn

__all__ = ["DetectorTask", "FineTune", "OutputsTask", "Task", "make_task"]


@dataclass(frozen=True)
class FineTune:
    """How long each step fine-tunes: ``epochs`` x ``steps_per_epoch`` steps of ``batch``
    (detector: crops of ``crop`` pixels; ``scales`` (lo, hi) rescales each batch by a factor
    drawn from lo..hi, e.g. (0.5, 1.0) for a detector that must also work on frames shrunk
    to half size), at learning rate ``lr``."""

    epochs: int = 4
    steps_per_epoch: int = 50
    batch: int = 16
    lr: float = 1e-3
    crop: int | None = 256
    scales: tuple[float, float] | None = None
    seed: int = 0


class Task(Protocol):
    """What the compress loop needs from a kind of model."""

    metric: str

    def ignored(self, model: nn.Module) -> Sequence[nn.Module]:
        """Layers whose output channels must stay."""

    def prepare(self, model: nn.Module) -> nn.Module:
        """The teacher's trainable, prunable copy."""

    def score(self, model: nn.Module) -> dict[str, Any]:
        """Held-out figures, ``score`` first (higher is better)."""

    def fine_tune(self, student: nn.Module, teacher: nn.Module, distill: bool,
                  progress: ProgressFn | None) -> dict[str, Any]:
        """Train ``student`` in place; what happened."""

    def backward(self, model: nn.Module) -> None:
        """Put gradients of a representative loss into ``model`` (Taylor importance)."""

    def export(self, model: nn.Module, path: Path) -> Path:
        """Write ``model`` as ONNX for the artifact's input."""

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for INT8: calibration (from training data) and held-out evaluation."""


def _last_layer(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The last Linear or Conv2d a forward pass runs: the layer that makes the output."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


class OutputsTask:
    """Any model, distilled on unlabelled inputs; the score is top-1 agreement with the
    teacher for ``[B, K]`` logits, else the mean cosine similarity of the outputs."""

    metric = "agreement"

    def __init__(self, subject: Subject, inputs: np.ndarray, tune: FineTune,
                 holdout: float = 0.25) -> None:
        rng = np.random.default_rng(tune.seed)
        order = rng.permutation(len(inputs))
        n_val = max(4, round(len(inputs) * holdout))
        self.val, self.train = inputs[order[:n_val]], inputs[order[n_val:]]
        self.subject, self.tune = subject, tune
        self.example = torch.from_numpy(inputs[:1].copy())
        with torch.no_grad():
            out = subject.module.eval()(self.example)
        out = out[0] if isinstance(out, (tuple, list)) else out
        self.kind = "logits" if out.ndim == 2 and out.shape[1] > 1 else "regression"
        self.metric = "agreement" if self.kind == "logits" else "cosine"
        self._teacher_out = self._outputs(subject.module, self.val)

    @staticmethod
    @torch.no_grad()
    def _outputs(model: nn.Module, inputs: np.ndarray) -> torch.Tensor:
        model.eval()
        outs = []
        for i in range(0, len(inputs), 16):
            y = model(torch.from_numpy(inputs[i:i + 16].copy()))
            outs.append((y[0] if isinstance(y, (tuple, list)) else y).flatten(1))
        return torch.cat(outs)

    def ignored(self, model: nn.Module) -> Sequence[nn.Module]:
        return _last_layer(model, self.example)

    def prepare(self, model: nn.Module) -> nn.Module:
        return copy.deepcopy(model).eval()

    def score(self, model: nn.Module) -> dict[str, Any]:
        ours = self._outputs(model, self.val)
        ref = self._teacher_out
        if self.kind == "logits":
            value = float((ours.argmax(1) == ref.argmax(1)).float().mean())
        else:
            value = float(torch.nn.functional.cosine_similarity(ours, ref, dim=1).mean())
        return {"score": value, self.metric: value, "held_out": len(self.val)}

    def fine_tune(self, student: nn.Module, teacher: nn.Module, distill: bool,
                  progress: ProgressFn | None) -> dict[str, Any]:
        if not distill:
            raise EdgeInferError("this model has no labels here: compress fine-tunes it by "
                                 "distillation only (leave --distill on)")
        t = self.tune
        return distill_outputs(student, teacher, self.train, steps=t.epochs * t.steps_per_epoch,
                               batch=t.batch, lr=t.lr, kind=self.kind, seed=t.seed,
                               progress=progress)

    def backward(self, model: nn.Module) -> None:
        x = torch.from_numpy(self.train[: self.tune.batch].copy())
        y = model.train()(x)
        (y[0] if isinstance(y, (tuple, list)) else y).pow(2).mean().backward()
        model.eval()

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train[:200], self.val

    def export(self, model: nn.Module, path: Path) -> Path:
        from edgeinfer.model.export import export

        tmpl = self.subject.template
        outputs = tuple(tmpl.outputs) if tmpl is not None and tmpl.outputs else ("output",)
        return export(model.eval(), self.example, path,
                      input_names=(self.subject.inputs[0].name,), output_names=outputs)


def detection_data(data: Any, val_fraction: float, seed: int) -> Any:
    """A :class:`~edgeinfer.training.datasets.DetectionDataset` from a YOLO/COCO path, or an
    entry point returning one."""
    from edgeinfer.training.datasets import DetectionDataset, open_dataset

    if isinstance(data, DetectionDataset):
        return data
    if is_entry_point(data):
        ds = call_entry_point(str(data), "--data")
        if not isinstance(ds, DetectionDataset):
            raise DatasetError(f"--data {data} returned a {type(ds).__name__}: a detector "
                               "needs a DetectionDataset (edgeinfer.training.datasets)")
    else:
        ds = open_dataset(data, val_fraction=val_fraction, seed=seed)
    if not ds.train or not ds.val:
        raise DatasetError(f"--data {data}: {len(ds.train)} training and {len(ds.val)} val "
                           "images: both are needed (fine-tuning, then mAP on val)")
    return ds


def _train_side(items: Sequence[Any], imgsz: int) -> int:
    """The side training images are letterboxed to: the model's input, except when every
    training image is one square size below it (generated crops), which is then kept (the
    network is fully convolutional; scaling crops up would enlarge their defects)."""
    sides = {(it.width, it.height) for it in items}
    if len(sides) == 1:
        w, h = sides.pop()
        if w == h and w < imgsz and w % 32 == 0:
            return w
    return imgsz


class DetectorTask:
    """The edgeinfer detector (``DefectDetector``) on a labelled detection dataset."""

    metric = "map50"

    def __init__(self, subject: Subject, data: Any, tune: FineTune,
                 val_fraction: float = 0.2) -> None:
        from edgeinfer.training.detect_batches import BatchMaker
        from edgeinfer.training.detect_train import ValSet

        self.subject, self.tune = subject, tune
        self.data = detection_data(data, val_fraction, tune.seed)
        names = tuple(subject.labels or ())
        if names and names != self.data.names:
            raise DatasetError(f"--data classes {list(self.data.names)} are not the model's "
                               f"{list(names)}: compress keeps the class head; retrain with "
                               "`edgeinfer train detector` first")
        self.imgsz = int(subject.inputs[0].shape[-1])
        agnostic = bool((subject.template.decoder_params if subject.template else {})
                        .get("class_agnostic", False))
        side = _train_side(self.data.train, self.imgsz)
        scales = None if tune.scales is None else tuple(
            max(64, 32 * round(f * side / 32)) for f in tune.scales)
        self.batches = BatchMaker(self.data.train, side, scales=scales,
                                  crop=tune.crop if tune.crop and tune.crop < side else None,
                                  flips="all")
        self.train_scales = scales
        self.val = ValSet(self.data.val, self.data.names, self.imgsz, agnostic=agnostic)

    def ignored(self, model: nn.Module) -> Sequence[nn.Module]:
        return [layer for head in model.heads for layer in (head.box[-1], head.cls[-1])]

    def prepare(self, model: nn.Module) -> nn.Module:
        from edgeinfer.training.detector_model import calibrate_batchnorm, make_prunable

        student = make_prunable(copy.deepcopy(model))
        rng = np.random.default_rng(self.tune.seed)
        n = min(len(self.batches), 4 * self.tune.batch)
        calibrate_batchnorm(student, [self.batches.batch(range(i, min(n, i + self.tune.batch)),
                                                         rng).images
                                      for i in range(0, n, self.tune.batch)])
        return student.eval()

    def score(self, model: nn.Module) -> dict[str, Any]:
        m = self.val(model)
        return {"score": float(m["map50"]), "map50": float(m["map50"]), "map": float(m["map"]),
                "recall": float(m["recall"]), "precision": float(m["precision"]),
                "held_out": len(self.val.images)}

    def fine_tune(self, student: nn.Module, teacher: nn.Module, distill: bool,
                  progress: ProgressFn | None) -> dict[str, Any]:
        from edgeinfer.training.detect_train import TrainConfig, fit

        t = self.tune
        config = TrainConfig(epochs=t.epochs, batch=t.batch, steps_per_epoch=t.steps_per_epoch,
                             imgsz=self.imgsz, crop=self.batches.crop, scales=self.train_scales,
                             lr=t.lr,
                             warmup_steps=10, patience=t.epochs, monitor="map50", seed=t.seed,
                             ema=0.99)
        result = fit(student, self.batches, config, evaluate=self.val,
                     extra_loss=DetectorDistillation(teacher) if distill else None,
                     progress=progress)
        student.load_state_dict(result.model.state_dict())
        student.eval()
        return {"steps": result.steps, "seconds": round(result.seconds, 1),
                "best_epoch": result.best_epoch}

    def backward(self, model: nn.Module) -> None:
        from edgeinfer.training.detect_loss import detection_loss

        batch = self.batches.batch(range(min(len(self.batches), self.tune.batch)),
                                   np.random.default_rng(self.tune.seed))
        model.train()
        dists, logits, points = model.raw(batch.images)
        loss, _ = detection_loss(dists, logits, points, batch.gt, batch.classes, batch.valid)
        loss.backward()
        model.eval()

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        from edgeinfer.training.detect_batches import letterbox
        from edgeinfer.training.detect_eval import to_input

        calib = [to_input(letterbox(it, self.imgsz)[0])[0] for it in self.data.train[:100]]
        return np.stack(calib), np.stack([to_input(img)[0] for img in self.val.images])

    def export(self, model: nn.Module, path: Path) -> Path:
        from edgeinfer.training.detector_model import export_detector

        return export_detector(model, path, self.imgsz)


def make_task(subject: Subject, data: Any, tune: FineTune) -> Task:
    """The task for ``subject``: a detector needs labelled data, anything else unlabelled."""
    from edgeinfer.compression.sources import unlabelled_inputs

    if subject.kind == "detector":
        return DetectorTask(subject, data, tune)
    return OutputsTask(subject, unlabelled_inputs(data, subject), tune)
