"""Loopback load test of `edgeinfer serve`: concurrent clients against a real uvicorn server
(`edgeinfer serve` in its own process) serving a zoo model, beside the same requests made
straight to a Scheduler in-process.

Each request is one JPEG (the same frames for both sides). The HTTP side posts it as
multipart to /v1/models/NAME/infer; the in-process side does the node's work without HTTP:
decode the JPEG, preprocess, submit to a Scheduler with the same queue size, decode the
outputs. At one client the two alternate request by request (same machine load); under load
both run closed loops (each client sends its next request when the last one is answered; a
429 is answered at once and the client tries again after --backoff-ms), one after the other.
Reported: completed requests, explicit 429s, any other error (must be 0), p50/p99 of the
successful requests, throughput, ratios (ours over the in-process reference).

    .venv/bin/python benchmarks/serve_load.py                  # 50 clients x 30 s
    .venv/bin/python benchmarks/serve_load.py --seconds 5      # a quick look
    .venv/bin/python benchmarks/serve_load.py --pin            # node and load on own CPUs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np

from edgeinfer import loading
from edgeinfer.runtime.scheduler import RejectedError, Scheduler, SchedulerConfig

TOKEN = "load-test-token-0123"


def frames(n: int = 8) -> list[bytes]:
    """Synthetic 640x480 JPEG frames (gradients and noise, about 100 KB each)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None]
        img = (base + rng.normal(0, 40, (480, 640, 3)) + 20 * i).clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        out.append(buf.tobytes())
    return out


def summary(name: str, lat_s: list[float], ok: int, rejected: int, errors: int,
            seconds: float) -> dict:
    """One side's figures."""
    ms = np.asarray(lat_s) * 1e3
    row = {"side": name, "ok": ok, "429": rejected, "errors": errors,
           "rps": ok / seconds,
           "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
           "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan")}
    print(f"  {name:<12} ok {ok:6d}  429 {rejected:6d}  errors {errors:3d}  "
          f"{row['rps']:7.1f} req/s  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms",
          flush=True)
    return row


async def http_side(url: str, model: str, jpegs: list[bytes], clients: int, seconds: float,
                    backoff_s: float) -> dict:
    """``clients`` async clients for ``seconds``: latencies of 200s, count of 429s, and the
    time each answer spent in the node's handler (its ``times_ms``: body read + decode +
    preprocess, queue wait, run, decoder), so the tail can be placed inside or outside it."""
    lat: list[float] = []
    in_node: list[float] = []
    counts = {"ok": 0, "429": 0, "errors": 0}
    other: list[str] = []
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients,
                          keepalive_expiry=5.0)  # under the node's 30 s keep-alive
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:

        async def client(k: int) -> None:
            i = k
            while time.monotonic() < end:
                data = jpegs[i % len(jpegs)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await c.post(f"/v1/models/{model}/infer",
                                     files={"file": ("f.jpg", data, "image/jpeg")})
                except httpx.HTTPError as exc:
                    counts["errors"] += 1
                    other.append(repr(exc))
                    continue
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                    in_node.append(sum(r.json()["times_ms"].values()) / 1e3)
                    counts["ok"] += 1
                elif r.status_code == 429:
                    counts["429"] += 1
                    await asyncio.sleep(backoff_s)
                else:
                    counts["errors"] += 1
                    other.append(f"{r.status_code} {r.text[:120]}")

        t0 = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(clients)))
        took = time.monotonic() - t0
    for line in sorted(set(other))[:5]:
        print(f"    error: {line}")
    row = summary("http", lat, counts["ok"], counts["429"], counts["errors"], took)
    inside = np.asarray(in_node) * 1e3
    if inside.size:
        row["in_node_p50_ms"] = float(np.percentile(inside, 50))
        row["in_node_p99_ms"] = float(np.percentile(inside, 99))
        print(f"  {'  in handler':<12} p50 {row['in_node_p50_ms']:8.2f} ms  p99 "
              f"{row['in_node_p99_ms']:8.2f} ms (the rest is uvicorn, the network stack and "
              "the load generator)", flush=True)
    return row


def inprocess_side(artifact_dir: Path, model: str, jpegs: list[bytes], clients: int,
                   seconds: float, backoff_s: float, queue_size: int) -> dict:
    """The same work without HTTP: threads decode, preprocess, submit, decode."""
    from edgeinfer.loading import load
    from edgeinfer.vision.decoders import get_decoder
    from edgeinfer.vision.preprocess import to_tensor

    artifact = load(artifact_dir)
    m = artifact.manifest
    decoder, labels, spec = get_decoder(m.decoder), artifact.labels(), m.inputs[0]
    lat: list[float] = []
    counts = {"ok": 0, "429": 0, "errors": 0}
    lock = threading.Lock()
    with Scheduler(SchedulerConfig(queue_size=queue_size)) as sched:
        sched.register(model, artifact_dir)
        sched.run(model, {spec.name: np.zeros(spec.shape, np.float32)})  # load + warm
        end = time.monotonic() + seconds

        def client(k: int) -> None:
            i = k
            while time.monotonic() < end:
                data = jpegs[i % len(jpegs)]
                i += 1
                t0 = time.perf_counter()
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                x, transform = to_tensor(image, spec, m.preprocess)
                try:
                    outputs = sched.submit(model, {spec.name: x}).result()
                except RejectedError:
                    with lock:
                        counts["429"] += 1
                    time.sleep(backoff_s)
                    continue
                except Exception:
                    with lock:
                        counts["errors"] += 1
                    continue
                decoder(outputs, m.decoder_params, transform, labels)
                with lock:
                    lat.append(time.perf_counter() - t0)
                    counts["ok"] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
    return summary("in-process", lat, counts["ok"], counts["429"], counts["errors"], took)


