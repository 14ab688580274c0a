"""``edgeinfer demo`` / ``make demo``: the main job on embedded defaults, the inspection case.

A 5 MP industrial camera (2592x1944), a YOLO-style detector at 640x640, INT8, defects found and
classified. Everything is packaged, nothing is downloaded:

1. build the ``defect-detector`` zoo artifact (trained on SYNTHETIC images, see
   ``edgeinfer/data/defects/README.md``);
2. inspect it (MACs, parameters, arena memory plan, a budget check);
3. optimize it to static INT8, calibrated on generated tiles and checked against FP32 on
   other generated tiles (AP@0.5 of the detections, INT8 only within 1 point);
4. benchmark FP32 against INT8 (onnxruntime, one 640x640 tile, the CPUs this process has);
5. inspect generated 5 MP frames (SYNTHETIC, with exact ground truth, frames no training saw)
   tile by tile with FP32 and with INT8, and once by squeezing the whole frame into 640x640,
   scoring each against the ground truth: recall (all and < 32 px), precision, classification
   accuracy of the found defects, frames per second;
6. print a summary table and write ``report.html`` (annotated frames, latency and accuracy
   charts) and ``summary.json`` under the output directory.

``--quick`` (what CI runs) uses fewer calibration tiles, timing runs and frames.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edgeinfer import zoo
from edgeinfer.artifact import Artifact
from edgeinfer.cli.render import render_inspect
from edgeinfer.model.inspect import inspect_model
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, detection_decode, optimize
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.pipeline.tiled import TiledPredictor
from edgeinfer.report_html import bar_chart, grouped_bar_chart, html_page
from edgeinfer.runtime.engine import Engine
from edgeinfer.synthetic.defects import CLASSES, make_frame, make_tiles
from edgeinfer.vision.draw import annotate
from edgeinfer.vision.metrics import DetectionScore
from edgeinfer.vision.preprocess import to_tensor

DEMO_MODEL = "defect-detector"
DEMO_BUDGET = 16 * 1024 * 1024
#: the demo's frames: the evaluation seed's series (never trained on), past the tiles that
#: ``examples/inspection/evaluate.py`` crops
FIRST_FRAME = 9999 * 100_000 + 50_000
CALIB_SEED, HOLDOUT_SEED = 1, 2
SAVED_FRAMES = 2


@dataclass(frozen=True)
class DemoSize:
    """How much work the demo does."""

    frames: int = 8
    calib_tiles: int = 48
    holdout_tiles: int = 32
    bench_runs: int = 100

    @classmethod
    def quick(cls) -> DemoSize:
        """The short form CI runs."""
        return cls(frames=2, calib_tiles=16, holdout_tiles=16, bench_runs=20)


def _tiles(seed: int, n: int, artifact: Artifact) -> np.ndarray:
    """``n`` generated 640x640 tiles preprocessed as the artifact says."""
    spec, pre = artifact.manifest.inputs[0], artifact.manifest.preprocess
    return np.concatenate([to_tensor(t[0], spec, pre)[0] for t in make_tiles(seed, n, 640)])


def make_int8(artifact: Artifact, out: Path, size: DemoSize) -> Artifact:
    """Static INT8 of the detector through ``optimize``: calibrated on generated tiles, judged
    against FP32 by AP@0.5 on other generated tiles."""
    samples = Samples(
        _tiles(CALIB_SEED, size.calib_tiles, artifact),
        _tiles(HOLDOUT_SEED, size.holdout_tiles, artifact),
        origin=f"SYNTHETIC tiles: {size.calib_tiles} (seed {CALIB_SEED}) calibration, "
        f"{size.holdout_tiles} (seed {HOLDOUT_SEED}) evaluation",
        decode=detection_decode(artifact),
    )
    return optimize(artifact.path, out, OptimizeConfig(latency_rounds=3, speed_check=False),
                    samples)


def _variant_row(name: str, score: DetectionScore, seconds: list[float]) -> dict[str, Any]:
    row = score.summary(CLASSES)
    row["name"] = name
    row["s_per_frame_p50"] = float(np.median(seconds))
    row["fps"] = len(seconds) / float(np.sum(seconds))
    return row


def _draw_truth(image: np.ndarray, gt_boxes: np.ndarray, matched: set[int]) -> None:
    """Missed ground-truth defects in white, so the report shows what the model did not find."""
    for j, b in enumerate(gt_boxes):
        if j not in matched:
            x1, y1, x2, y2 = (int(v) for v in b)
            cv2.rectangle(image, (x1 - 3, y1 - 3), (x2 + 3, y2 + 3), (255, 255, 255), 2)


def inspect_frames(
    engines: dict[str, Engine],
    frames: int,
    save_dir: Path | None = None,
    first_frame: int = FIRST_FRAME,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run each engine tile by tile (640 px, overlap 0.2, batches of 4) over ``frames``
    generated 5 MP frames, plus the first engine on the whole frame squeezed into 640x640;
    score each against the ground truth. Saves the first frames annotated under ``save_dir``.
    """
    names = list(engines)
    tiled = {n: TiledPredictor(e, tile=640, overlap=0.2, batch=4, measure_memory=False)
             for n, e in engines.items()}
    whole = Predictor(engines[names[0]])
    labels = [*(f"{n} tiled" for n in names), f"{names[0]} whole frame 640"]
    scores = {label: DetectionScore(len(CLASSES)) for label in labels}
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("5 MP frames", total=frames)
        for k in range(frames):
            image, gt_boxes, gt_classes = make_frame(first_frame + k)
            for label in labels:
                t0 = time.perf_counter()
                if label.endswith("tiled"):
                    dets = tiled[label.removesuffix(" tiled")].predict(image).detections
                else:
                    dets = whole.predict(image).result
                seconds[label].append(time.perf_counter() - t0)
                m = scores[label].add(dets.boxes, dets.scores, dets.class_ids, gt_boxes,
                                      gt_classes)
                if save_dir is not None and k < SAVED_FRAMES and label in (labels[-2], labels[-1]):
                    drawn = annotate(image, dets)
                    _draw_truth(drawn, gt_boxes, {int(j) for j in m[m >= 0]})
                    slug = label.replace(" ", "-")
                    cv2.imwrite(str(save_dir / f"frame{k}-{slug}.jpg"),
                                cv2.resize(drawn, None, fx=0.5, fy=0.5,
                                           interpolation=cv2.INTER_AREA),
                                [cv2.IMWRITE_JPEG_QUALITY, 85])
            bar.advance(task)
    return [_variant_row(label, scores[label], seconds[label]) for label in labels]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_frames(rows: list[dict[str, Any]], console: Console) -> None:
    """Print :func:`inspect_frames` rows as a table."""
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


