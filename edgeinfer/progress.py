"""Progress of long work, reported by the library through a callback; the CLI renders it.

Library code never prints. A long function takes ``progress: ProgressFn | None = None`` and
reports :class:`Step` events through a :class:`Tracker`; ``edgeinfer.cli.progress`` turns them
into progress bars, tests collect them in a list, and ``None`` means nobody listens::

    def train(..., progress: ProgressFn | None = None) -> Model:
        track = Tracker(progress)
        track.start("epochs", total=epochs)
        for epoch in range(epochs):
            ...
            track.advance("epochs", detail=f"loss {loss:.3f}")
        track.finish("epochs")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ProgressFn", "Step", "Tracker"]


@dataclass(frozen=True)
class Step:
    """One progress event: ``task`` started, advanced to ``done`` of ``total``, or finished."""

    task: str
    kind: Literal["start", "advance", "finish"]
    done: float = 0
    total: int | None = None
    detail: str = ""


ProgressFn = Callable[[Step], None]


class Tracker:
    """Counts each task's steps and sends them to ``progress`` (a no-op when it is None)."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self._progress = progress
        self._done: dict[str, float] = {}
        self._total: dict[str, int | None] = {}

    @property
    def progress(self) -> ProgressFn | None:
        """The callback this tracker reports to, to hand on to a callee."""
        return self._progress

    def start(self, task: str, total: int | None = None, detail: str = "") -> None:
        """Begin ``task`` of ``total`` steps (None: unknown)."""
        self._done[task], self._total[task] = 0, total
        self._send(Step(task, "start", 0, total, detail))

    def advance(self, task: str, steps: int = 1, detail: str = "") -> None:
        """``steps`` more of ``task`` are done."""
        self._done[task] = self._done.get(task, 0) + steps
        self._send(Step(task, "advance", self._done[task], self._total.get(task), detail))

    def update(self, task: str, done: float, detail: str = "") -> None:
        """``task`` has reached ``done`` steps (fractions allowed: part of a step measured)."""
        self._send(Step(task, "advance", done, self._total.get(task), detail))

    def finish(self, task: str, detail: str = "") -> None:
        """``task`` is over (its bar goes away)."""
        self._send(Step(task, "finish", self._done.get(task, 0), self._total.get(task), detail))

    def _send(self, step: Step) -> None:
        if self._progress is not None:
            self._progress(step)
