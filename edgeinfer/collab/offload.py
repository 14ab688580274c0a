"""Split inference over HTTP: the device client and the node's ``router()``.

The device runs the head, compresses the cut tensors (:mod:`edgeinfer.collab.compress`) and
POSTs one frame to the node, which runs the tail and answers with the outputs. Every request
goes through an httpx transport that can simulate a link (:mod:`edgeinfer.collab.link`).
When the node is unreachable, slow past the timeout or answers an error, the device finishes
the tail itself (it holds the whole model), so no request is lost; a circuit breaker then keeps
it on the device for ``cooldown_s`` before it tries the node again.

Node endpoints (mounted by ``edgeinfer serve`` under ``/v1/offload``):

    GET  /models               model names this node serves
    GET  /{name}/profile       the node's tail latency for every sampled cut (JSON)
    POST /{name}/infer         body: a tensor frame (the cut); answer: a frame of the outputs,
                               header ``x-edgeinfer-tail-ms``
    POST /{name}/infer-image   body: JPEG bytes of the input (models with an artifact manifest
                               only); the node decodes, preprocesses as the manifest says and
                               runs the whole model; answer as /infer (tail = all of that)
    POST /probe                echoes the body size (bandwidth and RTT probes)

The answer frame is exact float32 + lz4 unless the device asks otherwise in the
``x-edgeinfer-answer`` header (``SplitClient(answer="fp16+lz4")``: half the bytes for a
detector's raw output, values to float16 precision); the profile publishes the answer's size in
every such encoding, so the planner charges the bytes that will really come back.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from edgeinfer.collab.link import Link, throttled_transport
from edgeinfer.collab.planner import BandwidthEstimator, Plan, Replanner, merge
from edgeinfer.collab.planner import plan as plan_cuts
from edgeinfer.collab.profile import (
    JPEG_CUT,
    CutProfile,
    DeviceSim,
    ImageCodec,
    SplitModel,
    as_image,
)
from edgeinfer.errors import EdgeInferError

__all__ = ["BackgroundNode", "SplitClient", "SplitResult", "router", "serve_node"]

log = logging.getLogger(__name__)

#: the request header in which the device names the answer's encoding (``fp16+lz4``...)
ANSWER_HEADER = "x-edgeinfer-answer"


# ----------------------------------------------------------------------------- node side
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


# ---------------------------------------------------------------------------- device side
@dataclass
class SplitResult:
    """One request's outputs and where the time went (seconds)."""

    outputs: dict[str, np.ndarray]
    where: str
    cut: tuple[str, ...]
    head_s: float = 0.0
    transfer_s: float = 0.0
    tail_s: float = 0.0
    total_s: float = 0.0
    sent_bytes: int = 0
    fallback: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


