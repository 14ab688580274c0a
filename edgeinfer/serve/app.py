"""The node's HTTP API (FastAPI): models, inference, status, metrics, dashboard.

Error contract: every error is JSON ``{"error": "<one line>"}``; bad input is 4xx, never 500:
400 bad body or undecodable image, 401 missing/wrong token, 403 a foreign Host/Origin on an
anonymous node, 404 unknown model or stream, 408 body not received in time, 413 body over the
upload limit (or a JSON body larger than the model's inputs), 415 unsupported content type,
422 bad query/header values, 429 the model's queue is full (with Retry-After), 503 deadline
cannot be met, model not loaded, node busy receiving bodies, not ready or shutting down.

Callers are checked and bodies read by the ASGI guard in front of the app
(:mod:`edgeinfer.serve.guard`: token, Host/Origin in anonymous mode, body limit, body-read
timeout, a bound on bodies being received), so the app sees only requests whose body is in;
parsing, decoding and answering big bodies run off the event loop. The interactive docs pages
(/docs, /redoc) are off: they load scripts from a CDN, and the node serves nothing it does not
carry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeinfer.collab.tails import OffloadService, mount_offload
from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.scheduler import DeadlineMissedError, RejectedError
from edgeinfer.serve import infer as bodies
from edgeinfer.serve.auth import policy_for
from edgeinfer.serve.config import NodeConfig
from edgeinfer.serve.guard import Guard, error_response
from edgeinfer.serve.json_worker import JsonParser, ParserBusyError, WorkerGoneError
from edgeinfer.serve.metrics import CONTENT_TYPE, NodeMetrics, infer_model
from edgeinfer.serve.node import ModelUnavailableError, Node, UnknownModelError
from edgeinfer.serve.repository import InvalidNameError

logger = logging.getLogger(__name__)

__all__ = ["ApiError", "create_app"]

STATIC = Path(__file__).parent / "static"


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, reason: str = "bad_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(status, message, headers)


# ------------------------------------------------------------------------ OpenAPI bodies

_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}

_INFER_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": {
        "type": "object", "required": ["inputs"],
        "properties": {"inputs": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["shape", "data"],
            "properties": {"shape": {"type": "array", "items": {"type": "integer"}},
                           "dtype": {"type": "string", "enum": list(bodies.ALLOWED_DTYPES)},
                           "data": {"type": "array", "items": {}}}}}}}},
}}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"description": "error", **_ERROR} for c in codes}


# ------------------------------------------------------------------------ the app


@dataclass(frozen=True)
class _Context:
    """What the routes share: the node, its metrics, cached predictors, the JSON parser."""

    node: Node
    metrics: NodeMetrics
    predictors: dict[str, Any]
    json_parser: JsonParser


def create_app(config: NodeConfig, node: Node | None = None) -> FastAPI:
    """The node's FastAPI app; refuses (EdgeInferError) when the access policy forbids the
    configuration. The node starts with the app's lifespan and closes with it."""
    policy = policy_for(config)
    node = node or Node(config)
    ctx = _Context(node, NodeMetrics(node), {}, JsonParser())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(node.start)
        try:
            yield
        finally:
            await asyncio.to_thread(node.close)
            ctx.json_parser.close()
            if app.state.offload is not None:
                app.state.offload.close()

    app = FastAPI(title="edgeinfer node", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.node = node
    app.state.metrics = ctx.metrics
    app.state.json_parser = ctx.json_parser
    app.add_middleware(Guard, policy=policy, limits=config.body_limits(),
                       on_refused=ctx.metrics.refused_request,
                       on_disconnect=ctx.metrics.client_went_away,
                       body_limit=lambda path, headers: _json_bound(node, path, headers))
    _install_errors(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.offload = _mount_offload(app, node)
    for router in (_health_routes(ctx), _model_routes(ctx), _infer_routes(ctx),
                   _status_routes(ctx)):
        app.include_router(router)
    return app


def _health_routes(ctx: _Context) -> APIRouter:
    """``/healthz`` and ``/readyz``."""
    router = APIRouter()

    @router.get("/healthz", responses=_responses(503))
    async def healthz() -> dict[str, Any]:
        """Alive: the process answers."""
        return {"status": "alive"}

    @router.get("/readyz", responses=_responses(503))
    async def readyz() -> Any:
        """Ready: start-up loads done and at least one model ready."""
        if not ctx.node.ready():
            return _error(503, "not ready: models are loading, none is loaded, or the node is "
                               "shutting down")
        return {"status": "ready"}

    return router


def _model_routes(ctx: _Context) -> APIRouter:
    """The model repository: list, describe, load, unload."""
    router = APIRouter()
    node = ctx.node

    @router.get("/v1/models")
    def list_models() -> dict[str, Any]:
        """Every model of the repository with its state (failed ones with their reason)."""
        return {"models": [node.describe(n) for n in node.model_names()]}

    @router.get("/v1/models/{name}", responses=_responses(400, 404))
    def get_model(name: str) -> dict[str, Any]:
        """One model: state, inputs, decoder, counters."""
        return node.describe(name)

    @router.post("/v1/models/{name}/load", responses=_responses(400, 404))
    async def load_model(name: str) -> dict[str, Any]:
        """Load a model now (a repaired or newly added artifact is re-read first)."""
        ctx.predictors.pop(name, None)
        return await asyncio.to_thread(node.load, name)

    @router.post("/v1/models/{name}/unload", responses=_responses(400, 404))
    async def unload_model(name: str) -> dict[str, Any]:
        """Unload a model; its requests get 503 until it is loaded again."""
        return await asyncio.to_thread(node.unload, name)

    return router


def _infer_routes(ctx: _Context) -> APIRouter:
    """``/v1/models/{name}/infer``: images and tensors, with priorities and deadlines."""
    router = APIRouter()

    @router.post("/v1/models/{name}/infer", openapi_extra=_INFER_BODY,
                 responses=_responses(400, 404, 413, 415, 429, 503))
    async def infer(
        name: str,
        request: Request,
        priority: Annotated[int | None, Query(ge=-1000, le=1000)] = None,
        deadline_ms: Annotated[float | None, Query(gt=0, le=3_600_000)] = None,
        x_priority: Annotated[int | None, Header(ge=-1000, le=1000)] = None,
        x_deadline_ms: Annotated[float | None, Header(gt=0, le=3_600_000)] = None,
    ) -> Response:
        """Run one request: an image (multipart field ``file``, or an ``image/*`` body) gives
        the decoded prediction; a JSON tensor body gives the raw outputs. ``priority``
        (higher first) and ``deadline_ms`` come from the query or ``X-Priority`` /
        ``X-Deadline-Ms`` headers."""
        t0 = time.perf_counter()
        prio = priority if priority is not None else (x_priority or 0)
        deadline = deadline_ms if deadline_ms is not None else x_deadline_ms
        label = name if name in ctx.node.model_names() else "_unknown"  # bounded labels
        try:
            out = await _infer(ctx.node, ctx.predictors, ctx.metrics, ctx.json_parser, name,
                               request, prio, deadline)
        except Exception as exc:
            ctx.metrics.observe(label, *_classify(exc))
            raise
        ctx.metrics.latency.labels(label).observe(time.perf_counter() - t0)
        ctx.metrics.observe(label, 200)
        return out

    return router


def _status_routes(ctx: _Context) -> APIRouter:
    """What the dashboard and monitoring read: status, stream frames, metrics, the page."""
    router = APIRouter()
    node = ctx.node

    @router.get("/v1/status")
    def status() -> dict[str, Any]:
        """Node, models (state, counters), streams (fps, latency, drops), uplink: the
        dashboard's data."""
        return node.status()

    @router.get("/v1/streams/{name}/frame.jpg", responses={
        200: {"content": {"image/jpeg": {}}, "description": "the latest annotated frame"},
        **_responses(404)})
    def frame(name: str) -> Response:
        """The latest frame of a stream with its result drawn on it."""
        jpeg = node.latest_frame_jpeg(name)
        if jpeg is None:
            raise ApiError(404, f"stream '{name}' has no frame yet: retry in a moment",
                           "no_frame")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/metrics", responses={200: {"content": {CONTENT_TYPE: {}},
                                             "description": "Prometheus text"}})
    def prometheus() -> Response:
        """Prometheus metrics (this node's own registry)."""
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    @router.get("/", include_in_schema=False)
    @router.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard page (static; its script polls /v1/status)."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    return router


