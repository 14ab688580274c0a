"""The ``edgeinfer`` command line: verbs that follow the flow (zoo, inspect, optimize, convert,
bench, tune, run, demo).

Every user error is one line on stderr naming the thing and the fix, exit code 2; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgeinfer.errors import EdgeInferError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="edgeinfer: take a vision model from import to the edge device.",
)
zoo_app = typer.Typer(no_args_is_help=True, help="Pretrained models carried by PyPI packages.")
app.add_typer(zoo_app, name="zoo")

console = Console()
_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    from edgeinfer.model.onnx_graph import parse_shape

    if not values:
        return None
    shapes = {}
    for v in values:
        name, sep, shape = v.rpartition("=")
        if not sep or not name:
            raise EdgeInferError(f"bad --input-shape '{v}': write it as NAME=1x3x640x640")
        shapes[name] = parse_shape(shape)
    return shapes


def _parse_drop(max_drop: str) -> float:
    """``1%`` or ``0.01`` -> 0.01."""
    text = max_drop.strip().rstrip("%")
    try:
        return float(text) / (100 if max_drop.strip().endswith("%") else 1)
    except ValueError:
        raise EdgeInferError(f"bad --max-drop '{max_drop}': write it like 1% or 0.01") from None


def _csv(value: str | None, cast: type = str) -> tuple:
    """``"a,b"`` -> ``("a", "b")`` (cast each); None or empty -> ()."""
    if not value:
        return ()
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise EdgeInferError(f"bad list '{value}': write it comma-separated, like 1,2") from None


def _resolve_model(model: str) -> Path:
    """A path as given, or a zoo name built into the user cache directory."""
    from edgeinfer.zoo import resolve

    return resolve(model)


@app.command()
def inspect(
    model: Annotated[
        str, typer.Argument(help="Model file (.onnx, .tflite), artifact dir or zoo name.")
    ],
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="Resolve dynamic dims: NAME=1x3x640x640 (repeatable)."),
    ] = None,
    budget: Annotated[str | None, typer.Option(help="Memory budget, e.g. 512KB, 64MB.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    per_op: Annotated[bool, typer.Option("--per-op", help="Show MACs per op.")] = False,
) -> None:
    """Shapes, parameters, MACs per op and the activation memory plan of a model."""
    from edgeinfer.model.inspect import inspect_model, parse_bytes

    path = _resolve_model(model)
    report = inspect_model(
        path, _parse_input_shapes(input_shape), parse_bytes(budget) if budget else None
    )
    report["path"] = str(path)
    if as_json:
        if not per_op:
            report["macs"].pop("per_op")
        print(json.dumps(report, indent=2))
    else:
        from edgeinfer._render import render_inspect

        render_inspect(report, console, per_op=per_op)
    if budget and not report["budget"]["fits"]:
        raise typer.Exit(1)


@zoo_app.command("list")
def zoo_list() -> None:
    """List the zoo models and whether their packages are installed."""
    from rich.markup import escape

    from edgeinfer import zoo

    table = Table(title="edgeinfer zoo")
    # Names and install commands are for copying: never cut them ('[zoo]' is not markup).
    table.add_column("name", no_wrap=True)
    for col in ("task", "what", "installed"):
        table.add_column(col)
    table.add_column("install with", overflow="fold")
    for entry in zoo.ZOO.values():
        ok = zoo.installed(entry)
        table.add_row(
            entry.name, entry.task, entry.summary, "yes" if ok else "no", escape(entry.install)
        )
    console.print(table)


@zoo_app.command("get")
def zoo_get(
    name: Annotated[str, typer.Argument(help="Zoo model name (see `edgeinfer zoo list`).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to write.")],
) -> None:
    """Build a zoo model's artifact (model file + edgeinfer.json) from its PyPI package."""
    from edgeinfer import zoo

    artifact = zoo.get(name, out)
    m = artifact.manifest
    console.print(
        f"[green]wrote[/green] {out}: {m.model.path} ({m.model.bytes / 1e6:.1f} MB, "
        f"{m.model.format} {m.model.precision}), task {m.task}, decoder {m.decoder}"
    )