class SplitClient:
    """The device: plans a cut against the node's profile and runs requests split.

    ``token`` (default: ``$EDGEINFER_TOKEN``) is sent as a bearer token, as ``edgeinfer serve``
    asks of every API call.

    ``bandwidth_bps=None`` measures the link with probes and then keeps an EWMA of real
    transfers; the plan is remade when it moves (:class:`Replanner`). Single-threaded use.

    With the source image at hand (``prepare(..., image=)``, ``infer(..., image=)``) and a
    model with an artifact manifest, "send a JPEG of the input" (q90 at the model's input size)
    is one more candidate (``where == "jpeg"``); without an image it is never chosen.

    ``answer``: the encoding the node answers in (``raw+lz4``, exact, by default; ``fp16+lz4``
    halves a detector's answer at float16 precision; int8 is refused).
    """

    def __init__(
        self,
        model: str | Path,
        node_url: str,
        name: str | None = None,
        *,
        link: Link | None = None,
        device: DeviceSim | None = None,
        compression: Compression | None = None,
        bandwidth_bps: float | None = None,
        rtt_s: float | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 0.05,
        cooldown_s: float = 5.0,
        max_cuts: int = 30,
        token: str | None = None,
        answer: Compression | str = ANSWER,
    ) -> None:
        httpx = require("httpx", "collab", "split offload")
        self.answer = answer_compression(answer if isinstance(answer, str) else answer.label)
        self.device = device or DeviceSim()
        self.split = SplitModel(model, self.device.threads, max_cuts)
        self.name = name or Path(str(model)).stem
        self.base = node_url.rstrip("/")
        self.link = link or Link()
        self.compression = compression or Compression()
        token = token if token is not None else os.environ.get("EDGEINFER_TOKEN")
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            transport=throttled_transport(self.link),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers=self.headers,
        )
        self._httpx = httpx
        self.estimator = BandwidthEstimator(bandwidth_bps)
        self.fixed_bandwidth = bandwidth_bps is not None
        self.rtt_s = rtt_s
        self.cooldown_s = cooldown_s
        self.down_until = 0.0
        self.cuts: list[CutProfile] = []
        self.replanner: Replanner | None = None
        self.fallbacks = 0
        self.model = model
        self._codec: ImageCodec | bool | None = False  # False: not looked up yet

    @property
    def codec(self) -> ImageCodec | None:
        """The JPEG option's codec (None: the model has no manifest to preprocess by)."""
        if self._codec is False:
            self._codec = ImageCodec.for_model(self.model)
        assert self._codec is not True
        return self._codec

    def use_link(
        self, link: Link, bandwidth_bps: float | None = None, rtt_s: float | None = None
    ) -> Plan | None:
        """Switch to another (simulated) link and re-plan from the profiles already taken:
        ``bandwidth_bps`` and ``rtt_s`` as given, or None to probe them."""
        self.http.close()
        self.link = link
        self.http = self._httpx.Client(
            transport=throttled_transport(link), timeout=self.http.timeout, headers=self.headers
        )
        self.fixed_bandwidth = bandwidth_bps is not None
        self.estimator.bps = bandwidth_bps
        self.down_until = 0.0
        if rtt_s is None or not self.fixed_bandwidth:
            try:
                bps, probed = self.probe(runs=0 if self.fixed_bandwidth else 3)
            except self._httpx.HTTPError:
                self._node_failed()
                return None
            self.rtt_s = probed if rtt_s is None else rtt_s
            if not self.fixed_bandwidth:
                self.estimator.bps = bps
        else:
            self.rtt_s = rtt_s
        if self.replanner is None:
            return None
        self.replanner = Replanner(self.cuts, self.estimator, self.rtt_s or 0.0)
        return self.replanner.plan()

    # -- preparation
    def node_profile(self) -> list[CutProfile]:
        """The node's published tail profile for this model."""
        r = self.http.get(f"{self.base}/{self.name}/profile", timeout=600.0)
        if r.status_code != 200:
            raise EdgeInferError(f"node {self.base}: {r.status_code} {r.text[:200]}")
        label = self.answer.label  # the answer's size in the encoding this device asks for
        return [
            CutProfile(tuple(c["tensors"]), c["position"], c["raw_bytes"], tail_s=c["tail_s"],
                       out_bytes=c.get("answer_bytes", {}).get(label, c["out_bytes"]))
            for c in r.json()["cuts"]
        ]

    def probe(self, nbytes: int = 32_768, runs: int = 3) -> tuple[float, float]:
        """Measure (bandwidth bit/s, RTT s) of the link with echo requests: the fastest of a
        few, since a busy CPU only ever adds time."""
        url = f"{self.base}/probe"
        rtt = min(self._timed(url, b"") for _ in range(5))
        if runs < 1:
            return 0.0, rtt
        big = min(self._timed(url, bytes(nbytes)) for _ in range(runs))
        return 8.0 * nbytes / max(big - rtt, 1e-6), rtt

    def _timed(self, url: str, body: bytes) -> float:
        t0 = time.perf_counter()
        self.http.post(url, content=body).raise_for_status()
        return time.perf_counter() - t0

    def prepare(
        self,
        feeds: Mapping[str, np.ndarray] | None = None,
        runs: int = 3,
        progress: Callable[[int, int], None] | None = None,
        image: str | Path | np.ndarray | None = None,
    ) -> Plan | None:
        """Profile the device, fetch the node's profile, measure the link, plan. Returns None
        (all on the device) when the node cannot be reached. With ``image`` (the source
        photo, a path or BGR array) the JPEG option is profiled too, when the model has a
        manifest and the node publishes it."""
        feeds = feeds if feeds is not None else self.split.example_feeds()
        device = self.split.profile_device(feeds, self.device, self.compression, runs, progress)
        if image is not None and self.codec is not None:
            device.append(
                self.split.profile_jpeg_device(self.codec, as_image(image), self.device, runs)
            )
        self.split.full().run(feeds)  # the fallback engine, built and warm before it is needed
        try:
            node = self.node_profile()
            bps, rtt = self.probe(runs=3 if not self.fixed_bandwidth else 0)
            if not self.fixed_bandwidth:
                self.estimator.bps = bps
            self.rtt_s = rtt  # the added delay plus HTTP and framing overhead, as measured
        except (self._httpx.HTTPError, EdgeInferError) as exc:
            log.warning("node %s unreachable (%s): running all on the device", self.base, exc)
            self._node_failed()
            self.cuts = device
            return None
        self.cuts = merge(device, node)
        self.replanner = Replanner(self.cuts, self.estimator, self.rtt_s or 0.0)
        return self.replanner.plan()

    def plan(self) -> Plan | None:
        """The current plan (None: all on the device, the node is down or unknown)."""
        if self.replanner is None or time.monotonic() < self.down_until:
            return None
        p = self.replanner.plan()
        if p.cut.tensors != JPEG_CUT:  # the JPEG option falls back to the full model, built
            self.split.tail(p.cut.tensors)  # the fallback for this cut, built before it is due
        return p

    def _node_failed(self) -> None:
        self.down_until = time.monotonic() + self.cooldown_s

    # -- requests
    def run_local(self, feeds: Mapping[str, np.ndarray]) -> SplitResult:
        """All on the device."""
        out, head = self.device.run(lambda: self.split.full().run(feeds))
        return SplitResult(out, "device", tuple(self.split.outputs), head, total_s=head)

    def infer(
        self, feeds: Mapping[str, np.ndarray], cut: tuple[str, ...] | None = None,
        image: str | Path | np.ndarray | None = None,
    ) -> SplitResult:
        """One request at the planned cut (or ``cut``; ``JPEG_CUT`` sends a JPEG of
        ``image``); finishes on the device if the node fails, so it always returns outputs;
        while the breaker is open, all on the device. ``feeds`` must be ``image``
        preprocessed when both are given (the device falls back on ``feeds``)."""
        if cut is None:
            p = self.plan()
            if p is not None and p.where == "jpeg" and image is None:  # no image: next best
                rest = [c for c in self.cuts if c.tensors != JPEG_CUT]
                p = plan_cuts(rest, p.bandwidth_bps, p.rtt_s, p.objective)
            if p is None or p.where == "device":
                return self.run_local(feeds)
            cut = p.cut.tensors
        if time.monotonic() < self.down_until:
            return self.run_local(feeds)  # the breaker is open
        if cut == JPEG_CUT:
            if image is None or self.codec is None:
                raise EdgeInferError(
                    "the JPEG option needs the source image and a model with an artifact "
                    "manifest: pass image= and load an artifact directory or zoo name"
                )
            return self._infer_jpeg(feeds, as_image(image))
        if set(cut) == set(self.split.outputs):
            return self.run_local(feeds)  # all on the device
        t_start = time.perf_counter()

        def head() -> tuple[dict[str, np.ndarray], bytes]:
            values = self.split.run_head(cut, feeds)
            return values, encode(values, self.compression)  # compressing is device work too

        (values, frame), head_s = self.device.run(head)
        t0 = time.perf_counter()
        try:
            outputs, r = self._post("infer", frame, "application/octet-stream")
        except (self._httpx.HTTPError, EdgeInferError) as exc:
            return self._finish_locally(cut, values, head_s, t_start, exc)
        wall = time.perf_counter() - t0  # upload, node decode + tail + encode, download
        tail_s = float(r.headers.get("x-edgeinfer-tail-ms", "0")) / 1000.0
        tail_wall = float(r.headers.get("x-edgeinfer-tail-wall-ms", "0")) / 1000.0 or tail_s
        transfer_s = max(wall - tail_wall, 0.0)
        if not self.fixed_bandwidth:
            self.estimator.observe(len(frame) + len(r.content), transfer_s - (self.rtt_s or 0))
        where = "node" if set(cut) <= set(self.split.inputs) else "split"
        # total: the parts as each side's clock saw them (wall clocks unless told "cpu")
        return SplitResult(
            {o: outputs[o] for o in self.split.outputs}, where, cut, head_s, transfer_s, tail_s,
            head_s + transfer_s + tail_s, len(frame),
        )

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[dict[str, np.ndarray], Any]:
        """POST ``body`` to the node's ``path`` for this model: the decoded answer frame and the
        response. Raises httpx.HTTPError or EdgeInferError; callers fall back to the device."""
        r = self.http.post(f"{self.base}/{self.name}/{path}", content=body,
                           headers={"content-type": content_type,
                                    ANSWER_HEADER: self.answer.label})
        if r.status_code != 200:
            raise EdgeInferError(f"node answered {r.status_code}: {r.text[:200]}")
        return decode(r.content), r

    def _infer_jpeg(self, feeds: Mapping[str, np.ndarray], image: np.ndarray) -> SplitResult:
        """Send a JPEG of the image; the node runs everything. On failure the device runs the
        whole model on ``feeds``."""
        codec = self.codec
        assert codec is not None
        t_start = time.perf_counter()
        jpg, head_s = self.device.run(lambda: codec.encode(image))
        t0 = time.perf_counter()
        try:
            outputs, r = self._post("infer-image", jpg, "image/jpeg")
        except (self._httpx.HTTPError, EdgeInferError) as exc:
            log.warning("node failed (%s): running the whole model on the device", exc)
            self._node_failed()
            self.fallbacks += 1
            out, tail_s = self.device.run(lambda: self.split.full().run(feeds))
            return SplitResult(
                out, "device", JPEG_CUT, head_s,
                max(time.perf_counter() - t_start - head_s - tail_s, 0.0), tail_s,
                time.perf_counter() - t_start, fallback=type(exc).__name__,
            )
        wall = time.perf_counter() - t0
        tail_s = float(r.headers.get("x-edgeinfer-tail-ms", "0")) / 1000.0
        tail_wall = float(r.headers.get("x-edgeinfer-tail-wall-ms", "0")) / 1000.0 or tail_s
        transfer_s = max(wall - tail_wall, 0.0)
        if not self.fixed_bandwidth:
            self.estimator.observe(len(jpg) + len(r.content), transfer_s - (self.rtt_s or 0))
        return SplitResult(
            {o: outputs[o] for o in self.split.outputs}, "jpeg", JPEG_CUT, head_s, transfer_s,
            tail_s, head_s + transfer_s + tail_s, len(jpg),
        )

    def _finish_locally(
        self, cut: tuple[str, ...], values: Mapping[str, np.ndarray], head_s: float,
        t_start: float, exc: Exception,
    ) -> SplitResult:
        log.warning("node failed (%s): finishing on the device", exc)
        self._node_failed()
        self.fallbacks += 1
        self.split.tail(cut)  # building an engine is not inference: keep it off the device clock
        out, tail_s = self.device.run(lambda: self.split.run_tail(cut, values))
        return SplitResult(
            out, "device", cut, head_s,
            max(time.perf_counter() - t_start - head_s - tail_s, 0.0), tail_s,
            time.perf_counter() - t_start, fallback=type(exc).__name__,
        )

    def close(self) -> None:
        """Close the HTTP client and the engines."""
        self.http.close()
        self.split.close()