async def _infer(node: Node, predictors: dict[str, Any], metrics: NodeMetrics,
                 json_parser: JsonParser, name: str, request: Request, priority: int,
                 deadline_ms: float | None) -> Response:
    """The infer endpoint's work; every failure is an ApiError or an EdgeInferError. The guard
    has read the body already; parsing, decoding and answering run off the event loop."""
    artifact = node.artifact(name)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    manifest = artifact.manifest
    if ctype in ("application/json", ""):
        raw = await request.body()  # the guard held it to the model's JSON bound already
        try:
            feeds = await json_parser.parse(raw, manifest.inputs, node.config.max_body_bytes)
        except WorkerGoneError as exc:
            raise ApiError(503, str(exc), "parser_gone") from exc
        except ParserBusyError as exc:
            raise ApiError(429, str(exc), "parser_busy", {"Retry-After": "1"}) from exc
        outputs, times = await _run(node, metrics, name, feeds, priority, deadline_ms)
        return await asyncio.to_thread(lambda: _json_response({
            "model": name, "outputs": bodies.outputs_to_json(outputs, manifest.outputs),
            "times_ms": times}))
    if not (ctype == "multipart/form-data" or ctype.startswith("image/")
            or ctype == "application/octet-stream"):
        raise ApiError(415, f"unsupported content type '{ctype[:60]}': send multipart/form-data "
                            "(field 'file'), an image/* body, or application/json tensors",
                       "unsupported_media")
    predictor = _predictor(predictors, name, artifact)
    t0 = time.perf_counter()
    try:  # the body is in: an excess request is refused before any decoding
        with node.admit(name):
            data = await _image_bytes(request, ctype, json_parser)
            x, transform = await asyncio.to_thread(_prepare, predictor, manifest, data)
    except RejectedError as exc:
        raise ApiError(429, f"{exc}: retry later", "queue_full", {"Retry-After": "1"}) from exc
    pre_ms = (time.perf_counter() - t0) * 1e3
    outputs, times = await _run(node, metrics, name, {predictor.spec.name: x}, priority,
                                deadline_ms)
    t1 = time.perf_counter()
    result = predictor.decoder(outputs, manifest.decoder_params, transform, predictor.labels)
    times = {"preprocess": pre_ms, **times, "decode": (time.perf_counter() - t1) * 1e3}
    return _json_response({"model": name, "result": bodies.result_to_json(result),
                           "times_ms": {k: round(v, 3) for k, v in times.items()}})


