"""Aborting a run in progress from another thread: the scheduler's preemption.

A :class:`CancelToken` is handed to ``Engine.run(feeds, cancel=token)``; ``token.cancel()``
from any thread makes a backend that can abort (``cancellable``: ONNX Runtime through
``RunOptions.terminate``, which it checks between nodes; OpenVINO through
``InferRequest.cancel``) stop and raise :class:`RunCancelled`. A backend that cannot abort
(LiteRT) finishes the run as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from edgeinfer.errors import EdgeInferError

__all__ = ["CancelToken", "RunCancelled"]


class RunCancelled(EdgeInferError):  # noqa: N818 - it reads as what happened
    """The run was aborted through its CancelToken (it has no outputs)."""


class CancelToken:
    """Set once, from any thread; hooks a backend registers run when it is set (at once when
    it already is)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self.cancelled = False

    def cancel(self) -> None:
        """Ask the run to stop."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the token is cancelled (now, if it already is)."""
        with self._lock:
            if not self.cancelled:
                self._hooks.append(hook)
                return
        hook()
