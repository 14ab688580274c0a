"""``edgeinfer train anomaly``: an anomaly model from images of good parts only (PatchCore).

1. Read the good images (unreadable files skipped and counted) and cut them into tiles of the
   model's input size at their own resolution (``tile_grid`` without overlap; an image smaller
   than a tile is scaled up to cover one).
2. Patch features of every tile from a pretrained backbone's intermediate stages
   (:mod:`edgeinfer.training.features`: EfficientNet-Lite0, strides 8 and 16, each averaged
   over 3 x 3 neighbours), run by ONNX Runtime.
3. A model of good patches from at most ``max_patches`` of those features (a random subset):
   one Gaussian (mean and whitening matrix, ``scorer='gaussian'``), or a memory bank reduced
   to ``bank_size`` by greedy coreset subsampling (:mod:`edgeinfer.training.coreset`,
   ``scorer='patchcore'``).
4. ONE ONNX graph, image in, anomaly map out: the feature graph followed by the distance of
   each patch to its nearest bank feature (:func:`append_nn_head`: MatMul against the bank
   stored as an initializer, ReduceMin, in chunks of the bank so the ``patches x bank``
   matrix never exists whole), then a light Gaussian smoothing of the map.
5. The threshold: image scores (map maxima) of held-out good images (``--val``, else every
   fifth good image, never trained on) and the rule of :func:`calibrate_threshold` for the
   false-alarm rate asked for.
6. An ordinary artifact (decoder ``anomaly``) that every verb runs like any model.

The scorer is chosen by measurement on photographs of real surfaces (docs/benchmarks/
training.md): by default ``gaussian``, the Mahalanobis distance of each patch to ONE Gaussian
of all good patches (PaDiM's model without its per-position Gaussians, which assume aligned
parts; a texture is not aligned), in the same graph as a bank of one row after a whitening
MatMul. It ranked above the PatchCore memory bank on brick, gravel and grass at a third of
the run time; ``patchcore`` (greedy coreset bank, step 3) and ``whitened`` (PatchCore in the
Gaussian's whitened space) remain options.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.errors import EdgeInferError
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.training.coreset import greedy_coreset
from edgeinfer.training.features import (
    DEFAULT_LAYERS,
    check_layers,
    export_features,
    feature_stride,
    get_backbone,
)
from edgeinfer.training.images import DatasetError, read_folder
from edgeinfer.vision.preprocess import to_tensor
from edgeinfer.vision.tiling import tile_grid

log = logging.getLogger(__name__)

__all__ = ["AnomalyConfig", "append_nn_head", "calibrate_threshold", "train_anomaly"]

#: fewest usable good images (some are held out for the threshold when --val is not given)
MIN_IMAGES = 10
#: cells along a tile's edges sampled EDGE_WEIGHT times as often into the coreset's pool
EDGE_RING, EDGE_WEIGHT = 2, 8.0
#: ridge added to the covariance of the whitening, as a fraction of its mean eigenvalue
SHRINK = 0.01
#: scorers: patchcore (nearest bank row), gaussian (Mahalanobis distance to one Gaussian of
#: all patches), whitened (patchcore in the Gaussian's whitened space)
SCORERS = ("patchcore", "gaussian", "whitened")
#: bank columns per MatMul of the nearest-neighbour head
BANK_CHUNK = 512
INPUT, FEATURES, OUTPUT = "image", "features", "anomaly_map"


@dataclass(frozen=True)
class AnomalyConfig:
    """How ``train_anomaly`` builds the model (defaults chosen by measurement)."""

    tile: int = 640  #: tile side in image pixels (images are cut into tiles of this size)
    scale: float = 1.0  #: the model sees each tile resized by this (0.5: a 320 px input)
    fpr: float = 0.01  #: false-alarm rate the threshold is calibrated for
    backbone: str = "efficientnet-lite0"
    layers: tuple[str, ...] = DEFAULT_LAYERS
    embed: str = "mean"  #: patch embedding: mean (3x3 average) or patchcore (see features.py)
    dim: int = 0  #: feature dimension of the patchcore embedding
    scorer: str = "gaussian"  #: see SCORERS (gaussian: chosen by measurement)
    bank_size: int = 4096  #: memory bank rows after the coreset (bounds run time and size)
    max_patches: int = 200_000  #: patch features the coreset chooses from
    project_dim: int = 128  #: random projection of the coreset's distances
    smooth: float = 0.5  #: Gaussian sigma of the map smoothing, in map cells (0: none)
    min_area: float = 0.0  #: smallest region kept, image pixels
    val_every: int = 5  #: without --val: every n-th good image is held out
    batch: int = 4
    threads: int = 0  #: ONNX Runtime threads (0: its default, all cores)
    seed: int = 0

    @property
    def input_size(self) -> int:
        """The model input's side: ``tile * scale`` rounded to a multiple of 32."""
        return int(round(self.tile * self.scale / 32) * 32)

    def check(self) -> None:
        """One-line errors for values that cannot work."""
        if self.tile < 64 or self.tile % 32:
            raise EdgeInferError(f"bad --tile {self.tile}: give a multiple of 32, at least 64")
        if not 0 < self.scale <= 1 or self.input_size < 64:
            raise EdgeInferError(f"bad --scale {self.scale}: give a factor in (0, 1] that "
                                 f"leaves the {self.tile} px tile at least 64 px")
        if not 0 < self.fpr < 1:
            raise EdgeInferError(f"bad --fpr {self.fpr}: give a false-alarm rate in (0, 1), "
                                 "e.g. 0.01")
        if self.scorer not in SCORERS:
            raise EdgeInferError(f"unknown scorer '{self.scorer}': choose one of "
                                 f"{list(SCORERS)}")
        if self.bank_size < 1:
            raise EdgeInferError(f"bad --bank-size {self.bank_size}: give at least 1")


