"""Tiled detection on frames far larger than the model input, in bounded memory.

:class:`TiledPredictor` cuts a frame into the tiles of :func:`~edgeinfer.vision.tiling.tile_grid`
and streams them through the artifact: each tile is a view of the frame (nothing of the frame
is copied), preprocessed with the artifact's own preprocessing, batched into one
``[B, 3, tile, tile]`` tensor when the model's batch dimension is dynamic, decoded by the
artifact's decoder and folded at once into the merge strategy registered for that decoder
(:func:`~edgeinfer.vision.tiling.tile_merge`): detections are shifted into frame coordinates
and merged by a :class:`~edgeinfer.vision.tiling.TileMerger`, anomaly maps are placed into
one frame map. Only the merged result outlives a batch, so the memory the call needs is that
of one batch (plus the merged result), whatever the frame size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeinfer.artifact import InputSpec
from edgeinfer.errors import EdgeInferError
from edgeinfer.machine import reset_peak_rss, status_bytes
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.boxes import Detections, box_area
from edgeinfer.vision.decoders import DECODERS, get_decoder
from edgeinfer.vision.preprocess import Transform, spatial_size, to_tensor
from edgeinfer.vision.tiling import Tile, TileMergeOptions, tile_grid, tile_merge

__all__ = ["STAGES", "TiledPrediction", "TiledPredictor"]

#: the stages timed in ``TiledPrediction.times_ms`` (plus ``total``)
STAGES = ("slice", "preprocess", "infer", "decode", "merge")

@dataclass(frozen=True)
class TiledPrediction:
    """The merged result of one frame (frame coordinates: ``Detections`` for a detection
    decoder, an ``AnomalyResult`` for an anomaly model) and what producing it cost.

    ``times_ms``: milliseconds per stage (``slice``, ``preprocess``, ``infer``, ``decode``,
    ``merge``; ``full_frame`` when that pass ran, ``total`` for the call). ``tiles``: tiles
    run; ``batches``: engine calls for them. ``peak_rss_bytes``: the process's peak resident
    memory during the call, ``rss_before_bytes`` its resident memory when the call began (the
    frame already in it); None off Linux or when ``measure_memory`` is off.
    """

    source: str
    result: Any
    times_ms: dict[str, float]
    tiles: int
    batches: int
    frame_size: tuple[int, int]  #: (height, width)
    peak_rss_bytes: int | None = None
    rss_before_bytes: int | None = None

    @property
    def detections(self) -> Any:
        """The result under the name detection callers use."""
        return self.result

    @property
    def rss_growth_bytes(self) -> int | None:
        """How far the call raised resident memory above where it began."""
        if self.peak_rss_bytes is None or self.rss_before_bytes is None:
            return None
        return self.peak_rss_bytes - self.rss_before_bytes


class TiledPredictor:
    """Detects objects on large frames tile by tile with an artifact's detection decoder.

    ``tile``: tile side in frame pixels (the model input's side is the natural choice; another
    size goes through the artifact's resize like any image). ``overlap``: fraction of a tile
    shared with each neighbour. ``batch``: tiles per engine call when the model's batch
    dimension is dynamic (a static batch of 1 runs tiles one by one; a static batch of n runs
    n at a time). ``full_frame``: also run the whole frame resized into the model (catches
    objects larger than a tile) and merge its detections like a tile's. ``iou_threshold``: of
    the merge; by default the decoder's (``decoder_params['iou_threshold']``), else 0.45.
    ``border_merge``: fuse boxes cut by tile edges, ``edge_tol``: how close (px) to a tile edge
    a box side counts as cut there; ``contain_threshold``: drop boxes lying that fraction of
    their area inside a better box of their class (None: keep them). The default 0.5 removes
    the partial duplicates detectors leave beside whole boxes (with the inspection detector:
    precision 41% -> 49% at equal recall, benchmarks/tiling_sahi.py), at the price of a
    distinct object nested in another of its class. See :mod:`edgeinfer.vision.tiling`.
    ``measure_memory``: record the call's peak RSS (Linux; it resets the process's ``VmHWM``
    mark through ``/proc/self/clear_refs`` at the start of each call).

    A predictor owns one batch buffer: use one predictor per thread (they may share the Engine).
    """

    def __init__(
        self,
        engine: Engine,
        tile: int = 640,
        overlap: float = 0.2,
        batch: int = 4,
        full_frame: bool = False,
        iou_threshold: float | None = None,
        *,
        border_merge: bool = True,
        edge_tol: float = 2.0,
        contain_threshold: float | None = 0.5,
        measure_memory: bool = True,
    ) -> None:
        manifest = engine.artifact.manifest
        if not manifest.decoder:
            raise EdgeInferError(
                f"'{manifest.name}' names no decoder: declare one with `edgeinfer import "
                f"MODEL -o ARTIFACT --decoder NAME` (NAME: {', '.join(sorted(DECODERS))}; raw "
                "gives the outputs as they are)"
            )
        if batch < 1:
            raise EdgeInferError(f"batch must be at least 1, got {batch}")
        tile_grid(tile, tile, tile, overlap)  # validates tile and overlap
        self.engine = engine
        self.tile = int(tile)
        self.overlap = float(overlap)
        self.full_frame = full_frame
        self.border_merge = border_merge
        self.edge_tol = float(edge_tol)
        self.contain_threshold = contain_threshold
        self.measure_memory = measure_memory
        self.decoder = get_decoder(manifest.decoder)
        # a fixed image size would clip tile boxes to the frame's size, not the tile's
        self.params = {k: v for k, v in manifest.decoder_params.items() if k != "image_size"}
        self.labels = engine.artifact.labels()
        self.pre = manifest.preprocess
        if iou_threshold is None:
            iou_threshold = float(self.params.get("iou_threshold", self.params.get("iou", 0.45)))
        self.iou_threshold = iou_threshold
        self.merge_options = TileMergeOptions(
            iou_threshold=iou_threshold, border_merge=border_merge, edge_tol=float(edge_tol),
            contain_threshold=contain_threshold,
            labels=tuple(self.labels) if self.labels is not None else None,
            decoder=manifest.decoder, decoder_params=self.params,
        )

        declared = manifest.inputs[0]
        self.input_name = engine.inputs[0].name
        shape = list(declared.shape)
        if len(shape) != 4:
            spatial_size(declared)  # raises the one-line shape error
        hw = (1, 2) if declared.layout == "NHWC" else (2, 3)
        for axis in hw:  # dynamic spatial dims take the tile size
            if shape[axis] <= 0:
                shape[axis] = self.tile
        shape[0] = 1
        self.spec = InputSpec(
            name=declared.name, shape=tuple(shape), dtype=declared.dtype, layout=declared.layout
        )
        model_hw = spatial_size(self.spec)
        if self.pre.resize == "none" and model_hw != (self.tile, self.tile):
            raise EdgeInferError(
                f"tile {self.tile} does not match the model input {model_hw[1]}x{model_hw[0]} "
                f"and the artifact's resize is 'none': use tiles of {model_hw[1]} px or an "
                "artifact with letterbox resize"
            )
        self.model_hw = model_hw
        # A tile of the model's size needs no resize (letterbox and stretch at scale 1 are the
        # identity): the value transform then goes straight into the batch buffer.
        self._direct = (
            model_hw == (self.tile, self.tile)
            and self.pre.resize in ("none", "letterbox", "stretch")
            and self.spec.dtype == "float32"
            and self.spec.layout in ("NCHW", "NHWC")
        )
        self._channels = (2, 1, 0) if self.pre.channel_order == "RGB" else (0, 1, 2)
        self._mean = np.asarray(self.pre.mean, np.float32)
        self._std = np.asarray(self.pre.std, np.float32)
        self._shift = bool(np.any(self._mean != 0) or np.any(self._std != 1))
        if self.spec.layout == "NCHW":
            self._mean, self._std = self._mean[:, None, None], self._std[:, None, None]
        engine_batch = engine.inputs[0].shape[0]
        #: tiles per engine call, and whether that batch size is fixed by the model
        self.batch = batch if engine_batch is None else int(engine_batch)
        self.static_batch = engine_batch is not None
        self._buffer: np.ndarray | None = None
        self._planes: list[np.ndarray] | None = None

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiles this predictor runs on a ``height`` x ``width`` frame."""
        return tile_grid(height, width, self.tile, self.overlap)

    def _batch_buffer(self) -> np.ndarray:
        if self._buffer is None:
            shape = (self.batch, *self.spec.shape[1:])
            self._buffer = np.zeros(shape, np.dtype(self.spec.dtype))
        return self._buffer

    def _pad(self, crop: np.ndarray) -> np.ndarray:
        """A crop smaller than the tile (frame smaller than a tile) padded right and bottom."""
        h, w = crop.shape[:2]
        if h == self.tile and w == self.tile:
            return crop
        return cv2.copyMakeBorder(
            crop, 0, self.tile - h, 0, self.tile - w, cv2.BORDER_CONSTANT,
            value=(self.pre.pad_value,) * 3,
        )

    def _tensor_into(self, crop: np.ndarray, out: np.ndarray) -> Transform:
        """Preprocess one tile-sized BGR crop into ``out`` (one batch slot, C H W or H W C).

        The artifact's preprocessing without the copies of :func:`to_tensor`: the same float32
        operations in the same order (the result is bitwise equal), read from the crop view.
        """
        if not self._direct:
            x, transform = to_tensor(crop, self.spec, self.pre)
            out[...] = x[0]
            return transform
        nchw = self.spec.layout == "NCHW"
        scale = np.float32(self.pre.scale)
        if self._planes is None:
            self._planes = [np.empty((self.tile, self.tile), crop.dtype) for _ in range(3)]
        # contiguous channel planes (reused): twice as fast as reading the crop strided
        planes = cv2.split(crop, self._planes)
        for c, src in enumerate(self._channels):
            dst = out[c] if nchw else out[..., c]
            if self.pre.scale != 1.0:
                np.multiply(planes[src], scale, out=dst, dtype=np.float32)
            else:
                dst[...] = planes[src]
        if self._shift:  # x - 0 and x / 1 are exact: skipped when mean is 0 and std is 1
            np.subtract(out, self._mean, out=out)
            np.divide(out, self._std, out=out)
        return Transform(1.0, 1.0, 0.0, 0.0, self.tile, self.tile)

    def _decode(self, outputs: list[np.ndarray], i: int, transform: Transform) -> Any:
        return self.decoder([o[i : i + 1] for o in outputs], self.params, transform, self.labels)

    def predict(self, image_bgr: np.ndarray, source: str = "") -> TiledPrediction:
        """Detect on one BGR frame (H, W, 3 uint8); detections in frame coordinates."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise EdgeInferError(
                f"frame has shape {list(image_bgr.shape)}, expected H x W x 3 (BGR): convert "
                "grey frames with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"
            )
        memory = self.measure_memory and reset_peak_rss()
        rss_before = status_bytes("VmRSS") if memory else None
        t_start = time.perf_counter()
        times = dict.fromkeys(STAGES, 0.0)
        height, width = image_bgr.shape[:2]
        tiles = self.tiles(height, width)
        merger = tile_merge(width, height, self.merge_options)
        batches = 0
        clock = time.perf_counter
        for start in range(0, len(tiles), self.batch):
            group = tiles[start : start + self.batch]
            transforms: list[Transform] = []
            buf = self._batch_buffer()
            for i, tile in enumerate(group):
                t0 = clock()
                crop = self._pad(tile.crop(image_bgr))
                t1 = clock()
                transforms.append(self._tensor_into(crop, buf[i]))
                times["slice"] += t1 - t0
                times["preprocess"] += clock() - t1
            x = buf if self.static_batch else buf[: len(group)]
            t0 = clock()
            outputs = self.engine.run({self.input_name: x})
            times["infer"] += clock() - t0
            batches += 1
            for i, tile in enumerate(group):
                t0 = clock()
                decoded = self._decode(outputs, i, transforms[i])
                t1 = clock()
                merger.add(decoded, tile)
                times["merge"] += clock() - t1
                times["decode"] += t1 - t0
            del outputs, x
        if self.full_frame:
            t0 = clock()
            merger.add(self._full_frame(image_bgr), None)
            times["full_frame"] = clock() - t0
        t0 = clock()
        merged = merger.result()
        times["merge"] += clock() - t0
        times["total"] = clock() - t_start
        peak = status_bytes("VmHWM") if memory else None
        return TiledPrediction(
            source=source,
            result=merged,
            times_ms={k: v * 1e3 for k, v in times.items()},
            tiles=len(tiles),
            batches=batches,
            frame_size=(height, width),
            peak_rss_bytes=peak,
            rss_before_bytes=rss_before,
        )

    def _full_frame(self, image_bgr: np.ndarray) -> Detections:
        """The whole frame resized into the model (letterbox unless the artifact stretches)."""
        pre = self.pre
        if pre.resize not in ("letterbox", "stretch"):
            pre = pre.model_copy(update={"resize": "letterbox"})
        x, tr = to_tensor(image_bgr, self.spec, pre)
        if self.static_batch and self.batch > 1:
            buf = self._batch_buffer()
            buf[0] = x[0]
            x = buf
        outputs = self.engine.run({self.input_name: x})
        height, width = image_bgr.shape[:2]
        dets = self._decode(outputs, 0, tr)
        if not isinstance(dets, Detections):
            raise EdgeInferError(
                f"--full-frame needs a detection decoder; '{self.engine.artifact.manifest.decoder}'"
                " merges tiles only: run without --full-frame"
            )
        dets = dets.clipped(width, height)
        return dets.select(box_area(dets.boxes) > 0)