def _report_html(summary: dict[str, Any], frame_files: list[str]) -> str:
    frames = summary["frames"]
    bench = summary["bench"]
    body = [
        "<h1>edgeinfer demo: defect inspection on SYNTHETIC 5 MP frames</h1>",
        "<p>Every image here is generated (<code>edgeinfer/synthetic/defects.py</code>), with "
        "exact ground-truth boxes; the detector was trained on other generated images. The "
        "figures describe this generator's defects, not a production line.</p>",
        f"<p>Machine: {html.escape(summary['machine'])}</p>",
        "<h2>Model</h2><table>",
        f"<tr><td>MACs per 640x640 tile</td><td>{summary['macs'] / 1e9:.2f} G</td></tr>",
        f"<tr><td>parameters</td><td>{summary['params']:,}</td></tr>",
        f"<tr><td>activation arena (planned / naive)</td><td>"
        f"{summary['arena_bytes'] / 2**20:.1f} / {summary['naive_bytes'] / 2**20:.1f} MiB"
        "</td></tr>",
        f"<tr><td>INT8 vs FP32 AP@0.5 (held-out tiles)</td><td>"
        f"{summary['int8']['agreement']:.3f}</td></tr>",
        f"<tr><td>size FP32 / INT8</td><td>{summary['int8']['fp32_bytes'] / 1e6:.2f} / "
        f"{summary['int8']['bytes'] / 1e6:.2f} MB</td></tr></table>",
        "<h2>Latency of one 640x640 tile (onnxruntime)</h2>",
        grouped_bar_chart(
            "latency per tile", [b["name"] for b in bench],
            {"p50": [b["p50_ms"] for b in bench], "p90": [b["p90_ms"] for b in bench],
             "p99": [b["p99_ms"] for b in bench]}, "ms"),
        "<h2>5 MP frames</h2>",
        grouped_bar_chart(
            "detection quality", [r["name"] for r in frames],
            {"recall": [_num(r["recall"]) for r in frames],
             "recall < 32 px": [_num(r["recall_small"]) for r in frames],
             "precision": [_num(r["precision"]) for r in frames],
             "class accuracy": [_num(r["class_accuracy"]) for r in frames]}, "%"),
        bar_chart("frames per second", [r["name"] for r in frames],
                  [r["fps"] for r in frames], "fps"),
        "<table><tr><th>variant</th><th>recall</th><th>recall &lt; 32 px</th><th>precision</th>"
        "<th>class accuracy</th><th>s/frame p50</th><th>fps</th></tr>",
        *(f"<tr><td>{html.escape(r['name'])}</td><td>{_pct(r['recall'])}</td>"
          f"<td>{_pct(r['recall_small'])}</td><td>{_pct(r['precision'])}</td>"
          f"<td>{_pct(r['class_accuracy'])}</td><td>{r['s_per_frame_p50']:.3f}</td>"
          f"<td>{r['fps']:.2f}</td></tr>" for r in frames),
        "</table>",
        f"<p>{frames[0]['defects']} defects, {frames[0]['small_defects']} under 32 px. "
        "Coloured boxes: detections; white boxes: defects the model missed.</p>",
        *(f"<h3>{html.escape(f)}</h3><img src='{html.escape(f)}' style='max-width:100%'>"
          for f in frame_files),
    ]
    return html_page("edgeinfer demo", "\n".join(body))


