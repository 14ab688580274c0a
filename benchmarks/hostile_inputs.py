"""The edge node against hostile input: every image bomb, malformed frame and abusive body of
the hostile-input table, sent to a real ``edgeinfer serve`` process on loopback, with the
server's peak RSS growth per probe, slow clients, and ``/healthz`` latency during floods.

    .venv/bin/python benchmarks/hostile_inputs.py [--flood-s 8] [--json out.json]

The node runs as its own process (``python -m edgeinfer.cli serve``, a token from a file, 32 MiB
bodies so that a 15 MiB JSON body reaches the app, a 5 s body timeout) on a repository of tiny
models built in code (``tests/serve/serve_models.py``) plus one with dynamic input dims (a JSON
body for it cannot be bounded by its shape, so it is parsed whole). Probes are sent one at a
time; before each the server's peak RSS is reset (``/proc/PID/clear_refs``) and its growth is
read after (``VmHWM``). Checks, each printed and the exit status 1 if one fails:

- every bomb and malformed request is answered 4xx, none 5xx;
- peak RSS growth < 100 MiB for each probe;
- no 500 and no traceback in the server's log, no ``code="500"`` in ``/metrics``;
- a normal request is answered while 100 slow bodies are open (they get 408 later);
- ``/healthz`` p99 < 100 ms during floods of offload frames, 15 MiB multipart uploads and 15 MiB
  JSON bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "serve")]
from bombs import BOMBS  # noqa: E402
from serve_models import conv_model, make_repository  # noqa: E402

from edgeinfer.collab.compress import MAGIC, Compression, encode  # noqa: E402
from edgeinfer.stats import percentile  # noqa: E402

TOKEN = "hostile-inputs-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RSS_LIMIT = 100 * 2**20
HEALTHZ_P99_S = 0.100


# ------------------------------------------------------------------------------ the node
class NodeProcess:
    """``edgeinfer serve`` in its own process, its log in a file."""

    def __init__(self, work: Path) -> None:
        repo = make_repository(work / "repo", corrupt=False)
        onnx.save(conv_model(["N", 3, "H", "W"]), str(repo / "dyn.onnx"))
        token = work / "token"
        token.write_text(TOKEN)
        token.chmod(0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "node.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeinfer.cli", "serve", str(repo), "--port", str(self.port),
             "--token-file", str(token), "--max-body-mb", "32", "--body-timeout-s", "5",
             "--queue-size", "8"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"),
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(work)})
        end = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the node did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _status(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def peak_growth(self, send: Any) -> tuple[Any, int]:
        """Run ``send()``; (its result, the server's peak RSS growth while it ran, bytes)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        before = self._status()["VmRSS"]
        result = send()
        time.sleep(0.05)
        return result, self._status()["VmHWM"] - before

    def stop(self) -> str:
        """Stop the node; its log."""
        self.proc.terminate()
        self.proc.wait(30)
        return self.log.read_text(errors="replace")


# ------------------------------------------------------------------------------ probes
def _frame(dims: dict[str, tuple[int, ...]], codec: int = 0, payload: bytes = b"") -> bytes:
    head = [MAGIC, struct.pack("<BH", codec, len(dims))]
    for name, shape in dims.items():
        raw = name.encode()
        head += [struct.pack("<H", len(raw)), raw, struct.pack("<BBB", 0, 0, len(shape)),
                 struct.pack(f"<{len(shape)}I", *shape), struct.pack("<ff", 1.0, 0.0)]
    return b"".join(head) + payload


def malformed_frames() -> dict[str, bytes]:
    """Frames the offload endpoint must refuse with 400."""
    import lz4.frame
    import zstandard

    zeros = bytes(64 * 2**20)
    good = encode({"x": np.zeros((1, 3, 8, 8), np.float32)}, Compression("raw", "none"))
    return {
        "frame: dims [65536]*4 (int64 overflow)": _frame({"x": (65536,) * 4}),
        "frame: dims [0, 2^32-1, 2^32-1]": _frame({"x": (0, 2**32 - 1, 2**32 - 1)}),
        "frame: 16 KB zstd declaring 512 MiB": _frame(
            {"x": (1, 128, 1024, 1024)}, 2, zstandard.ZstdCompressor().compress(zeros)[:16384]),
        "frame: lz4 of 64 MiB under the model's shape": _frame(
            {"x": (1, 3, 8, 8)}, 1, lz4.frame.compress(zeros)),
        "frame: the wrong rank": _frame({"x": (1, 3, 8)}),
        "frame: bad magic": b"NOPE" + good[4:],
        "frame: truncated": good[:30],
        "frame: not a published cut (x, y)": encode(
            {"x": np.zeros((1, 3, 8, 8), np.float32), "y": np.zeros((1, 2), np.float32)},
            Compression("raw", "none")),
    }


def probes(node: NodeProcess) -> list[dict[str, Any]]:
    """Every probe, one at a time: name, status, peak RSS growth."""
    out = []
    with httpx.Client(base_url=node.url, headers=AUTH, timeout=60) as c:
        def probe(name: str, send: Any) -> None:
            r, grew = node.peak_growth(send)
            status, text = (r.status_code, r.text) if isinstance(r, httpx.Response) else r
            try:
                body = json.loads(text)
                error = body.get("error", body.get("detail", ""))
            except ValueError:
                error = text
            out.append({"probe": name, "status": status, "rss_growth_mib": grew / 2**20,
                        "error": str(error)[:90]})

        for name, build in BOMBS.items():
            data = build()
            probe(f"image bomb: {name}", lambda d=data: c.post(
                "/v1/models/tiny/infer", files={"file": ("x", d, "application/octet-stream")}))
            probe(f"offload image bomb: {name}", lambda d=data: c.post(
                "/v1/offload/tiny/infer-image", content=d))
        for name, frame in malformed_frames().items():
            probe(name, lambda f=frame: c.post("/v1/offload/raw/infer", content=f))
        big = b'{"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [' + b"0.5, " * 3_000_000 \
            + b"0]}}}"
        probe("json: 15 MiB tensor for a 1x3x8x8 input", lambda: c.post(
            "/v1/models/raw/infer", content=big, headers={"Content-Type": "application/json"}))
        probe("json: nested 100000 deep", lambda: c.post(
            "/v1/models/raw/infer", content=b"[" * 100_000 + b"]" * 100_000,
            headers={"Content-Type": "application/json"}))
        probe("json: shape with 10^12 elements", lambda: c.post(
            "/v1/models/dyn/infer", json={"inputs": {"x": {"shape": [10**6, 10**6],
                                                           "data": []}}}))

        def chunks():
            for _ in range(640):
                yield bytes(65536)

        probe("chunked body of 40 MiB (no length)", lambda: c.post(
            "/v1/models/tiny/infer", content=chunks(), headers={"Content-Type": "image/jpeg"}))
        probe("declared body of 1 GiB", lambda: _raw(node.port, (
            "POST /v1/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {2**30}\r\n\r\nx").encode()))
    return out


def _raw(port: int, request: bytes) -> tuple[int, str]:
    """Send raw bytes (what an HTTP client library would refuse to send); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                dict(line.split(b": ", 1) for line in data.split(b"\r\n\r\n")[0]
                     .split(b"\r\n")[1:] if b": " in line).get(b"content-length", b"0")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode(errors="replace")


def slow_bodies(node: NodeProcess, n: int = 100) -> dict[str, Any]:
    """``n`` connections that send headers and 10 bytes of a 100 KB body, then stall; a normal
    request meanwhile; then what the stalled ones got."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(f"POST /v1/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
                  "Content-Length: 100000\r\n\r\n0123456789".encode())
        socks.append(s)
    time.sleep(0.5)
    import cv2

    jpg = cv2.imencode(".jpg", np.full((32, 48, 3), 90, np.uint8))[1].tobytes()
    t0 = time.perf_counter()
    r = httpx.post(f"{node.url}/v1/models/tiny/infer", content=jpg, timeout=30,
                   headers={**AUTH, "Content-Type": "image/jpeg"})
    normal_ms = (time.perf_counter() - t0) * 1e3
    codes = []
    for s in socks:
        s.settimeout(15)
        try:
            head = s.recv(64)
            codes.append(int(head.split(b" ", 2)[1]) if head else 0)
        except (OSError, IndexError, ValueError):
            codes.append(0)
        s.close()
    return {"slow_bodies": n, "normal_status": r.status_code, "normal_ms": round(normal_ms, 1),
            "slow_answered": {str(k): codes.count(k) for k in sorted(set(codes))}}