@dataclass
class _Data:
    """Training and held-out tiles and what reading the folders found."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)


def image_tiles(image: np.ndarray, tile: int) -> list[np.ndarray]:
    """``image`` cut into ``tile`` x ``tile`` crops at its own resolution (no overlap, the
    last row and column aligned to the edges); scaled up first if a side is shorter."""
    h, w = image.shape[:2]
    if min(h, w) < tile:
        r = tile / min(h, w)
        image = cv2.resize(image, (max(tile, round(w * r)), max(tile, round(h * r))),
                           interpolation=cv2.INTER_CUBIC)
        h, w = image.shape[:2]
    return [t.crop(image) for t in tile_grid(h, w, tile, 0.0)]


def _read(good: Path, val: Path | None, config: AnomalyConfig,
          progress: ProgressFn | None) -> _Data:
    folder = read_folder(good, minimum=MIN_IMAGES, what="--good", progress=progress)
    report: dict[str, Any] = {"good_images": len(folder), "skipped": folder.skipped}
    if val is not None:
        held = read_folder(val, minimum=1, what="--val", progress=progress)
        if held.channels != folder.channels:
            raise DatasetError(
                f"--val {val} has {held.channels}-channel images, --good {good} has "
                f"{folder.channels}: give both folders in one format"
            )
        train_images, val_images = folder.images, held.images
        report.update(val_images=len(held), val_skipped=held.skipped, val_from=str(val))
    else:
        every = config.val_every
        val_images = folder.images[every - 1::every]
        train_images = [im for i, im in enumerate(folder.images) if (i + 1) % every]
        report.update(val_images=len(val_images),
                      val_from=f"every {every}th image of --good (held out of training)")
    report["train_images"] = len(train_images)
    train = [t for im in train_images for t in image_tiles(im, config.tile)]
    held_tiles = [t for im in val_images for t in image_tiles(im, config.tile)]
    report.update(train_tiles=len(train), val_tiles=len(held_tiles))
    return _Data(train, held_tiles, report)


def _batches(session: Any, tiles: list[np.ndarray], spec: InputSpec, pre: Any, batch: int,
             track: Tracker, task: str) -> Any:
    """Yield the model's first output for ``tiles``, ``batch`` at a time."""
    name = session.get_inputs()[0].name
    for start in range(0, len(tiles), batch):
        group = tiles[start: start + batch]
        x = np.concatenate([to_tensor(t, spec, pre)[0] for t in group])
        yield session.run(None, {name: x})[0]
        track.advance(task, steps=len(group))


