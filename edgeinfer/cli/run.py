"""Verbs that run models on data: ``run``, ``demo`` and ``streams``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeinfer.cli.app import app, state
from edgeinfer.cli.common import (
    InputShapeOption,
    JsonOption,
    console,
    parse_input_shapes,
    print_json,
    quiet_capture_logs,
)
from edgeinfer.cli.run_view import FrameView
from edgeinfer.errors import EdgeInferError


@app.command()
def run(
    artifact: Annotated[str, typer.Argument(help="Artifact directory or zoo name.")],
    source: Annotated[
        str, typer.Option("--source", "-s",
                          help="Image file, folder of images, video, camera index (0), or "
                               "rtsp:// / http:// URL.")
    ],
    tile: Annotated[
        int | None, typer.Option(help="Tiled inference: tile size in pixels, e.g. 640.")
    ] = None,
    overlap: Annotated[float, typer.Option(help="Tile overlap, 0..0.9.")] = 0.2,
    batch: Annotated[int, typer.Option(help="Tiles per inference (dynamic-batch models).")] = 4,
    full_frame: Annotated[
        bool, typer.Option(help="With --tile: also run the whole frame (large objects).")
    ] = False,
    save: Annotated[
        Path | None, typer.Option(help="Write annotated images (or the video) here.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    backend: Annotated[
        str | None, typer.Option(help="Backend (default: the artifact's tuned one).")
    ] = None,
    input_shape: InputShapeOption = None,
    top_k: Annotated[int, typer.Option(help="Classes to show (classification).")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Images, folders, video files: one JSON document "
                                          "(frames and summary); cameras, URLs and --live: one "
                                          "JSON line per frame, then a summary line.")
    ] = False,
    live: Annotated[
        bool, typer.Option("--live", help="Pace a file at its fps through the drop-oldest "
                                           "queue, as a camera would deliver it.")
    ] = False,
    fps: Annotated[
        float | None, typer.Option(help="With --live: frames per second (default: the "
                                        "video's own, 25 for images).")
    ] = None,
    queue: Annotated[int, typer.Option(help="Streams: frames waiting at most (drop-oldest).")
    ] = 2,
    retries: Annotated[
        int, typer.Option(help="Camera/URL: consecutive failed attempts before giving up "
                               "(0: retry forever).")
    ] = 5,
    max_backoff: Annotated[
        float, typer.Option(help="Camera/URL: longest wait between reconnects, seconds.")
    ] = 10.0,
) -> None:
    """Run an artifact on images, video, a camera or a stream: preprocessing, inference and
    decoding from its manifest."""
    from edgeinfer.loading import load, with_input_shapes
    from edgeinfer.pipeline.runner import make_predictor, run_source, run_stream
    from edgeinfer.pipeline.sources import ReconnectPolicy, source_kind
    from edgeinfer.runtime.engine import Engine

    _check_run_options(tile, overlap, queue, retries)
    kind = source_kind(source)
    streaming = live or kind != "file"
    policy = None
    if kind != "file":
        policy = ReconnectPolicy(max_retries=retries or None,
                                 max_backoff_s=max_backoff, initial_s=min(0.5, max_backoff))
        if not state["debug"]:
            quiet_capture_logs()
    engine = Engine(with_input_shapes(load(artifact), parse_input_shapes(input_shape)), backend)
    predictor = make_predictor(engine, tile, overlap, batch, full_frame)
    view = FrameView(as_json, streaming, top_k)
    if streaming:
        summary = run_stream(predictor, source, save=save, limit=limit, on_frame=view.show,
                             live=live, fps=fps, policy=policy, queue_size=queue).to_dict()
    else:
        summary = run_source(predictor, Path(source), save=save, limit=limit,
                             on_frame=view.show).to_dict()
    view.finish(summary, save)


def _check_run_options(tile: int | None, overlap: float, queue: int, retries: int) -> None:
    """One-line errors for option values ``run`` cannot use."""
    if tile is not None and tile < 32:
        raise EdgeInferError(f"bad --tile {tile}: give the tile size in pixels, e.g. 640")
    if not 0 <= overlap < 0.9:
        raise EdgeInferError(f"bad --overlap {overlap}: give a fraction in [0, 0.9)")
    if queue < 1:
        raise EdgeInferError(f"bad --queue {queue}: give at least 1 frame")
    if retries < 0:
        raise EdgeInferError(f"bad --retries {retries}: give 0 (forever) or more")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write artifacts.")] = Path(
        "demo-out"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Short form (CI): fewer tiles, runs and frames.")
    ] = False,
) -> None:
    """The main job on embedded defaults: the defect detector through zoo get -> inspect ->
    optimize INT8 -> bench FP32 vs INT8 -> tiled inspection of generated 5 MP frames; then an
    anomaly model trained on good images of a real surface the detector never saw, both
    inspecting 5 MP frames of it; a summary table and an HTML report."""
    from edgeinfer.cli.demo_view import render_summary, stage_printer
    from edgeinfer.cli.progress import progress_bars
    from edgeinfer.demo import run_demo

    with progress_bars() as on_step:
        summary = run_demo(out, quick=quick, on_stage=stage_printer(console), progress=on_step)
    render_summary(summary, out, console)


@app.command()
def streams(
    config: Annotated[Path, typer.Argument(help="Streams config (YAML): models and streams.")],
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until the streams end or "
                                        "Ctrl-C).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write the final figures here (JSON).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run several camera streams through one scheduler: a live per-stream table (fps, p50
    latency, drops, active/idle), then a summary with process CPU time while busy vs idle."""
    from rich.console import Console

    from edgeinfer.cli.streams_view import run_streams_config

    quiet_capture_logs()
    view = Console(stderr=True) if as_json else console  # stdout holds the JSON alone
    summary = run_streams_config(config, duration, view)
    if out is not None:
        out.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    if as_json:
        print_json(summary)
