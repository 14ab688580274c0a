"""Tiled detection: edgeinfer's TiledPredictor against SAHI on the same detector and frames.

SAHI (``pip install --no-deps sahi==0.12.8 shapely``; it is not an edgeinfer dependency) slices
the frame and merges slice predictions with ``GREEDYNMM`` (intersection over the smaller box
>= 0.5, class-aware), its default. It runs our detector through a small SAHI
``DetectionModel`` wrapper (:class:`EdgeInferSahiModel`) that does exactly what our predictor
does per tile: the artifact's preprocessing, one ``Engine.run``, the artifact's ``yolo``
decoder. So the two differ only in slicing, batching and the merge.

Both use 640 px tiles with 0.2 overlap, no full-frame pass (SAHI's ``perform_standard_pred``
off, our ``full_frame`` off) unless ``--full-frame``. Frames: SYNTHETIC inspection frames
(``edgeinfer/synthetic/defects.py``, evaluation seeds, never seen in training) at 5 MP and
20 MP, with their exact ground-truth boxes. Per method, in its own child process: time per
frame, peak RSS growth during the call, and recall / precision at IoU >= 0.5 (same class;
greedy matching by score), plus how many predictions overlap a ground-truth box without
matching it (fragments of a defect cut by a tile border, partial or wrong-class duplicates the
detector itself gives, or boxes merged too large). Ours runs with its defaults at batch 1 and
4, without the suppression of contained boxes (``-nocontain``: ``contain_threshold=None``) and
without border fusion (``-nms``: border fusion off, NMS and containment only).

    .venv/bin/python benchmarks/tiling_sahi.py [--quick] [--model NAME_OR_PATH] [--frames 4]
        [--full-frame] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiling import ROOT, _trim, resolve_model

SIZES = {"5MP": (1944, 2592), "20MP": (3888, 5184)}
#: first evaluation frame: the inspection evaluation draws frames 9999 * 100000 + k
FIRST_FRAME = 9999 * 100_000
METHODS = ("sahi", "edgeinfer-b1", "edgeinfer-b4", "edgeinfer-b4-nocontain", "edgeinfer-b4-nms")


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def sahi_model_class() -> type:
    """:class:`EdgeInferSahiModel`, defined once SAHI is importable."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    from edgeinfer.vision.decoders import get_decoder
    from edgeinfer.vision.preprocess import to_tensor

    class EdgeInferSahiModel(DetectionModel):
        """SAHI DetectionModel around an edgeinfer Engine (artifact preprocessing + decoder).

        Images are passed through as they come (BGR frames from OpenCV, as our predictor takes
        them); SAHI itself never looks at the pixels' channel order.
        """

        def __init__(self, engine: Any) -> None:
            manifest = engine.artifact.manifest
            labels = engine.artifact.labels() or []
            self.engine = engine
            self.spec = manifest.inputs[0]
            self.pre = manifest.preprocess
            self.params = dict(manifest.decoder_params)
            self.decoder = get_decoder(manifest.decoder)
            self.labels = labels
            super().__init__(
                model=engine,
                device="cpu",
                confidence_threshold=float(self.params.get("conf_threshold", 0.25)),
                category_mapping={str(i): name for i, name in enumerate(labels)},
            )

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model

        def load_model(self) -> None:
            self.model = self.engine

        def perform_inference(self, image: np.ndarray) -> None:
            x, transform = to_tensor(image, self.spec, self.pre)
            outputs = self.engine.run({self.engine.inputs[0].name: x})
            params = {**self.params, "conf_threshold": self.confidence_threshold}
            self._original_predictions = self.decoder(outputs, params, transform, self.labels)

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = None,
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            dets = self._original_predictions
            shift = (shift_amount_list or [[0, 0]])[0]
            full = full_shape_list[0] if full_shape_list else None
            preds = [
                ObjectPrediction(
                    bbox=[float(v) for v in box],
                    category_id=int(cid),
                    category_name=self.labels[int(cid)] if self.labels else str(int(cid)),
                    score=float(score),
                    shift_amount=list(shift),
                    full_shape=list(full) if full is not None else None,
                )
                for box, score, cid in zip(dets.boxes, dets.scores, dets.class_ids, strict=True)
                if box[2] > box[0] and box[3] > box[1]
            ]
            self._object_prediction_list_per_image = [preds]

    return EdgeInferSahiModel


