"""Network streams for real: an MJPEG-over-HTTP server on loopback (``http.server`` in a
thread) is read through OpenCV's FFmpeg backend, killed, stalled and restarted; the source
reconnects with backoff, counts it, and leaks nothing across re-creations."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_builders import tiny_classifier

from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.sinks import CallbackSink
from edgeinfer.pipeline.sources import CaptureSource, ReconnectPolicy
from edgeinfer.pipeline.streams import StreamRunner
from edgeinfer.synthetic.mjpeg_camera import MjpegCamera


def _grey(level: int) -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), level, np.uint8))[1].tobytes()


def _camera(level: int = 60, **kw) -> MjpegCamera:
    """A camera serving uniform grey JPEG frames of ``level`` (default 50 fps)."""
    return MjpegCamera([_grey(level)], **{"fps": 50.0, **kw})


@pytest.fixture
def server():
    servers: list[MjpegCamera] = []

    def make(**kw) -> MjpegCamera:
        servers.append(_camera(**kw).start())
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


FAST = ReconnectPolicy(initial_s=0.05, max_backoff_s=0.2, max_retries=None,
                       open_timeout_s=2, read_timeout_s=2)


def _until(cond, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_source_reconnects_after_the_server_dies_and_comes_back(server):
    srv = server(level=60)
    levels: list[float] = []
    src = CaptureSource(srv.url, FAST)
    runner = StreamRunner(src, lambda f: float(f.mean()), [CallbackSink(
        lambda r: levels.append(r.prediction))]).start()
    try:
        _until(lambda: len(levels) >= 5)
        srv.stop()
        _until(lambda: src.failures >= 2)  # down: open attempts fail, backing off
        assert src.reconnects == 0 and runner.running
        srv.jpegs = [_grey(200)]
        srv.start()  # same port
        _until(lambda: levels and levels[-1] > 150)
    finally:
        runner.stop()
    stats = runner.wait()
    assert stats.reconnects == 1 and src.reconnects == 1
    assert min(levels) < 80 and max(levels) > 180  # frames from both servers
    assert stats.processed == len(levels) and stats.frames_in >= stats.processed


def test_unreachable_url_backs_off_then_gives_up_in_one_line():
    url = f"http://127.0.0.1:{_free_port()}/stream.mjpg"
    policy = ReconnectPolicy(initial_s=0.05, max_backoff_s=0.1, max_retries=4)
    t0 = time.monotonic()
    with pytest.raises(EdgeInferError, match=r"unreachable after 4 attempts") as err:
        StreamRunner(CaptureSource(url, policy), lambda f: 0).run()
    # waits between the 4 attempts: 0.05 + 0.1 + 0.1 (capped)
    assert 0.24 <= time.monotonic() - t0 < 3
    assert url in str(err.value) and "\n" not in str(err.value)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_repeated_reconnects_leak_no_descriptors_or_memory(server):
    """Every connection ends after 4 frames: 60 re-creations of the capture must not grow the
    open file descriptors (each leaked capture holds its socket) or resident memory."""
    srv = server(per_connection=4, fps=200)
    policy = ReconnectPolicy(initial_s=0.0, max_backoff_s=0.0, max_retries=None,
                             open_timeout_s=2, read_timeout_s=2)
    src = CaptureSource(srv.url, policy)
    with StreamRunner(src, lambda f: 0, queue_size=1):
        _until(lambda: src.reconnects >= 10, timeout=20)
        fds0, rss0 = _fds(), _rss_mib()
        _until(lambda: src.reconnects >= 70, timeout=40)
        fds1, rss1 = _fds(), _rss_mib()
    assert srv.connections >= 71
    assert fds1 - fds0 <= 4, f"{fds1 - fds0} descriptors more after 60 reconnects"
    assert rss1 - rss0 < 15, f"RSS grew {rss1 - rss0:.1f} MiB over 60 reconnects"


def test_a_stalled_stream_hits_the_read_timeout_and_reconnects(server):
    srv = server(stall_first=True)
    policy = ReconnectPolicy(initial_s=0.05, max_backoff_s=0.1, max_retries=None,
                             open_timeout_s=1, read_timeout_s=0.5)
    src = CaptureSource(srv.url, policy)
    t0 = time.monotonic()
    with StreamRunner(src, lambda f: 0) as runner:
        _until(lambda: src.reconnects >= 1 and runner.stats().processed >= 6, timeout=10)
    assert time.monotonic() - t0 < 5 and srv.connections >= 2


def _classifier(tmp_path) -> Path:
    return tiny_classifier(tmp_path).path


def test_cli_runs_an_http_stream_and_saves_an_annotated_video(server, tmp_path, capsys):
    srv = server(level=220)
    art = _classifier(tmp_path)
    rc = main(["run", str(art), "--source", srv.url, "--limit", "5", "--json",
               "--save", str(tmp_path / "out")])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    frames, summary = lines[:-1], lines[-1]["summary"]
    assert len(frames) == 5 and frames[0]["source"].startswith(srv.url + "#")
    assert all(f["result"][0]["label"] in ("dark", "bright") for f in frames)
    assert summary["frames"] == 5 and summary["reconnects"] == 0
    assert summary["frames_in"] >= 5
    saved = Path(summary["saved"][0])
    assert saved.name == f"http_127.0.0.1_{srv.port}_stream.mjpg.annotated.mp4"
    cap = cv2.VideoCapture(str(saved))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_cli_unreachable_url_is_one_line_naming_url_and_fix(tmp_path, capsys):
    art = _classifier(tmp_path)
    url = f"rtsp://user:secret@127.0.0.1:{_free_port()}/live"
    rc = main(["run", str(art), "--source", url, "--retries", "2", "--max-backoff", "0.05"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "unreachable after 2 attempts" in err and "--retries" in err
    assert "secret" not in err and "127.0.0.1" in err
