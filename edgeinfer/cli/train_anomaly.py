"""``edgeinfer train anomaly``: an anomaly model from a folder of good images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeinfer.cli.app import train_app
from edgeinfer.cli.common import console, csv_list
from edgeinfer.cli.progress import progress_bars


@train_app.command("anomaly")
def train_anomaly(
    good: Annotated[Path, typer.Option("--good", help="Folder of images of good parts.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to write.")],
    val: Annotated[
        Path | None, typer.Option("--val", help="Other good images to calibrate the threshold "
                                                "on (default: every 5th of --good, held out).")
    ] = None,
    tile: Annotated[
        int, typer.Option(help="Tile size in image pixels (run with --tile of the same).")
    ] = 640,
    scale: Annotated[
        float, typer.Option(help="Resize factor from tile to model input (0.5: 320 px for "
                                 "640 px tiles; coarser textures, 4x faster).")
    ] = 1.0,
    fpr: Annotated[
        float, typer.Option(help="False-alarm rate on good images the threshold is set for.")
    ] = 0.01,
    backbone: Annotated[str, typer.Option(help="Feature backbone.")] = "efficientnet-lite0",
    layers: Annotated[
        str, typer.Option(help="Backbone stages to take features from, e.g. s8,s16.")
    ] = "s8,s16",
    embed: Annotated[
        str, typer.Option(help="Patch embedding: mean (3x3 average of each stage) or "
                               "patchcore (PatchCore's, --dim values).")
    ] = "mean",
    dim: Annotated[int, typer.Option(help="Feature dimension of --embed patchcore.")] = 0,
    scorer: Annotated[
        str, typer.Option(help="patchcore (nearest of a memory bank), gaussian (Mahalanobis "
                               "distance to one Gaussian of the good patches) or whitened "
                               "(patchcore after the Gaussian's whitening).")
    ] = "gaussian",
    bank_size: Annotated[
        int, typer.Option(help="Memory bank rows after coreset subsampling (bounds run time).")
    ] = 4096,
    min_area: Annotated[
        float, typer.Option(help="Smallest anomalous region reported, in image pixels.")
    ] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite -o.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the training report as one JSON document.")
    ] = False,
) -> None:
    """Train an anomaly model (a Gaussian of pretrained EfficientNet-Lite0 patch features, or a
    PatchCore memory bank) from good images only; the artifact runs in run, bench, tune,
    optimize, serve and streams."""
    from edgeinfer.training.anomaly import AnomalyConfig
    from edgeinfer.training.anomaly import train_anomaly as train

    config = AnomalyConfig(tile=tile, scale=scale, fpr=fpr, backbone=backbone,
                           layers=csv_list(layers), embed=embed, dim=dim, scorer=scorer,
                           bank_size=bank_size, min_area=min_area)
    with progress_bars() as on_step:
        artifact = train(good, out, config, val=val, force=force, progress=on_step)
    report = artifact.manifest.reports["train_anomaly"]
    if as_json:
        print(json.dumps({"artifact": str(out), **report}))
        return
    skipped = len(report["skipped"]) + len(report.get("val_skipped", []))
    console.print(
        f"[green]wrote[/green] {out}: trained on {report['train_tiles']} tiles of "
        f"{report['train_images']} good images"
        + (f" ({skipped} unreadable skipped)" if skipped else "")
        + (f"; one Gaussian of {report['feature_dim']} patch features"
           if report["scorer"] == "gaussian" else
           f"; memory bank {report['bank_size']} x {report['feature_dim']}")
        + f" ({'+'.join(report['layers'])}, scorer {report['scorer']}); threshold "
        f"{report['threshold']:.4g} for a false-alarm rate of {report['fpr_target']:g} "
        f"({report['val_flagged']} of {report['val_tiles']} held-out good tiles above it)"
    )
    console.print(f"training time {report['seconds']['total']:.1f} s (features "
              f"{report['seconds']['features']:.1f} s, model {report['seconds']['model']:.1f}"
              " s)")
