"""``edgeinfer train detector``: fine-tune the compact detector on the user's dataset (YOLO
layout, COCO JSON) or on defects synthesized onto good images (``--synth``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeinfer.cli.app import train_app
from edgeinfer.cli.common import (
    ForceOption,
    JsonOption,
    OutOption,
    console,
    csv_list,
    print_json,
)
from edgeinfer.cli.progress import progress_bars
from edgeinfer.errors import EdgeInferError


@train_app.command("detector")
def train_detector(
    data: Annotated[
        Path, typer.Option("--data", help="YOLO data.yaml (or its folder), COCO .json, or with "
                                          "--synth a folder of good images.")
    ],
    out: OutOption,
    base: Annotated[
        str, typer.Option("--from", help="Start from: 'defect-detector', an artifact made by "
                                         "train detector, or 'scratch'.")
    ] = "defect-detector",
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = 30,
    synth: Annotated[
        bool, typer.Option("--synth", help="Draw scratches, spots, cracks and dents onto the "
                                           "good images of --data (no labels needed).")
    ] = False,
    imgsz: Annotated[int, typer.Option(help="Model input side (multiple of 32).")] = 640,
    batch: Annotated[int, typer.Option(help="Images per training step.")] = 8,
    scales: Annotated[
        str | None, typer.Option(help="Multi-scale training: side range per batch, e.g. 320,640.")
    ] = None,
    patience: Annotated[int, typer.Option(help="Epochs without a better val mAP before "
                                               "stopping.")] = 10,
    conf: Annotated[
        float | None, typer.Option(help="The artifact's score threshold (default: best F1 on "
                                        "val).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the compact detector on your dataset, on this CPU; write an artifact."""
    from edgeinfer.training.threads import prefer_passive_threads

    prefer_passive_threads()  # before torch starts its threads
    from edgeinfer.training.detect_train import TrainConfig
    from edgeinfer.training.detector import train_detector as run_train

    lo_hi = csv_list(scales, int)
    if scales and len(lo_hi) != 2:
        raise EdgeInferError(f"bad --scales '{scales}': write the side range like 320,640")
    try:
        config = TrainConfig(epochs=epochs, batch=batch, imgsz=imgsz, patience=patience,
                             seed=seed, scales=lo_hi or None)  # type: ignore[arg-type]
    except ValueError as exc:
        raise EdgeInferError(f"bad training option: {exc}") from None
    with progress_bars() as on_step:
        artifact = run_train(data, out, base=base, synth=synth, config=config, conf=conf,
                             force=force, progress=on_step)
    report = artifact.manifest.reports["train"]
    if as_json:
        print_json({"artifact": str(out), **report})
        return
    render_train(report, console)
    console.print(f"artifact: {out} (yolo decoder, {len(report['data']['classes'])} classes); "
                  f"try `edgeinfer run {out} --source IMAGE`")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_train(report: dict[str, Any], console: Console) -> None:
    """The data, the start, the val figures before and after, and the time."""
    d, b = report["data"], report["base"]
    console.print(
        f"data: {d['origin']} ({d['layout']}): {d['train_images']} train / {d['val_images']} val "
        f"images, {d['train_boxes']} / {d['val_boxes']} boxes, {d['background_images']} "
        f"background, {d['skipped_images']} unreadable skipped; val: {d['split']}"
        + ("; defects SYNTHESIZED" if report["synthetic_defects"] else "")
    )
    head = b["head"] + (f" (kept {b['carried_classes']})" if b.get("carried_classes") else "")
    console.print(f"from {b['from']}, class head {head}; {report['parameters']:,} parameters")
    table = Table(title="validation")
    for col in ("", "mAP@0.5", "mAP@0.5:0.95", f"recall @{report['val'].get('conf')}",
                "precision"):
        table.add_column(col, justify="right")
    for name, m in (("start", report["before"]), ("trained", report["val"])):
        if m:
            table.add_row(name, _fmt(m["map50"]), _fmt(m["map"]), _fmt(m["recall"]),
                          _fmt(m["precision"]))
    console.print(table)
    stop = "early stop" if report["stopped_early"] else "all epochs"
    console.print(
        f"{report['epochs_run']} epochs ({stop}), best {report['best_epoch']}, {report['steps']} "
        f"steps in {report['seconds']:.0f} s on {report['threads']} threads"
    )
