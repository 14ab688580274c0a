"""``edgeinfer compress``: structured pruning + distillation + fine-tuning of a PyTorch model
to a MACs or latency target; the chosen point as an artifact, every point in the report."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    ForceOption,
    JsonOption,
    OutOption,
    console,
    csv_list,
    parse_drop,
    print_json,
)
from edgeinfer.cli.progress import progress_bars
from edgeinfer.errors import EdgeInferError


def _fraction(text: str | None, flag: str) -> float | None:
    """``0.5x``, ``0.5`` or ``50%`` -> 0.5."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        if t.endswith("%"):
            return float(t[:-1]) / 100
        return float(t.rstrip("x"))
    except ValueError:
        raise EdgeInferError(f"bad {flag} '{text}': write a fraction of the original like "
                             "0.33, 0.5x or 50%") from None


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) < 2 or min(dims) < 1:
        raise EdgeInferError(f"bad --input-shape '{text}': write it like 1x3x224x224")
    return dims


@app.command("compress")
def compress_cmd(
    model: Annotated[str, typer.Argument(help="package.module:factory (with --weights), or "
                                              "'defect-detector', a train-detector artifact, "
                                              "'efficientnet-lite0'.")],
    out: OutOption,
    data: Annotated[str, typer.Option("--data", help="Detector: YOLO data.yaml / COCO .json / "
                                                     "package.module:fn returning a dataset. "
                                                     "Other models: an image folder (unlabelled) "
                                                     "or package.module:fn.")],
    macs: Annotated[str | None, typer.Option(help="Target MACs, a fraction: 0.33 keeps a "
                                                  "third.")] = None,
    latency: Annotated[str | None, typer.Option(help="Target ONNX Runtime latency on this "
                                                     "machine, a fraction: 0.5x.")] = None,
    weights: Annotated[str | None, typer.Option(help="State dict for a factory MODEL.")] = None,
    like: Annotated[str | None, typer.Option(help="Artifact or zoo name whose input, "
                                                  "preprocessing and decoder to keep.")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape",
                                                    help="Input shape, e.g. 1x3x224x224.")] = None,
    steps: Annotated[int, typer.Option(help="Prune + fine-tune rounds.")] = 3,
    epochs: Annotated[int, typer.Option(help="Fine-tune epochs per round.")] = 4,
    steps_per_epoch: Annotated[int, typer.Option(help="Training steps per epoch.")] = 50,
    batch: Annotated[int, typer.Option(help="Images per training step.")] = 16,
    scales: Annotated[str | None, typer.Option(help="Detector: multi-scale fine-tuning, the "
                                                    "factor range, e.g. 0.5,1.0.")] = None,
    distill: Annotated[bool, typer.Option("--distill/--no-distill",
                                          help="Distil from the unpruned model.")] = True,
    int8: Annotated[bool, typer.Option("--int8", help="Then INT8 through optimize (kept only "
                                                      "where it measured faster).")] = False,
    max_drop: Annotated[str, typer.Option(help="Largest score drop of the point kept, e.g. "
                                               "1%.")] = "1%",
    importance: Annotated[str, typer.Option(help="Channel ranking: magnitude or taylor.")
                          ] = "magnitude",
    backend: Annotated[str, typer.Option(help="Backends to time, comma-separated.")
                       ] = "ort,openvino",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Prune, distil and fine-tune a PyTorch model to a MACs or latency target; write the
    fastest point within --max-drop as an artifact (report and Pareto chart inside)."""
    from edgeinfer.training.threads import prefer_passive_threads

    prefer_passive_threads()
    from edgeinfer.compression.compress import CompressConfig, compress
    from edgeinfer.compression.tasks import FineTune

    factors = csv_list(scales, float)
    if scales and len(factors) != 2:
        raise EdgeInferError(f"bad --scales '{scales}': write the factor range like 0.5,1.0")
    if importance not in ("magnitude", "taylor"):
        raise EdgeInferError(f"bad --importance '{importance}': magnitude or taylor")
    config = CompressConfig(
        macs=_fraction(macs, "--macs"), latency=_fraction(latency, "--latency"), steps=steps,
        max_drop=parse_drop(max_drop), distill=distill, int8=int8,
        importance=importance,  # type: ignore[arg-type]
        backends=csv_list(backend),
        tune=FineTune(epochs=epochs, steps_per_epoch=steps_per_epoch, batch=batch, seed=seed,
                      scales=factors or None),  # type: ignore[arg-type]
    )
    with progress_bars() as on_step:
        artifact = compress(model, out, data=data, config=config, weights=weights, like=like,
                            input_shape=_shape(input_shape), force=force, progress=on_step)
    report = artifact.manifest.reports["compress"]
    if as_json:
        print_json({"artifact": str(out), "precision": artifact.manifest.model.precision,
                    **report})
        return
    render_compress(report, console)
    console.print(f"artifact: {out} ({artifact.manifest.model.precision}); the chart: "
                  f"{out}/compress.html")


def render_compress(report: dict[str, Any], console: Console) -> None:
    """Every point: MACs, parameters, size, latency per backend, score before and after."""
    rows = report["points"]
    backends = sorted({b for r in rows for b in r["latency_ms"]})
    table = Table(title=f"compress: {report['model']}")
    for col in ("point", "MACs", "params", "MB", *[f"{b} ms" for b in backends],
                "before fine-tune", report["metric"], "drop"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows):
        before = r.get("score_before_fine_tune")
        table.add_row(
            ("* " if i == report["chosen_index"] else "") + r["name"],
            f"{r['macs'] / 1e6:,.0f} M ({r['macs_ratio']:.2f}x fewer)",
            f"{r['params']:,}", f"{r['bytes'] / 1e6:.2f}",
            *[f"{r['latency_ms'][b]:.2f} ({r['latency_ratio'][b]:.2f}x)" for b in backends],
            "-" if before is None else f"{before:.3f}", f"{r['score']:.3f}", f"{r['drop']:+.3f}")
    console.print(table)
    console.print(f"chosen: {report['chosen']} ({report['reason']})")
