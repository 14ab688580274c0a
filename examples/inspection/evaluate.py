"""Evaluate the defect detector ONNX file on held-out SYNTHETIC test tiles with onnxruntime.

    .venv/bin/python examples/inspection/evaluate.py [--model PATH.onnx] [--json report.json]

Test tiles: ``make_tiles(TEST_SEED, 1000, 640)`` - 640x640 crops (the model's own resolution)
of frames ``9999 * 100000 + k`` (k < 250, 3-12 defects each), which no training run with a seed
below 9999 ever sees. Decoding is edgeinfer's own ``yolo`` decoder (best class per cell, score
threshold, per-class NMS), as the ``defect-detector`` artifact runs it.

Reported:

- COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools; detections scoring >= 0.001 after NMS at IoU
  0.6, at most 100 per tile), and per class;
- at the deployment thresholds (score ``--conf``, NMS IoU ``--iou``), and at scores 0.35 and
  0.5: recall (ground-truth defects with a detection of IoU >= 0.5), precision, the
  classification accuracy of the matched detections (detections, best score first, take the
  unmatched ground-truth box of highest IoU >= 0.5 whatever its class; correct when the classes
  agree), the share of defects found with the right class, and the confusion matrix;
- parameters (from the ONNX initializers), file size, and the onnxruntime CPU latency of one
  640x640 tile (``--threads`` intra-op threads, median of ``--runs`` runs after 5 warm-up runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.synthetic.defects import CLASSES, make_tiles
from edgeinfer.training import detect_eval
from edgeinfer.vision.metrics import DetectionScore

TEST_SEED = 9999
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "edgeinfer/data/defects/defect-detector.onnx"


def to_input(bgr: np.ndarray) -> np.ndarray:
    """A 640x640 BGR uint8 tile as the model's input: RGB, /255, float32 [1, 3, H, W]."""
    return detect_eval.to_input(bgr)


def decode(
    output: np.ndarray, conf: float, iou: float, max_det: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's output ``[4 + C, N]`` (or ``[1, 4 + C, N]``) of a 640x640 tile through
    edgeinfer's ``yolo`` decoder (best class per cell, score >= ``conf``, per-class NMS at
    ``iou``, at most ``max_det``): boxes xyxy [K, 4], scores [K], classes [K]."""
    return detect_eval.decode(output, conf, iou, len(CLASSES), max_det)


def coco_map(
    gts: list[tuple[np.ndarray, np.ndarray]], dets: list[tuple[np.ndarray, ...]]
) -> dict[str, Any]:
    """COCO bbox mAP (pycocotools) overall and per class
    (``edgeinfer.training.detect_eval.coco_map``)."""
    return detect_eval.coco_map(gts, dets, CLASSES)


def deploy_metrics(
    gts: list[tuple[np.ndarray, np.ndarray]], dets: list[tuple[np.ndarray, ...]], conf: float
) -> dict[str, Any]:
    """Recall, precision and classification accuracy of the detections scoring >= ``conf``
    (NMS already applied), by :class:`edgeinfer.vision.metrics.DetectionScore`: detections
    match ground truth at IoU >= 0.5 whatever the class."""
    score = DetectionScore(len(CLASSES))
    for (gb, gc), (db, ds, dc) in zip(gts, dets, strict=True):
        keep = ds >= conf
        score.add(db[keep], ds[keep], dc[keep], gb, gc)
    s = score.summary(CLASSES)
    return {"conf": conf, "recall": s["recall"] or 0.0, "precision": s["precision"] or 0.0,
            "matched": int(np.sum(s["confusion"])), "accuracy": s["class_accuracy"] or 0.0,
            "found_and_classified": s["found_and_classified"] or 0.0,
            "confusion": s["confusion"]}


def evaluate(
    model: Path, n_tiles: int = 1000, conf: float = 0.5, iou: float = 0.5, threads: int = 2,
    runs: int = 50,
) -> dict[str, Any]:
    """Every figure of the module docstring, as a dict."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    gts, dets_map, dets_deploy = [], [], []
    for img, boxes, classes in make_tiles(TEST_SEED, n_tiles, 640):
        out = sess.run(None, {name: to_input(img)})[0][0]
        gts.append((boxes, classes))
        dets_map.append(decode(out, 0.001, 0.6))
        dets_deploy.append(decode(out, conf, iou))
    report: dict[str, Any] = {"tiles": n_tiles, "defects": int(sum(len(g[1]) for g in gts))}
    report.update(coco_map(gts, dets_map))

    report["deploy"] = deploy_metrics(gts, dets_deploy, conf)
    report["deploy"]["iou"] = iou
    report["thresholds"] = [
        {k: v for k, v in deploy_metrics(gts, dets_deploy, c).items() if k != "confusion"}
        for c in sorted({0.25, 0.35, conf, 0.5})
    ]

    graph = onnx.load(str(model)).graph
    x = to_input(make_tiles(TEST_SEED, 1, 640).__next__()[0])
    for _ in range(5):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    report["model"] = {
        "parameters": int(sum(np.prod(t.dims) for t in graph.initializer)),
        "bytes": model.stat().st_size,
        "latency_ms_p50": 1e3 * float(np.median(times)),
        "latency_ms_p90": 1e3 * float(np.percentile(times, 90)),
        "threads": threads,
    }
    return report


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--conf", type=float, default=0.5)
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    r = evaluate(args.model, args.tiles, args.conf, args.iou, args.threads, args.runs)
    print(f"SYNTHETIC test set: {r['tiles']} tiles 640x640, {r['defects']} defects")
    print(f"mAP@0.5 {r['map50']:.3f}   mAP@0.5:0.95 {r['map']:.3f}")
    for name, pc in r["per_class"].items():
        print(f"  {name:8s} AP@0.5 {pc['ap50']:.3f}  AP@0.5:0.95 {pc['ap']:.3f}")
    d = r["deploy"]
    print(f"at score >= {d['conf']}, NMS IoU {d['iou']}: recall {d['recall']:.3f}, precision "
          f"{d['precision']:.3f}, classification accuracy of matched {d['accuracy']:.4f} "
          f"({d['matched']} matched)")
    print("confusion (rows truth, columns predicted):", d["confusion"])
    for t in r["thresholds"]:
        print(f"  score >= {t['conf']:.2f}: recall {t['recall']:.3f}, precision "
              f"{t['precision']:.3f}, accuracy of matched {t['accuracy']:.4f}, found with the "
              f"right class {t['found_and_classified']:.3f}")
    m = r["model"]
    print(f"model: {m['parameters']:,} parameters, {m['bytes'] / 1e6:.2f} MB, onnxruntime "
          f"{m['threads']} threads p50 {m['latency_ms_p50']:.1f} ms p90 "
          f"{m['latency_ms_p90']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
