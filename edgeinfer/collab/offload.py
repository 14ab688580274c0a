"""Split inference over HTTP, the device side: :class:`SplitClient` plans a cut against the
node's published profile and runs requests split (the node side is
:mod:`edgeinfer.collab.tails`).

The device runs the head, compresses the cut tensors (:mod:`edgeinfer.collab.compress`) and
POSTs one frame to the node, which runs the tail and answers with the outputs. Every request
goes through an httpx transport that can simulate a link (:mod:`edgeinfer.collab.link`).
When the node is unreachable, slow past the timeout or answers an error, the device finishes
the tail itself (it holds the whole model), so no request is lost; a circuit breaker then keeps
it on the device for ``cooldown_s`` before it tries the node again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.compress import ANSWER, Compression, answer_compression, decode, encode
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
from edgeinfer.collab.tails import ANSWER_HEADER
from edgeinfer.errors import EdgeInferError
from edgeinfer.progress import ProgressFn

__all__ = ["SplitClient", "SplitResult", "measure_split"]

log = logging.getLogger(__name__)


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
        progress: ProgressFn | None = None,
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
