"""``edgeinfer import``: the flow's first step, a model file becomes an artifact whose manifest
says how to feed it and read it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    ForceOption,
    InputShapeOption,
    JsonOption,
    OutOption,
    console,
    parse_input_shapes,
    print_json,
)

_PRE = "Preprocessing"
_DEC = "Decoding"


@app.command("import")
def import_(
    model: Annotated[
        str, typer.Argument(help="Model file (.onnx, .tflite), artifact to re-declare, or zoo "
                                 "name.")
    ],
    out: OutOption,
    input_shape: InputShapeOption = None,
    like: Annotated[
        str | None, typer.Option(help="Copy a zoo family's preprocessing, decoder and labels, "
                                      "e.g. ppocrv4-det (see `edgeinfer zoo list`).",
                                 rich_help_panel=_PRE)
    ] = None,
    mean: Annotated[
        str | None, typer.Option(help="Per-channel mean after --scale: 0.485,0.456,0.406 or "
                                      "one value.", rich_help_panel=_PRE)
    ] = None,
    std: Annotated[
        str | None, typer.Option(help="Per-channel std: 0.229,0.224,0.225 or one value.",
                                 rich_help_panel=_PRE)
    ] = None,
    scale: Annotated[
        str | None, typer.Option(help="Pixel multiplier before the mean: 1/255 for 0..1 "
                                      "models.", rich_help_panel=_PRE)
    ] = None,
    channel_order: Annotated[
        str | None, typer.Option(help="RGB or BGR (what the model was trained on).",
                                 rich_help_panel=_PRE)
    ] = None,
    resize: Annotated[
        str | None, typer.Option(help="stretch, letterbox, center-crop or none.",
                                 rich_help_panel=_PRE)
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="NCHW or NHWC: where the image input has its channels.",
                                 rich_help_panel=_PRE)
    ] = None,
    pad_value: Annotated[
        int | None, typer.Option(help="Letterbox padding pixel value (0-255).",
                                 rich_help_panel=_PRE)
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels file, one per line (for ctc: the character "
                                       "set, one character per line).", rich_help_panel=_DEC)
    ] = None,
    decoder: Annotated[
        str | None, typer.Option(help="classification, yolo, db, ctc, blazeface, landmarks, "
                                      "raw (outputs as they are), ...", rich_help_panel=_DEC)
    ] = None,
    decoder_param: Annotated[
        list[str] | None, typer.Option("--decoder-param", help="KEY=VALUE, repeatable, e.g. "
                                       "conf_threshold=0.4.", rich_help_panel=_DEC)
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task name for reports (default: from the "
                                                  "decoder).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the file's).")] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Declare how a model is fed and read (input shapes, preprocessing, labels, decoder),
    check it against the model, and write the artifact."""
    from edgeinfer.importing import ImportSpec, import_model, parse_decoder_params, parse_floats

    pre: dict[str, object] = {}
    for key, text in (("mean", mean), ("std", std)):
        if text is not None:
            pre[key] = parse_floats(text, f"--{key}")
    if scale is not None:
        pre["scale"] = parse_floats(scale, "--scale", None)
    for key, value in (("channel_order", channel_order and channel_order.upper()),
                       ("resize", resize), ("pad_value", pad_value)):
        if value is not None:
            pre[key] = value
    spec = ImportSpec(
        input_shapes=parse_input_shapes(input_shape), like=like, preprocess=pre,
        layout=layout and layout.upper(), labels=labels, decoder=decoder,
        decoder_params=parse_decoder_params(decoder_param), name=name, task=task,
    )
    artifact = import_model(model, out, spec, force=force)
    m = artifact.manifest
    report = m.reports["import"]
    if as_json:
        print_json({"artifact": str(out), "manifest": m.model_dump(mode="json")})
        return
    for line in report["checked"]:
        console.print(f"[green]checked[/green] {line}")
    for line in report["not_checked"]:
        console.print(f"[yellow]not checked[/yellow] {line}")
    for line in report["warnings"]:
        console.print(f"[bold yellow]warning[/bold yellow] {line}")
    from edgeinfer.model.shapes import format_dims

    spec = m.inputs[0]
    console.print(f"wrote {out}: {m.model.path} ({m.model.format}), input {spec.name} "
                  f"{format_dims(spec.shape)} {spec.layout}, task {m.task}, decoder {m.decoder}")
