"""Verbs that time models: ``bench`` and ``tune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    ForceOption,
    InputShapeOption,
    JsonOption,
    console,
    csv_list,
    parse_drop,
    parse_input_shapes,
    print_json,
    resolve_model,
)
from edgeinfer.cli.progress import progress_bars
from edgeinfer.errors import EdgeInferError


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
    input_shape: InputShapeOption = None,
    runs: Annotated[
        int | None, typer.Option(help="Timed inferences per configuration (default 100).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Time each configuration for this many seconds instead.")
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the cold first run.")] = 10,
    as_json: JsonOption = False,
    json_path: Annotated[
        Path | None,
        typer.Option("-o", "--out",
                     help="Write the JSON report (raw latencies, machine) to this file."),
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
    from edgeinfer.cli.render_bench import render_bench

    with progress_bars() as on_step:
        report = run_bench(
            [str(resolve_model(m)) for m in models],
            backends=backend,
            threads=threads,
            input_shapes=parse_input_shapes(input_shape),
            runs=runs,
            duration=duration,
            warmup=warmup,
            progress=on_step,
            spinning=spinning,
        )
    written = [str(p) for p in (json_path and report.write_json(json_path),
                                html_path and report.write_html(html_path)) if p]
    if as_json:
        print_json(report.to_dict())
        return
    render_bench(report, console)
    for path in written:
        console.print(f"wrote {path}")


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
    input_shape: InputShapeOption = None,
    keep_candidates: Annotated[
        bool, typer.Option(help="Keep every candidate model in OUT/candidates.")
    ] = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Pick the fastest backend x precision x threads within --max-drop; write it as an artifact."""
    from edgeinfer.cli.render import render_tune
    from edgeinfer.tuning import TuneConfig
    from edgeinfer.tuning import tune as run_tune

    if objective not in ("latency", "throughput"):
        raise EdgeInferError(f"unknown --objective '{objective}': choose latency or throughput")
    known = ("fp32", "int8")
    precisions = csv_list(precision)
    if not precisions or any(p not in known for p in precisions):
        raise EdgeInferError(f"bad --precision '{precision}': choose from {list(known)}")
    config = TuneConfig(
        max_drop=parse_drop(max_drop),
        objective=objective,  # type: ignore[arg-type]
        backends=csv_list(backend),
        threads=csv_list(threads, int),
        precisions=precisions,
        tflite=tflite,
    )
    with progress_bars() as on_step:
        artifact = run_tune(
            resolve_model(model),
            out,
            config,
            calib=calib,
            eval_source=eval_source,
            labels=labels,
            input_shapes=parse_input_shapes(input_shape),
            keep_candidates=keep_candidates,
            force=force,
            progress=on_step,
        )
    report = artifact.manifest.reports["tune"]
    if as_json:
        print_json(report)
    else:
        render_tune(report, console)
        console.print(f"artifact: {out}")
