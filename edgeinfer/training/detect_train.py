"""The detector's training loop, reusable: ``fit(model, batches, config)`` trains a
:class:`~edgeinfer.training.detector_model.DefectDetector` (fresh, fine-tuned, or pruned) and
returns the best weights.

AdamW (no weight decay on norms and biases), linear warm-up then cosine learning rate, gradient
clipping, an exponential moving average of the weights (what is evaluated and returned), and
early stopping on the evaluator's ``fitness`` (validation mAP: see
:func:`edgeinfer.training.detect_eval.fitness`). Two hooks let other work reuse it: ``extra_loss``
adds a term computed from the step's images and outputs (neck features included: knowledge
distillation), ``evaluate`` replaces the validation (any metric, as long as it reports
``fitness``). Progress goes to an :mod:`edgeinfer.progress` callback; nothing is printed.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edgeinfer.machine import usable_cpus
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.training.datasets import LabelledImage
from edgeinfer.training.detect_batches import Batch, BatchMaker, letterbox
from edgeinfer.training.detect_eval import evaluate_outputs
from edgeinfer.training.detect_loss import detection_loss
from edgeinfer.training.detector_model import DefectDetector

log = logging.getLogger(__name__)

__all__ = ["FitResult", "StepOutputs", "TrainConfig", "ValSet", "fit", "model_outputs"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``steps_per_epoch`` defaults to one pass over the training images;
    ``scales`` (lo, hi) turns on multi-scale training (each batch at a random side in lo..hi,
    steps of 32) and ``crop`` trains on windows of that side; ``monitor`` names the
    evaluator's figure that selects the epoch and stops early (None: ``fitness``);
    ``patience`` is in evaluated epochs without a better one; ``threads`` defaults to the
    usable cores."""

    epochs: int = 30
    batch: int = 8
    steps_per_epoch: int | None = None
    imgsz: int = 640
    scales: tuple[int, int] | None = None
    crop: int | None = None
    flips: Literal["all", "horizontal", "none"] = "all"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 30
    ema: float = 0.998
    patience: int = 10
    monitor: str | None = None
    seed: int = 0
    threads: int | None = None
    box_weight: float = 2.0
    p3_max: float = 64.0
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        if self.imgsz % 32 or self.imgsz < 64:
            raise ValueError(f"imgsz must be a multiple of 32 of at least 64, not {self.imgsz}")
        if self.scales is not None and not 64 <= self.scales[0] <= self.scales[1]:
            raise ValueError(f"scales must be (lo, hi) with 64 <= lo <= hi, not {self.scales}")
        if self.epochs < 1 or self.batch < 1:
            raise ValueError("epochs and batch must be at least 1")


@dataclass
class StepOutputs:
    """What one training step computed: the neck's feature maps (strides 8 and 16), box
    distances ``[B, N, 4]``, class logits ``[B, N, C]`` and cell centres ``[N, 3]``."""

    features: list[torch.Tensor]
    dists: torch.Tensor
    logits: torch.Tensor
    points: torch.Tensor


#: an extra loss term: ``(batch, outputs) -> scalar`` added to the detection loss
ExtraLoss = Callable[[Batch, StepOutputs], torch.Tensor]
#: a validation: ``model (eval mode) -> metrics``, which must hold ``fitness`` (higher is better)
Evaluator = Callable[[nn.Module], dict[str, Any]]


@dataclass
class FitResult:
    """The best model (eval mode) and how training went."""

    model: DefectDetector
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    steps: int = 0
    seconds: float = 0.0


