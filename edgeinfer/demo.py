"""``edgeinfer demo`` / ``make demo``: the main job on embedded defaults, the inspection case.

A 5 MP industrial camera (2592x1944), a YOLO-style detector at 640x640, INT8, defects found and
classified; then a surface that detector never saw, and a model that learns it from good
images alone. Everything is packaged, nothing is downloaded:

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
6. train an anomaly model (``edgeinfer.train_anomaly``) on good tiles of a REAL surface the
   detector never saw (a photograph of a brick wall, ``edgeinfer/synthetic/surfaces.py``);
7. inspect 5 MP frames of that surface (a held-out quarter of the photograph, mirrored out to
   the frame; defects drawn by the evaluation-only renderer ``edgeinfer/synthetic/eval_defects.py``,
   and frames without defects) tiled, with the shipped detector and the anomaly model;
8. write ``report.html`` (annotated frames, latency and accuracy charts) and ``summary.json``
   under the output directory.

The demo is a list of :data:`STAGES`; each takes the shared :class:`DemoRun` and returns its
figures, which :func:`run_demo` hands to ``on_stage`` (the CLI renders them: nothing here
prints). A stage added to the list (another model to compare) is run and reported like the
rest. ``--quick`` (what CI runs) uses fewer calibration tiles, timing runs, frames and training
tiles.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeinfer import zoo
from edgeinfer.artifact import Artifact
from edgeinfer.model.inspect import inspect_model
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, detection_decode, optimize
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.pipeline.tiled import TiledPredictor
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.report_html import bar_chart, grouped_bar_chart, html_page
from edgeinfer.runtime.engine import Engine
from edgeinfer.synthetic.defects import CLASSES, make_frame, make_tiles
from edgeinfer.vision.draw import annotate
from edgeinfer.vision.metrics import DetectionScore
from edgeinfer.vision.preprocess import to_tensor

DEMO_MODEL = "defect-detector"
#: the same detector compressed by ``edgeinfer compress`` (benchmarks/compress_detector.py)
SMALL_MODEL = "defect-detector-small"
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
    surface_tiles: int = 40  #: good tiles the anomaly model trains on (1/5 held out)
    surface_frames: int = 2  #: 5 MP frames of the surface with defects
    surface_good_frames: int = 1  #: and without

    @classmethod
    def quick(cls) -> DemoSize:
        """The short form CI runs."""
        return cls(frames=2, calib_tiles=16, holdout_tiles=16, bench_runs=20, surface_tiles=12,
                   surface_frames=1, surface_good_frames=1)


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
    progress: ProgressFn | None = None,
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
    track = Tracker(progress)
    track.start("5 MP frames", total=frames)
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
        track.advance("5 MP frames")
    track.finish("5 MP frames")
    return [_variant_row(label, scores[label], seconds[label]) for label in labels]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


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
        *_surface_html(summary.get("surface")),
        *(f"<h3>{html.escape(f)}</h3><img src='{html.escape(f)}' style='max-width:100%'>"
          for f in frame_files),
    ]
    return html_page("edgeinfer demo", "\n".join(body))


def _surface_html(surface: dict[str, Any] | None) -> list[str]:
    if not surface:
        return []
    rows = surface["rows"]
    return [
        f"<h2>A surface the detector never saw: {html.escape(surface['surface'])} (REAL "
        "photograph; defects drawn by the evaluation-only renderer)</h2>",
        f"<p>{html.escape(surface['note'])}</p>",
        "<table><tr><th>model</th><th>recall</th><th>precision</th><th>false-alarm frames</th>"
        "<th>s/frame p50</th></tr>",
        *(f"<tr><td>{html.escape(r['name'])}</td><td>{_pct(r['recall'])}</td>"
          f"<td>{_pct(r['precision'])}</td><td>{r['false_alarm_frames']} of "
          f"{r['good_frames']}</td><td>{r['s_per_frame_p50']:.2f}</td></tr>" for r in rows),
        "</table>",
    ]


def _num(v: float | None) -> float | None:
    return None if v is None else 100 * v




# --- a surface the detector never saw ----------------------------------------------------------

#: the real surface of steps 6-7 (edgeinfer/synthetic/surfaces.py)
DEMO_SURFACE = "brick"
#: defects drawn on each of its 5 MP frames
SURFACE_DEFECTS = 8


def train_surface_model(out: Path, size: DemoSize, progress: ProgressFn | None = None
                        ) -> Artifact:
    """An anomaly model trained on ``size.surface_tiles`` good 640 px tiles of the surface's
    training region, its threshold set on a quarter as many good tiles of another region of
    the photograph (tiles of one region overlap one another: held out of the same region they
    would be near-copies of training tiles and set the threshold too low). Tiles may cross the
    regions' mirrored edges, as the frames do."""
    from edgeinfer.synthetic.surfaces import surface_tiles
    from edgeinfer.training.anomaly import AnomalyConfig, train_anomaly

    folders = {}
    for split, n in (("train", size.surface_tiles), ("good", max(4, size.surface_tiles // 4))):
        folder = folders[split] = out / f"{DEMO_SURFACE}-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, tile in enumerate(surface_tiles(DEMO_SURFACE, split, n, seed=0, mirror=True)):
            cv2.imwrite(str(folder / f"{i:03d}.png"), tile)
    return train_anomaly(folders["train"], out / f"anomaly-{DEMO_SURFACE}", AnomalyConfig(),
                         val=folders["good"], force=True, progress=progress)


def _touches(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]``: box ``a[i]`` and box ``b[j]`` share some area."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), bool)
    return ((a[:, None, 0] < b[None, :, 2]) & (a[:, None, 2] > b[None, :, 0])
            & (a[:, None, 1] < b[None, :, 3]) & (a[:, None, 3] > b[None, :, 1]))


def surface_frames(size: DemoSize) -> list[tuple[np.ndarray, np.ndarray]]:
    """5 MP frames of the surface's ``defect`` region (mirrored out; neither trained on nor
    calibrated on): ``surface_frames`` with defects, then ``surface_good_frames`` without;
    each with its defect boxes."""
    from edgeinfer.synthetic.eval_defects import render_defects
    from edgeinfer.synthetic.surfaces import surface_frame

    out = []
    for k in range(size.surface_frames + size.surface_good_frames):
        frame = surface_frame(DEMO_SURFACE, ("defect",), seed=k)
        boxes = np.zeros((0, 4), np.float32)
        if k < size.surface_frames:
            frame, boxes, _, _ = render_defects(frame, np.random.default_rng([11, k]),
                                                SURFACE_DEFECTS)
        out.append((frame, boxes))
    return out


def inspect_surface(models: dict[str, Artifact], size: DemoSize, save_dir: Path | None = None,
                    progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Each model tiled (640 px, overlap 0.2) over the surface's frames: a defect is found when
    a box (detection or anomalous region) shares area with it, whatever the class; precision
    counts the boxes that share area with some defect; a false-alarm frame is a defect-free
    frame with any box."""
    frames = surface_frames(size)
    track = Tracker(progress)
    track.start("surface frames", total=len(frames) * len(models))
    rows = []
    for name, art in models.items():
        found = defects = boxes = true_boxes = alarms = 0
        seconds = []
        with Engine(art) as engine:
            predictor = TiledPredictor(engine, tile=640, overlap=0.2, batch=4,
                                       measure_memory=False)
            for k, (frame, gt) in enumerate(frames):
                t0 = time.perf_counter()
                result = predictor.predict(frame).result
                seconds.append(time.perf_counter() - t0)
                dets = result.regions if hasattr(result, "regions") else result
                hit = _touches(dets.boxes, gt)
                found += int(hit.any(0).sum())
                defects += len(gt)
                boxes += len(dets)
                true_boxes += int(hit.any(1).sum())
                alarms += int(not len(gt) and len(dets) > 0)
                if save_dir is not None and k == 0:
                    drawn = annotate(frame, result)
                    _draw_truth(drawn, gt, set(np.flatnonzero(hit.any(0)).tolist()))
                    cv2.imwrite(str(save_dir / f"surface-{name.split()[0]}.jpg"),
                                cv2.resize(drawn, None, fx=0.5, fy=0.5,
                                           interpolation=cv2.INTER_AREA),
                                [cv2.IMWRITE_JPEG_QUALITY, 85])
                track.advance("surface frames")
        rows.append({"name": name, "defects": defects, "found": found,
                     "recall": found / defects if defects else None, "boxes": boxes,
                     "precision": true_boxes / boxes if boxes else None,
                     "false_alarm_frames": alarms, "good_frames": size.surface_good_frames,
                     "s_per_frame_p50": float(np.median(seconds))})
    track.finish("surface frames")
    return rows


# --- the stages ---------------------------------------------------------------------------------


@dataclass
class DemoRun:
    """What the stages share: where to write, how big, progress, and what earlier stages
    made (artifacts by name, figures for the summary)."""

    out: Path
    size: DemoSize
    progress: ProgressFn | None = None
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One step of the demo: ``run`` returns its figures (also kept in ``DemoRun.figures``)."""

    name: str
    title: str
    run: Callable[[DemoRun], dict[str, Any]]


def _zoo_stage(d: DemoRun) -> dict[str, Any]:
    art = zoo.get(DEMO_MODEL, d.out / DEMO_MODEL)
    d.artifacts["fp32"] = art
    d.artifacts["small"] = zoo.get(SMALL_MODEL, d.out / SMALL_MODEL)
    return {"path": str(art.path), "bytes": art.manifest.model.bytes,
            "small_bytes": d.artifacts["small"].manifest.model.bytes}


def _inspect_stage(d: DemoRun) -> dict[str, Any]:
    report = inspect_model(d.artifacts["fp32"].path, budget=DEMO_BUDGET)
    report["path"] = str(d.artifacts["fp32"].path)
    return {"report": report}


def _int8_stage(d: DemoRun) -> dict[str, Any]:
    int8 = make_int8(d.artifacts["fp32"], d.out / f"{DEMO_MODEL}-int8", d.size)
    d.artifacts["int8"] = int8
    opt = int8.manifest.reports["optimize"]
    return {"path": str(int8.path), "precision": int8.manifest.model.precision,
            "bytes": int8.manifest.model.bytes, "optimize": opt,
            "agreement": opt["result"]["agreement"]["value"]}


def _bench_stage(d: DemoRun) -> dict[str, Any]:
    from edgeinfer.benchmark.suite import bench

    fp32, int8 = d.artifacts["fp32"].path, d.artifacts["int8"].path
    report = bench([fp32, int8], backends="ort", runs=d.size.bench_runs)
    # results come in the order the models were given: the optimized artifact is the second
    first = report.results[0].model if report.results else None
    rows = [
        {"name": f"{'FP32' if r.model == first else 'INT8'}, {r.threads} threads",
         "p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms}
        for r in report.results if r.ok
    ]
    return {"report": report, "rows": rows}


def _frames_stage(d: DemoRun) -> dict[str, Any]:
    frames_dir = d.out / "frames"
    frames_dir.mkdir(exist_ok=True)
    with (Engine(d.artifacts["fp32"]) as e32, Engine(d.artifacts["int8"]) as e8,
          Engine(d.artifacts["small"]) as small):
        rows = inspect_frames({"FP32": e32, "INT8": e8, "pruned FP32": small}, d.size.frames,
                              frames_dir, progress=d.progress)
    return {"rows": rows}


def _surface_train_stage(d: DemoRun) -> dict[str, Any]:
    art = train_surface_model(d.out, d.size, d.progress)
    d.artifacts["anomaly"] = art
    return {"surface": DEMO_SURFACE, "path": str(art.path),
            "report": art.manifest.reports["train_anomaly"]}


def _surface_frames_stage(d: DemoRun) -> dict[str, Any]:
    models = {"defect-detector (shipped, FP32)": d.artifacts["fp32"],
              f"anomaly model ({DEMO_SURFACE}, trained here)": d.artifacts["anomaly"]}
    rows = inspect_surface(models, d.size, d.out / "frames", d.progress)
    note = (f"{d.size.surface_frames} frames with {SURFACE_DEFECTS} defects each and "
            f"{d.size.surface_good_frames} without, 2592x1944, cut from a held-out quarter of "
            f"the {DEMO_SURFACE} photograph (mirrored out to the frame size); a defect counts "
            "as found when a box shares area with it, whatever its class")
    return {"surface": DEMO_SURFACE, "rows": rows, "note": note}


#: the demo, in order; add a Stage here to compare another model
STAGES: list[Stage] = [
    Stage("zoo", f"1. zoo get {DEMO_MODEL} (trained on SYNTHETIC images)", _zoo_stage),
    Stage("inspect", "2. inspect", _inspect_stage),
    Stage("int8", "3. optimize: static INT8, calibrated on generated tiles", _int8_stage),
    Stage("bench", "4. bench FP32 vs INT8 (onnxruntime, one 640x640 tile)", _bench_stage),
    Stage("frames", "5. tiled inspection of generated 5 MP frames", _frames_stage),
    Stage("surface_train", f"6. train an anomaly model on good tiles of a REAL surface "
          f"({DEMO_SURFACE})", _surface_train_stage),
    Stage("surface_frames", f"7. inspect 5 MP frames of the {DEMO_SURFACE} surface: shipped "
          "detector vs the anomaly model", _surface_frames_stage),
]

StageFn = Callable[[Stage, dict[str, Any] | None], None]


def _summary(d: DemoRun, started: float) -> dict[str, Any]:
    from edgeinfer.machine import machine_info, machine_line

    f = d.figures
    report, opt = f["inspect"]["report"], f["int8"]["optimize"]
    return {
        "model": DEMO_MODEL,
        "data": "SYNTHETIC (edgeinfer/synthetic/defects.py)",
        "machine": machine_line(machine_info()),
        "macs": report["macs"]["total"],
        "params": report["params"]["count"],
        "arena_bytes": report["memory"]["best"]["arena_bytes"],
        "naive_bytes": report["memory"]["naive_bytes"],
        "fits_budget": report["budget"]["fits"],
        "int8": {
            "precision": f["int8"]["precision"],
            "agreement": f["int8"]["agreement"],
            "agreement_metric": opt["drop_metric"],
            "bytes": f["int8"]["bytes"],
            "fp32_bytes": opt["fp32"]["bytes"],
            "kept_in_float": opt["kept_in_float"],
            "recommended": opt["recommended"],
            "problems": opt["problems"],
            "p50_ratio": opt["ratios"]["p50"],
        },
        "bench": f["bench"]["rows"],
        "frames": f["frames"]["rows"],
        "surface": {
            "surface": DEMO_SURFACE,
            "data": "REAL photograph (scikit-image brick.png, CC0); defects SYNTHETIC "
                    "(edgeinfer/synthetic/eval_defects.py, evaluation only)",
            "training": {k: f["surface_train"]["report"][k] for k in (
                "train_tiles", "val_tiles", "bank_size", "threshold", "seconds")},
            "rows": f["surface_frames"]["rows"],
            "note": f["surface_frames"]["note"],
        },
        "seconds": time.perf_counter() - started,
    }


def run_demo(out: Path, quick: bool = False, *, on_stage: StageFn | None = None,
             progress: ProgressFn | None = None, stages: list[Stage] | None = None
             ) -> dict[str, Any]:
    """Run the demo's stages; ``on_stage(stage, None)`` before each and ``on_stage(stage,
    figures)`` after; write ``summary.json`` and ``report.html`` under ``out``; return the
    summary."""
    size = DemoSize.quick() if quick else DemoSize()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    d = DemoRun(out, size, progress)
    for stage in stages or STAGES:
        if on_stage:
            on_stage(stage, None)
        d.figures[stage.name] = stage.run(d)
        if on_stage:
            on_stage(stage, d.figures[stage.name])
    summary = _summary(d, started)
    frame_files = sorted(str(p.relative_to(out)) for p in (out / "frames").glob("*.jpg"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.html").write_text(_report_html(summary, frame_files), encoding="utf-8")
    return summary
