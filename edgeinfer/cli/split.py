"""Split computing: ``split`` (the device) and ``split-node`` (the node)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    AnonymousOption,
    MaxBodyOption,
    MemoryBudgetOption,
    TokenFileOption,
    TokenOption,
    console,
    warn_secret_on_command_line,
)
from edgeinfer.cli.progress import progress_bars
from edgeinfer.errors import EdgeInferError


@app.command()
def split(
    model: Annotated[str, typer.Argument(help="ONNX file, artifact directory or zoo name.")],
    node: Annotated[str, typer.Option("--node", help="The node's offload URL, e.g. "
                                      "http://127.0.0.1:8600/v1/offload.")],
    bandwidth: Annotated[str, typer.Option(
        "--bandwidth", help="auto (measure the link) or a rate like 20mbit: simulates that link "
        "in our transport (token bucket) and plans for it.")] = "auto",
    rtt_ms: Annotated[float, typer.Option("--rtt-ms", help="Round-trip delay to add.")] = 0.0,
    device_threads: Annotated[int, typer.Option(help="Device intra-op threads.")] = 1,
    slowdown: Annotated[float, typer.Option(
        help="Device latency multiplier (4 = a CPU 4x slower than one core here).")] = 1.0,
    compression: Annotated[str, typer.Option(
        help="Cut encoding+codec: raw, fp16, int8 with +lz4 or +zstd.")] = "int8+lz4",
    name: Annotated[str | None, typer.Option(help="Model name on the node.")] = None,
    runs: Annotated[int, typer.Option(help="Measured runs per mode.")] = 5,
    image: Annotated[str | None, typer.Option(
        help="Image to profile and run with (default: random input, which compresses "
        "worse than real images); with an artifact or zoo model it also adds the 'send a "
        "JPEG q90 of the input' option to the plan.")] = None,
    answer: Annotated[str, typer.Option(
        help="The node's answer encoding: raw+lz4 (exact) or fp16+lz4 (half the bytes, "
        "float16 values); +zstd or no codec also work.")] = "raw+lz4",
    token_file: TokenFileOption = None,
) -> None:
    """Split MODEL between this device and a node: pick the cut for the link, then report the
    latency breakdown (head, transfer, tail) against all-on-device and all-on-node."""
    from edgeinfer.collab.compress import Compression
    from edgeinfer.collab.link import Link, parse_rate
    from edgeinfer.collab.offload import SplitClient, measure_split
    from edgeinfer.collab.profile import DeviceSim, image_feeds
    from edgeinfer.serve.config import resolve_token

    bps = None if bandwidth == "auto" else parse_rate(bandwidth)
    client = SplitClient(
        model, node, name, link=Link(bps, bps, rtt_ms / 1000.0),
        device=DeviceSim(device_threads, slowdown), compression=Compression.parse(compression),
        bandwidth_bps=bps, rtt_s=rtt_ms / 1000.0 if bps else None, answer=answer,
        token=resolve_token(None, token_file) or "",
    )
    try:
        feeds = image_feeds(model, image) if image else client.split.example_feeds(1)
        with progress_bars() as on_step:
            plan = client.prepare(feeds, progress=on_step, image=image)
        rows = measure_split(client, feeds, runs, image)
    finally:
        client.close()
    _render_split(model, node, runs, client, plan, rows)


def _render_split(model: str, node: str, runs: int, client: Any, plan: Any,
                  rows: dict[str, dict[str, Any]]) -> None:
    """The chosen cut and the breakdown table of ``edgeinfer split``."""
    from rich.table import Table

    if plan is None:
        console.print(f"node {node} unreachable: everything ran on the device")
    else:
        console.print(
            f"link {plan.bandwidth_bps / 1e6:.2f} Mbit/s, RTT {plan.rtt_s * 1000:.1f} ms; chosen "
            f"cut '{'|'.join(plan.cut.tensors)}' ({plan.where}), predicted "
            f"{plan.total_s * 1000:.1f} ms, {len(client.split.cuts)} of "
            f"{len(client.split.all_cuts)} cuts profiled"
        )
    table = Table(title=f"edgeinfer split {model} (median of {runs}, ms)")
    for col in ("mode", "where", "head", "transfer", "tail", "total", "sent KB", "fallbacks"):
        table.add_column(col)
    for mode, r in rows.items():
        table.add_row(mode, str(r["where"]), f"{r['head_ms']:.1f}", f"{r['transfer_ms']:.1f}",
                      f"{r['tail_ms']:.1f}", f"{r['total_ms']:.1f}",
                      f"{float(r['sent_bytes']) / 1000:.1f}", f"{r['fallbacks']:.0f}")
    console.print(table)


@app.command("split-node")
def split_node(
    model: Annotated[list[str], typer.Argument(help="ONNX file(s), artifact(s) or zoo name(s).")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8600,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    threads: Annotated[int, typer.Option(help="Intra-op threads per engine (0: default).")] = 0,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    allow_anonymous: AnonymousOption = False,
    max_body_mb: MaxBodyOption = 64.0,
    memory_budget_mb: MemoryBudgetOption = None,
) -> None:
    """Run a standalone offload node serving the tails of MODEL at /v1/offload."""
    from edgeinfer.serve.auth import access_policy
    from edgeinfer.serve.config import BodyLimits, resolve_token
    from edgeinfer.serve.split_node import SplitNodeConfig, serve_split_node

    if max_body_mb * 2**20 < 1024:
        raise EdgeInferError(f"--max-body-mb {max_body_mb:g} is too small: give at least 0.001")
    warn_secret_on_command_line("--token", token, "--token-file or $EDGEINFER_TOKEN")
    token = resolve_token(token, token_file)
    # refuse to start before loading anything: no token and not loopback-anonymous
    access_policy(token, allow_anonymous, host)
    models = {Path(m).stem: m for m in model}
    console.print(f"offload node for {sorted(models)} at http://{host}:{port}/v1/offload")
    config = SplitNodeConfig(threads, memory_budget_mb and int(memory_budget_mb * 2**20),
                             limits=BodyLimits(int(max_body_mb * 2**20)))
    serve_split_node(models, host, port, token, allow_anonymous, config)
