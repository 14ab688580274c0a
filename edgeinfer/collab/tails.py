"""The node side of split inference: split tails of ONNX models served over HTTP.

A device (:class:`edgeinfer.collab.offload.SplitClient`) runs the head, compresses the cut
tensors (:mod:`edgeinfer.collab.compress`) and POSTs one frame; the node runs the tail and
answers with the outputs. Servers build an :class:`OffloadService` on their own scheduler and
mount it through :func:`mount_offload`, the one entry point (``edgeinfer serve`` and
``edgeinfer split-node`` both do), under ``/v1/offload``:

    GET  /models               model names this node serves
    GET  /{name}/profile       the cuts this node accepts, each with its tail latency (JSON)
    POST /{name}/infer         body: a tensor frame (the cut); answer: a frame of the outputs,
                               header ``x-edgeinfer-tail-ms``
    POST /{name}/infer-image   body: JPEG bytes of the input (models with an artifact manifest
                               only); the node decodes, preprocesses as the manifest says and
                               runs the whole model; answer as /infer (tail = all of that)
    POST /probe                echoes the body size (bandwidth and RTT probes)

What the node accepts and keeps:

- only the cuts it publishes in its profile (the sampled cuts of the model): any other set of
  tensors is refused (400) before anything is built;
- a frame's header is checked against the cut's tensors (names, dtypes, static dims) before
  its payload is inflated, and decoding runs off the event loop, at most ``max_preparing`` per
  model at once (429 beyond);
- tails are sub-model files in the process's split work directory
  (:mod:`edgeinfer.collab.workdir`: removed at exit, swept at the next start after a crash),
  registered as models of the host's :class:`~edgeinfer.runtime.scheduler.Scheduler`: they
  load in its ModelCache under its memory budget (least recently used unloaded first) and run
  on its workers, queues and priorities (``x-priority`` header) like every other model.

The answer frame is exact float32 + lz4 unless the device asks otherwise in the
``x-edgeinfer-answer`` header (``fp16+lz4``: half the bytes for a detector's raw output, values
to float16 precision); the profile publishes the answer's size in every such encoding, so the
planner charges the bytes that will really come back.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import asyncio
import logging
import statistics
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.compress import (
    ANSWER,
    Compression,
    answer_compression,
    check_header,
    decode,
    encode,
    read_header,
)
from edgeinfer.collab.profile import JPEG_CUT, CutProfile, DeviceSim, ImageCodec, SplitModel
from edgeinfer.collab.workdir import process_dir
from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.run_timing import TimedRuns
from edgeinfer.runtime.scheduler import DeadlineMissedError, RejectedError

__all__ = ["ANSWER_HEADER", "OFFLOAD_PREFIX", "OffloadService", "OffloadSettings",
           "mount_offload", "router"]

log = logging.getLogger(__name__)

#: the request header in which the device names the answer's encoding (``fp16+lz4``...)
ANSWER_HEADER = "x-edgeinfer-answer"
#: where servers mount the router
OFFLOAD_PREFIX = "/v1/offload"
#: the photo the JPEG option's node side is timed on (decode time depends on the size only)
PHOTO = Path(__file__).resolve().parents[1] / "data" / "coffee.jpg"


class OffloadError(EdgeInferError):
    """A request the node cannot serve: ``status`` is the HTTP answer (400, 404, 429, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OffloadSettings:
    """How the node serves tails: ``max_cuts`` sampled (and published) cuts per model,
    ``profile_runs`` timed runs per cut, the ``clock`` tail times are reported on (``cpu``:
    the worker thread's CPU time, which needs one intra-op thread), and ``max_preparing``
    requests per model decoded at once."""

    max_cuts: int = 30
    profile_runs: int = 3
    clock: str = "wall"
    max_preparing: int = 8

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "cpu"):
            raise EdgeInferError(f"clock '{self.clock}': use wall or cpu")
        if self.max_cuts < 2 or self.profile_runs < 1 or self.max_preparing < 1:
            raise EdgeInferError("offload settings: max_cuts >= 2, profile_runs >= 1 and "
                                 "max_preparing >= 1")


@dataclass
class _Job:
    """A request decoded and ready to run: the scheduler entry of its tail (None: the cut is
    the outputs), the tail's feeds, every cut value (outputs in the cut pass through), and
    the seconds decoding took (on the clock, and on the wall)."""

    entry: str | None
    tail_outputs: tuple[str, ...]
    feeds: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    pre_s: float = 0.0
    pre_wall_s: float = 0.0


