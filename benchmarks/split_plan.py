"""Split planning against ground truth: for each zoo model and link, the planner's cut against
the best cut found by running every sampled cut end to end, and against the two extremes.

Setup (all in one process, side by side):
- node: a real uvicorn on a loopback port serving ``edgeinfer.collab.tails.router`` (tails in
  onnxruntime, 1 intra-op thread, this machine's speed);
- device: the same machine made weaker, visibly: 1 intra-op thread and a ``--slowdown`` factor
  (default 4: after each head run the device sleeps 3x the measured time, roughly a Cortex-A72
  Raspberry Pi 4 core against one Zen 3 core);
- link: a token bucket per direction plus ``--rtt-ms`` added delay inside our own httpx
  transport (``edgeinfer.collab.link``), at 1, 5, 20 and 100 Mbit/s: loopback is not shaped by
  the kernel (no ``tc netem``);
- "JPEG->node" is one of the planner's candidates (``where == "jpeg"``): the device resizes
  the photo to the model's input as its manifest says and encodes it as JPEG q90 (device
  clock), the bytes go through the same throttled link to ``/infer-image``, the node decodes,
  normalises and runs the whole model; planned from the device's measured encode and the
  node's published decode + whole-model time, and measured end to end like every cut;
- cut tensors sent as int8 + lz4; input: ``edgeinfer/data/coffee.jpg`` preprocessed per model;
  the node's answer as ``--answers`` (raw+lz4 by default; ``raw+lz4,fp16+lz4`` runs both, one
  after the other, and the planner charges each its own answer bytes);
- the planner's RTT: the added delay plus the HTTP overhead of one empty request (the median
  of 20 on an unthrottled link, measured once per model);
- ground truth: every sampled cut (at most ``--max-cuts``, both extremes and the JPEG option
  included) run end to end through the real client (head, compress, throttled HTTP, tail); a
  cut whose wire time alone (bytes / bandwidth, a lower bound the token bucket enforces)
  already exceeds the best measured total is not run, since it cannot be the best.

    .venv/bin/python benchmarks/split_plan.py [--models efficientnet-lite0,...] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgeinfer.collab.compress import Compression
from edgeinfer.collab.link import Link
from edgeinfer.collab.offload import SplitClient
from edgeinfer.collab.profile import JPEG_CUT, DeviceSim, as_image, image_feeds
from edgeinfer.serve.split_node import BackgroundNode

MODELS = ("efficientnet-lite0", "defect-detector", "ppocrv4-det", "blazeface-short")
NEUROSURGEON = 3.1
IMAGE = Path(__file__).resolve().parents[1] / "edgeinfer" / "data" / "coffee.jpg"




class Node(BackgroundNode):
    """A real uvicorn offload node on a free loopback port, in a thread."""

    def __init__(self, models: dict[str, str], threads: int) -> None:
        super().__init__(models, threads=threads, profile_runs=3, clock="cpu")


def measure(
    client: SplitClient, feeds: dict, cut: tuple[str, ...], runs: int, image: np.ndarray
) -> float:
    """Median end-to-end seconds of ``runs`` requests at ``cut`` (one more untimed first when
    ``runs`` > 1: engines are built, arenas grown); ``image`` is sent for the JPEG option."""
    if runs > 1:
        client.infer(feeds, cut=cut, image=image)
    return statistics.median(
        client.infer(feeds, cut=cut, image=image).total_s for _ in range(runs)
    )


def http_overhead(client: SplitClient, probes: int = 20) -> float:
    """Seconds one empty request costs over an unthrottled link: the median of ``probes``
    (on this shared, loaded machine the typical request, not the fastest), measured once per
    model so that the load at the moment a link is set up does not move the plan."""
    client.use_link(Link(), 1e12, 0.0)
    url = f"{client.base}/probe"
    return statistics.median(client._timed(url, b"") for _ in range(probes))


def _where(key: str, first: str, last: str) -> str:
    return {JPEG_CUT[0]: "jpeg", first: "node", last: "device"}.get(key, "split")


def sweep(
    client: SplitClient, feeds: dict, bps: float, runs: int, image: np.ndarray
) -> dict[str, Any]:
    """Plan for the link, then run the sampled cuts and the JPEG option end to end (best
    first by prediction)."""
    plan = client.replanner.plan() if client.replanner else None
    if plan is None:
        raise RuntimeError("node unreachable")
    cuts = client.cuts
    last = max(cuts, key=lambda c: c.position)
    first = min((c for c in cuts if c.tensors != JPEG_CUT), key=lambda c: c.position)
    jpeg = next((c for c in cuts if c.tensors == JPEG_CUT), None)
    predicted = {
        c.key: c.head_s if c is last else
        c.head_s + client.rtt_s + 8 * (c.sent_bytes + c.out_bytes) / bps + c.tail_s
        for c in cuts
    }
    measured: dict[str, float] = {}
    skipped = 0
    best = float("inf")
    for c in sorted(cuts, key=lambda c: predicted[c.key]):
        must = c.key in (plan.cut.key, last.key, first.key) or c is jpeg
        wire = 8 * (c.sent_bytes + c.out_bytes) / bps if c is not last else 0.0
        if wire > best and not must:
            skipped += 1
            continue
        measured[c.key] = measure(client, feeds, c.tensors, 1 if wire > 0.5 else runs, image)
        best = min(best, measured[c.key])
    best_key = min(measured, key=measured.get)
    got = measured[plan.cut.key]
    return {
        "bandwidth_mbit": bps / 1e6,
        "rtt_ms": client.rtt_s * 1000,
        "planned_cut": plan.cut.key,
        "planned_where": plan.where,
        "planned_sent_kb": plan.cut.sent_bytes / 1000 if plan.where != "device" else 0.0,
        "predicted_ms": plan.total_s * 1000,
        "planned_ms": got * 1000,
        "best_cut": best_key,
        "best_where": _where(best_key, first.key, last.key),
        "best_ms": measured[best_key] * 1000,
        "ratio_to_best": got / measured[best_key],
        "all_device_ms": measured[last.key] * 1000,
        "all_node_ms": measured[first.key] * 1000,
        "speedup_vs_device": measured[last.key] / got,
        "speedup_vs_node": measured[first.key] / got,
        "jpeg_node_ms": measured[jpeg.key] * 1000 if jpeg else None,
        "jpeg_kb": jpeg.sent_bytes / 1000 if jpeg else None,
        "jpeg_predicted_ms": predicted[jpeg.key] * 1000 if jpeg else None,
        "planned_vs_jpeg": got / measured[jpeg.key] if jpeg else None,
        "cuts_run": len(measured),
        "cuts_pruned": skipped,
        "per_cut": [
            {"cut": c.key, "position": c.position, "sent_kb": c.sent_bytes / 1000,
             "head_ms": c.head_s * 1000, "tail_ms": c.tail_s * 1000,
             "predicted_ms": predicted[c.key] * 1000,
             "measured_ms": measured[c.key] * 1000 if c.key in measured else None}
            for c in cuts
        ],
    }


def run_model(model: str, node: Node, args: argparse.Namespace, console: Console,
              answer: str = "raw+lz4") -> dict:
    """Profile one model once, then sweep every bandwidth (the node answering in ``answer``)."""
    t0 = time.perf_counter()
    client = SplitClient(
        model, node.url, model, device=DeviceSim(1, args.slowdown, "cpu"),
        compression=Compression.parse(args.compression), bandwidth_bps=1e8,
        max_cuts=args.max_cuts, timeout_s=120.0, answer=answer,
    )
    try:
        feeds = image_feeds(model, IMAGE)
        photo = as_image(IMAGE)
        client.prepare(feeds, runs=args.profile_runs, image=None if args.no_jpeg else photo)
        overhead = http_overhead(client)
        client.run_local(feeds)  # build the whole-model engine before anything is timed
        rows = []
        for mbit in args.bandwidths:
            bps = mbit * 1e6
            rtt = args.rtt_ms / 1000
            client.use_link(Link(bps, bps, rtt), bps, rtt + overhead)
            rows.append(sweep(client, feeds, bps, args.runs, photo))
            console.print(f"  {model} @ {mbit:g} Mbit/s, answer {answer}: ratio "
                          f"{rows[-1]['ratio_to_best']:.3f}, planned {rows[-1]['planned_ms']:.0f}"
                          " ms")
        return {
            "model": model,
            "answer": answer,
            "cuts_total": len(client.split.all_cuts),
            "cuts_sampled": len(client.split.cuts),
            "seconds": time.perf_counter() - t0,
            "http_overhead_ms": overhead * 1000,
            "slowdown": args.slowdown,
            "rows": rows,
        }
    finally:
        client.close()


def render(results: list[dict], console: Console) -> None:
    """One table over models and bandwidths."""
    t = Table(title="split planning (device: 1 thread x slowdown; node: 1 thread; ms)")
    t.add_column("slow")
    for col in ("answer", "model", "Mbit/s", "planned", "sent KB", "pred", "meas", "best",
                "best is", "ratio", "device", "node", "x dev", "x node", "JPEG->node", "plan/JPEG"):
        t.add_column(col)
    for res in results:
        if "skipped" in res:
            t.add_row("-", "-", res["model"], "-", f"skipped: {res['skipped']}", *[""] * 12)
            continue
        for r in res["rows"]:
            t.add_row(
                f"{res['slowdown']:g}", res["answer"], res["model"], f"{r['bandwidth_mbit']:g}",
                r["planned_where"],
                f"{r['planned_sent_kb']:.0f}", f"{r['predicted_ms']:.0f}",
                f"{r['planned_ms']:.0f}", f"{r['best_ms']:.0f}", r["best_where"],
                f"{r['ratio_to_best']:.3f}",
                f"{r['all_device_ms']:.0f}", f"{r['all_node_ms']:.0f}",
                f"{r['speedup_vs_device']:.2f}", f"{r['speedup_vs_node']:.2f}",
                "-" if r["jpeg_node_ms"] is None else f"{r['jpeg_node_ms']:.0f}",
                "-" if r["planned_vs_jpeg"] is None else f"{r['planned_vs_jpeg']:.2f}",
            )
    console.print(t)
    rows = [r for res in results for r in res.get("rows", [])]
    if rows:
        within = sum(r["ratio_to_best"] <= 1.05 for r in rows)
        gain = [min(r["speedup_vs_device"], r["speedup_vs_node"]) for r in rows]
        dev = [r["speedup_vs_device"] for r in rows]
        node = [r["speedup_vs_node"] for r in rows]
        console.print(
            f"planner within 5% of the best measured cut: {within}/{len(rows)} (worst ratio "
            f"{max(r['ratio_to_best'] for r in rows):.3f}); planned vs all-on-device: mean "
            f"{statistics.mean(dev):.2f}x (geometric {statistics.geometric_mean(dev):.2f}x, max "
            f"{max(dev):.2f}x); vs all-on-node: mean {statistics.mean(node):.2f}x (geometric "
            f"{statistics.geometric_mean(node):.2f}x, max {max(node):.2f}x); vs the better "
            f"extreme: mean {statistics.mean(gain):.2f}x, max {max(gain):.2f}x "
            f"(Neurosurgeon: {NEUROSURGEON}x average, up to 40.7x)"
        )


def main() -> None:
    """Run the sweep and print the table (and JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--bandwidths", default="1,5,20,100")
    ap.add_argument("--rtt-ms", type=float, default=5.0)
    ap.add_argument("--slowdown", type=float, default=4.0)
    ap.add_argument("--compression", default="int8+lz4")
    ap.add_argument("--max-cuts", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile-runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-jpeg", action="store_true",
                    help="leave the JPEG option out (neither planned nor measured)")
    ap.add_argument("--answers", default="raw+lz4",
                    help="the node's answer encodings to run, one after the other, e.g. "
                         "raw+lz4,fp16+lz4")
    args = ap.parse_args()
    args.bandwidths = [float(b) for b in args.bandwidths.split(",")]
    console = Console(width=150)
    from edgeinfer.collab.profile import resolve_onnx
    from edgeinfer.errors import EdgeInferError

    models, results = {}, []
    for m in args.models.split(","):
        try:
            resolve_onnx(m)
            models[m] = m
        except EdgeInferError as exc:
            results.append({"model": m, "skipped": str(exc)})
    node = Node(models, threads=1)
    try:
        for m in models:
            for answer in args.answers.split(","):
                results.append(run_model(m, node, args, console, answer))
    finally:
        node.stop()
    render(results, console)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
