"""Decoded results beside detections and classes: recognised text, landmark points and raw
named outputs. Each has ``to_dicts()`` (one entry per displayable item, as classification and
detection results), ``to_json()`` (everything, JSON-ready) and ``describe()`` (one line)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LandmarksResult", "RawResult", "TextResult"]


@dataclass(frozen=True)
class TextResult:
    """One recognised text line and its confidence (mean probability of its characters)."""

    text: str
    score: float

    def to_dicts(self) -> list[dict[str, Any]]:
        """One item: the text as its label."""
        return [{"class_id": 0, "label": self.text, "score": self.score}]

    def to_json(self) -> dict[str, Any]:
        """``{"text": ..., "score": ...}``."""
        return {"text": self.text, "score": self.score}

    def describe(self) -> str:
        """``text "HELLO" (0.981)``."""
        return f'text "{self.text}" ({self.score:.3f})'


@dataclass(frozen=True)
class LandmarksResult:
    """Landmark points ``[K, D]`` in original-image pixels (x, y, then z as the model gives it)
    and the presence score when the model has one."""

    points: np.ndarray
    presence: float | None

    def to_dicts(self) -> list[dict[str, Any]]:
        """No per-item lines: points are not classes (see ``to_json``)."""
        return []

    def to_json(self) -> dict[str, Any]:
        """``{"points": [[x, y, z], ...], "presence": p}``."""
        return {"points": np.round(self.points, 2).tolist(), "presence": self.presence}

    def describe(self) -> str:
        """``468 landmarks (3-D), presence 0.998``."""
        pres = "" if self.presence is None else f", presence {self.presence:.3f}"
        return f"{len(self.points)} landmarks ({self.points.shape[1]}-D){pres}"


@dataclass(frozen=True)
class RawResult:
    """The model's outputs as they are, by name."""

    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, outputs: Sequence[np.ndarray], names: Sequence[str] | None) -> RawResult:
        """Outputs named by ``names`` (``output_i`` where a name is missing)."""
        names = list(names or [])
        return cls(tuple(names[i] if i < len(names) else f"output_{i}"
                         for i in range(len(outputs))),
                   tuple(np.asarray(o) for o in outputs))

    def to_dicts(self) -> list[dict[str, Any]]:
        """No per-item lines (see ``to_json``)."""
        return []

    def to_json(self) -> dict[str, Any]:
        """``{name: {"shape": [...], "dtype": "float32", "data": nested lists}}``."""
        return {n: {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.tolist()}
                for n, a in zip(self.names, self.arrays, strict=True)}

    def describe(self) -> str:
        """``outputs: logits [1, 10] float32``."""
        return "outputs: " + ", ".join(f"{n} {list(a.shape)} {a.dtype}"
                                       for n, a in zip(self.names, self.arrays, strict=True))
