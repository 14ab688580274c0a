"""A detector fine-tuned on SYNTHESIZED defects drawn onto good tiles of REAL surfaces, judged
on defects drawn by an INDEPENDENT renderer; the shipped ``defect-detector`` side by side.

    .venv/bin/python benchmarks/train_detector.py [--tiles 100] [--epochs 30] [--json out.json]

1. Good training tiles: ``--tiles`` 640x640 tiles (a quarter per surface) of the ``train``
   region of four photographs scikit-image carries (brick, grass, gravel, moon:
   :mod:`edgeinfer.synthetic.surfaces`). No defect label of any kind.
2. ``train_detector(folder, synth=True)`` from the shipped detector: defects of
   :mod:`edgeinfer.synthetic.defects` drawn onto those tiles as they are drawn (20% of the
   tiles held out, with synthesized defects, to pick the epoch). Wall time on this CPU.
3. Test tiles, from regions of the photographs that share no pixel with the training region:
   ``--defect-tiles`` tiles of the ``defect`` region, ONE defect each drawn by
   :mod:`edgeinfer.synthetic.eval_defects` (scratch, stain, crack, dent, chip: another shape
   model and another blending, never trained on), and ``--good-tiles`` defect-free tiles of the
   ``good`` region.
4. Both models through ONNX Runtime and edgeinfer's ``yolo`` decoder at each artifact's own
   score threshold: recall (a defect is found when a detection of any class overlaps its box
   at IoU >= 0.5, or at IoU >= 0.3 / its centre for thin curves: both reported), precision
   over every detection on every test tile, the share of good tiles with a false alarm, recall
   per defect type and per surface; then ratios trained / shipped. Recall and precision at
   other thresholds are printed for information (the artifact's threshold is chosen on its
   synthesized validation images, never on these).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see edgeinfer/training/threads.py

from edgeinfer.loading import load  # noqa: E402
from edgeinfer.synthetic.eval_defects import EVAL_CLASSES, render_defects  # noqa: E402
from edgeinfer.synthetic.surfaces import SURFACES, surface_tiles  # noqa: E402
from edgeinfer.training.detect_eval import decode, to_input  # noqa: E402
from edgeinfer.training.detect_train import TrainConfig  # noqa: E402
from edgeinfer.training.detector import train_detector  # noqa: E402
from edgeinfer.training.synth import DefectSynthesizer  # noqa: E402
from edgeinfer.vision.boxes import box_iou  # noqa: E402

TILE = 640
#: score thresholds of the information-only sweep (recall / precision at IoU 0.5)
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def good_training_tiles(folder: Path, n: int) -> int:
    """Write ``n`` good training tiles (split evenly over the surfaces) as PNG files."""
    names = sorted(SURFACES)
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for i, name in enumerate(names):
        count = n // len(names) + (i < n % len(names))
        for j, tile in enumerate(surface_tiles(name, "train", count, seed=0, tile=TILE)):
            cv2.imwrite(str(folder / f"{name}-{j:03d}.png"), tile)
            k += 1
    return k


def test_tiles(n_defect: int, n_good: int, seed: int = 1) -> list[dict[str, Any]]:
    """Held-out test tiles: one independently rendered defect each, and defect-free ones."""
    out = []
    for s, name in enumerate(sorted(SURFACES)):
        rng = np.random.default_rng([seed, s])
        for tile in surface_tiles(name, "defect", n_defect // len(SURFACES), seed=seed,
                                  tile=TILE):
            img, boxes, classes, _ = render_defects(tile, rng, 1)
            out.append({"surface": name, "image": img, "boxes": boxes, "classes": classes})
        for tile in surface_tiles(name, "good", n_good // len(SURFACES), seed=seed, tile=TILE):
            out.append({"surface": name, "image": tile, "boxes": np.zeros((0, 4), np.float32),
                        "classes": np.zeros(0, np.int64)})
    return out


def _found(det: np.ndarray, gt: np.ndarray, rule: str) -> np.ndarray:
    """[G] whether each ground-truth box is found by some detection under ``rule``."""
    if not len(gt) or not len(det):
        return np.zeros(len(gt), bool)
    if rule == "centre":
        c = (det[:, :2] + det[:, 2:]) / 2
        inside = ((c[:, None, 0] >= gt[None, :, 0]) & (c[:, None, 0] <= gt[None, :, 2])
                  & (c[:, None, 1] >= gt[None, :, 1]) & (c[:, None, 1] <= gt[None, :, 3]))
        return inside.any(0)
    return (box_iou(det, gt) >= float(rule)).any(0)


def score(artifact_dir: Path, tiles: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Recall, precision, false alarms of one artifact on the test tiles (see the docstring)."""
    import onnxruntime as ort

    art = load(artifact_dir)
    p = art.manifest.decoder_params
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(art.model_path), opts, providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"images": to_input(t["image"])})[0][0] for t in tiles]

    def detect(conf: float) -> list[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
        rows = []
        for t, out in zip(tiles, outs, strict=True):
            boxes, scores, _ = decode(out, conf, p["iou_threshold"], p["num_classes"],
                                      agnostic=p.get("class_agnostic", False))
            rows.append((t, boxes, scores))
        return rows

    res: dict[str, Any] = {"conf": p["conf_threshold"], "sweep": {}}
    for conf in SWEEP:  # for information only: the artifact's threshold was set beforehand
        rows = detect(conf)
        found = np.concatenate([_found(b, t["boxes"], "0.5") for t, b, _ in rows])
        true = sum(int(_found(t["boxes"], b, "0.5").sum()) for t, b, _ in rows if len(b))
        dets = sum(len(b) for _, b, _ in rows)
        res["sweep"][conf] = {"recall": float(found.mean()),
                              "precision": true / dets if dets else None}
    rows = detect(p["conf_threshold"])
    for rule in ("0.5", "0.3", "centre"):
        found = np.concatenate([_found(b, t["boxes"], rule) for t, b, _ in rows])
        # a detection is true when it matches some defect under the rule (any class)
        true = sum(int(_found(t["boxes"], b, rule).sum()) if len(b) else 0 for t, b, _ in rows)
        dets = sum(len(b) for _, b, _ in rows)
        res[f"iou{rule}" if rule != "centre" else "centre"] = {
            "recall": float(found.mean()) if len(found) else None,
            "precision": true / dets if dets else None}
    main = {t_id: _found(b, t["boxes"], "0.5") for t_id, (t, b, _) in enumerate(rows)}
    defects = [(t, main[i]) for i, (t, _, _) in enumerate(rows) if len(t["boxes"])]
    res["per_type"] = {
        name: float(np.mean([f[0] for t, f in defects if t["classes"][0] == k]))
        for k, name in enumerate(EVAL_CLASSES) if any(t["classes"][0] == k for t, _ in defects)}
    res["per_surface"] = {s: float(np.mean([f[0] for t, f in defects if t["surface"] == s]))
                          for s in sorted(SURFACES)}
    good = [len(b) > 0 for t, b, _ in rows if not len(t["boxes"])]
    res["good_tiles_flagged"] = float(np.mean(good)) if good else None
    res["defects"], res["good_tiles"] = len(defects), len(good)
    return res


def _cpu() -> dict[str, str]:
    info = {"machine": platform.machine(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                     if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text.splitlines()
                     if line.startswith("flags"))
        keep = [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni",
                                          "amx_tile")]
        info.update(cpu=model, flags=" ".join(keep))
    except (OSError, StopIteration):
        pass
    info["load_before"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=100, help="good training tiles (<= 100)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=None, help="train on crops of this side")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--defect-tiles", type=int, default=120)
    ap.add_argument("--good-tiles", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--soften", type=float, default=None, help="blur each synthesized defect "
                    "by up to this sigma (px; default: the synthesizer's)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the trained artifact here")
    ap.add_argument("--test-seed", type=int, default=1, help="seed of the test tiles")
    ap.add_argument("--artifact", type=Path, default=None,
                    help="score this artifact (one this script trained) instead of training")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("-v", "--verbose", action="store_true", help="log each epoch")
    args = ap.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report: dict[str, Any] = {"machine": _cpu(), "args": {k: str(v) for k, v in
                                                          vars(args).items()}}
    tiles = test_tiles(args.defect_tiles, args.good_tiles, args.test_seed)
    if args.artifact is not None:
        report["trained"] = score(args.artifact, tiles, args.threads)
        report["shipped"] = score(load("defect-detector").path, tiles, args.threads)
        report["train"] = load(args.artifact).manifest.reports["train"]
        report["train_tiles"] = report["train"]["data"]["train_images"]
        report["train_seconds"] = report["train"]["seconds"]
        _print(report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good"
        report["train_tiles"] = good_training_tiles(good, args.tiles)
        out = args.keep or Path(tmp) / "trained"
        config = TrainConfig(epochs=args.epochs, batch=args.batch, crop=args.crop,
                             patience=args.patience, threads=args.threads)
        t0 = time.perf_counter()
        synth = DefectSynthesizer() if args.soften is None else DefectSynthesizer(
            soften=args.soften)
        art = train_detector(good, out, synth=synth, config=config, force=True)
        report["train_seconds"] = time.perf_counter() - t0
        train = art.manifest.reports["train"]
        report["train"] = {k: train[k] for k in ("epochs_run", "best_epoch", "steps", "seconds",
                                                 "val", "before", "stopped_early")}
        report["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        report["trained"] = score(out, tiles, args.threads)
        shipped = load("defect-detector").path
        report["shipped"] = score(shipped, tiles, args.threads)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def _print(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"machine: {m.get('cpu')} [{m.get('flags')}], load {m['load_before']} -> "
          f"{m.get('load_after')}")
    t = r["train"]
    print(f"trained on {r['train_tiles']} good tiles (SYNTHESIZED defects, no real label): "
          f"{t['epochs_run']} epochs (best {t['best_epoch']}), {t['steps']} steps, "
          f"{r['train_seconds']:.0f} s wall; synthetic val mAP@0.5 {t['before'].get('map50')} "
          f"-> {t['val']['map50']}")
    s, f = r["shipped"], r["trained"]
    print(f"test: {f['defects']} defects (independent renderer) + {f['good_tiles']} good tiles")
    print(f"{'':24s} {'shipped':>9s} {'trained':>9s} {'ratio':>7s}")
    for key, label in (("iou0.5", "IoU 0.5"), ("iou0.3", "IoU 0.3"), ("centre", "centre")):
        for metric in ("recall", "precision"):
            a, b = s[key][metric], f[key][metric]
            ratio = f"{b / a:7.2f}" if a and b is not None else "      -"
            print(f"{metric + ' ' + label:24s} {_v(a)} {_v(b)} {ratio}")
    print(f"{'good tiles flagged':24s} {_v(s['good_tiles_flagged'])} "
          f"{_v(f['good_tiles_flagged'])}")
    for conf in f["sweep"]:
        a, b = s["sweep"][conf], f["sweep"][conf]
        print(f"{'at score ' + str(conf) + ' R / P':24s} {_v(a['recall'])} {_v(b['recall'])}  "
              f"/ {_v(a['precision'])} {_v(b['precision'])}")
    for group in ("per_type", "per_surface"):
        for k in f[group]:
            print(f"{'recall ' + k:24s} {_v(s[group].get(k))} {_v(f[group][k])}")


def _v(x: float | None) -> str:
    return "        -" if x is None else f"{x:9.3f}"


if __name__ == "__main__":
    main()
