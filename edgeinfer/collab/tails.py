"""The node side of split inference: a FastAPI router that serves the tails of ONNX models.

A device (:class:`edgeinfer.collab.offload.SplitClient`) runs the head, compresses the cut
tensors (:mod:`edgeinfer.collab.compress`) and POSTs one frame; the node runs the tail and
answers with the outputs. Servers mount the router through :func:`mount_offload`, the one
entry point (``edgeinfer serve`` and ``edgeinfer split-node`` both do), under ``/v1/offload``:

    GET  /models               model names this node serves
    GET  /{name}/profile       the node's tail latency for every sampled cut (JSON)
    POST /{name}/infer         body: a tensor frame (the cut); answer: a frame of the outputs,
                               header ``x-edgeinfer-tail-ms``
    POST /{name}/infer-image   body: JPEG bytes of the input (models with an artifact manifest
                               only); the node decodes, preprocesses as the manifest says and
                               runs the whole model; answer as /infer (tail = all of that)
    POST /probe                echoes the body size (bandwidth and RTT probes)

The answer frame is exact float32 + lz4 unless the device asks otherwise in the
``x-edgeinfer-answer`` header (``fp16+lz4``: half the bytes for a detector's raw output, values
to float16 precision); the profile publishes the answer's size in every such encoding, so the
planner charges the bytes that will really come back.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.compress import (
    ANSWER,
    Compression,
    FrameError,
    answer_compression,
    decode,
    encode,
)
from edgeinfer.collab.profile import DeviceSim, ImageCodec, SplitModel
from edgeinfer.errors import EdgeInferError

__all__ = ["ANSWER_HEADER", "OFFLOAD_PREFIX", "mount_offload", "router"]

log = logging.getLogger(__name__)

#: the request header in which the device names the answer's encoding (``fp16+lz4``...)
ANSWER_HEADER = "x-edgeinfer-answer"
#: where servers mount the router
OFFLOAD_PREFIX = "/v1/offload"


class _NodeModel:
    """One model on the node: its SplitModel, the tail profile once measured, and a lock."""

    def __init__(
        self, source: str | Path, threads: int, max_cuts: int, runs: int, clock: str
    ) -> None:
        self.source = source
        self.threads = threads
        self.clock = DeviceSim(max(1, threads), 1.0, clock)
        self.max_cuts = max_cuts
        self.runs = runs
        self.lock = threading.Lock()
        self._split: SplitModel | None = None
        self._profile: dict[str, Any] | None = None
        self._codec: ImageCodec | bool | None = False  # False: not looked up yet

    def codec(self) -> ImageCodec | None:
        """The JPEG option's codec, or None when the model has no manifest to preprocess by."""
        if self._codec is False:
            self._codec = ImageCodec.for_model(self.source)
        assert self._codec is not True
        return self._codec

    def split(self) -> SplitModel:
        if self._split is None:
            self._split = SplitModel(self.source, self.threads, self.max_cuts)
        return self._split

    def profile(self) -> dict[str, Any]:
        if self._profile is None:
            sm = self.split()
            profs = sm.profile_node(sm.example_feeds(), self.runs, clock=self.clock)
            codec = self.codec()
            if codec is not None:  # the "send a JPEG" option, only with a manifest
                profs.append(sm.profile_jpeg_node(codec, self.runs, self.clock))
            self._profile = {
                "model": sm.path.name,
                "threads": self.threads,
                "clock": self.clock.clock,
                "cuts": [p.to_json() for p in profs],
            }
        return self._profile