def _patches(session: Any, tiles: list[np.ndarray], spec: InputSpec, pre: Any,
             config: AnomalyConfig, track: Tracker) -> tuple[np.ndarray, int]:
    """A uniform random subset (at most ``max_patches``) of the tiles' patch features, and
    how many patches there were."""
    rng = np.random.default_rng(config.seed)
    parts, total = [], 0
    track.start("features", total=len(tiles))
    per_tile = None
    weights = None
    for out in _batches(session, tiles, spec, pre, config.batch, track, "features"):
        b, d, h, w = out.shape
        flat = out.transpose(0, 2, 3, 1).reshape(b, h * w, d)
        if per_tile is None:
            per_tile = max(1, min(h * w, math.ceil(config.max_patches / len(tiles))))
            weights = _edge_weights(h, w)
        for f in flat:
            total += len(f)
            pick = f if per_tile >= len(f) else f[rng.choice(len(f), per_tile, replace=False,
                                                              p=weights)]
            parts.append(np.ascontiguousarray(pick, np.float32))
    track.finish("features")
    return np.concatenate(parts), total


def _edge_weights(h: int, w: int, ring: int = EDGE_RING, weight: float = EDGE_WEIGHT
                  ) -> np.ndarray:
    """Sampling probabilities of a tile's cells: the ``ring`` cells along its edges ``weight``
    times as likely as the others (edge cells see their surroundings only on one side: rarer
    contexts, which a uniform sample covers too thinly)."""
    yy, xx = np.mgrid[0:h, 0:w]
    edge = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx)) < ring
    p = np.where(edge, weight, 1.0).ravel()
    return p / p.sum()


