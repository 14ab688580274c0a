"""The stream runner on local sources: every frame of a file, pacing, drop-oldest under a slow
consumer (bounded latency and memory), several streams at once, errors, stop, counters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_builders import tiny_classifier

from edgeinfer.artifact import Artifact
from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.pipeline.sinks import CallbackSink, JsonLinesSink
from edgeinfer.pipeline.sources import (
    CaptureSource,
    FileSource,
    ReconnectPolicy,
    open_source,
    redact_url,
    source_kind,
)
from edgeinfer.pipeline.streams import StreamRunner, run_streams
from edgeinfer.runtime.engine import Engine


def _video(path: Path, frames: int, fps: float = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), (7 * i) % 250, np.uint8))
    writer.release()
    return path


def _slow(seconds: float):
    def predict(frame: np.ndarray) -> float:
        time.sleep(seconds)
        return float(frame.mean())
    return predict


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class CameraLike:
    """A live source producing fresh full-HD frames at ``fps`` for ``seconds`` (a camera)."""

    live = True
    reconnects = 0

    def __init__(self, fps: float, seconds: float, shape=(1080, 1920, 3)) -> None:
        self.name, self.fps, self.seconds, self.shape = "camlike", fps, seconds, shape
        self._stop = threading.Event()

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        start = time.monotonic()
        i = 0
        while not self._stop.is_set() and time.monotonic() - start < self.seconds:
            frame = np.empty(self.shape, np.uint8)
            frame.fill(i % 256)  # touch every page, as a decoder would
            yield time.monotonic(), frame
            i += 1
            self._stop.wait(max(0.0, start + i / self.fps - time.monotonic()))

    def close(self) -> None:
        self._stop.set()


def test_a_file_that_is_not_live_loses_no_frame_to_a_slow_consumer(tmp_path):
    src = FileSource(_video(tmp_path / "clip.mp4", 20))
    seen: list[int] = []
    stats = StreamRunner(src, _slow(0.01), [CallbackSink(lambda r: seen.append(r.index))],
                         queue_size=1).run()
    assert stats.frames_in == stats.processed == 20 and stats.dropped == 0
    assert seen == list(range(20)) and stats.reconnects == 0 and not stats.running


def test_live_file_is_paced_at_its_fps(tmp_path):
    src = open_source(_video(tmp_path / "clip.mp4", 12, fps=40), live=True)
    assert src.live and src.fps == pytest.approx(40)
    stamps = [t for t, _ in src.frames()]
    gaps = np.diff(stamps)
    assert len(stamps) == 12 and stamps[-1] - stamps[0] >= 11 / 40 - 0.01
    assert np.median(gaps) == pytest.approx(1 / 40, abs=0.01)


def test_live_source_drops_oldest_so_latency_stays_bounded(tmp_path):
    """A consumer 3x slower than a 100 fps stream: the queue drops and the consumer always
    takes a fresh frame, so capture-to-result latency stays near one inference (a queue that
    kept everything would reach 1.2 s by the 60th frame)."""
    src = FileSource(_video(tmp_path / "clip.mp4", 60), live=True, fps=100)
    runner = StreamRunner(src, _slow(0.03), queue_size=1)
    stats = runner.run()
    assert stats.frames_in == 60
    assert stats.dropped >= 25
    assert stats.processed + stats.dropped <= 60
    assert stats.p99_ms is not None and stats.p99_ms < 250
    assert stats.mean_fps == pytest.approx(stats.processed / stats.seconds)


def test_memory_stays_bounded_when_inference_is_3x_slower_than_the_camera():
    """Full-HD frames (6 MiB) at 60 fps, inference at 20 fps, 2.5 s: about 150 frames read,
    two thirds dropped; resident memory grows by a handful of frames, not by the backlog
    (which would be 600 MiB)."""
    src = CameraLike(fps=60, seconds=2.5)
    runner = StreamRunner(src, _slow(0.05), queue_size=2)
    base = _rss()
    peak = base
    runner.start()
    while runner.running:
        peak = max(peak, _rss())
        time.sleep(0.02)
    stats = runner.wait()
    # the camera outruns inference (here ~150 frames read, ~50 processed): what is not
    # processed is dropped, not kept (a box too loaded to fill 60 fps still drops)
    assert stats.dropped > 0 and stats.processed <= 2.5 / 0.05 + 2
    assert stats.frames_in - stats.processed - stats.dropped <= 3
    assert (peak - base) / 2**20 < 80, f"RSS grew {(peak - base) / 2**20:.0f} MiB"


def _artifact(tmp_path) -> Artifact:
    return tiny_classifier(tmp_path)


def test_two_streams_share_one_predictor_with_their_own_counters(tmp_path):
    predictor = Predictor(Engine(_artifact(tmp_path)))
    out = tmp_path / "results.jsonl"
    sink = JsonLinesSink(out)
    runners = [
        StreamRunner(FileSource(_video(tmp_path / "a.mp4", 8)), predictor, [sink]),
        StreamRunner(FileSource(_video(tmp_path / "b.mp4", 5)), predictor, [], limit=3),
    ]
    a, b = run_streams(runners)
    assert (a.processed, b.processed) == (8, 3)
    assert a.name.endswith("a.mp4") and a.p50_ms is not None and a.p50_ms > 0
    assert runners[0].stage_totals_ms().keys() == {"preprocess", "infer", "decode"}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in lines] == list(range(8))
    assert lines[0]["result"][0]["label"] in ("dark", "bright")


def test_errors_end_the_stream_and_surface_in_wait(tmp_path):
    def broken(frame: np.ndarray) -> None:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        StreamRunner(FileSource(_video(tmp_path / "c.mp4", 3)), broken).run()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(EdgeInferError, match="not a readable video"):
        StreamRunner(FileSource(bad), _slow(0)).run()
    with pytest.raises(EdgeInferError, match="cannot predict"):
        StreamRunner(FileSource(bad), object())
    with pytest.raises(EdgeInferError, match="no such file"):
        open_source(tmp_path / "missing.mp4")


def test_stop_ends_an_endless_live_source_promptly_and_closes_sinks():
    closed = threading.Event()

    class Sink:
        def write(self, result) -> None:
            pass

        def close(self) -> None:
            closed.set()

    runner = StreamRunner(CameraLike(fps=200, seconds=1e9, shape=(8, 8, 3)), _slow(0.001),
                          [Sink()])
    with runner:
        deadline = time.monotonic() + 10  # poll: a loaded box may take longer to get going
        while runner.stats().processed <= 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        mid = runner.stats()
        assert mid.running and mid.processed > 10 and mid.fps > 10
    t0 = time.monotonic()
    assert runner.join(2) and time.monotonic() - t0 < 1.5
    assert closed.is_set() and not runner.stats().running


def test_reconnect_policy_backoff_is_exponential_and_capped():
    policy = ReconnectPolicy(initial_s=0.5, max_backoff_s=10, factor=2)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert policy.delay(100_000) == 10  # a long outage does not overflow
    with pytest.raises(EdgeInferError, match="reconnect policy"):
        ReconnectPolicy(initial_s=5, max_backoff_s=1)
    with pytest.raises(EdgeInferError, match="--retries"):
        ReconnectPolicy(max_retries=0)


def test_source_kinds_and_redacted_names(tmp_path):
    assert source_kind("0") == "camera"
    assert source_kind("rtsp://user:pw@10.0.0.5:554/stream1") == "url"
    assert source_kind("HTTP://cam.local/video.mjpg") == "url"
    assert source_kind(tmp_path) == "file"
    assert redact_url("rtsp://user:pw@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    src = open_source("rtsp://admin:secret@10.0.0.5/live")
    assert isinstance(src, CaptureSource) and "secret" not in src.name


def test_missing_camera_gives_up_after_its_retries_with_one_line():
    src = CaptureSource(99, ReconnectPolicy(initial_s=0.01, max_backoff_s=0.02, max_retries=3))
    with pytest.raises(EdgeInferError, match="camera 99 cannot be read after 3 attempts"):
        StreamRunner(src, _slow(0)).run()
    assert src.failures == 3 and src.reconnects == 0


def test_cli_live_file_is_paced_and_reports_drops_and_reconnects(tmp_path, capsys):
    art = _artifact(tmp_path).path
    clip = _video(tmp_path / "clip.mp4", 10)
    t0 = time.monotonic()
    rc = main(["run", str(art), "--source", str(clip), "--live", "--fps", "50", "--json",
               "--queue", "1"])
    assert rc == 0 and time.monotonic() - t0 >= 9 / 50
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["frames_in"] == 10 and summary["reconnects"] == 0
    assert summary["frames"] + summary["dropped"] == 10 == len(lines) - 1 + summary["dropped"]
    assert lines[0]["source"] == f"{clip}#0"
    rc = main(["run", str(art), "--source", str(clip), "--live", "--fps", "100"])
    out = capsys.readouterr().out
    assert rc == 0 and "reconnects 0" in out and "dropped " in out
    assert main(["run", str(art), "--source", str(clip), "--live", "--fps", "-1"]) == 2
    assert "--fps" in capsys.readouterr().err