def measure_split(
    client: SplitClient, feeds: Mapping[str, np.ndarray], runs: int = 5,
    image: str | Path | np.ndarray | None = None,
) -> dict[str, dict[str, float | str]]:
    """Median measured breakdown (ms) of the planned cut, all on the device, all on the
    node (the input sent) and, with ``image`` and a JPEG candidate, the JPEG sent; run
    interleaved so drift hits them equally."""
    p = client.plan()
    if p is not None and p.where == "jpeg" and image is None:
        p = plan_cuts([c for c in client.cuts if c.tensors != JPEG_CUT], p.bandwidth_bps,
                      p.rtt_s, p.objective)
    modes: dict[str, tuple[str, ...] | None] = {
        "planned": p.cut.tensors if p else tuple(client.split.outputs),
        "all on device": tuple(client.split.outputs),
        "all on node": tuple(client.split.inputs),
    }
    img = as_image(image) if image is not None else None
    if img is not None and any(c.tensors == JPEG_CUT for c in client.cuts):
        modes["JPEG to node"] = JPEG_CUT
    got: dict[str, list[SplitResult]] = {m: [] for m in modes}
    for _ in range(max(1, runs)):
        for mode, cut in modes.items():
            got[mode].append(client.infer(feeds, cut=cut, image=img))
    out: dict[str, dict[str, float | str]] = {}
    for mode, rs in got.items():
        med = {k: float(np.median([getattr(r, k) for r in rs])) * 1000
               for k in ("head_s", "transfer_s", "tail_s", "total_s")}
        out[mode] = {
            "cut": "|".join(rs[-1].cut),
            "where": rs[-1].where,
            "head_ms": med["head_s"],
            "transfer_ms": med["transfer_s"],
            "tail_ms": med["tail_s"],
            "total_ms": med["total_s"],
            "sent_bytes": float(rs[-1].sent_bytes),
            "fallbacks": float(sum(r.fallback is not None for r in rs)),
        }
    return out


