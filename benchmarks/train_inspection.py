"""Inspection that learns the user's surface: anomaly model vs shipped detector, REAL surfaces.

Data: photographs of real surfaces (``edgeinfer/synthetic/surfaces.py``: scikit-image's
brick, grass, gravel, moon), none of them seen by any model of the project. Per surface:
``--train`` good 640x640 tiles from the photograph's training region (the anomaly model trains
on 4/5 of them and calibrates its threshold on the other 1/5), ``--good`` held-out good tiles
and ``--defect`` held-out tiles with one SYNTHETIC defect each, drawn by the evaluation-only
renderer ``edgeinfer/synthetic/eval_defects.py`` (scratch, stain, crack, dent, chip in turn),
which no training anywhere in the project uses. The three regions share no pixel.

Rows, side by side on the same tiles:

- ``anomaly model``: ``edgeinfer.train_anomaly`` (EfficientNet-Lite0 stride 8 + 16 patch
  features; ``--scorer``: one Gaussian by default, or a PatchCore memory bank), run through its
  artifact (Engine + decoder), one model per surface;
- ``PatchCore reference (numpy)``: PatchCore's own scoring written out in numpy after the
  reference implementation (3x3 patch unfolding, adaptive average pooling to 1024 dimensions
  per layer and after stacking, approximate greedy coreset on a 128-d projection, 1-NN
  distance, image score = max, map upsampled and blurred with sigma 4), on the same backbone
  layers (fed, like our model, the tile with a mirrored 32 px border that is cropped off each
  layer's output again: without it the zero padding at tile edges decides every image score of
  both). anomalib itself cannot run here: it needs torchvision, whose operators do not load
  beside the CPU torch build this project pins (``operator torchvision::nms does not exist``).
  Its published MVTec AD image AUROC: PatchCore 99.1%, PaDiM 97.5%;
- ``PaDiM (numpy)``: per-position Gaussians (100 random feature dimensions, Mahalanobis
  distance) on the same features: the alternative to PatchCore;
- ``defect-detector (zoo)``: the shipped detector (trained on SYNTHETIC defects of
  ``edgeinfer/synthetic/defects.py``), image score = its highest box score;
- a fine-tuned detector: :func:`finetuned_detector_rows` (the place its row goes).

Metrics: image-level AUROC (good vs defect tiles); defect recall at the threshold that flags
at most 5% of the held-out good tiles (taken on those tiles), and per defect type; recall and
false alarms at the model's own threshold (anomaly: calibrated at training for ``--fpr``;
detector: its conf 0.5); pixel-level AUROC of the maps against the exact defect masks.

``--sweep`` adds the measurements that chose the defaults (backbone layers, bank size,
smoothing), on the same tiles. ``--frames`` runs one surface's artifact through ``tune`` and
``run --tile`` on 5 MP frames (fps), and ``benchmarks/tiling.py`` on it (peak RSS at 1, 5 and
20 MP).

    .venv/bin/python benchmarks/train_inspection.py [--quick] [--sweep] [--frames]
        [--surfaces brick,grass,gravel,moon] [--train 100] [--good 30] [--defect 30]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.synthetic.eval_defects import EVAL_CLASSES, render_defects  # noqa: E402
from edgeinfer.synthetic.surfaces import SURFACES, surface_tiles  # noqa: E402

GOOD_FLAG_RATE = 0.05


# --- data ------------------------------------------------------------------------------------


@dataclass
class SurfaceSet:
    """One surface's tiles: training, held-out good, held-out defect (+ truth)."""

    name: str
    train: list[np.ndarray]
    good: list[np.ndarray]
    defect: list[np.ndarray]
    masks: list[np.ndarray]
    boxes: list[np.ndarray]
    classes: list[int]

    @property
    def test(self) -> list[np.ndarray]:
        return self.good + self.defect

    @property
    def labels(self) -> np.ndarray:
        return np.array([0] * len(self.good) + [1] * len(self.defect))


def make_set(name: str, n_train: int, n_good: int, n_defect: int, tile: int) -> SurfaceSet:
    """The tiles of one surface (deterministic)."""
    train = surface_tiles(name, "train", n_train, seed=0, tile=tile)
    good = surface_tiles(name, "good", n_good, seed=1, tile=tile)
    defect, masks, boxes, classes = [], [], [], []
    for i, t in enumerate(surface_tiles(name, "defect", n_defect, seed=2, tile=tile)):
        rng = np.random.default_rng([7, i, sorted(SURFACES).index(name)])
        img, b, c, m = render_defects(t, rng, 1, classes=(i % len(EVAL_CLASSES),))
        defect.append(img)
        masks.append(m)
        boxes.append(b)
        classes.append(int(c[0]) if len(c) else -1)
    return SurfaceSet(name, train, good, defect, masks, boxes, classes)


