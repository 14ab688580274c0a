"""Calibration and evaluation data for quantization, preprocessed exactly as the artifact does.

:func:`load_samples` turns a source into a :class:`SampleSet` of input tensors:

* a directory of images (sorted by name; non-image files ignored; unreadable images skipped
  with a warning and counted in ``SampleSet.skipped``),
* a video file, of which ``limit`` frames (default :data:`DEFAULT_VIDEO_FRAMES`) are taken
  evenly spaced over its length,
* a ``.npy`` file of already-preprocessed samples ``[N, *input_shape[1:]]`` (or one sample),
* a single image file.

Images and frames go through :func:`edgeinfer.vision.preprocess.to_tensor`, the same code the
runtime uses, so calibration sees exactly the tensors the model will see.
:class:`CalibrationReader` feeds a SampleSet to onnxruntime's ``quantize_static``;
:func:`split_samples` keeps calibration and evaluation data apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgeinfer.artifact import InputSpec, Preprocess
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.model.shapes import dynamic_message, is_fixed
from edgeinfer.progress import ProgressFn, Tracker
from edgeinfer.vision.preprocess import IMAGE_SUFFIXES, read_image, to_tensor

__all__ = [
    "DEFAULT_VIDEO_FRAMES",
    "VIDEO_SUFFIXES",
    "CalibrationReader",
    "SampleSet",
    "load_samples",
    "split_samples",
]

log = logging.getLogger(__name__)
#: the progress task name of reading calibration data
_TASK = "calibration data"

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}

#: Frames taken from a video when no ``limit`` is given.
DEFAULT_VIDEO_FRAMES = 100

#: Between two wanted frames closer than this, read on instead of seeking.
_SEEK_GAP = 16

_KINDS = (
    "a folder of images, a video (" + ", ".join(sorted(VIDEO_SUFFIXES)) + "), "
    "a .npy array or an image file"
)


@dataclass(frozen=True, eq=False)
class SampleSet:
    """Preprocessed samples with where each came from.

    ``inputs`` is ``[N, *input_shape[1:]]`` float32; ``names[i]`` names the source of
    ``inputs[i]`` (a file name, ``"clip.mp4#frame12"`` or ``"x.npy[3]"``); ``skipped`` names the
    files that could not be read while loading.
    """

    inputs: np.ndarray
    names: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> SampleSet:
        """The samples at ``indices`` (in that order); ``skipped`` is kept."""
        idx = np.asarray(indices, dtype=np.int64)
        return SampleSet(
            np.ascontiguousarray(self.inputs[idx]),
            tuple(self.names[i] for i in idx.tolist()),
            self.skipped,
        )


def load_samples(
    source: str | Path,
    spec: InputSpec,
    pre: Preprocess,
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> SampleSet:
    """Load calibration samples for the input ``spec`` from ``source`` (see the module doc).

    ``limit`` caps the number of samples: a deterministic random subset (``seed``) of a folder
    or a ``.npy`` array, ``limit`` evenly spaced frames of a video (100 when not given). Every
    problem is a one-line :class:`~edgeinfer.errors.EdgeInferError`. Reading reports to
    ``progress`` as the task ``calibration data``.
    """
    source = Path(source)
    if not all(is_fixed(d) for d in spec.shape[1:]):
        raise ShapeError(dynamic_message(spec.name, spec.shape))
    if limit is not None and limit < 1:
        raise EdgeInferError(f"calibration sample limit must be at least 1, got {limit}")
    if not source.exists():
        raise EdgeInferError(f"{source}: no such calibration data: check the path (give {_KINDS})")
    if source.is_dir():
        return _load_dir(source, spec, pre, limit, seed, progress)
    suffix = source.suffix.lower()
    if suffix == ".npy":
        return _load_npy(source, spec, limit, seed)
    if suffix in VIDEO_SUFFIXES:
        return _load_video(source, spec, pre, limit, progress)
    if suffix in IMAGE_SUFFIXES:
        _check_image_spec(spec, source)
        x = _preprocess(read_image(source), spec, pre, source)
        return SampleSet(x, (source.name,))
    raise EdgeInferError(f"{source}: not a kind of calibration data edgeinfer reads: give {_KINDS}")


class CalibrationReader(CalibrationDataReader):
    """Feeds a :class:`SampleSet` to onnxruntime's ``quantize_static``, one sample per call.

    ``get_next()`` returns ``{input_name: sample[None]}`` for each sample, then ``None``;
    ``rewind()`` starts over.
    """

    def __init__(self, samples: SampleSet | np.ndarray, input_name: str) -> None:
        self.inputs = samples.inputs if isinstance(samples, SampleSet) else np.asarray(samples)
        self.input_name = input_name
        self._start, self._end = 0, len(self.inputs)
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        i = self._pos
        self._pos += 1
        return {self.input_name: self.inputs[i : i + 1]}

    def rewind(self) -> None:
        """Start again from the first sample (of the range, when one is set)."""
        self._pos = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to samples ``[start_index, end_index)`` and rewind (ORT's strided calib)."""
        self._start = max(0, start_index)
        self._end = min(len(self.inputs), end_index)
        self._pos = self._start

    def __len__(self) -> int:
        return len(self.inputs)