#: the standalone node's default request-body limit: a cut's features, not an upload of photos
NODE_MAX_BODY_BYTES = 64 * 2**20


def _node_app(models: Mapping[str, str | Path], token: str | None = None,
              max_body_bytes: int = NODE_MAX_BODY_BYTES, **router_kw: Any) -> Any:
    """A FastAPI app with the offload router under ``/v1/offload``, behind serve's guard:
    the bearer ``token`` (None: anonymous, which only loopback callers may choose) and the
    request-body limit (413 above it)."""
    fastapi = require("fastapi", "serve", "the offload node")
    from edgeinfer.serve.app import Guard
    from edgeinfer.serve.auth import AccessPolicy

    app = fastapi.FastAPI(title="edgeinfer offload node")
    app.include_router(router(models, **router_kw), prefix="/v1/offload")
    app.add_middleware(Guard, policy=AccessPolicy(token), limit=max_body_bytes)
    return app


class BackgroundNode:
    """An offload node on a free loopback port in a daemon thread (tests, benchmarks, examples):
    ``url`` is its ``/v1/offload`` base; ``token``/``max_body_bytes`` as for
    :func:`serve_node`; ``router_kw`` go to :func:`router`."""

    def __init__(self, models: Mapping[str, str | Path], token: str | None = None,
                 max_body_bytes: int = NODE_MAX_BODY_BYTES, **router_kw: Any) -> None:
        from edgeinfer.serve.server import BackgroundServer

        app = _node_app(models, token, max_body_bytes, **router_kw)
        self._server = BackgroundServer(app).start()
        self.url = f"{self._server.url}/v1/offload"

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.stop()