def _initializer(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(2 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k2 = np.outer(k, k)
    return (k2 / k2.sum()).astype(np.float32)[None, None]


def whitening(patches: np.ndarray, shrink: float = SHRINK) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, W)`` with ``W = (cov + shrink * mean eigenvalue * I)^(-1/2)`` of ``patches``
    ([N, D]): ``|(f - mean) W|`` is the Mahalanobis distance under one Gaussian."""
    x = np.asarray(patches, np.float64)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0) + shrink * max(float(vals.mean()), 1e-12)
    w = (vecs / np.sqrt(vals)) @ vecs.T
    return mean.astype(np.float32), w.astype(np.float32)


def append_nn_head(model: onnx.ModelProto, bank: np.ndarray, smooth: float = 0.0,
                   chunk: int = BANK_CHUNK,
                   whiten: tuple[np.ndarray, np.ndarray] | None = None) -> onnx.ModelProto:
    """``model`` (output ``features`` ``[B, D, h, w]``) extended to output ``anomaly_map``
    ``[B, 1, h, w]``: each patch's Euclidean distance to its nearest row of ``bank`` ([M, D]),
    smoothed by a Gaussian of sigma ``smooth`` cells (reflected borders; 0: none).
    ``whiten=(mean, W)``: patches become ``(f - mean) W`` first (the bank is in that space;
    a bank of one zero row makes the map the Mahalanobis distance under one Gaussian).

    ``|f - m|^2 = |f|^2 + min_m(|m|^2 - 2 f.m)``: the bank enters as ``-2 bank^T`` and
    ``|m|^2`` initializers, one MatMul + Add + ReduceMin per ``chunk`` rows of the bank."""
    g = model.graph
    if [o.name for o in g.output] != [FEATURES]:
        raise EdgeInferError(f"append_nn_head: the model must output only '{FEATURES}'")
    bank = np.asarray(bank, np.float32)
    m, d = bank.shape
    nodes = [
        helper.make_node("Transpose", [FEATURES], ["nn_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nn_nhwc", "nn_flat_shape"],
                         ["nn_raw" if whiten is not None else "nn_flat"]),
    ]
    inits = [_initializer("nn_flat_shape", np.array([-1, d], np.int64))]
    if whiten is not None:
        inits += [_initializer("whiten_mean", whiten[0]), _initializer("whiten_w", whiten[1])]
        nodes += [helper.make_node("Sub", ["nn_raw", "whiten_mean"], ["nn_centred"]),
                  helper.make_node("MatMul", ["nn_centred", "whiten_w"], ["nn_flat"])]
    nodes.append(helper.make_node("ReduceSumSquare", ["nn_flat"], ["nn_fsq"], axes=[1],
                                  keepdims=1))
    mins = []
    for k, start in enumerate(range(0, m, chunk)):
        part = bank[start: start + chunk]
        inits += [_initializer(f"memory_bank_{k}", -2.0 * part.T),
                  # 1-D: a [1, M] bias trips ORT's quantizer once MatMul + Add become Gemm
                  _initializer(f"memory_bank_sq_{k}", (part * part).sum(1))]
        nodes += [
            helper.make_node("MatMul", ["nn_flat", f"memory_bank_{k}"], [f"nn_cross_{k}"]),
            helper.make_node("Add", [f"nn_cross_{k}", f"memory_bank_sq_{k}"], [f"nn_part_{k}"]),
            helper.make_node("ReduceMin", [f"nn_part_{k}"], [f"nn_min_{k}"], axes=[1],
                             keepdims=1),
        ]
        mins.append(f"nn_min_{k}")
    nodes += [
        helper.make_node("Min", mins, ["nn_min"]) if len(mins) > 1
        else helper.make_node("Identity", mins, ["nn_min"]),
        helper.make_node("Add", ["nn_min", "nn_fsq"], ["nn_d2"]),
        helper.make_node("Max", ["nn_d2", "nn_zero"], ["nn_d2_pos"]),
        helper.make_node("Sqrt", ["nn_d2_pos"], ["nn_dist"]),
        helper.make_node("Shape", ["nn_nhwc"], ["nn_shape4"]),
        helper.make_node("Slice", ["nn_shape4", "nn_s0", "nn_s3"], ["nn_bhw"]),
        helper.make_node("Concat", ["nn_bhw", "nn_one"], ["nn_map_shape"], axis=0),
        helper.make_node("Reshape", ["nn_dist", "nn_map_shape"], ["nn_map_nhwc"]),
        helper.make_node("Transpose", ["nn_map_nhwc"], ["nn_map" if smooth else OUTPUT],
                         perm=[0, 3, 1, 2]),
    ]
    inits += [_initializer("nn_zero", np.zeros(1, np.float32)),
              _initializer("nn_s0", np.array([0], np.int64)),
              _initializer("nn_s3", np.array([3], np.int64)),
              _initializer("nn_one", np.array([1], np.int64))]
    if smooth:
        kernel = _gauss_kernel(smooth)
        r = kernel.shape[-1] // 2
        inits += [_initializer("nn_smooth_k", kernel),
                  _initializer("nn_smooth_pads", np.array([0, 0, r, r, 0, 0, r, r], np.int64))]
        nodes += [helper.make_node("Pad", ["nn_map", "nn_smooth_pads"], ["nn_map_padded"],
                                   mode="reflect"),
                  helper.make_node("Conv", ["nn_map_padded", "nn_smooth_k"], [OUTPUT])]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    feat_out = g.output[0]
    dims = [x.dim_param or x.dim_value for x in feat_out.type.tensor_type.shape.dim]
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                                  [dims[0], 1, dims[2], dims[3]]))
    onnx.checker.check_model(model)
    return model


def calibrate_threshold(scores: np.ndarray, fpr: float) -> float:
    """The threshold that flags at most ``floor(fpr * n)`` of ``n`` held-out good scores:
    the ``k``-th highest score, ``k = floor(fpr * n) + 1`` (an image is flagged when its
    score is strictly above). With few held-out images the rate reachable is coarse: at
    n = 20 and fpr = 0.01 this is the highest good score."""
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    if not len(s):
        raise EdgeInferError("no held-out good tiles to calibrate the threshold on: give --val")
    k = min(len(s), math.floor(fpr * len(s)) + 1)
    return float(s[k - 1])


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise EdgeInferError(f"{out} exists and is not empty: choose another -o or use "
                                 "--force")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()


def train_anomaly(
    good: str | Path,
    out: str | Path,
    config: AnomalyConfig | None = None,
    *,
    val: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Train an anomaly model on the good images in folder ``good`` and write its artifact to
    ``out`` (see the module docstring); ``val``: a folder of other good images to calibrate
    the threshold on. The report is in ``manifest.reports['train_anomaly']``."""
    from edgeinfer.ort_session import open_session

    config = config or AnomalyConfig()
    config.check()
    started, cpu_started = time.perf_counter(), time.process_time()
    out = Path(out)
    _prepare_out(out, force)
    backbone = get_backbone(config.backbone)
    layers = check_layers(backbone, config.layers)
    data = _read(Path(good), Path(val) if val is not None else None, config, progress)
    size = config.input_size
    spec = InputSpec(name=INPUT, shape=(1, 3, size, size))
    pre = backbone.preprocess
    track = Tracker(progress)
    with tempfile.TemporaryDirectory(prefix="edgeinfer-anomaly-") as tmp:
        feat_path = export_features(backbone, layers, size, Path(tmp) / "features.onnx",
                                    embed=config.embed, dim=config.dim)
        session = open_session(feat_path, threads=config.threads)
        patches, total = _patches(session, data.train, spec, pre, config, track)
        t_features = time.perf_counter() - started
        whiten = whitening(patches) if config.scorer != "patchcore" else None
        if config.scorer == "gaussian":
            bank = np.zeros((1, patches.shape[1]), np.float32)
        else:
            if whiten is not None:
                patches = (patches - whiten[0]) @ whiten[1]
            chosen = greedy_coreset(patches, min(config.bank_size, len(patches)),
                                    project_dim=config.project_dim,
                                    seed=config.seed, progress=progress)
            bank = patches[chosen]
        del patches
        t_bank = time.perf_counter() - started - t_features
        model = append_nn_head(onnx.load(str(feat_path)), bank, config.smooth, whiten=whiten)
        stride = feature_stride(backbone, layers)
        meta = {"edgeinfer.anomaly.bank_size": str(len(bank)),
                "edgeinfer.anomaly.feature_dim": str(bank.shape[1]),
                "edgeinfer.anomaly.backbone": backbone.name,
                "edgeinfer.anomaly.layers": ",".join(layers),
                "edgeinfer.anomaly.embed": config.embed,
                "edgeinfer.anomaly.scorer": config.scorer,
                "edgeinfer.anomaly.stride": str(stride)}
        onnx.helper.set_model_props(model, meta)
        model_path = Path(tmp) / "anomaly.onnx"
        onnx.save(model, str(model_path))
        scorer = open_session(model_path, threads=config.threads)
        track.start("calibration", total=len(data.val))
        val_scores = np.concatenate([o.reshape(len(o), -1).max(1) for o in _batches(
            scorer, data.val, spec, pre, config.batch, track, "calibration")])
        track.finish("calibration")
        threshold = calibrate_threshold(val_scores, config.fpr)
        seconds = time.perf_counter() - started
        report = {
            **data.report,
            "patches": total,
            "patches_sampled": int(min(total, config.max_patches)),
            "bank_size": len(bank),
            "feature_dim": int(bank.shape[1]),
            "layers": list(layers),
            "embed": config.embed,
            "scorer": config.scorer,
            "stride": stride,
            "threshold": threshold,
            "fpr_target": config.fpr,
            "val_flagged": int((val_scores > threshold).sum()),
            "val_score_quantiles": {q: float(np.quantile(val_scores, float(q)))
                                    for q in ("0.5", "0.9", "0.99", "1.0")},
            "seconds": {"features": t_features, "model": t_bank, "total": seconds,
                        "cpu": time.process_time() - cpu_started},
            "config": asdict(config),
        }
        artifact = Artifact.create(
            out, model_path,
            name=out.name, task="anomaly-detection",
            inputs=(spec,), outputs=(OUTPUT,), preprocess=pre,
            labels=["anomaly"], decoder="anomaly",
            decoder_params={"threshold": threshold, "min_area": config.min_area,
                            "input_size": [size, size], "tile": config.tile,
                            "fpr": config.fpr},
            source=SourceInfo(
                name=f"anomaly model ({backbone.name} {'+'.join(layers)} patch features, "
                     f"PatchCore memory bank of {len(bank)})",
                license=backbone.license,
                origin=f"edgeinfer train anomaly on {data.report['train_images']} good images "
                       f"of {good}",
            ),
            reports={"train_anomaly": report},
        )
    log.info("anomaly model: %d tiles, bank %d x %d, threshold %.4f, %.1f s",
             len(data.train), len(bank), bank.shape[1], threshold, seconds)
    return artifact