def router(
    models: Mapping[str, str | Path] | str | Path,
    *,
    threads: int = 0,
    max_cuts: int = 30,
    profile_runs: int = 3,
    clock: str = "wall",
) -> Any:
    """A FastAPI router serving split tails of ``models`` (name -> ONNX file, artifact
    directory or zoo name; a single path serves under its stem). Engines are built lazily on
    first use and kept; ``threads`` are each engine's intra-op threads (0: onnxruntime's).
    ``clock="cpu"`` (with threads=1) reports tail times as CPU time of the worker thread, so
    a benchmark on a shared machine is not skewed by other processes' load."""
    fastapi = require("fastapi", "serve", "the offload endpoint")
    from fastapi import Request, Response
    from fastapi.responses import JSONResponse

    if clock == "cpu" and threads != 1:
        raise EdgeInferError(
            f"clock 'cpu' with threads={threads}: CPU time of the calling thread measures a "
            "tail only when onnxruntime computes in it; use threads=1 or clock 'wall'"
        )
    if not isinstance(models, Mapping):
        models = {Path(str(models)).stem: models}
    registry = {
        n: _NodeModel(src, threads, max_cuts, profile_runs, clock) for n, src in models.items()
    }
    api = fastapi.APIRouter()

    def _get(name: str) -> _NodeModel:
        if name not in registry:
            raise fastapi.HTTPException(
                404, f"model '{name}' is not served here: choose one of {sorted(registry)}"
            )
        return registry[name]

    @api.get("/models")
    def list_models() -> dict[str, list[str]]:
        return {"models": sorted(registry)}

    @api.get("/{name}/profile")
    def profile(name: str) -> JSONResponse:
        nm = _get(name)
        with nm.lock:
            return JSONResponse(nm.profile())

    @api.post("/probe")
    async def probe(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    def _answer_as(request: Request) -> Compression:
        """The answer encoding the device asked for (``X-Edgeinfer-Answer``; default raw+lz4)."""
        asked = request.headers.get(ANSWER_HEADER)
        if asked is None:
            return ANSWER
        try:
            return answer_compression(asked)
        except EdgeInferError as exc:
            raise fastapi.HTTPException(400, str(exc)) from exc

    @api.post("/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        nm = _get(name)
        answer = _answer_as(request)
        body = await request.body()
        try:
            cut = decode(body)
        except FrameError as exc:
            raise fastapi.HTTPException(400, str(exc)) from exc

        def run() -> tuple[dict[str, np.ndarray], float, float]:
            with nm.lock:
                sm = nm.split()
                tensors = sm.cut_for(list(cut))
                return nm.clock.time(lambda: sm.run_tail(tensors, cut))

        return await _answer(run, answer)

    @api.post("/{name}/infer-image")
    async def infer_image(name: str, request: Request) -> Response:
        nm = _get(name)
        codec = nm.codec()
        if codec is None:
            raise fastapi.HTTPException(
                404, f"model '{name}' has no artifact manifest to preprocess an image by: send "
                "tensor frames to /infer, or serve an artifact directory"
            )
        answer = _answer_as(request)
        body = await request.body()

        def run() -> tuple[dict[str, np.ndarray], float, float]:
            with nm.lock:
                full = nm.split().full()
                return nm.clock.time(lambda: full.run(codec.decode(body)))

        return await _answer(run, answer)

    async def _answer(run: Callable[[], tuple[dict[str, np.ndarray], float, float]],
                      answer: Compression) -> Any:
        import anyio.to_thread

        try:
            out, tail_s, wall_s = await anyio.to_thread.run_sync(run)
        except EdgeInferError as exc:
            raise fastapi.HTTPException(400, str(exc)) from exc
        return Response(
            encode(out, answer),
            media_type="application/octet-stream",
            headers={
                "x-edgeinfer-tail-ms": f"{tail_s * 1000:.3f}",
                "x-edgeinfer-tail-wall-ms": f"{wall_s * 1000:.3f}",
            },
        )

    return api


def mount_offload(app: Any, models: Mapping[str, str | Path], **router_kw: Any) -> None:
    """Mount the offload router for ``models`` on ``app`` under :data:`OFFLOAD_PREFIX` (the one
    way servers serve split tails; ``router_kw`` as for :func:`router`)."""
    app.include_router(router(models, **router_kw), prefix=OFFLOAD_PREFIX)