def serve_node(models: Mapping[str, str | Path], host: str, port: int, threads: int,
               token: str | None = None, allow_anonymous: bool = False,
               max_body_bytes: int = NODE_MAX_BODY_BYTES) -> None:
    """Run a standalone offload node (uvicorn) until interrupted. Access as for
    ``edgeinfer serve``: ``token`` (None: ``$EDGEINFER_TOKEN``), or anonymous only with
    ``allow_anonymous`` on a loopback ``host``; bodies over ``max_body_bytes`` get 413."""
    from edgeinfer.serve.auth import access_policy
    from edgeinfer.serve.config import TOKEN_ENV

    policy = access_policy(token or os.environ.get(TOKEN_ENV) or None, allow_anonymous, host)
    uvicorn = require("uvicorn", "serve", "the offload node")
    uvicorn.run(_node_app(models, policy.token, max_body_bytes, threads=threads), host=host,
                port=port, log_level="warning")


def run_split_cli(
    console: Any, model: str, node: str, bandwidth: str, rtt_ms: float, device_threads: int,
    slowdown: float, compression: str, name: str | None, runs: int,
    image: str | None = None, answer: str = "raw+lz4",
) -> None:
    """``edgeinfer split``: prepare, plan, measure and print the breakdown table."""
    from rich.progress import Progress
    from rich.table import Table

    from edgeinfer.collab.link import parse_rate

    bps = None if bandwidth == "auto" else parse_rate(bandwidth)
    link = Link(bps, bps, rtt_ms / 1000.0)
    client = SplitClient(
        model, node, name, link=link, device=DeviceSim(device_threads, slowdown),
        compression=Compression.parse(compression), bandwidth_bps=bps,
        rtt_s=rtt_ms / 1000.0 if bps else None, answer=answer,
    )
    try:
        from edgeinfer.collab.profile import image_feeds

        feeds = image_feeds(model, image) if image else client.split.example_feeds(1)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("profiling cuts on the device", total=len(client.split.cuts))
            p = client.prepare(feeds, progress=lambda k, n: bar.update(task, completed=k),
                               image=image)
        rows = measure_split(client, feeds, runs, image)
    finally:
        client.close()
    if p is None:
        console.print(f"node {node} unreachable: everything ran on the device")
    else:
        console.print(
            f"link {p.bandwidth_bps / 1e6:.2f} Mbit/s, RTT {p.rtt_s * 1000:.1f} ms; chosen cut "
            f"'{'|'.join(p.cut.tensors)}' ({p.where}), predicted {p.total_s * 1000:.1f} ms, "
            f"{len(client.split.cuts)} of {len(client.split.all_cuts)} cuts profiled"
        )
    table = Table(title=f"edgeinfer split {model} (median of {runs}, ms)")
    for col in ("mode", "where", "head", "transfer", "tail", "total", "sent KB", "fallbacks"):
        table.add_column(col)
    for mode, r in rows.items():
        table.add_row(mode, str(r["where"]), f"{r['head_ms']:.1f}", f"{r['transfer_ms']:.1f}",
                      f"{r['tail_ms']:.1f}", f"{r['total_ms']:.1f}",
                      f"{float(r['sent_bytes']) / 1000:.1f}", f"{r['fallbacks']:.0f}")
    console.print(table)