# ------------------------------------------------------------------------------ floods
_PROBER = """
import sys, time, httpx
url, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lat, end = [], time.monotonic() + seconds
with httpx.Client(timeout=30) as c:
    while time.monotonic() < end:
        t0 = time.perf_counter()
        c.get(url + "/healthz")
        lat.append(time.perf_counter() - t0)
        time.sleep(0.02)
open(out, "w").write(" ".join(map(str, lat)))
"""


def _prober(url: str, seconds: float, out: Path) -> subprocess.Popen:
    """``/healthz`` timed every 20 ms from a process of its own (the flooding clients in this
    one would otherwise delay the probe and be charged to the node)."""
    return subprocess.Popen([sys.executable, "-c", _PROBER, url, str(seconds), str(out)])


async def _flood(url: str, path: str, bodies: list[tuple[bytes, dict[str, str]]], workers: int,
                 stop: asyncio.Event, codes: dict[int, int]) -> None:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
        async def one(k: int) -> None:
            while not stop.is_set():
                body, headers = bodies[k % len(bodies)]
                try:
                    r = await c.post(path, content=body, headers=headers)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    codes[-1] = codes.get(-1, 0) + 1
                k += workers

        await asyncio.gather(*(one(k) for k in range(workers)))


def flood(node: NodeProcess, name: str, path: str | None,
          bodies: list[tuple[bytes, dict[str, str]]], seconds: float,
          workers: int = 4) -> dict[str, Any]:
    """``/healthz`` latency (every 20 ms, from another process) while ``workers`` clients post
    ``bodies`` in a loop."""
    out = node.log.with_name(f"healthz-{abs(hash(name))}.txt")

    async def main() -> dict[int, int]:
        stop, codes = asyncio.Event(), {}
        task = (asyncio.create_task(_flood(node.url, path, bodies, workers, stop, codes))
                if path is not None else None)
        await asyncio.sleep(0.5)  # the flood under way
        prober = _prober(node.url, seconds, out)
        await asyncio.to_thread(prober.wait)
        stop.set()
        if task is not None:
            await task
        return codes

    codes = asyncio.run(main())
    ms = [float(x) * 1e3 for x in out.read_text().split()]
    return {"flood": name, "healthz_n": len(ms), "healthz_p50_ms": round(percentile(ms, 50), 1),
            "healthz_p99_ms": round(percentile(ms, 99), 1),
            "healthz_max_ms": round(max(ms), 1), "answers": codes}