def interleaved(url: str, artifact_dir: Path, model: str, jpegs: list[bytes],
                seconds: float) -> tuple[dict, dict]:
    """One client: an HTTP request, then the same request in-process, alternating, so both
    sides see the same machine load (this machine is shared and its speed drifts)."""
    from edgeinfer.loading import load
    from edgeinfer.vision.decoders import get_decoder
    from edgeinfer.vision.preprocess import to_tensor

    artifact = load(artifact_dir)
    m = artifact.manifest
    decoder, labels, spec = get_decoder(m.decoder), artifact.labels(), m.inputs[0]
    lat_h: list[float] = []
    lat_r: list[float] = []
    errors = 0
    with Scheduler(SchedulerConfig()) as sched, httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        sched.register(model, artifact_dir)
        sched.run(model, {spec.name: np.zeros(spec.shape, np.float32)})
        end, i = time.monotonic() + seconds, 0
        t_start = time.monotonic()
        while time.monotonic() < end:
            data = jpegs[i % len(jpegs)]
            i += 1
            t0 = time.perf_counter()
            r = c.post(f"/v1/models/{model}/infer", files={"file": ("f.jpg", data, "image/jpeg")})
            if r.status_code == 200:
                lat_h.append(time.perf_counter() - t0)
            else:
                errors += 1
            t0 = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            x, transform = to_tensor(image, spec, m.preprocess)
            outputs = sched.submit(model, {spec.name: x}).result()
            decoder(outputs, m.decoder_params, transform, labels)
            lat_r.append(time.perf_counter() - t0)
        took = (time.monotonic() - t_start) / 2
    return (summary("http", lat_h, len(lat_h), 0, errors, took),
            summary("in-process", lat_r, len(lat_r), 0, 0, took))


@contextmanager
def node_process(repo: Path, queue_size: int, cpus: set[int] | None = None,
                 spinning: str = "run") -> Iterator[str]:
    """`edgeinfer serve` in its own process on a free loopback port (a load generator in the
    server's process would share its GIL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinfer.cli", "serve", str(repo), "--port", str(port),
         "--token", TOKEN, "--queue-size", str(queue_size), "--node-name", "load-test",
         "--spinning", spinning],
        preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the node did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    """Run both sides at 1 client and at --clients, print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--queue-size", type=int, default=16)
    ap.add_argument("--backoff-ms", type=float, default=50.0)
    ap.add_argument("--pin", action="store_true",
                    help="node on CPU 0, this load generator on CPU 1 (to see whose CPU the "
                         "tail waits for; needs 2 CPUs)")
    ap.add_argument("--spinning", default="run", choices=("run", "always", "never"),
                    help="the node's ONNX Runtime spinning (edgeinfer serve --spinning)")
    args = ap.parse_args()
    node_cpus = None
    if args.pin:
        node_cpus = {0}
        os.sched_setaffinity(0, {1})
    source = loading.resolve(args.model)
    jpegs = frames()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(source, repo / args.model)
        rows = {}
        with node_process(repo, args.queue_size, node_cpus, args.spinning) as url:
            for clients, seconds in ((1, min(10.0, args.seconds)), (args.clients, args.seconds)):
                print(f"{args.model}: {clients} client(s) x {seconds:.0f} s, queue "
                      f"{args.queue_size}, 429 back-off {args.backoff_ms:.0f} ms"
                      + (" (alternating HTTP / in-process)" if clients == 1 else ""), flush=True)
                if clients == 1:
                    h, r = interleaved(url, source, args.model, jpegs, seconds)
                else:
                    h = asyncio.run(http_side(url, args.model, jpegs, clients, seconds,
                                              args.backoff_ms / 1e3))
                    r = inprocess_side(source, args.model, jpegs, clients, seconds,
                                       args.backoff_ms / 1e3, args.queue_size)
                rows[clients] = (h, r)
                rate = ("same by construction (alternating)" if clients == 1
                        else f"{h['rps'] / r['rps']:.2f}x")
                print(f"  ratio http/in-process: p50 {h['p50_ms'] / r['p50_ms']:.2f}x, "
                      f"p99 {h['p99_ms'] / r['p99_ms']:.2f}x, throughput {rate}", flush=True)
    h, _ = rows[args.clients]
    verdict = "PASS" if h["errors"] == 0 and h["429"] > 0 else "MISS"
    print(f"{verdict}: {args.clients} clients: {h['errors']} errors, {h['429']} explicit 429s, "
          f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