def _num(v: float | None) -> float | None:
    return None if v is None else 100 * v


def run_demo(out: Path, console: Console, quick: bool = False) -> dict[str, Any]:
    """Run the demo, print its steps, write ``summary.json`` and ``report.html`` under
    ``out``, return the summary."""
    from edgeinfer.benchmark.suite import bench
    from edgeinfer.machine import machine_info, machine_line

    size = DemoSize.quick() if quick else DemoSize()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fp32_dir, int8_dir = out / DEMO_MODEL, out / f"{DEMO_MODEL}-int8"

    console.rule(f"1. zoo get {DEMO_MODEL} (trained on SYNTHETIC images)")
    artifact = zoo.get(DEMO_MODEL, fp32_dir)
    console.print(f"artifact: {fp32_dir} ({artifact.manifest.model.bytes / 1e6:.2f} MB ONNX)")

    console.rule("2. inspect")
    report = inspect_model(fp32_dir, budget=DEMO_BUDGET)
    report["path"] = str(fp32_dir)
    render_inspect(report, console)

    console.rule("3. optimize: static INT8, calibrated on generated tiles")
    int8 = make_int8(artifact, int8_dir, size)
    opt = int8.manifest.reports["optimize"]
    agreement = opt["result"]["agreement"]["value"]
    console.print(
        f"{int8.manifest.model.precision}: {int8.manifest.model.bytes / 1e6:.2f} MB "
        f"(FP32 {opt['fp32']['bytes'] / 1e6:.2f} MB), AP@0.5 against FP32's detections "
        f"{agreement:.3f}, layers kept in float: {len(opt['kept_in_float'])}; "
        f"report {int8_dir / 'optimize-report.html'}"
    )

    console.rule("4. bench FP32 vs INT8 (onnxruntime, one 640x640 tile)")
    from edgeinfer.cli.render_bench import render_bench

    bench_report = bench([fp32_dir, int8_dir], backends="ort", runs=size.bench_runs)
    render_bench(bench_report, console)
    # results come in the order the models were given: the optimized artifact is the second
    first = bench_report.results[0].model if bench_report.results else None
    bench_rows = [
        {"name": f"{'FP32' if r.model == first else 'INT8'}, "
         f"{r.threads} threads", "p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms}
        for r in bench_report.results if r.ok
    ]

    console.rule(f"5. tiled inspection of {size.frames} generated 5 MP frames")
    frames_dir = out / "frames"
    frames_dir.mkdir(exist_ok=True)
    with Engine(artifact) as e32, Engine(int8) as e8:
        rows = inspect_frames({"FP32": e32, "INT8": e8}, size.frames, frames_dir)
    render_frames(rows, console)

    machine = machine_line(machine_info())
    summary = {
        "model": DEMO_MODEL,
        "data": "SYNTHETIC (edgeinfer/synthetic/defects.py)",
        "machine": machine,
        "macs": report["macs"]["total"],
        "params": report["params"]["count"],
        "arena_bytes": report["memory"]["best"]["arena_bytes"],
        "naive_bytes": report["memory"]["naive_bytes"],
        "fits_budget": report["budget"]["fits"],
        "int8": {
            "precision": int8.manifest.model.precision,
            "agreement": agreement,
            "agreement_metric": opt["drop_metric"],
            "bytes": int8.manifest.model.bytes,
            "fp32_bytes": opt["fp32"]["bytes"],
            "kept_in_float": opt["kept_in_float"],
            "recommended": opt["recommended"],
            "problems": opt["problems"],
            "p50_ratio": opt["ratios"]["p50"],
        },
        "bench": bench_rows,
        "frames": rows,
        "seconds": time.perf_counter() - started,
    }
    frame_files = sorted(str(p.relative_to(out)) for p in frames_dir.glob("*.jpg"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.html").write_text(_report_html(summary, frame_files), encoding="utf-8")
    console.rule("summary")
    by = {r["name"]: r for r in rows}
    t32, t8, whole = by["FP32 tiled"], by["INT8 tiled"], by["FP32 whole frame 640"]
    console.print(
        f"{DEMO_MODEL}: {summary['macs'] / 1e9:.2f} G MACs per tile; INT8 "
        f"{summary['int8']['bytes'] / 1e6:.2f} MB (AP@0.5 vs FP32 {agreement:.3f}). "
        f"5 MP frames: tiled FP32 recall {_pct(t32['recall'])} (< 32 px "
        f"{_pct(t32['recall_small'])}) at {t32['fps']:.2f} fps, INT8 {_pct(t8['recall'])} at "
        f"{t8['fps']:.2f} fps; whole frame squeezed to 640: recall {_pct(whole['recall'])}. "
        f"Written {out / 'report.html'} and {out / 'summary.json'} in "
        f"{summary['seconds']:.0f} s."
    )
    return summary