@app.command()
def optimize(
    model: Annotated[str, typer.Argument(help="ONNX model, artifact directory or zoo name.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to write.")],
    precision: Annotated[
        str, typer.Option(help="fp32 | fp16 | int8 | int8-dynamic | mixed")
    ] = "int8",
    calib: Annotated[
        Path | None, typer.Option(help="Calibration data: image folder, video file or .npy.")
    ] = None,
    calib_method: Annotated[str, typer.Option(help="minmax | entropy | percentile")] = "percentile",
    calib_limit: Annotated[int, typer.Option(help="Most calibration samples to use.")] = 200,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor")] = True,
    eval_source: Annotated[
        Path | None,
        typer.Option("--eval", help="Evaluation data (default: a held-out part of --calib)."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels of --eval images: lines 'FILE CLASS'.")
    ] = None,
    max_drop: Annotated[str, typer.Option(help="Largest accuracy/agreement drop, e.g. 1%.")] = "1%",
    agree_confidence: Annotated[
        float,
        typer.Option(help="Without labels: count agreement where FP32's top-1 prob is this high."),
    ] = 0.5,
    fallback: Annotated[
        bool, typer.Option("--fallback/--no-fallback", help="Return sensitive layers to float.")
    ] = True,
) -> None:
    """Quantize (INT8 static/dynamic, FP16, mixed) with calibration and accuracy-aware fallback."""
    from edgeinfer import api
    from edgeinfer._render import render_optimize
    from edgeinfer.optimization.optimizer import OptimizeConfig

    choices = ("fp32", "fp16", "int8", "int8-dynamic", "mixed")
    if precision not in choices:
        raise EdgeInferError(f"unknown --precision '{precision}': choose one of {list(choices)}")
    if calib is None:
        raise EdgeInferError(
            "optimize needs calibration data: pass --calib IMAGE_DIR|VIDEO|.npy "
            "(images like the ones the model will see)"
        )
    drop = _parse_drop(max_drop)
    config = OptimizeConfig(
        precision=precision,  # type: ignore[arg-type]
        calib_method=calib_method,
        per_channel=per_channel,
        max_drop=drop,
        agree_confidence=agree_confidence,
        fallback=fallback,
    )
    artifact = api.optimize(
        _resolve_model(model),
        out,
        config,
        calib=calib,
        eval_source=eval_source,
        labels=labels,
        calib_limit=calib_limit,
    )
    render_optimize(artifact.manifest.reports["optimize"], console)
    console.print(
        f"wrote {out}: {artifact.manifest.model.path} ({artifact.manifest.model.precision}), "
        f"report {out / 'optimize-report.html'}"
    )


@app.command()
def convert(
    artifact: Annotated[str, typer.Argument(help="ONNX artifact directory, model or zoo name.")],
    to: Annotated[str, typer.Option("--to", help="tflite | openvino")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to write.")],
    calib: Annotated[
        Path | None,
        typer.Option(
            help="Inputs to convert, calibrate and verify with: image folder, video or .npy."
        ),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="TFLite full integer, uint8 I/O.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="OpenVINO FP16 weights.")] = False,
    calib_limit: Annotated[int, typer.Option(help="Most calibration samples to use.")] = 100,
) -> None:
    """Convert to TFLite (FP32 or full-integer) or OpenVINO IR, checked against the ONNX model."""
    from edgeinfer import api
    from edgeinfer.conversion import ConvertConfig

    config = ConvertConfig(to=to, int8=int8, fp16=fp16)  # type: ignore[arg-type]
    result = api.convert(
        _resolve_model(artifact), out, config, calib=calib, calib_limit=calib_limit
    )
    r = result.manifest.reports["convert"]
    table = Table(title=f"convert: ONNX -> {r['to']} {r['precision']}")
    for col in (
        "size",
        "ONNX size",
        "cosine (worst)",
        "cosine (mean)",
        "max abs error",
        "top-1 agreement",
        "seconds",
    ):
        table.add_column(col, justify="right")
    top1 = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
    table.add_row(
        f"{r['bytes'] / 1e6:.2f} MB",
        f"{r['onnx_bytes'] / 1e6:.2f} MB",
        f"{r['cosine']:.5f}",
        f"{r['cosine_mean']:.5f}",
        f"{r['max_abs_error']:.3g}",
        top1,
        f"{r['seconds']:.1f}",
    )
    console.print(table)
    console.print(f"verified on {r['verified_on']}; wrote {out}: {result.manifest.model.path}")


@app.command()
def bench(
    models: Annotated[
        list[str],
        typer.Argument(help="Model files (.onnx, .tflite), artifact dirs or zoo names."),
    ],
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Comma-separated: ort, litert, openvino, or all (every installed backend that "
            "reads the model's format).",
        ),
    ] = "all",
    threads: Annotated[
        str | None,
        typer.Option(help="Thread counts, e.g. 1,2 (default: the CPUs available; 0: backend's)."),
    ] = None,
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="Resolve dynamic dims: NAME=1x3x640x640 (repeatable)."),
    ] = None,
    runs: Annotated[
        int | None, typer.Option(help="Timed inferences per configuration (default 100).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Time each configuration for this many seconds instead.")
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the cold first run.")] = 10,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write everything (raw latencies, machine) to this file."),
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report with latency plots.")
    ] = None,
    spinning: Annotated[
        str,
        typer.Option(help="ONNX Runtime worker spinning to compare: run, always, never, "
                          "comma-separated (e.g. run,never on a box shared with other work)."),
    ] = "run",
) -> None:
    """Latency percentiles, cold start, memory and output agreement on every backend."""
    from edgeinfer.benchmark import bench as run_bench

    report = run_bench(
        [str(_resolve_model(m)) for m in models],
        backends=backend,
        threads=threads,
        input_shapes=_parse_input_shapes(input_shape),
        runs=runs,
        duration=duration,
        warmup=warmup,
        progress=True,
        spinning=spinning,
    )
    report.render(console)
    if json_path is not None:
        console.print(f"wrote {report.write_json(json_path)}")
    if html_path is not None:
        console.print(f"wrote {report.write_html(html_path)}")


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="ONNX/TFLite model, artifact dir or zoo name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to write.")],
    calib: Annotated[
        str | None,
        typer.Option(help="Images (dir, video or .npy) to calibrate INT8 and check accuracy."),
    ] = None,
    eval_source: Annotated[
        str | None, typer.Option("--eval", help="Separate evaluation images.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Labels of the --eval images: NAME CLASS lines.")
    ] = None,
    max_drop: Annotated[
        str, typer.Option(help="Largest accuracy/agreement drop against FP32, e.g. 1%.")
    ] = "1%",
    objective: Annotated[str, typer.Option(help="latency or throughput.")] = "latency",
    backend: Annotated[
        str | None, typer.Option(help="Backends to try, e.g. ort,openvino (default: all).")
    ] = None,
    threads: Annotated[
        str | None, typer.Option(help="Thread counts to try, e.g. 1,2 (default: 1..CPUs).")
    ] = None,
    precision: Annotated[str, typer.Option(help="Precisions to try.")] = "fp32,int8",
    tflite: Annotated[
        bool, typer.Option(help="Convert to TFLite so LiteRT competes (onnx2tf, slower).")
    ] = True,
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x640x640 (repeatable)."),
    ] = None,
    keep_candidates: Annotated[
        bool, typer.Option(help="Keep every candidate model in OUT/candidates.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Pick the fastest backend x precision x threads within --max-drop; write it as an artifact."""
    from edgeinfer._render import render_tune
    from edgeinfer.tuning import TuneConfig
    from edgeinfer.tuning import tune as run_tune

    if objective not in ("latency", "throughput"):
        raise EdgeInferError(f"unknown --objective '{objective}': choose latency or throughput")
    known = ("fp32", "int8")
    precisions = _csv(precision)
    if not precisions or any(p not in known for p in precisions):
        raise EdgeInferError(f"bad --precision '{precision}': choose from {list(known)}")
    config = TuneConfig(
        max_drop=_parse_drop(max_drop),
        objective=objective,  # type: ignore[arg-type]
        backends=_csv(backend),
        threads=_csv(threads, int),
        precisions=precisions,
        tflite=tflite,
    )
    artifact = run_tune(
        _resolve_model(model),
        out,
        config,
        calib=calib,
        eval_source=eval_source,
        labels=labels,
        input_shapes=_parse_input_shapes(input_shape),
        keep_candidates=keep_candidates,
        force=force,
    )
    report = artifact.manifest.reports["tune"]
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        render_tune(report, console)
        console.print(f"artifact: {out}")


def _quiet_capture_logs() -> None:
    """Keep OpenCV's and FFmpeg's own warnings (connection refused...) off stderr: the
    stream source logs what happens and the CLI reports errors in one line."""
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


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
    top_k: Annotated[int, typer.Option(help="Classes to show (classification).")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line per frame, then a summary line.")
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
    from edgeinfer.pipeline.runner import make_predictor, run_source, run_stream
    from edgeinfer.pipeline.sources import ReconnectPolicy, source_kind
    from edgeinfer.runtime.engine import Engine

    if tile is not None and tile < 32:
        raise EdgeInferError(f"bad --tile {tile}: give the tile size in pixels, e.g. 640")
    if not 0 <= overlap < 0.9:
        raise EdgeInferError(f"bad --overlap {overlap}: give a fraction in [0, 0.9)")
    if queue < 1:
        raise EdgeInferError(f"bad --queue {queue}: give at least 1 frame")
    if retries < 0:
        raise EdgeInferError(f"bad --retries {retries}: give 0 (forever) or more")
    kind = source_kind(source)
    streaming = live or kind != "file"
    policy = None
    if kind != "file":
        policy = ReconnectPolicy(max_retries=retries or None,
                                 max_backoff_s=max_backoff, initial_s=min(0.5, max_backoff))
        if not _state["debug"]:
            _quiet_capture_logs()
    engine = Engine.open(_resolve_model(artifact), backend)
    predictor = make_predictor(engine, tile, overlap, batch, full_frame)

    def show(pred) -> None:
        result = pred.result
        items = result.to_dicts() if hasattr(result, "to_dicts") else list(result)[:top_k]
        if as_json:
            print(json.dumps({
                "source": pred.source,
                "result": items,
                "times_ms": {k: round(v, 3) for k, v in pred.times_ms.items()},
            }), flush=True)
            return
        total = sum(pred.times_ms.values())
        console.print(f"[bold]{pred.source}[/bold]  ({total:.1f} ms, {len(items)} results)")
        for r in items[: max(top_k, 20)]:
            where = " ".join(f"{v:.0f}" for v in r["box"]) if "box" in r else ""
            console.print(f"  {r['class_id']:>5}  {r['label']:<24} {r['score']:.3f}  {where}")

    if streaming:
        summary = run_stream(predictor, source, save=save, limit=limit, on_frame=show,
                             live=live, fps=fps, policy=policy, queue_size=queue).to_dict()
    else:
        summary = run_source(predictor, Path(source), save=save, limit=limit,
                             on_frame=show).to_dict()
    if as_json:
        print(json.dumps({"summary": summary}))
        return
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stages_ms"].items())
    fps_text = f"{summary['fps']:.1f}" if summary["fps"] else "-"
    lat = (f"latency p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
           if summary["p50_ms"] is not None else "no latency")
    console.print(
        f"{summary['frames']} frames in {summary['seconds']:.2f} s ({fps_text} fps); {lat}; "
        f"dropped {summary['dropped']}, reconnects {summary['reconnects']}; "
        f"mean ms per stage: {stages}"
        + (f"; saved {len(summary['saved'])} file(s) in {save}" if save else "")
    )


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
    optimize INT8 -> bench FP32 vs INT8 -> tiled inspection of generated 5 MP frames, with a
    summary table and an HTML report."""
    from edgeinfer.demo import run_demo

    run_demo(out, console, quick=quick)


#: the access options every server verb shares (serve, split-node): edgeinfer.serve.auth
TokenOption = Annotated[
    str | None, typer.Option(help="API bearer token callers must send (default: $EDGEINFER_TOKEN).")
]
AnonymousOption = Annotated[
    bool, typer.Option("--allow-anonymous", help="No token; only on a loopback --host.")
]


@app.command()
def serve(
    repository: Annotated[Path, typer.Argument(help="Model repository: a directory of artifacts.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    token: TokenOption = None,
    allow_anonymous: AnonymousOption = False,
    streams: Annotated[
        Path | None, typer.Option(help="YAML file of camera streams to run.")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = 16.0,
    queue_size: Annotated[
        int | None,
        typer.Option(help="Queued requests per model, then 429 (default: the streams file's, "
                          "else 64)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Scheduler workers (0: the streams file's, else automatic).")
    ] = 0,
    node_name: Annotated[str, typer.Option(help="This node's name.")] = "edge-node",
    spinning: Annotated[
        str | None,
        typer.Option(help="ONNX Runtime workers: run (spin inside runs), always, or never "
                          "(for cores shared with other work); default: the streams file's, "
                          "else run."),
    ] = None,
    uplink_host: Annotated[
        str | None, typer.Option(help="MQTT broker for stream results.")
    ] = None,
    uplink_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    site: Annotated[str, typer.Option(help="Site name in the uplink topics.")] = "site",
    uplink_encoding: Annotated[str, typer.Option(help="Uplink payloads: json or cbor.")] = "json",
    uplink_tls: Annotated[bool, typer.Option("--uplink-tls", help="MQTT over TLS.")] = False,
    uplink_ca: Annotated[
        str | None, typer.Option(help="CA bundle for --uplink-tls (default: the system's).")
    ] = None,
    uplink_username: Annotated[
        str | None, typer.Option(help="MQTT user (password: $EDGEINFER_UPLINK_PASSWORD).")
    ] = None,
) -> None:
    """Serve a model repository over HTTP: models, inference, metrics and a dashboard."""
    import os

    from edgeinfer.serve.config import NodeConfig, UplinkSettings
    from edgeinfer.serve.server import run_server

    uplink = UplinkSettings(
        uplink_host, uplink_port, site, encoding=uplink_encoding, tls=uplink_tls,
        ca_certs=uplink_ca, username=uplink_username,
        password=os.environ.get("EDGEINFER_UPLINK_PASSWORD"),
    ) if uplink_host else None
    config = NodeConfig(
        repository=repository, host=host, port=port, token=token,
        allow_anonymous=allow_anonymous, streams=streams,
        max_upload_bytes=int(max_upload_mb * 2**20), queue_size=queue_size, workers=workers,
        node_name=node_name, uplink=uplink, spinning=spinning,
    )
    run_server(config, console)


@app.command()
def streams(
    config: Annotated[Path, typer.Argument(help="Streams config (YAML): models and streams.")],
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until the streams end or "
                                        "Ctrl-C).")
    ] = None,
    as_json: Annotated[
        Path | None, typer.Option("--json", help="Write the final figures here.")
    ] = None,
) -> None:
    """Run several camera streams through one scheduler: a live per-stream table (fps, p50
    latency, drops, active/idle), then a summary with process CPU time while busy vs idle."""
    from edgeinfer.pipeline.streams_view import run_streams_config

    _quiet_capture_logs()
    summary = run_streams_config(config, duration, console)
    if as_json is not None:
        as_json.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")


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


@app.command()
def collect(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    db: Annotated[Path | None, typer.Option(help="SQLite file to store into.")] = None,
    url: Annotated[
        str | None, typer.Option(help="postgresql://user:pass@host/db instead of --db.")
    ] = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id (keeps the session).")] = (
        "edgeinfer-collect"
    ),
    username: Annotated[str | None, typer.Option(help="MQTT username.")] = None,
    password: Annotated[str | None, typer.Option(help="MQTT password.")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect with TLS.")] = False,
    ca_certs: Annotated[str | None, typer.Option(help="CA bundle (PEM) for --tls.")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Subscribe to every node's results, features and presence and store each message once."""
    from edgeinfer.serve.collect import CollectConfig, open_store, run_collect

    store = open_store(db, url)
    cfg = CollectConfig(host=host, port=port, client_id=client_id, username=username,
                        password=password, tls=tls, ca_certs=ca_certs)
    counts = run_collect(cfg, store, duration, console)
    console.print(f"stored {counts['stored']}, dropped {counts['duplicates']} duplicates, "
                  f"rejected {counts['rejected']}")


@app.command("uplink-send")
def uplink_send(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    site: Annotated[str, typer.Option(help="Site name in the topics.")] = "site1",
    node: Annotated[str, typer.Option(help="Node name in the topics.")] = "node1",
    stream: Annotated[str, typer.Option(help="Stream name in the topics.")] = "test",
    count: Annotated[int, typer.Option(help="Messages to send.")] = 10,
    outbox: Annotated[Path, typer.Option(help="Outbox file.")] = Path("outbox.sqlite"),
    encoding: Annotated[str, typer.Option(help="json | cbor")] = "json",
    username: Annotated[str | None, typer.Option(help="MQTT username.")] = None,
    password: Annotated[str | None, typer.Option(help="MQTT password.")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect with TLS.")] = False,
    ca_certs: Annotated[str | None, typer.Option(help="CA bundle (PEM) for --tls.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for acknowledgements.")] = 10.0,
) -> None:
    """Send COUNT synthetic results through the uplink (a quick check of broker and outbox)."""
    from edgeinfer.serve.uplink import UplinkConfig, send_test_messages

    cfg = UplinkConfig(host=host, port=port, site=site, node=node, outbox=str(outbox),
                       encoding=encoding, username=username, password=password, tls=tls,
                       ca_certs=ca_certs)
    stats = send_test_messages(cfg, stream, count, wait)
    console.print(f"acknowledged {stats['messages_sent']}, {stats['bytes_sent']} bytes sent, "
                  f"{stats['backlog']} left in the outbox {outbox}")
    if stats["backlog"]:
        raise typer.Exit(1)


def _add_fl() -> None:
    """``edgeinfer fl server|client`` (federated learning); flwr itself is imported lazily."""
    from edgeinfer.collab.fl.cli import fl_app

    app.add_typer(fl_app, name="fl")


_add_fl()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning EdgeInferError into one line and exit code 2."""
    try:
        app(args=argv, prog_name="edgeinfer")
    except SystemExit as exc:  # typer/click exit normally through SystemExit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except EdgeInferError as exc:
        if _state["debug"]:
            traceback.print_exc()
        print(f"edgeinfer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeinfer: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if _state["debug"]:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"edgeinfer: error: {where}{exc.strerror or exc}: check the path, permissions and "
            "free disk space",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