def match(pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_classes: np.ndarray,
          gt_boxes: np.ndarray, gt_classes: np.ndarray, iou: float = 0.5) -> dict[str, int]:
    """Greedy matching by score at IoU >= ``iou``, same class: true positives, predictions,
    ground truths, and unmatched predictions that overlap a ground-truth box (fragments)."""
    from edgeinfer.vision.boxes import box_iou

    ious = box_iou(pred_boxes, gt_boxes) if len(pred_boxes) and len(gt_boxes) else np.zeros(
        (len(pred_boxes), len(gt_boxes)))
    taken = np.zeros(len(gt_boxes), bool)
    tp = fragments = 0
    for i in np.argsort(-pred_scores, kind="stable"):
        cand = (ious[i] >= iou) & ~taken & (gt_classes == pred_classes[i])
        if cand.any():
            j = int(np.argmax(np.where(cand, ious[i], -1)))
            taken[j] = True
            tp += 1
        elif (ious[i] > 0).any():
            fragments += 1
    return {"tp": tp, "predictions": len(pred_boxes), "gt": len(gt_boxes),
            "fragments": fragments}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One method on every frame, in this process."""
    import cv2

    from edgeinfer.loading import load
    from edgeinfer.machine import usable_cpus
    from edgeinfer.pipeline.tiled import TiledPredictor
    from edgeinfer.runtime.backends import BackendOptions
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.synthetic.defects import make_frame

    cv2.setNumThreads(1)
    engine = Engine(load(args.artifact), "ort",
                    BackendOptions(threads=args.threads or usable_cpus()))
    if args.method == "sahi":
        from sahi.predict import get_sliced_prediction

        model = sahi_model_class()(engine)

        def run(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            res = get_sliced_prediction(
                frame, model, slice_height=640, slice_width=640, overlap_height_ratio=0.2,
                overlap_width_ratio=0.2, perform_standard_pred=args.full_frame,
                postprocess_type="GREEDYNMM", postprocess_match_metric="IOS",
                postprocess_match_threshold=0.5, verbose=0,
            )
            preds = res.object_prediction_list
            boxes = np.array([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4)
            scores = np.array([p.score.value for p in preds], np.float32)
            classes = np.array([p.category.id for p in preds], np.int64)
            return boxes, scores, classes
    else:
        name = args.method.removeprefix("edgeinfer-")  # b4, b1, b4-nms, b4-nocontain
        batch = int(name.split("-")[0][1:])
        predictor = TiledPredictor(engine, tile=640, overlap=0.2, batch=batch,
                                   full_frame=args.full_frame, measure_memory=False,
                                   border_merge=not name.endswith("-nms"),
                                   contain_threshold=None if name.endswith("-nocontain") else 0.5,
                                   edge_tol=args.edge_tol)

        def run(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d = predictor.predict(frame).detections
            return d.boxes, d.scores, d.class_ids

    out: dict[str, Any] = {"method": args.method, "sizes": {}}
    warm = False
    for size in args.sizes.split(","):
        height, width = SIZES[size]
        rows = []
        for k in range(args.frames if size == "5MP" else max(1, args.frames // 2)):
            frame, gt_boxes, gt_classes = make_frame(FIRST_FRAME + k, width, height)
            if not warm:
                run(frame)
                warm = True
            _trim()
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            before = _status_kib("VmRSS")
            t0 = time.perf_counter()
            boxes, scores, classes = run(frame)
            ms = (time.perf_counter() - t0) * 1e3
            growth = (_status_kib("VmHWM") - before) / 1024
            rows.append({"ms": ms, "growth_mib": growth,
                         **match(boxes, scores, classes, gt_boxes, gt_classes)})
            del frame
        out["sizes"][size] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 frames at 5 MP, 1 at 20 MP")
    parser.add_argument("--model", help="artifact, model file or zoo name")
    parser.add_argument("--frames", type=int, default=4, help="5 MP frames (half at 20 MP)")
    parser.add_argument("--sizes", default="5MP,20MP")
    parser.add_argument("--full-frame", action="store_true",
                        help="add the full-frame pass (SAHI perform_standard_pred)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="sahi, edgeinfer-bN (batch N), edgeinfer-bN-nms (no border fusion), "
                        "edgeinfer-bN-nocontain (contain_threshold None)")
    parser.add_argument("--edge-tol", type=float, default=2.0, help="TiledPredictor edge_tol")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.quick:
        args.frames = 2
    with tempfile.TemporaryDirectory(prefix="tiling-sahi-") as tmp:
        artifact, described = resolve_model(args.model, Path(tmp))
        results = []
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--child", "--method", method, "--artifact",
                   str(artifact), "--frames", str(args.frames), "--sizes", args.sizes,
                   "--threads", str(args.threads), "--edge-tol", str(args.edge_tol)]
            if args.full_frame:
                cmd.append("--full-frame")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 cwd=ROOT).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    import sahi

    print(f"model: {described}; SAHI {sahi.__version__} GREEDYNMM/IOS 0.5; tile 640, overlap "
          f"0.2, full-frame pass {'on' if args.full_frame else 'off'}\n")
    print(f"{'method':>13} {'frame':>5} {'n':>2} {'ms/frame':>9} {'growth MiB':>10} "
          f"{'recall':>7} {'precision':>9} {'fragments':>9}")
    for r in results:
        for size, rows in r["sizes"].items():
            tp, gt = sum(x["tp"] for x in rows), sum(x["gt"] for x in rows)
            npred = sum(x["predictions"] for x in rows)
            print(f"{r['method']:>13} {size:>5} {len(rows):>2} "
                  f"{statistics.median(x['ms'] for x in rows):>9.0f} "
                  f"{max(x['growth_mib'] for x in rows):>10.1f} {tp / max(gt, 1):>7.1%} "
                  f"{tp / max(npred, 1):>9.1%} {sum(x['fragments'] for x in rows):>9}")
    if args.json:
        args.json.write_text(json.dumps({"model": described, "results": results}, indent=2))


if __name__ == "__main__":
    main()