#: a tail on the scheduler: its model name there (None: nothing to run), inputs, outputs
_Entry = tuple[str | None, tuple[str, ...], tuple[str, ...]]


class _NodeModel:
    """One model on the node: its SplitModel (built on first use), the published cuts, the
    tails registered on the scheduler, and the profile once measured."""

    def __init__(self, name: str, source: str | Path, settings: OffloadSettings,
                 scheduler: Any) -> None:
        self.name, self.source, self.settings, self.scheduler = name, source, settings, scheduler
        self.lock = threading.Lock()
        self.profile_lock = threading.Lock()
        self.preparing = 0
        self._split: SplitModel | None = None
        self._published: dict[frozenset[str], tuple[str, ...]] = {}
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self._profile: dict[str, Any] | None = None
        self._codec: ImageCodec | bool | None = False  # False: not looked up yet

    def split(self) -> SplitModel:
        """The model's SplitModel (partition, sampled cuts), built once."""
        with self.lock:
            if self._split is None:
                sm = SplitModel(self.source, 1, self.settings.max_cuts)
                self._published = {frozenset(c.tensors): c.tensors for c in sm.cuts}
                self._split = sm
            return self._split

    def codec(self) -> ImageCodec | None:
        """The JPEG option's codec, or None when the model has no manifest to preprocess by."""
        with self.lock:
            if self._codec is False:
                self._codec = ImageCodec.for_model(self.source)
            return self._codec if isinstance(self._codec, ImageCodec) else None

    def published_cut(self, names: list[str]) -> tuple[str, ...]:
        """The published cut made of ``names``; OffloadError (400) for any other set: not a
        cut at all (the partition says why), or a cut this node did not publish."""
        sm = self.split()
        cut = self._published.get(frozenset(names))
        if cut is None:
            sm.partition.check(names)  # PartitionError (400): the tensors do not even separate
            raise OffloadError(400, f"tensors {sorted(names)[:6]} are not one of the cuts this "
                               f"node serves for '{self.name}': plan against GET "
                               f"/{self.name}/profile and send one of its cuts")
        return cut

    def expect(self, cut: tuple[str, ...]) -> dict[str, tuple[tuple[int | None, ...], str]]:
        """Each cut tensor's shape (None: dynamic) and dtype, as the model has them."""
        tensors = self.split().partition.graph.tensors
        return {t: (tuple(d if isinstance(d, int) and d > 0 else None
                          for d in tensors[t].shape), str(np.dtype(tensors[t].dtype)))
                for t in cut}

    def entry(self, cut: tuple[str, ...]) -> _Entry:
        """(scheduler model, its inputs, its outputs) of a cut's tail, cut out and registered
        on first use; the inputs cut is the whole model; None for the outputs cut."""
        sm = self.split()
        with self.lock:
            if cut not in self._entries:
                if set(cut) == set(sm.inputs):
                    name, path = f"offload:{self.name}:full", sm.path
                    ins, outs = tuple(sm.inputs), tuple(sm.outputs)
                else:
                    sub = sm.sub_model("tail", cut)
                    if sub is None:
                        self._entries[cut] = (None, (), ())
                        return self._entries[cut]
                    k = next(i for i, c in enumerate(sm.cuts) if c.tensors == cut)
                    name, path, ins, outs = f"offload:{self.name}:{k}", sub.path, sub.inputs, \
                        sub.outputs
                if name not in self.scheduler.cache:
                    self.scheduler.register(name, path)
                self._entries[cut] = (name, ins, outs)
            return self._entries[cut]

    def job(self, cut: tuple[str, ...], values: Mapping[str, np.ndarray]) -> _Job:
        """A job for cut values already decoded."""
        entry, ins, outs = self.entry(cut)
        return _Job(entry, outs, {t: values[t] for t in ins}, dict(values))

    def close(self) -> None:
        """Remove the model's sub-model files (the scheduler owns the engines)."""
        with self.lock:
            if self._split is not None:
                self._split.close()


