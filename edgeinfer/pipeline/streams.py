"""The stream runner: source thread -> drop-oldest queue -> predictor -> sinks, with counters.

One :class:`StreamRunner` per stream; several run at once (:func:`run_streams`). A reader
thread pulls frames from the source into a :class:`~edgeinfer.pipeline.queues.DropOldestQueue`
and a worker thread predicts and feeds the sinks. A live source (camera, URL, paced file) never
waits for inference: when the worker falls behind, the oldest queued frame is dropped and
counted, so memory stays bounded by the queue size whatever the speed gap, and the worker
always takes the freshest frame. A file that is not live makes the reader wait instead, so no
frame is lost. Counters per stream (:class:`StreamStats`): frames in, processed, dropped,
reconnects, fps over a sliding window and capture-to-result latency p50/p99, frames the
predictor chose to skip (it raises :class:`FrameSkipped`: idle mode, a rejected request), and
the queue's length now and its high-water mark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.queues import DropOldestQueue, QueueClosedError
from edgeinfer.pipeline.sinks import Sink, StreamResult
from edgeinfer.pipeline.sources import Source
from edgeinfer.stats import percentile

__all__ = ["FrameSkipped", "StreamRunner", "StreamStats", "run_streams"]

log = logging.getLogger(__name__)


class FrameSkipped(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a predictor to pass over one frame without ending the stream (counted in
    ``skipped``; no result, the sinks see nothing)."""


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of one stream's counters. ``fps``: frames processed per second over the last
    ``fps_window_s``; ``mean_fps`` over the whole run; latencies are capture to result, over
    the last ``latency_window`` frames."""

    name: str
    frames_in: int
    processed: int
    dropped: int
    reconnects: int
    fps: float
    mean_fps: float
    p50_ms: float | None
    p99_ms: float | None
    seconds: float
    running: bool
    error: str | None = None
    skipped: int = 0
    queue_len: int = 0
    queue_max: int = 0
    queue_bound: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return asdict(self)


def _as_callable(predictor: Any) -> Callable[[np.ndarray], Any]:
    fn = getattr(predictor, "predict", None)
    if callable(fn):
        return fn
    if callable(predictor):
        return predictor
    raise EdgeInferError(
        f"{type(predictor).__name__} cannot predict: pass an object with predict(frame) "
        "(Predictor, TiledPredictor) or a function of the frame"
    )


class StreamRunner:
    """Runs ``source`` through ``predictor`` into ``sinks`` on two threads of its own.

    ``queue_size`` frames wait at most (drop-oldest for live sources); ``limit`` stops after
    that many processed frames. ``start``/``stop``/``wait`` or ``run`` (start and wait);
    ``stats()`` may be called from any thread at any time. The sinks are closed when the
    stream ends. A source, predictor or sink error ends the stream and is raised by ``wait``.
    """

    def __init__(
        self,
        source: Source,
        predictor: Any,
        sinks: Sequence[Sink] = (),
        *,
        queue_size: int = 2,
        limit: int | None = None,
        fps_window_s: float = 2.0,
        latency_window: int = 2048,
    ) -> None:
        if limit is not None and limit < 1:
            raise EdgeInferError(f"bad --limit {limit}: give at least 1 frame")
        self.source = source
        self.name = source.name
        self.sinks = list(sinks)
        self.limit = limit
        self.fps_window_s = fps_window_s
        self._predict = _as_callable(predictor)
        self._queue: DropOldestQueue[tuple[int, float, np.ndarray]] = DropOldestQueue(queue_size)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._frames_in = 0
        self._processed = 0
        self._skipped = 0
        self._queue_max = 0
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._done_at: deque[float] = deque()
        self._stages: dict[str, float] = {}
        self._error: BaseException | None = None
        self._started: float | None = None
        self._finished: float | None = None
        self._reader = threading.Thread(target=self._read, name=f"edgeinfer-read-{self.name}",
                                        daemon=True)
        self._worker = threading.Thread(target=self._work, name=f"edgeinfer-work-{self.name}",
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StreamRunner:
        """Start the reader and worker threads."""
        if self._started is not None:
            raise EdgeInferError(f"stream {self.name} was already started: make a new runner")
        self._started = time.monotonic()
        self._worker.start()
        self._reader.start()
        return self

    def stop(self) -> None:
        """Ask the stream to end: the source stops, frames still queued are discarded."""
        self._stopping.set()
        self.source.close()
        self._queue.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker (sinks closed); True when the stream has ended."""
        self._worker.join(timeout)
        if self._worker.is_alive():
            return False
        # the reader may sit in a blocking read (bounded by the source's read timeout)
        policy = getattr(self.source, "policy", None)
        self._reader.join(getattr(policy, "read_timeout_s", 5.0) + 1.0)
        return True

    def wait(self) -> StreamStats:
        """Wait until the stream ends; its counters, or the error that ended it."""
        self.join()
        if self._error is not None:
            raise self._error
        return self.stats()

    def run(self) -> StreamStats:
        """Start, wait, and return the counters; Ctrl-C stops the stream cleanly first."""
        self.start()
        try:
            return self.wait()
        except KeyboardInterrupt:
            self.stop()
            self.join()
            raise

    def __enter__(self) -> StreamRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._worker.is_alive()

    @property
    def error(self) -> BaseException | None:
        """The error that ended the stream, if any."""
        return self._error

    # ------------------------------------------------------------------ counters
    def stats(self) -> StreamStats:
        """The counters now (thread-safe)."""
        with self._lock:
            end = self._finished or time.monotonic()
            start = self._started or end
            while self._done_at and self._done_at[0] < end - self.fps_window_s:
                self._done_at.popleft()
            span = min(self.fps_window_s, end - start)
            lat = list(self._latencies)
            processed, frames_in = self._processed, self._frames_in
            in_window = len(self._done_at)
            skipped, queue_max = self._skipped, self._queue_max
        seconds = end - start
        return StreamStats(
            name=self.name,
            frames_in=frames_in,
            processed=processed,
            dropped=self._queue.dropped,
            reconnects=int(getattr(self.source, "reconnects", 0)),
            fps=in_window / span if span > 0 else 0.0,
            mean_fps=processed / seconds if seconds > 0 else 0.0,
            p50_ms=percentile(lat, 50),
            p99_ms=percentile(lat, 99),
            seconds=seconds,
            running=self.running,
            error=None if self._error is None else str(self._error),
            skipped=skipped,
            queue_len=len(self._queue),
            queue_max=queue_max,
            queue_bound=self._queue.maxsize,
        )

    def latencies_ms(self) -> list[float]:
        """Capture-to-result latencies of the last ``latency_window`` frames."""
        with self._lock:
            return list(self._latencies)

    def stage_totals_ms(self) -> dict[str, float]:
        """Per-stage milliseconds the predictor reported, summed over processed frames."""
        with self._lock:
            return dict(self._stages)

    # ------------------------------------------------------------------ threads
    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            log.info("stream %s ended: %s", self.name, exc)
        self.stop()

    def _read(self) -> None:
        block = not getattr(self.source, "live", True)
        frames = self.source.frames()
        try:
            for captured_at, frame in frames:
                with self._lock:
                    index = self._frames_in
                    self._frames_in += 1
                self._queue.put((index, captured_at, frame), block=block)
                held = len(self._queue)
                with self._lock:
                    self._queue_max = max(self._queue_max, held)
                if self._stopping.is_set():
                    break
        except QueueClosedError:
            pass
        except BaseException as exc:  # surfaced by wait()
            self._fail(exc)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # a generator source releases its capture here, in its own thread
            self._queue.close()  # the worker drains what is queued, then ends

    def _work(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    index, captured_at, frame = self._queue.get()
                except QueueClosedError:
                    break
                if self._stopping.is_set():
                    break
                try:
                    prediction = self._predict(frame)
                except FrameSkipped:
                    with self._lock:
                        self._skipped += 1
                    continue
                done = time.monotonic()
                result = StreamResult(self.name, index, captured_at, frame, prediction,
                                      (done - captured_at) * 1e3)
                with self._lock:
                    self._processed += 1
                    self._latencies.append(result.latency_ms)
                    self._done_at.append(done)
                    for k, v in result.times_ms.items():
                        self._stages[k] = self._stages.get(k, 0.0) + v
                for sink in self.sinks:
                    sink.write(result)
                if self.limit is not None and self._processed >= self.limit:
                    break
        except BaseException as exc:  # surfaced by wait()
            self._fail(exc)
        finally:
            self.stop()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # surfaced by wait()
                    self._fail(exc)
            with self._lock:
                self._finished = time.monotonic()


def run_streams(runners: Sequence[StreamRunner]) -> list[StreamStats]:
    """Run several streams at once until all end; their counters in order. The first error
    is raised once every stream has stopped; Ctrl-C stops them all."""
    for runner in runners:
        runner.start()
    try:
        for runner in runners:
            runner.join()
    except KeyboardInterrupt:
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join()
        raise
    for runner in runners:
        if runner.error is not None:
            for other in runners:
                other.stop()
            raise runner.error
    return [runner.stats() for runner in runners]