def floods(node: NodeProcess, seconds: float) -> list[dict[str, Any]]:
    """Idle, offload frames (valid ones and bombs), JSON bodies of 15 MiB."""
    import zstandard

    octet = {"Content-Type": "application/octet-stream"}
    rng = np.random.default_rng(0)
    valid = [(encode({"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)},
                     Compression("raw", "lz4")), octet) for _ in range(4)]
    bomb = _frame({"x": (1, 3, 8, 8)}, 2,
                  zstandard.ZstdCompressor().compress(bytes(64 * 2**20)))
    json_h = {"Content-Type": "application/json"}
    data = rng.standard_normal(3 * 700 * 333).astype(np.float32).tolist()
    dyn = json.dumps({"inputs": {"x": {"shape": [1, 3, 700, 333], "data": data}}}).encode()
    boundary = "hostile-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + os.urandom(15 * 2**20) \
        + f"\r\n--{boundary}--\r\n".encode()
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return [
        flood(node, "idle", None, [], seconds),
        flood(node, "multipart uploads of 15 MiB (not images)", "/v1/models/tiny/infer",
              [(form, multipart)], seconds),
        flood(node, "offload frames (valid lz4 and zstd bombs)", "/v1/offload/raw/infer",
              valid + [(bomb, octet)] * 4, seconds),
        flood(node, f"JSON {len(dyn) / 2**20:.0f} MiB, dynamic-shape model (parsed whole)",
              "/v1/models/dyn/infer", [(dyn, json_h)], seconds, workers=2),
        flood(node, "JSON 15 MiB, fixed-shape model (refused unread)", "/v1/models/raw/infer",
              [(b'{"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [' + b"0.5, " * 3_000_000
                + b"0]}}}", json_h)], seconds),
    ]


# ------------------------------------------------------------------------------ report
def _machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                  .splitlines() if ln.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"


def main() -> int:
    """Run everything, print the table and the checks; 1 when a check fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-s", type=float, default=8.0, help="seconds per flood")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    print(f"machine: {_machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgeinfer-hostile-") as tmp:
        node = NodeProcess(Path(tmp))
        try:
            rows = probes(node)
            slow = slow_bodies(node)
            flooded = floods(node, args.flood_s)
            metrics = httpx.get(f"{node.url}/metrics", headers=AUTH).text
        finally:
            log = node.stop()
    width = max(len(r["probe"]) for r in rows)
    for r in rows:
        print(f"{r['probe']:<{width}}  {r['status']}  +{r['rss_growth_mib']:6.1f} MiB  "
              f"{r['error']}")
    print(f"\n{slow}")
    for f in flooded:
        print(f"{f['flood']:<60} healthz p50 {f['healthz_p50_ms']:6.1f} ms  p99 "
              f"{f['healthz_p99_ms']:6.1f} ms  max {f['healthz_max_ms']:6.1f} ms  "
              f"({f['healthz_n']} probes; answers {f['answers']})")
    checks = {
        "every probe answered 4xx": all(400 <= r["status"] < 500 for r in rows),
        "peak RSS growth < 100 MiB for each": all(r["rss_growth_mib"] * 2**20 < RSS_LIMIT
                                                  for r in rows),
        "no 500 in the log or /metrics": ('code="500"' not in metrics
                                          and "Traceback" not in log and " 500" not in log),
        "normal request answered while 100 slow bodies are open": slow["normal_status"] == 200,
        "the slow bodies got 408": slow["slow_answered"].get("408") == slow["slow_bodies"],
        "healthz p99 < 100 ms during every flood": all(
            f["healthz_p99_ms"] < HEALTHZ_P99_S * 1e3 for f in flooded),
        "no 5xx during the floods": all(not any(500 <= k for k in f["answers"])
                                        for f in flooded),
    }
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps({"machine": _machine(), "probes": rows, "slow": slow,
                                         "floods": flooded, "checks": checks}, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