def _json_bound(node: Node, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
    """The body limit of a JSON request to a model with fixed input shapes: what its inputs
    can need as JSON (so an oversized tensor body is refused before it is read)."""
    name = infer_model(path)
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if name is None or ctype not in ("application/json", ""):
        return None
    try:
        bound = bodies.json_body_bound(node.artifact(name).manifest.inputs)
    except EdgeInferError:  # unknown or unavailable: the app answers that
        return None
    if bound is None:
        return None
    return bound, (f"the JSON body is more than the inputs of '{name}' can take as JSON (about "
                   f"{bound} bytes): send tensors of the model's input shapes")


def _json_response(content: dict[str, Any]) -> Response:
    """``content`` as a JSON response, serialised here (call it off the event loop when the
    content is big: raw outputs can be millions of numbers)."""
    return Response(json.dumps(content, separators=(",", ":"), allow_nan=False).encode(),
                    media_type="application/json")


async def _image_bytes(request: Request, ctype: str, parser: JsonParser) -> bytes:
    """The uploaded image: multipart field ``file`` (parsed off the event loop, in the parser
    process when large), or the whole body."""
    body = await request.body()  # in memory already: the guard read it
    if ctype != "multipart/form-data":
        return body
    try:
        return await parser.multipart(body, request.headers.get("content-type", ""))
    except WorkerGoneError as exc:
        raise ApiError(503, str(exc), "parser_gone") from exc
    except ParserBusyError as exc:
        raise ApiError(429, str(exc), "parser_busy", {"Retry-After": "1"}) from exc


def _prepare(predictor: Any, manifest: Any, data: bytes) -> Any:
    from edgeinfer.vision.preprocess import to_tensor

    image = bodies.decode_image(data)
    return to_tensor(image, predictor.spec, manifest.preprocess)


class _ArtifactHolder:
    """What Predictor reads at construction: the artifact (no engine: runs go through the
    node's scheduler with per-request priority and deadline)."""

    def __init__(self, artifact: Any) -> None:
        self.artifact = artifact


def _predictor(cache: dict[str, Any], name: str, artifact: Any) -> Any:
    """The model's Predictor (its decoder, labels and input spec), built once."""
    from edgeinfer.pipeline.predict import Predictor

    predictor = cache.get(name)
    if predictor is None:
        if not artifact.manifest.decoder:
            raise ApiError(400, f"model '{name}' has no decoder in its manifest: send a JSON "
                                "tensor body instead of an image")
        try:
            predictor = Predictor(_ArtifactHolder(artifact))  # type: ignore[arg-type]
            from edgeinfer.vision.preprocess import spatial_size

            spatial_size(predictor.spec)
        except EdgeInferError as exc:
            raise ApiError(400, f"model '{name}' cannot take images: {exc}") from exc
        cache[name] = predictor
    return predictor


async def _run(node: Node, metrics: NodeMetrics, name: str, feeds: dict[str, Any],
               priority: int, deadline_ms: float | None) -> tuple[list[Any], dict[str, float]]:
    """Submit to the scheduler and await the outputs; queue wait and compute time recorded."""
    submitted = time.monotonic()
    try:
        future, slot, release = node.submit(name, feeds, priority=priority,
                                            deadline_ms=deadline_ms)
    except RejectedError as exc:
        if exc.reason == "queue_full":
            raise ApiError(429, f"{exc}: retry later", "queue_full",
                           {"Retry-After": "1"}) from exc
        raise ApiError(503, str(exc), exc.reason) from exc
    try:
        outputs = await asyncio.wrap_future(future)
    except DeadlineMissedError as exc:
        raise ApiError(503, str(exc), "deadline") from exc
    except EdgeInferError as exc:
        raise ApiError(400, str(exc), "bad_input") from exc
    finally:
        release()
    wait, compute = slot.start - submitted, slot.end - slot.start
    metrics.queue_wait.labels(name).observe(max(0.0, wait))
    metrics.compute.labels(name).observe(max(0.0, compute))
    return outputs, {"queue": wait * 1e3, "infer": compute * 1e3}


def _classify(exc: Exception) -> tuple[int, str]:
    """(HTTP status, reason) of an exception, as the error handlers answer it."""
    if isinstance(exc, ApiError):
        return exc.status, exc.reason
    for kind, status, reason in ((InvalidNameError, 400, "bad_name"),
                                 (UnknownModelError, 404, "unknown_model"),
                                 (ModelUnavailableError, 503, "unavailable"),
                                 (EdgeInferError, 400, "bad_request"),
                                 (StarletteHTTPException, 0, "http")):
        if isinstance(exc, kind):
            return (status or exc.status_code), reason  # type: ignore[attr-defined]
    return 500, "internal"


def _install_errors(app: FastAPI) -> None:
    """Every error as ``{"error": "<one line>"}`` with the right status."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(InvalidNameError)
    async def bad_name(request: Request, exc: InvalidNameError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(UnknownModelError)
    async def unknown(request: Request, exc: UnknownModelError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ModelUnavailableError)
    async def unavailable(request: Request, exc: ModelUnavailableError) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(EdgeInferError)
    async def bad_input(request: Request, exc: EdgeInferError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}): see the node's log")


def _mount_offload(app: FastAPI, node: Node) -> OffloadService | None:
    """Mount the split-computing offload endpoint for the repository's valid ONNX models on
    the node's own scheduler (its memory budget, workers and queues), behind the same guard
    as the rest of the API."""
    from edgeinfer.serve.repository import scan

    models = {
        name: entry.path for name, entry in scan(node.config.repository).items()
        if entry.artifact is not None and entry.artifact.manifest.model.format == "onnx"
    }
    if not models:
        return None
    service = OffloadService(models, node.scheduler, node.timed)
    mount_offload(app, service)
    return service
