"""Progress bars for the library's :class:`edgeinfer.progress.Step` events (stderr, transient)."""

from __future__ import annotations

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

#: bars go to stderr so that ``--json`` output on stdout stays one document
err_console = Console(stderr=True)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressFn]:
    """A :data:`ProgressFn` that draws one bar per task while the ``with`` block runs."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=err_console, transient=True, disable=not enabled) as bars:
        tasks: dict[str, TaskID] = {}

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

        yield on_step