class OffloadService:
    """The tails of ``models`` (name -> ONNX file, artifact directory or zoo name) run on
    ``scheduler`` with ``timed`` run timing (the scheduler must load through
    ``timed.loader()``); thread-safe."""

    def __init__(self, models: Mapping[str, str | Path], scheduler: Any, timed: TimedRuns,
                 settings: OffloadSettings | None = None) -> None:
        self.settings = settings or OffloadSettings()
        if self.settings.clock == "cpu" and scheduler.threads != 1:
            raise EdgeInferError(
                f"clock 'cpu' with {scheduler.threads} intra-op threads: CPU time of the worker "
                "thread measures a tail only when onnxruntime computes in it; use threads=1 "
                "or clock 'wall'")
        self.scheduler, self.timed = scheduler, timed
        process_dir()  # made now, and the directories of processes that are gone swept
        self._models = {n: _NodeModel(n, src, self.settings, scheduler)
                        for n, src in models.items()}
        self._clock = DeviceSim(1, 1.0, self.settings.clock)

    def names(self) -> list[str]:
        """The models served."""
        return sorted(self._models)

    def model(self, name: str) -> _NodeModel:
        """The model called ``name``; OffloadError 404 when not served here."""
        if name not in self._models:
            raise OffloadError(404, f"model '{name[:60]}' is not served here: choose one of "
                                    f"{self.names()}")
        return self._models[name]

    @contextmanager
    def admit(self, name: str) -> Iterator[None]:
        """Hold one of the model's decoding places (OffloadError 429 when all are taken)."""
        nm = self.model(name)
        with nm.lock:
            if nm.preparing >= self.settings.max_preparing:
                raise OffloadError(429, f"'{name}' has {nm.preparing} requests being decoded: "
                                        "retry later")
            nm.preparing += 1
        try:
            yield
        finally:
            with nm.lock:
                nm.preparing -= 1

    # -- requests (prepare: in a worker thread; run: on the event loop)
    def prepare_frame(self, name: str, frame: bytes) -> _Job:
        """Decode a cut frame: a published cut, its header checked against the model's
        tensors before the payload is inflated. CPU work: call it off the event loop."""
        nm = self.model(name)
        _, specs, _ = read_header(frame)
        cut = nm.published_cut([s.name for s in specs])
        check_header(specs, nm.expect(cut))
        return nm.job(cut, decode(frame))

    def prepare_image(self, name: str, data: bytes) -> _Job:
        """Decode and preprocess an image (through the decode gate) for the whole model."""
        nm = self.model(name)
        codec = nm.codec()
        if codec is None:
            raise OffloadError(404, f"model '{name}' has no artifact manifest to preprocess an "
                                    "image by: send tensor frames to /infer, or serve an "
                                    "artifact directory")
        feeds, pre_s, wall_s = self._clock.time(lambda: codec.decode(data))
        job = nm.job(tuple(nm.split().inputs), feeds)
        job.pre_s, job.pre_wall_s = pre_s, wall_s
        return job

    async def run(self, name: str, job: _Job, priority: int = 0
                  ) -> tuple[dict[str, np.ndarray], float, float]:
        """(outputs, tail seconds on the clock, tail wall seconds) of a prepared job, run on
        the scheduler."""
        if job.entry is None:
            return self._outputs(name, job, []), job.pre_s, job.pre_wall_s
        future, slot, release = self._submit(job, priority)
        try:
            outputs = await asyncio.wrap_future(future)
        except (RejectedError, DeadlineMissedError) as exc:
            raise OffloadError(503, str(exc)) from exc
        except Exception as exc:  # the node's own trouble (a load over the budget...)
            raise OffloadError(503, f"the node could not run the tail: {exc}") from exc
        finally:
            release()
        return self._finish(name, job, outputs, slot)

    def run_sync(self, name: str, job: _Job) -> tuple[dict[str, np.ndarray], float, float]:
        """:meth:`run` for a worker thread (profiling)."""
        if job.entry is None:
            return self._outputs(name, job, []), job.pre_s, job.pre_wall_s
        future, slot, release = self._submit(job, 0)
        try:
            outputs = future.result()
        finally:
            release()
        return self._finish(name, job, outputs, slot)

    def _submit(self, job: _Job, priority: int) -> Any:
        try:
            return self.timed.submit(self.scheduler, job.entry, job.feeds, priority=priority)
        except RejectedError as exc:
            status = 429 if exc.reason == "queue_full" else 503
            raise OffloadError(status, f"{exc}: retry later") from exc

    def _finish(self, name: str, job: _Job, outputs: list[np.ndarray],
                slot: Any) -> tuple[dict[str, np.ndarray], float, float]:
        tail = slot.cpu_s if self.settings.clock == "cpu" else slot.wall_s
        return self._outputs(name, job, outputs), job.pre_s + tail, job.pre_wall_s + slot.wall_s

    def _outputs(self, name: str, job: _Job, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        known = {**job.values, **dict(zip(job.tail_outputs, outputs, strict=True))}
        return {o: known[o] for o in self.model(name).split().outputs}

    # -- the profile
    def profile(self, name: str) -> dict[str, Any]:
        """The published cuts with the node's tail latency (median of ``profile_runs``, timed
        through the scheduler as requests are) and answer sizes, measured once. Blocking."""
        nm = self.model(name)
        with nm.profile_lock:
            if nm._profile is None:
                nm._profile = self._measure_profile(name, nm)
            return nm._profile

    def _measure_profile(self, name: str, nm: _NodeModel) -> dict[str, Any]:
        sm = nm.split()
        values = sm.cut_values(sm.example_feeds())
        cuts = []
        for cut in sm.cuts:
            job = nm.job(cut.tensors, {t: values[t] for t in cut.tensors})
            prof = CutProfile(cut.tensors, cut.position, cut.nbytes)
            out, prof.tail_s = self._timed_runs(name, lambda j=job: j)
            prof.measure_answer(out)
            cuts.append(prof)
        codec = nm.codec()
        if codec is not None:  # the "send a JPEG" option, only with a manifest
            from edgeinfer.vision.preprocess import read_image

            jpg = codec.encode(read_image(PHOTO))
            prof = CutProfile(JPEG_CUT, -1, len(jpg))
            out, prof.tail_s = self._timed_runs(name, lambda: self.prepare_image(name, jpg))
            prof.measure_answer(out)
            cuts.append(prof)
        return {"model": sm.path.name, "threads": self.scheduler.threads,
                "clock": self.settings.clock, "cuts": [p.to_json() for p in cuts]}

    def _timed_runs(self, name: str, make: Any) -> tuple[dict[str, np.ndarray], float]:
        """Outputs and the median tail seconds of ``profile_runs`` runs (after one untimed)."""
        out, _, _ = self.run_sync(name, make())
        times = [self.run_sync(name, make())[1] for _ in range(self.settings.profile_runs)]
        return out, statistics.median(times)

    def close(self) -> None:
        """Remove every model's sub-model files (call after the scheduler is closed)."""
        for nm in self._models.values():
            nm.close()


# ---------------------------------------------------------------------------- HTTP
def router(service: OffloadService) -> Any:
    """The FastAPI router serving ``service`` (mount it with :func:`mount_offload`)."""
    fastapi = require("fastapi", "serve", "the offload endpoint")
    from fastapi import Request, Response
    from fastapi.responses import JSONResponse

    api = fastapi.APIRouter()

    def _http(exc: EdgeInferError) -> Any:
        return fastapi.HTTPException(getattr(exc, "status", 400), str(exc).splitlines()[0])

    def _answer_as(request: Request) -> Compression:
        """The answer encoding the device asked for (``X-Edgeinfer-Answer``; default raw+lz4)."""
        asked = request.headers.get(ANSWER_HEADER)
        return ANSWER if asked is None else answer_compression(asked)

    def _priority(request: Request) -> int:
        text = request.headers.get("x-priority", "0")
        if not text.lstrip("-").isdigit() or not -1000 <= int(text) <= 1000:
            raise OffloadError(400, "bad X-Priority header: give an integer in -1000..1000")
        return int(text)

    @api.get("/models")
    async def list_models() -> dict[str, list[str]]:
        return {"models": service.names()}

    @api.get("/{name}/profile")
    async def profile(name: str) -> JSONResponse:
        try:
            service.model(name)
            return JSONResponse(await asyncio.to_thread(service.profile, name))
        except EdgeInferError as exc:
            raise _http(exc) from exc

    @api.post("/probe")
    async def probe(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    async def _serve(name: str, request: Request, prepare: Any) -> Response:
        try:
            answer, priority = _answer_as(request), _priority(request)
            body = await request.body()
            with service.admit(name):
                job = await asyncio.to_thread(prepare, name, body)
            out, tail_s, wall_s = await service.run(name, job, priority)
            data = await asyncio.to_thread(encode, out, answer)
        except EdgeInferError as exc:
            raise _http(exc) from exc
        return Response(data, media_type="application/octet-stream", headers={
            "x-edgeinfer-tail-ms": f"{tail_s * 1000:.3f}",
            "x-edgeinfer-tail-wall-ms": f"{wall_s * 1000:.3f}"})

    @api.post("/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        return await _serve(name, request, service.prepare_frame)

    @api.post("/{name}/infer-image")
    async def infer_image(name: str, request: Request) -> Response:
        return await _serve(name, request, service.prepare_image)

    return api


def mount_offload(app: Any, service: OffloadService) -> None:
    """Mount ``service``'s router on ``app`` under :data:`OFFLOAD_PREFIX` (the one way servers
    serve split tails)."""
    app.include_router(router(service), prefix=OFFLOAD_PREFIX)
