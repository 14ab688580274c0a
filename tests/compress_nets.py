"""Tiny PyTorch models for the compress tests, importable as entry points
(``compress_nets:classifier``): small enough to prune and distil in seconds."""

from __future__ import annotations

import torch
from torch import nn


class TinyClassifier(nn.Module):
    """Conv-BN-ReLU x3 with a residual, global pooling, a linear head of 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y = y + self.b(y)
        return self.head(self.c(y).mean((2, 3)))


def classifier() -> TinyClassifier:
    """The factory the tests name: fixed weights (seed 0)."""
    torch.manual_seed(0)
    return TinyClassifier().eval()


def not_a_module() -> int:
    """A factory that returns the wrong thing."""
    return 3