# --- metrics ---------------------------------------------------------------------------------


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@dataclass
class Row:
    """One method's figures on one surface (or all)."""

    method: str
    surface: str
    image_auroc: float | None = None
    pixel_auroc: float | None = None
    recall_at_5: float | None = None
    per_type_at_5: dict[str, float] = field(default_factory=dict)
    recall_own: float | None = None
    false_alarms_own: float | None = None
    train_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def score_rows(method: str, s: SurfaceSet, scores: np.ndarray,
               maps: list[np.ndarray] | None, own_flags: np.ndarray | None) -> Row:
    """Image AUROC, recall at <= 5% good flagged (per type), pixel AUROC, own-threshold rates."""
    labels = s.labels
    row = Row(method, s.name, image_auroc=auroc(labels, scores))
    good, bad = scores[labels == 0], scores[labels == 1]
    k = math.floor(GOOD_FLAG_RATE * len(good)) + 1
    thr = np.sort(good)[::-1][k - 1]
    hit = bad > thr
    row.recall_at_5 = float(hit.mean())
    for c, name in enumerate(EVAL_CLASSES):
        sel = np.array(s.classes) == c
        if sel.any():
            row.per_type_at_5[name] = float(hit[sel].mean())
    if own_flags is not None:
        row.recall_own = float(own_flags[labels == 1].mean())
        row.false_alarms_own = float(own_flags[labels == 0].mean())
    if maps is not None:
        row.pixel_auroc = pixel_auroc(maps, [np.zeros_like(s.masks[0])] * len(s.good) + s.masks)
    return row


