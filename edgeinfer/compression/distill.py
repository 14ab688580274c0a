"""Knowledge distillation from the unpruned model: the pruned student learns the teacher's
outputs (and, for the detector, where its neck features look).

- Detector (:class:`DetectorDistillation`, an ``extra_loss`` for
  :func:`edgeinfer.training.detect_train.fit`): the teacher's class scores as soft targets
  (binary cross-entropy on every cell), its box distances on the cells it is sure of (L1 in
  strides, weighted by the teacher's score), and attention transfer on the two neck maps
  (Zagoruyko and Komodakis 2017: the channel-mean of squared activations, L2-normalised, so
  student and teacher compare without an adapter whatever their widths).
- Any other model (:func:`distill_outputs`): the teacher's outputs on unlabelled images, a
  softened KL divergence for a classifier (Hinton et al. 2015, temperature ``T``, scaled by
  T squared) or mean squared error for any other output. No label is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from edgeinfer.machine import usable_cpus
from edgeinfer.progress import ProgressFn, Tracker

__all__ = ["DetectorDistillation", "attention_map", "distill_outputs", "output_loss",
           "random_view"]

OutputKind = Literal["logits", "regression"]


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W]``: channel-mean of squares, L2-normalised per image."""
    return F.normalize(feature.pow(2).mean(1).flatten(1), dim=1)


class DetectorDistillation:
    """An ``extra_loss`` for ``fit``: ``(batch, student outputs) -> scalar`` (module doc)."""

    def __init__(self, teacher: nn.Module, *, scores: float = 1.0, boxes: float = 1.0,
                 features: float = 1.0, sure: float = 0.3) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weights = (scores, boxes, features)
        self.sure = sure

    def __call__(self, batch: Any, out: Any) -> torch.Tensor:
        with torch.no_grad():
            t_feats = self.teacher.features(batch.images)
            t_dists, t_logits, _ = self.teacher.raw_from_features(t_feats)
        w_scores, w_boxes, w_feats = self.weights
        t_scores = t_logits.sigmoid()
        loss = w_scores * F.binary_cross_entropy_with_logits(out.logits, t_scores) * 10
        sure = t_scores.max(-1).values
        mask = (sure > self.sure).float()
        if float(mask.sum()) > 0:
            strides = out.points[:, 2].view(1, -1, 1)
            l1 = ((out.dists - t_dists).abs() / strides).mean(-1)
            loss = loss + w_boxes * (l1 * sure * mask).sum() / mask.sum()
        at = sum((attention_map(s) - attention_map(t)).pow(2).sum(1).mean()
                 for s, t in zip(out.features, t_feats, strict=True))
        return loss + w_feats * at


def output_loss(student: torch.Tensor, teacher: torch.Tensor, kind: OutputKind,
                temperature: float = 2.0) -> torch.Tensor:
    """Distillation loss of one output: softened KL for ``logits``, MSE otherwise."""
    if kind == "logits":
        t = temperature
        return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1),
                        reduction="batchmean", log_target=True) * t * t
    return F.mse_loss(student, teacher)


def random_view(x: torch.Tensor, rng: np.random.Generator, min_side: float = 0.6
                ) -> torch.Tensor:
    """A random square-ish crop of ``x`` ``[B, C, H, W]`` (side ``min_side``..1 of the
    image, anywhere in it) resized back to ``H x W``, then a random horizontal flip per image:
    new views of few images, seen alike by student and teacher."""
    h, w = x.shape[-2:]
    f = rng.uniform(min_side, 1.0)
    ch, cw = max(8, round(h * f)), max(8, round(w * f))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    view = x[..., top:top + ch, left:left + cw]
    if (ch, cw) != (h, w):
        view = F.interpolate(view, size=(h, w), mode="bilinear", align_corners=False)
    flip = torch.from_numpy(rng.random(len(x)) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip, view.flip(-1), view)


def _first(y: Any) -> torch.Tensor:
    return y[0] if isinstance(y, (tuple, list)) else y


def distill_outputs(
    student: nn.Module,
    teacher: nn.Module,
    inputs: Sequence[np.ndarray],
    *,
    steps: int,
    batch: int = 16,
    lr: float = 1e-3,
    kind: OutputKind = "logits",
    temperature: float = 2.0,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, float]:
    """Train ``student`` in place for ``steps`` AdamW steps to reproduce ``teacher``'s first
    output on ``inputs`` (preprocessed ``[C, H, W]`` float32 arrays; image-shaped inputs are
    seen through :func:`random_view`); cosine learning rate; returns the first and last
    loss."""
    threads = torch.get_num_threads()
    torch.set_num_threads(usable_cpus())
    track = Tracker(progress)
    try:
        gen = np.random.default_rng(seed)
        teacher.eval()
        student.train()
        opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
        losses: list[float] = []
        track.start("distill", total=steps)
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
            index = gen.choice(len(inputs), size=min(batch, len(inputs)), replace=False)
            x = torch.from_numpy(np.stack([inputs[i] for i in index]))
            if x.ndim == 4 and min(x.shape[-2:]) >= 32:
                x = random_view(x, gen)
            with torch.no_grad():
                target = _first(teacher(x))
            loss = output_loss(_first(student(x)), target, kind, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            track.advance("distill", detail=f"loss {losses[-1]:.4f}")
        track.finish("distill")
    finally:
        torch.set_num_threads(threads)
    student.eval()
    return {"loss_first": losses[0] if losses else math.nan,
            "loss_last": float(np.mean(losses[-10:])) if losses else math.nan}
