"""How ``edgeinfer demo`` shows its stages in the terminal (the library's demo prints nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeinfer.cli.render import render_inspect
from edgeinfer.cli.render_bench import render_bench


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_frames(rows: list[dict[str, Any]], console: Console) -> None:
    """Print ``edgeinfer.demo.inspect_frames`` rows as a table."""
    table = Table(title="SYNTHETIC 5 MP frames (2592x1944) against their exact ground truth")
    for col in ("variant", "recall", "recall < 32 px", "precision", "class accuracy",
                "s/frame p50", "fps"):
        table.add_column(col, justify="left" if col == "variant" else "right",
                         no_wrap=col == "variant")
    for r in rows:
        table.add_row(r["name"], _pct(r["recall"]), _pct(r["recall_small"]),
                      _pct(r["precision"]), _pct(r["class_accuracy"]),
                      f"{r['s_per_frame_p50']:.3f}", f"{r['fps']:.2f}")
    console.print(table)
    console.print(f"{rows[0]['defects']} defects in the frames, {rows[0]['small_defects']} "
                  "of them under 32 px")


def render_surface(figures: dict[str, Any], console: Console) -> None:
    """The shipped detector against the anomaly model on the real surface's frames."""
    table = Table(title=f"5 MP frames of a REAL surface ({figures['surface']}), defects from "
                        "the evaluation-only renderer")
    for col in ("model", "recall", "precision", "false-alarm frames", "s/frame p50"):
        table.add_column(col, justify="left" if col == "model" else "right",
                         no_wrap=col == "model")
    for r in figures["rows"]:
        table.add_row(r["name"], f"{_pct(r['recall'])} ({r['found']}/{r['defects']})",
                      _pct(r["precision"]), f"{r['false_alarm_frames']} of {r['good_frames']}",
                      f"{r['s_per_frame_p50']:.2f}")
    console.print(table)
    console.print(figures["note"])


def _zoo(f: dict[str, Any], console: Console) -> None:
    console.print(f"artifact: {f['path']} ({f['bytes'] / 1e6:.2f} MB ONNX)")


def _int8(f: dict[str, Any], console: Console) -> None:
    opt = f["optimize"]
    console.print(
        f"{f['precision']}: {f['bytes'] / 1e6:.2f} MB (FP32 {opt['fp32']['bytes'] / 1e6:.2f} "
        f"MB), AP@0.5 against FP32's detections {f['agreement']:.3f}, layers kept in float: "
        f"{len(opt['kept_in_float'])}; report {f['path']}/optimize-report.html"
    )


def _train(f: dict[str, Any], console: Console) -> None:
    r = f["report"]
    console.print(
        f"anomaly model {f['path']}: {r['train_tiles']} good 640x640 tiles of the "
        f"{f['surface']} photograph (no defect shown to it), scorer {r['scorer']} on "
        f"{r['feature_dim']}-d patch features, threshold {r['threshold']:.4g} set on "
        f"{r['val_tiles']} good tiles of another part of the photograph; training time "
        f"{r['seconds']['total']:.1f} s"
    )


#: stage name -> how its figures are shown
RENDERERS: dict[str, Callable[[dict[str, Any], Console], None]] = {
    "zoo": _zoo,
    "inspect": lambda f, c: render_inspect(f["report"], c),
    "int8": _int8,
    "bench": lambda f, c: render_bench(f["report"], c),
    "frames": lambda f, c: render_frames(f["rows"], c),
    "surface_train": _train,
    "surface_frames": render_surface,
}


def stage_printer(console: Console) -> Callable[[Any, dict[str, Any] | None], None]:
    """``on_stage`` for ``edgeinfer.demo.run_demo``: a rule before each stage, its figures
    after (stages without a renderer print their figures' keys)."""

    def on_stage(stage: Any, figures: dict[str, Any] | None) -> None:
        if figures is None:
            console.rule(stage.title)
            return
        render = RENDERERS.get(stage.name)
        if render is not None:
            render(figures, console)
        else:
            console.print(", ".join(f"{k}: {v}" for k, v in figures.items()
                                    if isinstance(v, (int, float, str))))

    return on_stage


def render_summary(summary: dict[str, Any], out: Any, console: Console) -> None:
    """The demo's closing lines."""
    console.rule("summary")
    by = {r["name"]: r for r in summary["frames"]}
    t32, t8, whole = by["FP32 tiled"], by["INT8 tiled"], by["FP32 whole frame 640"]
    int8 = summary["int8"]
    console.print(
        f"{summary['model']}: {summary['macs'] / 1e9:.2f} G MACs per tile; INT8 "
        f"{int8['bytes'] / 1e6:.2f} MB (AP@0.5 vs FP32 {int8['agreement']:.3f}). "
        f"5 MP frames: tiled FP32 recall {_pct(t32['recall'])} (< 32 px "
        f"{_pct(t32['recall_small'])}) at {t32['fps']:.2f} fps, INT8 {_pct(t8['recall'])} at "
        f"{t8['fps']:.2f} fps; whole frame squeezed to 640: recall {_pct(whole['recall'])}."
    )
    small = by.get("pruned FP32 tiled")
    if small:
        console.print(
            f"defect-detector-small (pruned by `edgeinfer compress`): tiled recall "
            f"{_pct(small['recall'])} at {small['fps']:.2f} fps "
            f"({small['fps'] / t32['fps']:.1f}x the FP32 rate, on any CPU).")
    surface = summary.get("surface")
    if surface:
        det, ano = surface["rows"][0], surface["rows"][-1]
        console.print(
            f"On a REAL {surface['surface']} surface it never saw, the shipped detector finds "
            f"{_pct(det['recall'])} of the defects at precision {_pct(det['precision'])}; the "
            f"anomaly model trained here in {surface['training']['seconds']['total']:.0f} s on "
            f"{surface['training']['train_tiles']} good tiles finds {_pct(ano['recall'])} at "
            f"precision {_pct(ano['precision'])}."
        )
    console.print(f"Written {out / 'report.html'} and {out / 'summary.json'} in "
                  f"{summary['seconds']:.0f} s.")
