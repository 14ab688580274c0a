"""Split computing: ``split`` (the device) and ``split-node`` (the node)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    AnonymousOption,
    TokenOption,
    console,
)
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
) -> None:
    """Split MODEL between this device and a node: pick the cut for the link, then report the
    latency breakdown (head, transfer, tail) against all-on-device and all-on-node."""
    from edgeinfer.collab.offload import run_split_cli

    run_split_cli(console, model, node, bandwidth, rtt_ms, device_threads, slowdown,
                  compression, name, runs, image, answer)


@app.command("split-node")
def split_node(
    model: Annotated[list[str], typer.Argument(help="ONNX file(s), artifact(s) or zoo name(s).")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8600,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    threads: Annotated[int, typer.Option(help="Intra-op threads per engine (0: default).")] = 0,
    token: TokenOption = None,
    allow_anonymous: AnonymousOption = False,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = 64.0,
) -> None:
    """Run a standalone offload node serving the tails of MODEL at /v1/offload."""
    import os

    from edgeinfer.collab.offload import serve_node
    from edgeinfer.serve.auth import access_policy
    from edgeinfer.serve.config import TOKEN_ENV

    if max_body_mb * 2**20 < 1024:
        raise EdgeInferError(f"--max-body-mb {max_body_mb:g} is too small: give at least 0.001")
    # refuse to start before loading anything: no token and not loopback-anonymous
    access_policy(token or os.environ.get(TOKEN_ENV) or None, allow_anonymous, host)
    models = {Path(m).stem: m for m in model}
    console.print(f"offload node for {sorted(models)} at http://{host}:{port}/v1/offload")
    serve_node(models, host, port, threads, token, allow_anonymous, int(max_body_mb * 2**20))