@torch.no_grad()
def model_outputs(model: nn.Module, images: Sequence[np.ndarray], batch: int = 4
                  ) -> list[np.ndarray]:
    """The eval-mode outputs ``[4 + C, N]`` of ``model`` on BGR uint8 images of one size."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])[..., ::-1].transpose(0, 3, 1, 2)
        y = model(torch.from_numpy(np.ascontiguousarray(x)).float().div_(255))
        outs.extend(y.numpy())
    model.train(was_training)
    return outs


class ValSet:
    """The default validation, an :data:`Evaluator`: ``items`` letterboxed to ``imgsz`` once;
    calling it gives mAP (pycocotools), recall and precision at ``conf`` (NMS over all
    classes with ``agnostic``) and ``fitness`` of a model on them."""

    def __init__(self, items: Sequence[LabelledImage], names: Sequence[str], imgsz: int = 640,
                 conf: float = 0.5, agnostic: bool = False) -> None:
        views = [letterbox(it, imgsz) for it in items]
        self.images = [v[0] for v in views]
        self.gts = [(v[1], it.classes) for v, it in zip(views, items, strict=True)]
        self.names, self.conf, self.agnostic = tuple(names), conf, agnostic

    def __call__(self, model: nn.Module, conf: float | None = None) -> dict[str, Any]:
        return evaluate_outputs(model_outputs(model, self.images), self.gts, self.names,
                                self.conf if conf is None else conf, agnostic=self.agnostic)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1 and p.requires_grad]
    rest = [p for p in model.parameters() if p.ndim <= 1 and p.requires_grad]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.lr)


def _lr(config: TrainConfig, step: int, total: int) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cos = 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
    return config.lr * warm * (0.02 + 0.98 * cos)


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if pe.dtype.is_floating_point:
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        else:
            pe.copy_(pm)


def _step(model: DefectDetector, batch: Batch, config: TrainConfig,
          extra_loss: ExtraLoss | None) -> tuple[torch.Tensor, dict[str, float]]:
    feats = model.features(batch.images.contiguous(memory_format=torch.channels_last))
    dists, logits, points = model.raw_from_features(feats)
    loss, parts = detection_loss(dists, logits, points, batch.gt, batch.classes, batch.valid,
                                 box_weight=config.box_weight, p3_max=config.p3_max)
    if extra_loss is not None:
        extra = extra_loss(batch, StepOutputs(feats, dists, logits, points))
        loss = loss + extra
        parts["extra"] = float(extra.detach())
    return loss, parts


def fit(
    model: DefectDetector,
    batches: BatchMaker,
    config: TrainConfig = TrainConfig(),
    *,
    evaluate: Evaluator | None = None,
    extra_loss: ExtraLoss | None = None,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Train ``model`` on ``batches`` as ``config`` says; see the module docstring. Without
    ``evaluate`` every epoch runs and the final averaged weights are returned."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads or usable_cpus())
    try:
        return _fit(model, batches, config, evaluate, extra_loss, Tracker(progress))
    finally:
        torch.set_num_threads(threads_before)


def _fit(model: DefectDetector, batches: BatchMaker, config: TrainConfig,
         evaluate: Evaluator | None, extra_loss: ExtraLoss | None, track: Tracker) -> FitResult:
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    per_epoch = config.steps_per_epoch or max(1, math.ceil(len(batches) / config.batch))
    total = per_epoch * config.epochs
    model = model.to(memory_format=torch.channels_last).train()
    opt = _optimizer(model, config)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    result = FitResult(model=ema)
    best_fit, best_state, waited = -math.inf, None, 0
    order, cursor, step = torch.randperm(len(batches), generator=gen), 0, 0
    t0 = time.perf_counter()
    track.start("epochs", total=config.epochs)
    for epoch in range(1, config.epochs + 1):
        losses = []
        track.start("steps", total=per_epoch, detail=f"epoch {epoch}")
        for _ in range(per_epoch):
            for group in opt.param_groups:
                group["lr"] = _lr(config, step, total)
            if cursor + config.batch > len(order):
                order, cursor = torch.randperm(len(batches), generator=gen), 0
            index = order[cursor : cursor + config.batch].tolist()
            cursor += config.batch
            loss, _parts = _step(model, batches.batch(index, rng), config, extra_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            _update_ema(ema, model, config.ema * (1 - math.exp(-(step + 1) / 200)))
            step += 1
            losses.append(float(loss.detach()))
            track.advance("steps", detail=f"loss {losses[-1]:.3f}")
        track.finish("steps")
        row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)),
                               "seconds": time.perf_counter() - t0}
        if evaluate is not None:
            row["val"] = evaluate(ema)
            if row["val"][config.monitor or "fitness"] > best_fit:
                best_fit, waited = row["val"][config.monitor or "fitness"], 0
                best_state = copy.deepcopy(ema.state_dict())
                result.best_epoch, result.best = epoch, row["val"]
            else:
                waited += 1
        result.history.append(row)
        detail = f"loss {row['loss']:.3f}"
        if "val" in row:
            detail += f"  val mAP@0.5 {row['val']['map50']:.3f} (best {result.best['map50']:.3f})"
        track.advance("epochs", detail=detail)
        log.info("epoch %d: %s", epoch, detail)
        if evaluate is not None and waited >= config.patience:
            result.stopped_early = True
            break
    track.finish("epochs")
    if best_state is not None:
        ema.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    result.steps, result.seconds = step, time.perf_counter() - t0
    result.model = ema.to(memory_format=torch.contiguous_format).eval()
    return result
