"""Progress bars for the library's :class:`edgeinfer.progress.Step` events (stderr, transient)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from edgeinfer.progress import ProgressFn, Step

#: bars are redrawn at most this often (seconds)
REDRAW_S = 0.1


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressFn]:
    """A :data:`ProgressFn` that draws one bar per task while the ``with`` block runs.

    Bars go to stderr, so a ``--json`` document on stdout stays alone there, through a copy of
    the terminal's descriptor, so they stay visible while a converter's own output is diverted.
    They are redrawn when an event arrives, never from a thread of their own: a refresh thread
    would take CPU from the inferences ``bench`` and ``tune`` are timing.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
    with os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace") as terminal, Progress(
        *columns, console=Console(file=terminal), transient=True, auto_refresh=False,
        disable=not enabled
    ) as bars:
        tasks: dict[str, TaskID] = {}
        drawn = [0.0]

        def on_step(step: Step) -> None:
            if step.kind == "start" or step.task not in tasks:
                if step.task in tasks:
                    bars.remove_task(tasks[step.task])
                tasks[step.task] = bars.add_task(step.task, total=step.total, detail=step.detail)
            bar = tasks[step.task]
            if step.kind == "finish":
                bars.remove_task(bar)
                del tasks[step.task]
                return
            bars.update(bar, completed=step.done, total=step.total, detail=step.detail)
            now = time.monotonic()
            if now - drawn[0] >= REDRAW_S:
                drawn[0] = now
                bars.refresh()

        yield on_step
