"""A format-neutral view of a model graph, the common ground of inspection and memory planning.

ONNX and TFLite readers both produce a :class:`GraphInfo`; MAC counting, tensor lifetimes and
the arena planner work on it without knowing where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

TensorKind = Literal["input", "output", "activation", "weight"]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: static shape (all dimensions resolved), dtype name and role."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: TensorKind

    @property
    def numel(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.numel * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class OpInfo:
    """One operator in topological position. ``macs`` is None when the op is not counted."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int | None = None


@dataclass(frozen=True)
class GraphInfo:
    """A model graph with every tensor's shape resolved; ``ops`` are in topological order."""

    format: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tensors: dict[str, TensorInfo]
    ops: tuple[OpInfo, ...]
    opset: int | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def weights(self) -> list[TensorInfo]:
        """Constant tensors (initializers, constant buffers)."""
        return [t for t in self.tensors.values() if t.kind == "weight"]
