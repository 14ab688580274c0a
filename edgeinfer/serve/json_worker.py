"""Large request bodies are parsed in a helper process, not in the node's own.

Python's JSON parser holds the interpreter lock for the whole of one ``json.loads``: a 15 MiB
tensor body takes a few hundred milliseconds, and in a thread it still stops every other thread
of the node for that long, its event loop included (``/healthz`` then waits too); parsing a
large multipart form in Python holds it for tens of milliseconds at a time. Bodies from
``INLINE_BYTES`` up go to one helper process (``python -m edgeinfer.serve.json_worker``,
started on first use, importing only :mod:`edgeinfer.serve.json_tensors` and
:mod:`edgeinfer.serve.forms`); the node only copies bytes in and arrays (or the image's bytes)
out. Smaller bodies are parsed in a thread, where a parse is a few milliseconds.

Why a process of our own rather than ``ProcessPoolExecutor``: its child imports the parent's
``__main__`` (the CLI, when the node runs as ``python -m edgeinfer.cli``); this one imports
nothing it does not use. Requests to the helper go one at a time; a helper that dies is started
again for the next body (the request it was parsing gets 503); at most ``max_waiting`` large
bodies are held for it at once (429 beyond: each is up to the body limit in memory).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.serve.forms import multipart_file
from edgeinfer.serve.json_tensors import BadRequestError, parse_json_body

__all__ = ["INLINE_BYTES", "JsonParser", "ParserBusyError", "WorkerGoneError"]

log = logging.getLogger(__name__)

#: bodies smaller than this are parsed in a thread of the node (a few ms of the lock at most)
INLINE_BYTES = 1 << 20
_LEN = struct.Struct("<Q")


class WorkerGoneError(EdgeInferError):
    """The helper process died while parsing (answered 503)."""


class ParserBusyError(EdgeInferError):
    """Too many large bodies wait for the helper already (answered 429)."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (n,) = _LEN.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)  # between our own two processes: never bytes from the network


class _Shape:
    """What :func:`parse_json_body` reads of an input spec (name, shape): picklable."""

    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class JsonParser:
    """Parses JSON tensor bodies off the event loop: in a thread when small, in the helper
    process when large. Thread-safe; :meth:`close` stops the helper."""

    def __init__(self, inline_bytes: int = INLINE_BYTES, max_waiting: int = 4) -> None:
        self.inline_bytes, self.max_waiting = inline_bytes, max_waiting
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._waiting = 0  # large bodies handed to the helper or waiting for it (event loop)

    async def parse(self, raw: bytes, inputs: Any, max_elements: int) -> dict[str, np.ndarray]:
        """Feeds from ``raw`` for ``inputs`` (manifest input specs); BadRequestError as
        :func:`~edgeinfer.serve.json_tensors.parse_json_body` raises it."""
        if len(raw) < self.inline_bytes:
            return await asyncio.to_thread(parse_json_body, raw, inputs, max_elements)
        shapes = [(i.name, tuple(i.shape)) for i in inputs]
        return await self._in_helper(("json", shapes, max_elements, raw))

    async def multipart(self, body: bytes, content_type: str) -> bytes:
        """The image file of a multipart body (:func:`edgeinfer.serve.forms.multipart_file`)."""
        if len(body) < self.inline_bytes:
            return await asyncio.to_thread(multipart_file, body, content_type)
        return await self._in_helper(("multipart", content_type, body))

    async def _in_helper(self, request: tuple) -> Any:
        if self._waiting >= self.max_waiting:  # each holds its body: bound them
            raise ParserBusyError(f"{self._waiting} large bodies wait to be parsed: retry in a "
                                  "moment, or send smaller ones")
        self._waiting += 1
        try:
            return await asyncio.to_thread(self._exchange, request)
        finally:
            self._waiting -= 1

    def _exchange(self, request: tuple) -> Any:
        with self._lock:
            proc = self._helper()
            try:
                _send(proc.stdin, request)
                kind, value = _receive(proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._stop()
                raise WorkerGoneError("the JSON parser process died on this body: retry, or "
                                      "send the tensor in a smaller request") from exc
        if kind == "error":
            raise BadRequestError(value)
        return value

    def _helper(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", __name__],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            log.info("started the JSON parser process (pid %d)", self._proc.pid)
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the helper process (it is started again if needed)."""
        with self._lock:
            if self._proc is not None:
                try:
                    self._proc.stdin.close()
                    self._proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._stop()


def _parse(request: tuple) -> Any:
    """One request in the helper: JSON tensors (feeds) or a multipart form (the file)."""
    if request[0] == "json":
        _, shapes, max_elements, raw = request
        return parse_json_body(raw, [_Shape(n, s) for n, s in shapes], max_elements)
    _, content_type, body = request
    return multipart_file(body, content_type)


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The helper's loop: parse each request, answer the result or the one-line error."""
    while True:
        try:
            request = _receive(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", _parse(request)))
        except EdgeInferError as exc:
            _send(stdout, ("error", str(exc)))


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
