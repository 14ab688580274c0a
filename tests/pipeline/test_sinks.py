"""Sinks: annotated image files, an annotated video, JSON lines (shared by threads), callbacks."""

from __future__ import annotations

import io
import json
import threading
from types import SimpleNamespace

import cv2
import numpy as np

from edgeinfer.pipeline.sinks import (
    CallbackSink,
    ImageSink,
    JsonLinesSink,
    StreamResult,
    VideoSink,
    slug,
)
from edgeinfer.vision.boxes import Detections


def _result(index: int = 3, size: tuple[int, int] = (48, 64), stream: str = "cam") -> StreamResult:
    dets = Detections(boxes=[[4, 4, 30, 30]], scores=[0.9], class_ids=[1],
                      labels=("scratch", "spot"))

    pred = SimpleNamespace(result=dets, times_ms={"infer": 1.25})  # as edgeinfer predictors give
    frame = np.full((*size, 3), 30, np.uint8)
    return StreamResult(stream, index, 0.0, frame, pred, 12.3456)


def test_image_sink_writes_annotated_frames_named_by_stream_and_index(tmp_path):
    sink = ImageSink(tmp_path / "out")
    sink.write(_result(index=12, stream="rtsp://cam/1"))
    sink.close()
    path = tmp_path / "out" / "rtsp_cam_1-000012.jpg"
    assert sink.saved == [str(path)]
    image = cv2.imread(str(path))
    assert image.shape == (48, 64, 3)
    assert np.abs(image.astype(int) - 30).max() > 60  # the box was drawn


def test_video_sink_writes_every_frame_and_resizes_odd_ones(tmp_path):
    sink = VideoSink(tmp_path / "v" / "cam.annotated.mp4", fps=10)
    for i in range(4):
        sink.write(_result(index=i, size=(48, 64) if i != 2 else (96, 128)))
    sink.close()
    cap = cv2.VideoCapture(str(sink.path))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (48, 64, 3)
        n += 1
    cap.release()
    assert n == 4 == sink.frames


def test_json_lines_shared_by_threads_stay_whole_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    sink = JsonLinesSink(path)
    threads = [threading.Thread(target=lambda s=s: [sink.write(_result(i, stream=s))
                                                    for i in range(200)])
               for s in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 600
    first = next(r for r in lines if r["stream"] == "b" and r["index"] == 7)
    assert first["source"] == "b#7" and first["latency_ms"] == 12.346
    assert first["times_ms"] == {"infer": 1.25}
    assert first["result"][0]["label"] == "spot" and first["result"][0]["box"] == [4, 4, 30, 30]


def test_json_lines_to_a_stream_with_plain_results():
    out = io.StringIO()
    sink = JsonLinesSink(out)
    sink.write(StreamResult("s", 0, 0.0, np.zeros((2, 2, 3), np.uint8), np.arange(3), 1.0))
    sink.write(StreamResult("s", 1, 0.0, np.zeros((2, 2, 3), np.uint8), object(), 1.0))
    sink.close()
    assert not out.closed  # not ours to close
    a, b = (json.loads(line) for line in out.getvalue().splitlines())
    assert a["result"] == [0, 1, 2] and a["times_ms"] == {}
    assert b["result"].startswith("<object")


def test_callback_sink_calls_through():
    seen: list[int] = []
    sink = CallbackSink(lambda r: seen.append(r.index))
    for i in range(3):
        sink.write(_result(index=i))
    assert seen == [0, 1, 2]


def test_slug_makes_file_names():
    assert slug("http://127.0.0.1:8080/live.mjpg") == "http_127.0.0.1_8080_live.mjpg"
    assert slug("///") == "stream"
