"""The federated task's classifier in plain torch, with local training and evaluation.

A tiny CNN (about 7k parameters, 27 KB in float32) so that a local round is well under a second
of CPU; torchvision is not needed (and does not import here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.fl.data import CLASSES, IMAGE_SHAPE

__all__ = ["TrainConfig", "accuracy", "get_arrays", "make_model", "set_arrays", "train"]


def _torch() -> Any:
    return require("torch", "fl", "federated learning")


def make_model(seed: int = 0) -> Any:
    """A fresh classifier: conv 3->16, conv 16->32, linear 512->4, with seeded weights."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(IMAGE_SHAPE[0], 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, len(CLASSES)),
    )


def get_arrays(model: Any) -> dict[str, np.ndarray]:
    """The model's parameters as float32 numpy arrays by state-dict name (copies)."""
    return {k: v.detach().cpu().numpy().astype(np.float32).copy()
            for k, v in model.state_dict().items()}


def set_arrays(model: Any, arrays: dict[str, np.ndarray]) -> None:
    """Load ``arrays`` (by state-dict name) into ``model``."""
    torch = _torch()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in
                           arrays.items()}, strict=True)


@dataclass(frozen=True)
class TrainConfig:
    """Local training options; ``proximal_mu`` > 0 adds FedProx's proximal term."""

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    proximal_mu: float = 0.0
    seed: int = 0


def train(model: Any, x: np.ndarray, y: np.ndarray, config: TrainConfig) -> float:
    """Train ``model`` in place on ``(x, y)`` with SGD + momentum; returns the mean loss.

    With ``proximal_mu`` the loss adds ``mu/2 * ||w - w_global||^2``, ``w_global`` being the
    weights the model had on entry (FedProx).
    """
    torch = _torch()
    gen = torch.Generator().manual_seed(config.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    anchor = [p.detach().clone() for p in model.parameters()]
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for _ in range(config.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), config.batch_size):
            idx = order[start:start + config.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            if config.proximal_mu > 0:
                pairs = zip(model.parameters(), anchor, strict=True)
                prox = sum(((p - a) ** 2).sum() for p, a in pairs)
                loss = loss + config.proximal_mu / 2 * prox
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
    return total / max(count, 1)


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    torch = _torch()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())
