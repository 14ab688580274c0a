"""The one directory where split computing keeps its sub-model files.

Heads and tails are ONNX files cut out of a model and loaded by an engine. Each process keeps
them in ``{tempdir}/edgeinfer-split/{pid}/``, one subdirectory per model; the process removes
its directory when it exits (``atexit``: a normal exit, Ctrl-C, or the SIGTERM a server turns
into a graceful shutdown), and the first use in any process removes the directories of
processes that are gone (killed with SIGKILL, crashed), so nothing piles up in the temporary
directory. Directories of the older layout (``{tempdir}/edgeinfer-split-*``) untouched for a
day are removed too.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["ROOT_NAME", "process_dir", "remove_if_empty", "scratch_dir", "sweep"]

log = logging.getLogger(__name__)

ROOT_NAME = "edgeinfer-split"
#: directories of the older layout are removed once untouched this long
LEGACY_AGE_S = 24 * 3600

_lock = threading.Lock()
_mine: Path | None = None
_registered = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the work directories of processes that no longer run (and old-layout ones
    untouched for a day); returns what was removed."""
    tmp = Path(tempfile.gettempdir())
    root = root or tmp / ROOT_NAME
    gone: list[Path] = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid() and not _alive(int(d.name)):
                shutil.rmtree(d, ignore_errors=True)
                gone.append(d)
    cutoff = time.time() - LEGACY_AGE_S
    for d in tmp.glob(f"{ROOT_NAME}-*"):
        try:
            if d.is_dir() and d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                gone.append(d)
        except OSError:
            continue
    if gone:
        log.info("removed %d split work directories of processes that are gone", len(gone))
    return gone


def _remove_mine() -> None:
    if _mine is not None and _mine.name == str(os.getpid()):  # not in a forked child
        shutil.rmtree(_mine, ignore_errors=True)


def process_dir() -> Path:
    """This process's work directory, created (after a sweep) on first use and removed at
    exit."""
    global _mine, _registered
    with _lock:
        if _mine is None or not _mine.is_dir():
            root = Path(tempfile.gettempdir()) / ROOT_NAME
            root.mkdir(mode=0o700, exist_ok=True)
            sweep(root)
            mine = root / str(os.getpid())
            if mine.exists() and not _registered:  # a dead process with our pid left it
                shutil.rmtree(mine, ignore_errors=True)
            mine.mkdir(mode=0o700, exist_ok=True)
            if not _registered:
                atexit.register(_remove_mine)
                _registered = True
            _mine = mine
        return _mine


def remove_if_empty() -> None:
    """Remove this process's work directory once nothing is left in it (called when a user of
    it closes: a server whose shutdown ends in a re-raised SIGTERM runs no ``atexit``)."""
    global _mine
    with _lock:
        if _mine is not None:
            try:
                _mine.rmdir()
            except OSError:  # not empty (another user), or gone already
                return
            _mine = None


def scratch_dir(prefix: str) -> Path:
    """A fresh subdirectory of this process's work directory (the caller removes it when
    done; whatever is left goes at exit)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=process_dir()))