def pixel_auroc(maps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """AUROC of map values (upsampled to the mask) against mask pixels, every other pixel."""
    vals, truth = [], []
    for amap, mask in zip(maps, masks, strict=True):
        h, w = mask.shape
        up = cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        vals.append(up[::2, ::2].ravel())
        truth.append(mask[::2, ::2].ravel())
    return auroc(np.concatenate(truth), np.concatenate(vals))


# --- the anomaly model (the product path) ----------------------------------------------------


def write_tiles(tiles: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tiles):
        cv2.imwrite(str(folder / f"{i:04d}.png"), t)
    return folder


def train_model(s: SurfaceSet, work: Path, config: Any) -> tuple[Any, float]:
    from edgeinfer.training.anomaly import train_anomaly

    good = write_tiles(s.train, work / f"{s.name}-good")
    t0 = time.perf_counter()
    art = train_anomaly(good, work / f"{s.name}-anomaly", config, force=True)
    return art, time.perf_counter() - t0


def anomaly_row(s: SurfaceSet, work: Path, config: Any, method: str = "anomaly model") -> Row:
    """Train on the surface's training tiles, score its test tiles through the artifact."""
    from edgeinfer.pipeline.predict import Predictor
    from edgeinfer.runtime.engine import Engine

    art, seconds = train_model(s, work, config)
    with Engine(art) as engine:
        predictor = Predictor(engine)
        results = [predictor.predict(t).result for t in s.test]
    scores = np.array([r.score for r in results])
    flags = np.array([r.anomalous for r in results])
    row = score_rows(method, s, scores, [r.map for r in results], flags)
    row.train_s = seconds
    rep = art.manifest.reports["train_anomaly"]
    row.extra = {"bank_size": rep["bank_size"], "threshold": rep["threshold"],
                 "artifact": str(art.path), "model_mb": art.manifest.model.bytes / 1e6,
                 "seconds": rep["seconds"]}
    return row


# --- the shipped detector -------------------------------------------------------------------


def detector_row(s: SurfaceSet) -> Row:
    from edgeinfer.loading import load
    from edgeinfer.pipeline.predict import Predictor
    from edgeinfer.runtime.engine import Engine

    with Engine(load("defect-detector")) as engine:
        predictor = Predictor(engine)
        dets = [predictor.predict(t).result for t in s.test]
    scores = np.array([float(d.scores.max()) if len(d) else 0.0 for d in dets])
    flags = np.array([len(d) > 0 for d in dets])
    row = score_rows("defect-detector (zoo)", s, scores, None, flags)
    # located: a box of the detector touches the defect's box (generous: any class, any IoU)
    found = []
    for d, b in zip(dets[len(s.good):], s.boxes, strict=True):
        if not len(b) or not len(d):
            found.append(False)
            continue
        x1, y1, x2, y2 = b[0]
        db = d.boxes
        found.append(bool(((db[:, 0] < x2) & (db[:, 2] > x1) & (db[:, 1] < y2)
                           & (db[:, 3] > y1)).any()))
    row.extra = {"recall_located_own": float(np.mean(found))}
    return row


def finetuned_detector_rows(sets: list[SurfaceSet], work: Path) -> list[Row]:
    """The detector fine-tuned on each surface's good training tiles with synthesized defects
    (``edgeinfer train detector --synth``), scored here like the shipped one. Not built yet:
    this is the place its rows go."""
    del sets, work
    return []


# --- numpy references: PatchCore as published, PaDiM ----------------------------------------


class Taps:
    """Raw backbone tap outputs of tiles (torch, no grad), for the numpy references."""

    def __init__(self, layers: tuple[str, ...]) -> None:
        import torch

        from edgeinfer.training.features import build_module, get_backbone

        self.backbone = get_backbone("efficientnet-lite0")
        self.module = build_module(self.backbone, layers, raw=True)
        self.torch = torch

    def __call__(self, tiles: list[np.ndarray], batch: int = 4) -> list[list[np.ndarray]]:
        """Per tile, each tap's [C, h, w] output."""
        from edgeinfer.artifact import InputSpec
        from edgeinfer.training.features import BORDER
        from edgeinfer.vision.preprocess import to_tensor

        b = BORDER  # the product's mirrored border, cropped off each tap again
        h, w = tiles[0].shape[:2]
        spec = InputSpec(name="x", shape=(1, 3, h + 2 * b, w + 2 * b))
        out = []
        with self.torch.no_grad():
            for i in range(0, len(tiles), batch):
                x = np.concatenate([
                    to_tensor(cv2.copyMakeBorder(t, b, b, b, b, cv2.BORDER_REFLECT_101), spec,
                              self.backbone.preprocess)[0] for t in tiles[i: i + batch]])
                taps = self.module(self.torch.from_numpy(x))
                for j in range(len(x)):
                    cut = [b * t.shape[-1] // (w + 2 * b) for t in taps]
                    out.append([t[j, :, c:-c, c:-c].numpy() for t, c in zip(taps, cut,
                                                                          strict=True)])
        return out


def _adaptive_avg_1d(x: np.ndarray, out: int) -> np.ndarray:
    """torch.nn.functional.adaptive_avg_pool1d over the last axis."""
    n = x.shape[-1]
    starts = (np.arange(out) * n) // out
    ends = -((-(np.arange(1, out + 1) * n)) // out)
    csum = np.concatenate([np.zeros((*x.shape[:-1], 1), x.dtype), np.cumsum(x, -1)], -1)
    return (csum[..., ends] - csum[..., starts]) / (ends - starts)


def patchcore_embed(taps: list[np.ndarray], dim: int = 1024, pre_dim: int = 1024
                    ) -> tuple[np.ndarray, tuple]:
    """PatchCore's embedding of one image's taps: [h*w, dim] at the first tap's grid
    (``pre_dim``: PatchCore's pretrain_embed_dimension, ``dim``: target_embed_dimension)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    h, w = taps[0].shape[-2:]
    per_layer = []
    for t in taps:
        x = torch.from_numpy(t[None])
        patches = F.unfold(x, kernel_size=3, padding=1)  # [1, C*9, h'*w']
        c = t.shape[0]
        th, tw = t.shape[-2:]
        patches = patches.reshape(1, c, 9, th, tw)
        if (th, tw) != (h, w):  # as PatchCore: bilinear on the unfolded grid
            flat = patches.reshape(1, c * 9, th, tw)
            flat = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)
            patches = flat.reshape(1, c, 9, h, w)
        feats = patches.permute(0, 3, 4, 1, 2).reshape(h * w, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(feats[:, None, :], pre_dim)[:, 0].numpy())
    stacked = np.stack(per_layer, 1).reshape(h * w, 1, -1)
    emb = _adaptive_avg_1d(stacked, dim)[:, 0]
    return emb.astype(np.float32), (h, w)


def nn_distance(queries: np.ndarray, bank: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Exact 1-NN Euclidean distance of each query row to the bank."""
    bsq = (bank * bank).sum(1)
    out = np.empty(len(queries), np.float32)
    for i in range(0, len(queries), chunk):
        q = queries[i: i + chunk]
        d2 = (q * q).sum(1)[:, None] - 2 * q @ bank.T + bsq[None, :]
        out[i: i + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return out


def patchcore_reference_row(s: SurfaceSet, train_taps: list, test_taps: list,
                            bank_size: int, max_patches: int) -> Row:
    from edgeinfer.training.coreset import greedy_coreset

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    per = math.ceil(max_patches / len(s.train))
    parts = []
    for tt in train_taps:
        emb, _ = patchcore_embed(tt)
        parts.append(emb[rng.choice(len(emb), min(per, len(emb)), replace=False)])
    pool = np.concatenate(parts)
    bank = pool[greedy_coreset(pool, bank_size, project_dim=128)]
    train_s = time.perf_counter() - t0
    scores, maps = [], []
    for tt, tile in zip(test_taps, s.test, strict=True):
        emb, (h, w) = patchcore_embed(tt)
        amap = nn_distance(emb, bank).reshape(h, w)
        full = cv2.resize(amap, tile.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        full = cv2.GaussianBlur(full, (0, 0), 4)
        scores.append(float(amap.max()))
        maps.append(full[::8, ::8])
    row = score_rows("PatchCore reference (numpy)", s, np.array(scores), maps, None)
    row.train_s = train_s
    row.extra = {"bank_size": len(bank), "dim": bank.shape[1]}
    return row


def pooled_features(taps: list[np.ndarray]) -> np.ndarray:
    """Our features (3x3 average, bilinear to the first tap's grid, concatenated), [D, h, w]."""
    out = []
    h, w = taps[0].shape[-2:]
    for t in taps:
        p = np.stack([cv2.blur(c, (3, 3), borderType=cv2.BORDER_REFLECT) for c in t])
        if p.shape[-2:] != (h, w):
            p = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in p])
        out.append(p)
    return np.concatenate(out).astype(np.float32)


def padim_row(s: SurfaceSet, train_taps: list, test_taps: list, dims: int = 100) -> Row:
    """PaDiM: a Gaussian per map position over the training tiles, Mahalanobis distance."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    train = np.stack([pooled_features(t) for t in train_taps])  # [N, D, h, w]
    n, d, h, w = train.shape
    pick = rng.choice(d, min(dims, d), replace=False)
    x = train[:, pick].reshape(n, len(pick), h * w).transpose(2, 0, 1)  # [P, N, d]
    mean = x.mean(1)
    xc = x - mean[:, None]
    cov = np.einsum("pni,pnj->pij", xc, xc) / max(1, n - 1) + 0.01 * np.eye(len(pick))
    inv = np.linalg.inv(cov).astype(np.float32)
    train_s = time.perf_counter() - t0
    scores, maps = [], []
    for tt in test_taps:
        f = pooled_features(tt)[pick].reshape(len(pick), h * w).T - mean
        dist = np.sqrt(np.maximum(np.einsum("pi,pij,pj->p", f, inv, f), 0)).reshape(h, w)
        scores.append(float(dist.max()))
        maps.append(dist)
    row = score_rows("PaDiM (numpy)", s, np.array(scores), maps, None)
    row.train_s = train_s
    return row


# --- the sweep that chose the defaults --------------------------------------------------------


def sweep_rows(s: SurfaceSet, all_taps: dict[str, list], bank_sizes: tuple[int, ...],
               max_patches: int) -> list[Row]:
    """Our scoring in numpy for each layer choice (bank 4096) and bank size (s8+s16)."""
    from edgeinfer.training.coreset import greedy_coreset

    names = ("s4", "s8", "s16a", "s16", "s32")
    choices = [("s8", "s16"), ("s4", "s8"), ("s8",), ("s16",), ("s8", "s16", "s32")]
    runs = [(c, 4096) for c in choices] + [(("s8", "s16"), b) for b in bank_sizes if b != 4096]
    rows = []
    for layers, bank_size in runs:
        idx = [names.index(x) for x in layers]
        rng = np.random.default_rng(0)
        parts = []
        per = math.ceil(max_patches / len(s.train))
        for tt in all_taps["train"]:
            f = pooled_features([tt[i] for i in idx])
            flat = f.reshape(f.shape[0], -1).T
            parts.append(flat[rng.choice(len(flat), min(per, len(flat)), replace=False)])
        pool = np.concatenate(parts)
        t0 = time.perf_counter()
        bank = pool[greedy_coreset(pool, bank_size, project_dim=128)]
        coreset_s = time.perf_counter() - t0
        scores, maps = [], []
        for tt in all_taps["test"]:
            f = pooled_features([tt[i] for i in idx])
            amap = nn_distance(f.reshape(f.shape[0], -1).T, bank).reshape(f.shape[1:])
            scores.append(float(amap.max()))
            maps.append(amap)
        row = score_rows(f"sweep {'+'.join(layers)} bank {bank_size}", s, np.array(scores),
                         maps, None)
        row.extra = {"coreset_s": coreset_s, "dim": bank.shape[1]}
        rows.append(row)
    return rows


# --- frames: tune, run --tile, memory ---------------------------------------------------------


def frames_part(art_path: str, s: SurfaceSet, work: Path, quick: bool) -> dict[str, Any]:
    """tune on the artifact, then tiled runs on 5 MP good frames of the surface (held-out
    regions) with the tuned and the untuned model, both models' accuracy on the test tiles;
    benchmarks/tiling.py for memory at 1 to 20 MP."""
    from edgeinfer.loading import load
    from edgeinfer.pipeline.tiled import TiledPredictor
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.synthetic.surfaces import surface_frame
    from edgeinfer.tuning import TuneConfig, tune

    calib = write_tiles(s.good[:16], work / "calib")
    t0 = time.perf_counter()
    tuned = tune(art_path, work / "tuned", TuneConfig(tflite=False, final_rounds=3,
                                                       screen_rounds=2), calib=calib, force=True)
    tune_s = time.perf_counter() - t0
    rep = tuned.manifest.reports["tune"]
    out: dict[str, Any] = {"tune_s": tune_s, "tune_winner": rep["winner"],
                           "tune_speedup": rep["speedup_vs_baseline"],
                           "tune_candidates": [(c["label"], c["status"], c.get("p50_ms"))
                                               for c in rep["candidates"]]}
    frames = [surface_frame(s.name, seed=k) for k in range(2 if quick else 4)]
    for label, art in (("trained", load(art_path)), ("tuned", tuned)):
        with Engine(art) as engine:
            pred = TiledPredictor(engine, tile=640, overlap=0.2, batch=4)
            pred.predict(frames[0])
            times, flagged = [], 0
            for f in frames:
                t0 = time.perf_counter()
                r = pred.predict(f)
                times.append(time.perf_counter() - t0)
                flagged += int(r.result.anomalous)
            name = engine.name
        out[label] = {"s_per_frame_p50": float(np.median(times)), "fps": 1 / np.median(times),
                      "tiles": r.tiles, "engine": name, "good_frames": len(frames),
                      "flagged_good_frames": flagged,
                      "bank_size": art.manifest.reports.get("train_anomaly", {}).get(
                          "bank_size")}
    if len(s.defect) > 1:  # the tuned model's accuracy at the threshold calibrated in FP32
        from edgeinfer.pipeline.predict import Predictor

        for label, art in (("trained", load(art_path)), ("tuned", tuned)):
            with Engine(art) as engine:
                predictor = Predictor(engine)
                res = [predictor.predict(t).result for t in s.test]
            scores = np.array([r.score for r in res])
            out[label].update(image_auroc=auroc(s.labels, scores),
                              flagged_good_tiles=float(np.mean([r.anomalous for r in
                                                                res[:len(s.good)]])),
                              recall_own=float(np.mean([r.anomalous for r in
                                                        res[len(s.good):]])))
    mem = work / "tiling.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "tiling.py"), "--model", art_path,
           "--json", str(mem)] + (["--quick"] if quick else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    out["tiling"] = json.loads(mem.read_text())
    return out


# --- main -------------------------------------------------------------------------------------


def pooled(rows: list[Row], method: str) -> dict[str, Any]:
    mine = [r for r in rows if r.method == method]
    def mean(key: str) -> float | None:
        vals = [getattr(r, key) for r in mine if getattr(r, key) is not None]
        return float(np.mean(vals)) if vals else None
    return {"method": method, **{k: mean(k) for k in ("image_auroc", "pixel_auroc",
                                                       "recall_at_5", "recall_own",
                                                       "false_alarms_own", "train_s")},
            "per_type_at_5": {c: float(np.mean([r.per_type_at_5[c] for r in mine
                                                if c in r.per_type_at_5]))
                              for c in EVAL_CLASSES if any(c in r.per_type_at_5 for r in mine)}}


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def print_table(rows: list[Row]) -> None:
    cols = ("method", "surface", "img AUROC", "px AUROC", "recall@5%good", "recall own",
            "false alarms own", "train s")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join([r.method, r.surface, _fmt(r.image_auroc, False),
                          _fmt(r.pixel_auroc, False), _fmt(r.recall_at_5), _fmt(r.recall_own),
                          _fmt(r.false_alarms_own),
                          "-" if r.train_s is None else f"{r.train_s:.1f}"]))


def main() -> None:
    from edgeinfer.training.anomaly import AnomalyConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tiles (a smoke run)")
    parser.add_argument("--surfaces", default=",".join(sorted(SURFACES)))
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--good", type=int, default=30)
    parser.add_argument("--defect", type=int, default=30)
    parser.add_argument("--bank", type=int, default=AnomalyConfig().bank_size)
    parser.add_argument("--scorer", default=AnomalyConfig().scorer,
                        help="the anomaly model's scorer: gaussian, patchcore or whitened")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--sweep-surfaces", default="gravel",
                        help="with --sweep: the surfaces the sweep runs on")
    parser.add_argument("--frames", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--frames-only", metavar="ARTIFACT",
                        help="only the --frames part, on this anomaly artifact of the first "
                             "--surfaces surface")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.frames_only:
        name = args.surfaces.split(",")[0]
        s = make_set(name, 1, 16, 1, 640)
        with tempfile.TemporaryDirectory(prefix="train-inspection-") as tmp:
            doc = frames_part(args.frames_only, s, Path(tmp), args.quick)
        print(json.dumps(doc, indent=1, default=str))
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1, default=str))
        return
    if args.quick:
        args.train, args.good, args.defect = 20, 10, 10
    config = AnomalyConfig(bank_size=args.bank, scorer=args.scorer)
    rows: list[Row] = []
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train-inspection-") as tmp:
        work = Path(tmp)
        sets = [make_set(n, args.train, args.good, args.defect, 640)
                for n in args.surfaces.split(",")]
        names = ("s4", "s8", "s16a", "s16", "s32") if args.sweep else ("s8", "s16")
        taps = None if args.no_reference and not args.sweep else Taps(names)
        for s in sets:
            rows.append(anomaly_row(s, work, config, f"anomaly model ({config.scorer})"))
            print(f"{s.name}: anomaly model trained in {rows[-1].train_s:.1f} s", flush=True)
            rows.append(detector_row(s))
            if taps is None:
                continue
            cache = {"train": taps(s.train), "test": taps(s.test)}
            use = [names.index("s8"), names.index("s16")]
            train_taps, test_taps = ([[t[i] for i in use] for t in cache[k]]
                                     for k in ("train", "test"))
            if not args.no_reference:
                rows.append(patchcore_reference_row(s, train_taps, test_taps,
                                                    config.bank_size, config.max_patches))
                rows.append(padim_row(s, train_taps, test_taps))
            if args.sweep and s.name in args.sweep_surfaces.split(","):
                rows += sweep_rows(s, cache, (2048, 8192), config.max_patches)
            print_table(rows)
        rows += finetuned_detector_rows(sets, work)
        if args.frames:
            first = next(r for r in rows if r.method.startswith("anomaly model"))
            extra["frames"] = frames_part(first.extra["artifact"], sets[0], work, args.quick)
    print_table(rows)
    methods = list(dict.fromkeys(r.method for r in rows))
    summary = [pooled(rows, m) for m in methods]
    print("\nall surfaces (mean):")
    for p in summary:
        types = ", ".join(f"{k} {_fmt(v)}" for k, v in p["per_type_at_5"].items())
        print(f"  {p['method']}: image AUROC {_fmt(p['image_auroc'], False)}, recall at <=5% "
              f"good flagged {_fmt(p['recall_at_5'])} ({types}), "
              f"pixel AUROC {_fmt(p['pixel_auroc'], False)}")
    if "frames" in extra:
        print(json.dumps({k: v for k, v in extra["frames"].items() if k != "tiling"}, indent=1))
    doc = {"rows": [r.__dict__ for r in rows], "summary": summary, "extra": extra,
           "args": vars(args) | {"json": str(args.json)},
           "seconds": time.perf_counter() - started}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))


if __name__ == "__main__":
    main()
