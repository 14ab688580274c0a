"""Distillation: the detector's loss pulls a student only where it differs from the teacher;
random views keep the input shape."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import torch

from edgeinfer.compression.distill import DetectorDistillation, random_view
from edgeinfer.training.detect_train import StepOutputs
from edgeinfer.training.detector_model import DefectDetector


def _grad_norm(student: DefectDetector, teacher: DefectDetector, x: torch.Tensor) -> float:
    student.zero_grad(set_to_none=True)
    feats = student.features(x)
    dists, logits, points = student.raw_from_features(feats)
    loss = DetectorDistillation(teacher, sure=0.0)(SimpleNamespace(images=x),
                                                   StepOutputs(feats, dists, logits, points))
    loss.backward()
    return float(sum(p.grad.norm() ** 2 for p in student.parameters() if p.grad is not None))


def test_the_detector_loss_is_stationary_at_the_teacher_and_pulls_elsewhere() -> None:
    torch.manual_seed(0)
    teacher = DefectDetector(num_classes=2, width=8, head=16).eval()
    x = torch.rand(2, 3, 64, 64)
    same = copy.deepcopy(teacher).eval()
    other = DefectDetector(num_classes=2, width=8, head=16).eval()
    assert _grad_norm(same, teacher, x) < 1e-8
    assert _grad_norm(other, teacher, x) > 1e-4


def test_random_views_keep_the_shape_and_differ() -> None:
    x = torch.rand(4, 3, 48, 48)
    rng = np.random.default_rng(0)
    views = [random_view(x, rng) for _ in range(3)]
    assert all(v.shape == x.shape for v in views)
    assert not torch.equal(views[0], views[1])
