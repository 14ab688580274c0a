"""Per-cut measurements for split planning: head latency on the device, tail latency on the
node, and the bytes that cross the cut after compression.

Everything is measured with the :class:`~edgeinfer.runtime.engine.Engine` on the real head and
tail sub-models (no per-layer regression as in Neurosurgeon: measuring is cheap at batch 1 and
cannot be wrong about fusion across layers). The weaker device is simulated honestly and
visibly: its engines run with ``threads`` intra-op threads, and ``slowdown`` multiplies every
device latency (the device sleeps ``(slowdown - 1) x`` the measured time after each head run),
so a factor of 4 reads as "a CPU four times slower than one core of this machine".
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from edgeinfer.collab.compress import ANSWER, ANSWER_OPTIONS, Compression, encode
from edgeinfer.collab.workdir import remove_if_empty, scratch_dir
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load, resolve
from edgeinfer.model.partition import Cut, Partition, load_partition, sample_cuts
from edgeinfer.progress import ProgressFn, Tracker

__all__ = [
    "JPEG_CUT",
    "CutProfile",
    "DeviceSim",
    "ImageCodec",
    "SplitModel",
    "image_feeds",
    "resolve_onnx",
]

#: the "send a JPEG of the input" candidate's cut key: not a tensor of the graph
JPEG_CUT = ("@jpeg",)
#: the progress task of the device-side profiling pass
DEVICE_TASK = "profiling cuts on the device"
#: JPEG quality the device encodes with (the honest baseline of the split-computing survey)
JPEG_QUALITY = 90

Feeds = dict[str, np.ndarray]
T = TypeVar("T")


def resolve_onnx(model: str | Path) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """An ONNX file and its static input shapes from a path, an artifact directory or a zoo
    name; a TFLite model is a one-line error (only ONNX graphs are cut)."""

    art = load(resolve(model))
    if art.manifest.model.format != "onnx":
        raise EdgeInferError(
            f"{model} is a {art.manifest.model.format} model: split works on ONNX graphs; "
            "export or convert the model to ONNX first"
        )
    shapes = {i.name: tuple(i.shape) for i in art.manifest.inputs if all(d > 0 for d in i.shape)}
    return art.model_path, shapes


def image_feeds(model: str | Path, image: str | Path) -> Feeds:
    """An image file preprocessed as the model's manifest says (real images compress very
    differently from random inputs, so cut sizes should be profiled on one)."""
    from edgeinfer.vision.preprocess import read_image, to_tensor

    art = load(resolve(model))
    spec = art.manifest.inputs[0]
    x, _ = to_tensor(read_image(image), spec, art.manifest.preprocess)
    return {spec.name: x}


class ImageCodec:
    """The "send a JPEG" option for a model whose artifact manifest says how to preprocess:
    the device resizes the image to the model's input as the manifest says and encodes it as
    JPEG q90; the node decodes it and only normalises (an image already at the input size is
    not resized again; another size gets the manifest's full preprocessing)."""

    def __init__(self, spec: Any, pre: Any) -> None:
        from edgeinfer.vision.preprocess import spatial_size

        self.spec = spec
        self.pre = pre
        self.size = spatial_size(spec)

    @classmethod
    def for_model(cls, model: str | Path) -> ImageCodec | None:
        """The codec of an artifact directory or zoo name; None for a bare model file (no
        manifest, so no preprocessing to apply) or a non-image input."""
        from edgeinfer.errors import ShapeError

        path = Path(resolve(model))
        if not path.is_dir():
            return None
        art = load(path)
        try:
            return cls(art.manifest.inputs[0], art.manifest.preprocess)
        except ShapeError:
            return None

    def encode(self, image: np.ndarray) -> bytes:
        """Device side: BGR image -> the model-size JPEG (q90) bytes."""
        import cv2

        from edgeinfer.vision.preprocess import resize

        small, _ = resize(image, self.size, self.pre)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise EdgeInferError(
                "OpenCV could not encode the image as JPEG: pass a BGR uint8 image"
            )
        return buf.tobytes()

    def decode(self, data: bytes) -> Feeds:
        """Node side: JPEG (or PNG...) bytes -> the model's input feeds; undecodable bytes are
        a one-line EdgeInferError."""
        from edgeinfer.vision.image_io import decode_image
        from edgeinfer.vision.preprocess import to_tensor

        image = decode_image(data)  # ImageDecodeError (an EdgeInferError) when bad or too big
        pre = self.pre
        if image.shape[:2] == self.size:  # the device already resized: normalise only
            pre = pre.model_copy(update={"resize": "none"})
        x, _ = to_tensor(image, self.spec, pre)
        return {self.spec.name: x}


def as_image(image: str | Path | np.ndarray) -> np.ndarray:
    """A BGR uint8 image from a path or an array."""
    from edgeinfer.vision.preprocess import read_image

    return image if isinstance(image, np.ndarray) else read_image(image)


@dataclass(frozen=True)
class DeviceSim:
    """How the weaker device is simulated: intra-op threads, a latency multiplier, and the
    clock its work is timed with.

    ``clock="cpu"`` times the device's work by the calling thread's CPU time (exact with one
    intra-op thread, where onnxruntime computes in the caller), so load from other processes
    on a shared machine is not charged to the simulated device; ``wall`` uses wall time.
    """

    threads: int = 1
    slowdown: float = 1.0
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.threads < 1 or self.slowdown < 1.0:
            raise EdgeInferError(
                f"device threads {self.threads} / slowdown {self.slowdown}: use threads >= 1 "
                "and a slowdown >= 1 (1 = this machine's speed)"
            )
        if self.clock not in ("wall", "cpu") or (self.clock == "cpu" and self.threads != 1):
            raise EdgeInferError(
                f"device clock '{self.clock}': use wall, or cpu with threads=1 (only then does "
                "the calling thread do all the work)"
            )

    def time(self, fn: Callable[[], T]) -> tuple[T, float, float]:
        """Run ``fn``: (result, device seconds = elapsed on the clock x slowdown, wall)."""
        w0, c0 = time.perf_counter(), time.thread_time()
        result = fn()
        wall = time.perf_counter() - w0
        used = time.thread_time() - c0 if self.clock == "cpu" else wall
        return result, used * self.slowdown, wall

    def run(self, fn: Callable[[], T]) -> tuple[T, float]:
        """Run ``fn`` as the device would: sleep until the wall time matches the device time;
        returns (result, device seconds)."""
        result, device_s, wall = self.time(fn)
        if device_s > wall:
            time.sleep(device_s - wall)
        return result, device_s

    def measure(self, fn: Callable[[], object], runs: int) -> float:
        """Median device seconds of ``runs`` calls (after one untimed), without the sleeps."""
        fn()
        return statistics.median(self.time(fn)[1] for _ in range(max(1, runs)))


@dataclass
class CutProfile:
    """One cut, measured: times in seconds, bytes raw and as sent."""

    tensors: tuple[str, ...]
    position: int
    raw_bytes: int
    sent_bytes: int = 0
    head_s: float = 0.0
    tail_s: float = 0.0
    out_bytes: int = 0
    answer_bytes: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The cut's key (tensor names joined with '|')."""
        return "|".join(self.tensors)

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        d = asdict(self)
        d["tensors"] = list(self.tensors)
        return d

    def measure_answer(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Record the answer's size in every answer encoding (``out_bytes``: the default)."""
        self.answer_bytes = {o: len(encode(outputs, Compression.parse(o)))
                             for o in ANSWER_OPTIONS}
        self.out_bytes = self.answer_bytes[ANSWER.label]


@dataclass(frozen=True)
class SubModel:
    """A head or tail cut out of a model and saved: its file and its graph inputs/outputs."""

    path: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class _Half:
    """A head or tail sub-model in an Engine; ``run`` maps names to arrays."""

    def __init__(self, sub: SubModel, threads: int) -> None:
        from edgeinfer.runtime.backends import BackendOptions
        from edgeinfer.runtime.engine import Engine

        self.engine = Engine.open(sub.path, "ort", BackendOptions(threads=threads), warmup=False)
        self.inputs = [s.name for s in self.engine.inputs]
        self.outputs = [s.name for s in self.engine.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        outs = self.engine.run({k: feeds[k] for k in self.inputs})
        return dict(zip(self.outputs, outs, strict=True))


class SplitModel:
    """One ONNX model ready to run split at any of its cuts: head and tail sub-models cut out
    and saved on demand (in this process's split work directory,
    :mod:`edgeinfer.collab.workdir`), and engines for them built on demand and kept
    (``threads`` intra-op threads each; the device side's). Not thread-safe while building."""

    def __init__(self, model: str | Path, threads: int = 1, max_cuts: int = 30) -> None:
        path, shapes = resolve_onnx(model)
        self.path = path
        self.shapes = shapes
        self.partition: Partition = load_partition(path, shapes or None)
        self.threads = threads
        self.all_cuts: list[Cut] = self.partition.cuts()
        self.cuts: list[Cut] = sample_cuts(self.all_cuts, max_cuts)
        self._dir = scratch_dir(f"{path.stem[:40]}-")
        self._subs: dict[str, SubModel | None] = {}
        self._heads: dict[str, _Half | None] = {}
        self._tails: dict[str, _Half | None] = {}
        self._full: _Half | None = None
        self._checked: dict[tuple[str, ...], tuple[str, ...]] = {}

    @property
    def inputs(self) -> list[str]:
        """The model's graph inputs."""
        return list(self.partition.inputs)

    @property
    def outputs(self) -> list[str]:
        """The model's graph outputs."""
        return list(self.partition.outputs)

    def example_feeds(self, seed: int = 0) -> Feeds:
        """Random inputs of the model's shapes (uniform in [-1, 1] for floats)."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for name in self.inputs:
            info = self.partition.graph.tensors[name]
            arr = rng.uniform(-1, 1, info.shape)
            feeds[name] = arr.astype(info.dtype)
        return feeds

    def cut_for(self, tensors: Sequence[str]) -> tuple[str, ...]:
        """The checked, ordered form of a cut's tensors (PartitionError if invalid; cached,
        since the check walks the graph)."""
        key = tuple(tensors)
        if key not in self._checked:
            self._checked[key] = self.partition.check(tensors)
        return self._checked[key]

    def sub_model(self, kind: str, tensors: Sequence[str]) -> SubModel | None:
        """The ``kind`` ("head" or "tail") of a cut, cut out and saved on first use (None: the
        cut is the inputs for a head, the outputs for a tail)."""
        cut = self.cut_for(tensors)
        key = f"{kind}:{'|'.join(cut)}"
        if key not in self._subs:
            extract = self.partition.head if kind == "head" else self.partition.tail
            m = extract(cut)
            self._subs[key] = None if m is None else self._save(m, f"{kind}{len(self._subs)}")
        return self._subs[key]

    def _save(self, model: onnx.ModelProto, tag: str) -> SubModel:
        path = self._dir / f"{tag}.onnx"
        onnx.save(model, str(path))
        inits = {i.name for i in model.graph.initializer}
        return SubModel(path, tuple(i.name for i in model.graph.input if i.name not in inits),
                        tuple(o.name for o in model.graph.output))

    def full(self) -> _Half:
        """The whole model in one engine (all on one side)."""
        if self._full is None:
            whole = SubModel(self.path, tuple(self.inputs), tuple(self.outputs))
            self._full = _Half(whole, self.threads)
        return self._full

    def head(self, tensors: Sequence[str]) -> _Half | None:
        """The head engine of a cut (None when the cut is the inputs)."""
        return self._half(self._heads, "head", tensors)

    def tail(self, tensors: Sequence[str]) -> _Half | None:
        """The tail engine of a cut (None when the cut is the outputs)."""
        return self._half(self._tails, "tail", tensors)

    def _half(self, built: dict[str, _Half | None], kind: str,
              tensors: Sequence[str]) -> _Half | None:
        """One side of a cut, loaded on first use, then kept in ``built``."""
        key = "|".join(self.cut_for(tensors))
        if key not in built:
            sub = self.sub_model(kind, tensors)
            built[key] = _Half(sub, self.threads) if sub is not None else None
        return built[key]

    def cut_values(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor of every sampled cut, computed from ``feeds`` in one run of a
        temporary engine (closed before this returns): what a node needs to time its tails
        without keeping a head per cut."""
        wanted = sorted({t for cut in self.cuts for t in cut.tensors} - set(self.inputs))
        values = {k: np.asarray(v) for k, v in feeds.items()}
        if wanted:
            probe = self.partition.head([*self.inputs, *wanted])
            if probe is not None:
                half = _Half(self._save(probe, "probe"), self.threads)
                try:
                    values.update(half.run(feeds))
                finally:
                    half.engine.close()
        return values

    def run_head(self, tensors: Sequence[str], feeds: Mapping[str, np.ndarray]) -> Feeds:
        """The cut tensors computed from the inputs."""
        cut = self.cut_for(tensors)
        head = self.head(cut)
        known = dict(feeds) if head is None else {**feeds, **head.run(feeds)}
        return {t: known[t] for t in cut}

    def run_tail(self, tensors: Sequence[str], cut_values: Mapping[str, np.ndarray]) -> Feeds:
        """The graph outputs from the cut tensors (those in the cut pass through)."""
        tail = self.tail(tensors)
        known = dict(cut_values) if tail is None else {**cut_values, **tail.run(cut_values)}
        return {o: known[o] for o in self.outputs}

    def profile_device(
        self,
        feeds: Mapping[str, np.ndarray],
        device: DeviceSim,
        compression: Compression,
        runs: int = 5,
        progress: ProgressFn | None = None,
    ) -> list[CutProfile]:
        """Head latency (device-scaled) and compressed cut bytes for every sampled cut
        (``progress``: one step per cut of the task "profiling cuts on the device")."""
        track = Tracker(progress)
        track.start(DEVICE_TASK, total=len(self.cuts))
        out = []
        for cut in self.cuts:
            values = self.run_head(cut.tensors, feeds)
            prof = CutProfile(cut.tensors, cut.position, cut.nbytes)
            prof.sent_bytes = len(encode(values, compression))
            head = self.head(cut.tensors)
            if head is not None:
                prof.head_s = device.measure(lambda h=head: h.run(feeds), runs)
            if cut.position < len(self.partition.nodes):  # the device compresses what it sends
                enc = device.measure(lambda v=values: encode(v, compression), runs)
                prof.extra["encode_s"] = enc
                prof.head_s += enc
            out.append(prof)
            track.advance(DEVICE_TASK)
        track.finish(DEVICE_TASK)
        return out

    def profile_jpeg_device(
        self, codec: ImageCodec, image: np.ndarray, device: DeviceSim, runs: int = 5
    ) -> CutProfile:
        """The JPEG candidate on the device: resize + JPEG encode (device-scaled), its bytes."""
        jpg = codec.encode(image)
        prof = CutProfile(JPEG_CUT, -1, len(jpg), len(jpg))
        prof.head_s = device.measure(lambda: codec.encode(image), runs)
        prof.extra["encode_s"] = prof.head_s
        return prof

    def close(self) -> None:
        """Release every engine and the temporary sub-model files."""
        for half in [*self._heads.values(), *self._tails.values(), self._full]:
            if half is not None:
                half.engine.close()
        self._heads.clear()
        self._tails.clear()
        self._full = None
        self._subs.clear()
        shutil.rmtree(self._dir, ignore_errors=True)
        remove_if_empty()
