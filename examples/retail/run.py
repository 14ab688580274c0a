"""The multi-camera retail scenario: generate what is missing, run it, report it.

1. the three SYNTHETIC videos (``make_videos.py``) in ``videos/`` unless they are there;
2. the INT8 defect detector in ``out/defect-detector-int8`` unless it is there (``optimize``,
   static INT8 calibrated on generated tiles, as ``edgeinfer demo`` builds it; about 17 s on
   2 shared cores), or ``--fp32`` to use the zoo's FP32 detector instead;
3. ``streams.yaml`` for ``--seconds`` through one scheduler, with a live table; then the
   per-stream fps, latency, drops, idle time and the energy view (process CPU seconds per
   hour while busy vs while the entrance is idle), written to ``out/summary.json``.

    .venv/bin/python examples/retail/run.py [--seconds 60] [--fp32] [--workers N]
    .venv/bin/python examples/retail/run.py --seconds 30 --compare-workers 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.live import Live

from edgeinfer.cli.streams_view import energy_table, stats_table
from edgeinfer.pipeline.multistream import MultiStreamRunner, parse_streams_config
from edgeinfer.runtime.scheduler import Scheduler
from edgeinfer.vision.boxes import box_iou

HERE = Path(__file__).resolve().parent


def _make_videos_module() -> Any:
    spec = importlib.util.spec_from_file_location("retail_make_videos", HERE / "make_videos.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build_int8(out: Path, console: Console) -> Path:
    """The INT8 defect detector in ``out`` (built once: calibrated on generated tiles)."""
    if (out / "edgeinfer.json").exists():
        return out
    from edgeinfer import loading
    from edgeinfer.demo import DemoSize, make_int8
    from edgeinfer.loading import load

    t0 = time.perf_counter()
    with console.status("building the INT8 defect detector (once)"):
        make_int8(load(loading.resolve("defect-detector")), out, DemoSize.quick())
    console.print(f"INT8 defect detector built in {time.perf_counter() - t0:.0f} s: {out}")
    return out


def scenario_config(videos: Path, out: Path, precision: str, workers: int | None,
                    only: list[str] | None = None) -> Any:
    """``streams.yaml`` with the videos in ``videos``, the chosen detector and workers (and
    only the streams named in ``only``, when given)."""
    data = yaml.safe_load((HERE / "streams.yaml").read_text(encoding="utf-8"))
    if only:
        data["streams"] = [s for s in data["streams"] if s["name"] in only]
    for stream in data["streams"]:  # results per frame, scored against the ground truth
        sink = out / f"{stream['name']}.jsonl"
        sink.unlink(missing_ok=True)
        stream["sink"] = str(sink)
    for stream in data["streams"]:
        stream["source"] = str(videos / Path(stream["source"]).name)
    data["models"]["defects"] = (str(out / "defect-detector-int8") if precision == "int8"
                                 else "defect-detector")
    if workers:
        data["scheduler"] = {"workers": workers}
    return parse_streams_config(data, HERE)


def score(results: Path, truth: Path, iou: float = 0.5) -> dict[str, Any]:
    """Recall and precision (any class, IoU >= ``iou``) of a stream's processed frames
    against the video's ground truth; frame ``index`` maps to the video frame modulo its
    length (the source loops)."""
    gt = [json.loads(line) for line in truth.open(encoding="utf-8")]
    tp = n_gt = n_pred = 0
    for line in results.open(encoding="utf-8"):
        rec = json.loads(line)
        boxes = np.asarray(gt[rec["index"] % len(gt)]["boxes"], np.float32).reshape(-1, 4)
        pred = np.asarray([d["box"] for d in rec["result"]], np.float32).reshape(-1, 4)
        n_gt, n_pred = n_gt + len(boxes), n_pred + len(pred)
        if len(boxes) and len(pred):
            m = box_iou(boxes, pred) >= iou
            used: set[int] = set()
            for row in m:  # greedy one-to-one matching
                j = next((j for j in np.flatnonzero(row) if j not in used), None)
                if j is not None:
                    used.add(int(j))
                    tp += 1
    return {"recall": tp / n_gt if n_gt else None, "precision": tp / n_pred if n_pred else None,
            "truth_boxes": n_gt, "predicted_boxes": n_pred}


def run_scenario(seconds: float = 60.0, videos: Path = HERE / "videos", out: Path = HERE / "out",
                 precision: str = "int8", workers: int | None = None,
                 console: Console | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Generate what is missing, run the scenario for ``seconds``; the summary (also written
    to ``out/summary.json``)."""
    console = console or Console()
    make_videos = _make_videos_module()
    if make_videos.missing(videos):
        with console.status("generating the SYNTHETIC videos"):
            make_videos.make_videos(videos)
    if precision == "int8" and (not only or set(only) - {"entrance"}):  # conveyors run it
        build_int8(out / "defect-detector-int8", console)
    out.mkdir(parents=True, exist_ok=True)
    config = scenario_config(videos, out, precision, workers, only)
    detections: dict[str, int] = {}

    def on_result(stream: str, prediction: Any, frame: Any) -> None:
        detections[stream] = detections.get(stream, 0) + len(prediction.result)

    with Scheduler(config.scheduler_config()) as scheduler:
        runner = MultiStreamRunner(scheduler, config, on_result)
        t0 = time.monotonic()
        with runner, Live(stats_table(runner.stats()), console=console,
                          refresh_per_second=2) as live:
            while runner.running and time.monotonic() - t0 < seconds:
                runner.wait(min(0.5, max(0.0, seconds - (time.monotonic() - t0))))
                live.update(stats_table(runner.stats(), f"retail ({time.monotonic() - t0:.0f} s)"))
        stats, sched = runner.stats(), scheduler.stats()
    energy = runner.energy()
    console.print(energy_table(energy))
    if energy["idle_over_busy"] is not None:
        console.print(f"idle / busy CPU seconds per hour: {energy['idle_over_busy']:.2f}")
    summary = {
        "seconds": seconds, "precision": precision, "workers": sched["workers"],
        "threads": sched["threads"], "streams": stats, "detections": detections,
        "energy": energy,
        "scheduler": {k: {f: v.get(f) for f in ("completed", "run_ms_p50", "run_ms_p99",
                                                  "wait_ms_p99", "deadline_misses",
                                                  "rejected_deadline", "skipped")}
                      for k, v in sched["models"].items()},
    }
    summary["accuracy"] = {
        name: score(out / f"{name}.jsonl", videos / f"{name}.mp4.jsonl") for name in stats
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    for name, s in stats.items():
        acc = summary["accuracy"][name]
        recall = "-" if acc["recall"] is None else f"{acc['recall']:.3f}"
        precision_ = "-" if acc["precision"] is None else f"{acc['precision']:.3f}"
        console.print(f"{name}: {s['mean_fps']:.1f} fps mean, {s['frames']} frames, "
                      f"{detections.get(name, 0)} detections, {s['drops']} dropped, "
                      f"{s['idle_skipped']} skipped while idle; recall {recall}, precision "
                      f"{precision_} (IoU 0.5, SYNTHETIC ground truth)")
    console.print(f"summary: {out / 'summary.json'}")
    return summary


def compare_workers(seconds: float, reps: int, videos: Path, out: Path,
                    precision: str) -> list[dict[str, Any]]:
    """The scenario with 1 worker (engines on every core) and 2 workers (one core each),
    alternating ``reps`` times; per setting the medians of throughput, entrance p99 and
    drops."""
    import io
    import statistics

    rows: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(reps):
        for workers in (1, 2):
            quiet = Console(file=io.StringIO())
            s = run_scenario(seconds, videos, out, precision, workers, quiet)
            st = s["streams"]
            rows[workers].append({
                "frames_per_s": sum(v["frames"] for v in st.values()) / seconds,
                "entrance_p99_ms": st["entrance"]["latency_ms_p99"],
                "conveyor_p99_ms": max(st[k]["latency_ms_p99"] for k in st if k != "entrance"),
                "drops": sum(v["drops"] for v in st.values()),
                "cpu_s_per_hour": sum(p["cpu_s"] for p in s["energy"]["phases"].values())
                / seconds * 3600,
            })
    table = []
    for workers, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        table.append({"workers": workers, **med})
        print(f"workers={workers}: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    return table


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fp32", action="store_true", help="the zoo's FP32 detector, not INT8")
    ap.add_argument("--workers", type=int, help="scheduler workers (default: streams.yaml)")
    ap.add_argument("--videos", type=Path, default=HERE / "videos")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--only", help="run only these streams (comma-separated names)")
    ap.add_argument("--compare-workers", type=int, metavar="REPS",
                    help="measure 1 against 2 workers, REPS runs of --seconds each")
    args = ap.parse_args()
    precision = "fp32" if args.fp32 else "int8"
    if args.compare_workers:
        compare_workers(args.seconds, args.compare_workers, args.videos, args.out, precision)
        return
    run_scenario(args.seconds, args.videos, args.out, precision, args.workers,
                 only=args.only.split(",") if args.only else None)


if __name__ == "__main__":
    main()