def split_samples(samples: SampleSet, holdout: float, seed: int = 0) -> tuple[SampleSet, SampleSet]:
    """Split into (calibration, evaluation) sets, disjoint and deterministic for ``seed``.

    ``holdout`` is the fraction that goes to evaluation; each part keeps at least one sample and
    the original order. ``skipped`` describes the load, so both parts carry it.
    """
    n = len(samples)
    if not 0.0 < holdout < 1.0:
        raise EdgeInferError(f"holdout fraction must be between 0 and 1, got {holdout}")
    if n < 2:
        raise EdgeInferError(
            f"cannot split {n} calibration sample(s) into calibration and evaluation sets: "
            "give at least 2 samples"
        )
    n_eval = min(max(round(n * holdout), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    eval_idx = np.sort(perm[:n_eval])
    calib_idx = np.sort(perm[n_eval:])
    return samples.subset(calib_idx), samples.subset(eval_idx)


# --- sources ---------------------------------------------------------------------------------


def _load_dir(
    directory: Path, spec: InputSpec, pre: Preprocess, limit: int | None, seed: int,
    progress: ProgressFn | None,
) -> SampleSet:
    files = sorted(
        p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise EdgeInferError(
            f"no calibration data: {directory} holds no readable images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}): add images or give {_KINDS}"
        )
    _check_image_spec(spec, directory)
    want = len(files) if limit is None else min(limit, len(files))
    # A random order when subsetting, so an unreadable file is replaced by the next candidate.
    order = (
        list(range(len(files)))
        if want == len(files)
        else np.random.default_rng(seed).permutation(len(files)).tolist()
    )
    out = np.empty((want, *spec.shape[1:]), dtype=np.float32)
    taken: list[int] = []
    skipped: list[str] = []
    track = Tracker(progress)
    track.start(_TASK, total=want)
    for i in order:
        if len(taken) == want:
            break
        path = files[i]
        try:
            image = read_image(path)
        except EdgeInferError as exc:
            log.warning("skipping %s: %s", path, exc)
            skipped.append(path.name)
            continue
        out[len(taken)] = _preprocess(image, spec, pre, path)[0]
        taken.append(i)
        track.advance(_TASK)
    track.finish(_TASK)
    if not taken:
        raise EdgeInferError(
            f"no calibration data: {directory} holds no readable images "
            f"({len(skipped)} unreadable file(s) skipped): add JPEG or PNG images"
        )
    if skipped:
        log.warning("%d unreadable image(s) skipped in %s", len(skipped), directory)
    keep = np.argsort(taken, kind="stable")  # back to name order
    return SampleSet(
        np.ascontiguousarray(out[: len(taken)][keep]),
        tuple(files[taken[k]].name for k in keep.tolist()),
        tuple(sorted(skipped)),
    )


def _load_video(
    path: Path, spec: InputSpec, pre: Preprocess, limit: int | None,
    progress: ProgressFn | None,
) -> SampleSet:
    _check_image_spec(spec, path)
    want = DEFAULT_VIDEO_FRAMES if limit is None else limit
    n_frames = _frame_count(path)
    if n_frames == 0:
        raise EdgeInferError(f"no calibration data: video {path} has no readable frames")
    if n_frames <= want:
        indices = list(range(n_frames))
    else:
        indices = np.linspace(0, n_frames - 1, want).round().astype(int).tolist()
    out = np.empty((len(indices), *spec.shape[1:]), dtype=np.float32)
    names: list[str] = []
    skipped: list[str] = []
    track = Tracker(progress)
    track.start(_TASK, total=len(indices))
    for idx, frame in _read_frames(path, indices):
        name = f"{path.name}#frame{idx}"
        if frame is None:
            log.warning("skipping %s: the frame cannot be decoded", name)
            skipped.append(name)
        else:
            out[len(names)] = _preprocess(frame, spec, pre, path)[0]
            names.append(name)
        track.advance(_TASK)
    track.finish(_TASK)
    if not names:
        raise EdgeInferError(
            f"no calibration data: no frame of video {path} could be decoded: "
            "convert it to MP4 (H.264) or extract frames to a folder"
        )
    return SampleSet(np.ascontiguousarray(out[: len(names)]), tuple(names), tuple(skipped))


def _open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise EdgeInferError(
            f"{path}: cannot open the video (corrupt, or a codec OpenCV cannot read): "
            "convert it to MP4 (H.264) or extract frames to a folder of images"
        )
    return cap


def _frame_count(path: Path) -> int:
    """Frames in the video: from its header, or counted when the header does not say."""
    cap = _open_video(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
        return n
    finally:
        cap.release()


def _read_frames(path: Path, indices: list[int]) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (index, BGR frame or None) for ascending ``indices``; seek across long gaps."""
    cap = _open_video(path)
    try:
        pos = 0  # index of the frame the next grab() returns
        for idx in indices:
            if idx - pos > _SEEK_GAP:
                cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                pos = idx
            ok = True
            while ok and pos < idx:
                ok = cap.grab()
                pos += 1
            frame = None
            if ok and cap.grab():
                pos += 1
                ok, frame = cap.retrieve()
                frame = frame if ok else None
            yield idx, frame
    finally:
        cap.release()


def _load_npy(path: Path, spec: InputSpec, limit: int | None, seed: int) -> SampleSet:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise EdgeInferError(
            f"{path} is not a readable .npy array ({exc}): save it with numpy.save"
        ) from exc
    expected = tuple(spec.shape[1:])
    if arr.shape == expected:
        arr = arr[None]
    elif arr.ndim != len(expected) + 1 or tuple(arr.shape[1:]) != expected:
        shape = ", ".join(str(d) for d in expected)
        raise ShapeError(
            f"{path} holds an array of shape {tuple(arr.shape)}, input '{spec.name}' needs "
            f"[N, {shape}] (or one sample [{shape}]): save preprocessed samples of that shape"
        )
    if len(arr) == 0:
        raise EdgeInferError(f"no calibration data: {path} holds 0 samples")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise EdgeInferError(f"{path} holds {arr.dtype} data, not numbers: save a numeric array")
    indices = np.arange(len(arr))
    if limit is not None and limit < len(arr):
        indices = np.sort(np.random.default_rng(seed).choice(len(arr), limit, replace=False))
    inputs = np.ascontiguousarray(arr[indices], dtype=np.float32)
    return SampleSet(inputs, tuple(f"{path.name}[{i}]" for i in indices.tolist()))


# --- helpers ---------------------------------------------------------------------------------


def _check_image_spec(spec: InputSpec, source: Path) -> None:
    """Images become 3-channel 4-D tensors; say so up front when the input is not one."""
    channels = None
    if len(spec.shape) == 4:
        channels = spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]
    if spec.layout == "other" or channels != 3:
        raise ShapeError(
            f"{source}: input '{spec.name}' of shape {list(spec.shape)} ({spec.layout}) is not a "
            "3-channel image input: give calibration data as a preprocessed .npy array"
        )


def _preprocess(image: np.ndarray, spec: InputSpec, pre: Preprocess, source: Path) -> np.ndarray:
    try:
        x, _ = to_tensor(image, spec, pre)
    except EdgeInferError as exc:
        raise EdgeInferError(f"{source}: {exc}") from exc
    return x.astype(np.float32, copy=False)
