"""``edgeinfer run``: frames from a source through an artifact, with per-frame results, annotated
output and a summary (frames, fps, latency percentiles, mean time per stage, and for streams
dropped frames and reconnects).

:func:`run_source` reads files in order and processes every frame; :func:`run_stream` puts a
camera, a URL or a paced ("live") file through the stream runner's drop-oldest queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.sinks import CallbackSink, ImageSink, Sink, VideoSink, slug
from edgeinfer.pipeline.sources import (
    ReconnectPolicy,
    is_video,
    iter_frames,
    open_source,
    source_kind,
    video_fps,
)
from edgeinfer.pipeline.streams import StreamRunner
from edgeinfer.runtime.engine import Engine
from edgeinfer.stats import percentile
from edgeinfer.vision.draw import annotate

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: frames, wall time, per-frame latency and per-stage mean times (ms);
    for a stream also the frames read, dropped (queue full) and reconnects."""

    frames: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    frames_in: int | None = None
    dropped: int = 0
    reconnects: int = 0
    skipped: list[str] = field(default_factory=list)  #: unreadable images passed over

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        lat = self.latencies_ms
        return {
            "frames": self.frames,
            "seconds": self.seconds,
            "fps": self.frames / self.seconds if self.seconds else None,
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "stages_ms": {k: v / max(1, self.frames) for k, v in self.stages_ms.items()},
            "saved": self.saved,
            "frames_in": self.frames if self.frames_in is None else self.frames_in,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "skipped": len(self.skipped),
            "skipped_files": self.skipped,
        }


def make_predictor(
    engine: Engine, tile: int | None = None, overlap: float = 0.2, batch: int = 4,
    full_frame: bool = False,
) -> Any:
    """The whole-frame ``Predictor``, or a ``TiledPredictor`` when ``tile`` is given."""
    if tile:
        from edgeinfer.pipeline.tiled import TiledPredictor

        return TiledPredictor(engine, tile=tile, overlap=overlap, batch=batch,
                              full_frame=full_frame)
    from edgeinfer.pipeline.predict import Predictor

    return Predictor(engine)


def run_source(
    predictor: Any,
    source: str | Path,
    *,
    save: str | Path | None = None,
    limit: int | None = None,
    on_frame: Callable[[Any], None] | None = None,
) -> RunSummary:
    """Run every frame of ``source`` through ``predictor``; annotated frames go to ``save``
    (images as ``NAME.jpg``, a video as ``STEM.annotated.mp4``). Unreadable images in a
    folder are skipped and counted (``summary.skipped``); a folder with none readable is an
    error."""
    summary = RunSummary()
    out_dir = Path(save) if save else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    t0 = time.perf_counter()
    try:
        for name, frame in iter_frames(source, limit,
                                       on_skip=lambda path, _: summary.skipped.append(path)):
            f0 = time.perf_counter()
            pred = predictor.predict(frame, name)
            summary.latencies_ms.append((time.perf_counter() - f0) * 1e3)
            summary.frames += 1
            for k, v in pred.times_ms.items():
                summary.stages_ms[k] = summary.stages_ms.get(k, 0.0) + v
            if on_frame:
                on_frame(pred)
            if out_dir is None:
                continue
            drawn = annotate(frame, pred.result)
            if is_video(source):
                if writer is None:
                    path = out_dir / f"{Path(source).stem}.annotated.mp4"
                    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(path), fourcc, video_fps(source), (w, h))
                    if not writer.isOpened():
                        raise EdgeInferError(f"cannot write {path}: check --save")
                    summary.saved.append(str(path))
                writer.write(drawn)
            else:
                path = out_dir / f"{Path(name).stem}.jpg"
                if not cv2.imwrite(str(path), drawn):
                    raise EdgeInferError(f"cannot write {path}: check --save and free disk space")
                summary.saved.append(str(path))
    finally:
        if writer is not None:
            writer.release()
        summary.seconds = time.perf_counter() - t0
    if summary.skipped and not summary.frames:
        raise EdgeInferError(
            f"{source}: none of its {len(summary.skipped)} images could be read (first: "
            f"{summary.skipped[0]}): use JPEG, PNG, BMP or TIFF files"
        )
    return summary


def _stream_sinks(source: str, name: str, save: Path, fps: float) -> Sink:
    """Annotated images for an image or folder, else one annotated MP4."""
    if source_kind(source) == "file" and not is_video(source):
        return ImageSink(save)
    stem = Path(source).stem if source_kind(source) == "file" else slug(name)
    return VideoSink(save / f"{stem}.annotated.mp4", fps=fps)


def run_stream(
    predictor: Any,
    source: str | Path,
    *,
    save: str | Path | None = None,
    limit: int | None = None,
    on_frame: Callable[[Any], None] | None = None,
    live: bool = False,
    fps: float | None = None,
    policy: ReconnectPolicy | None = None,
    queue_size: int = 2,
) -> RunSummary:
    """Run a camera index, an rtsp/http URL or a file (paced at its fps when ``live``)
    through :class:`~edgeinfer.pipeline.streams.StreamRunner`; Ctrl-C ends the run with its
    summary. Latencies are capture to result."""
    src = open_source(source, live=live, fps=fps, policy=policy)
    sinks: list[Sink] = []
    if save is not None:
        rate = fps or getattr(src, "fps", None) or 25.0
        sinks.append(_stream_sinks(str(source), src.name, Path(save), rate))
    if on_frame is not None:
        sinks.append(CallbackSink(on_frame))
    runner = StreamRunner(src, predictor, sinks, queue_size=queue_size, limit=limit)
    try:
        stats = runner.run()
    except KeyboardInterrupt:
        log.info("%s: interrupted", src.name)
        stats = runner.stats()
    saved = sinks[0] if save is not None else None
    return RunSummary(
        frames=stats.processed,
        seconds=stats.seconds,
        latencies_ms=runner.latencies_ms(),
        stages_ms=runner.stage_totals_ms(),
        saved=(saved.saved if isinstance(saved, ImageSink)
               else [str(saved.path)] if isinstance(saved, VideoSink) and saved.frames else []),
        frames_in=stats.frames_in,
        dropped=stats.dropped,
        reconnects=stats.reconnects,
    )
