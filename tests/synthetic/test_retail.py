"""The SYNTHETIC retail scenes: deterministic, ground truth that moves with the pixels, videos
that read back, and faces that a real face detector finds."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.errors import EdgeInferError
from edgeinfer.synthetic.retail import conveyor_frames, entrance_frames, write_video


def test_entrance_is_deterministic_and_has_empty_stretches() -> None:
    a = list(entrance_frames(3, 240))
    b = list(entrance_frames(3, 240))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.boxes, y.boxes)
               for x, y in zip(a, b, strict=True))
    counts = [len(f.boxes) for f in a]
    assert 0 in counts and max(counts) >= 1  # idle stretches and visitors
    for f in a:
        assert ((f.boxes[:, 0] >= 0) & (f.boxes[:, 2] <= 640) & (f.boxes[:, 3] <= 480)).all()
    assert not np.array_equal(a[0].image, next(entrance_frames(4, 1)).image)


def test_conveyor_defects_travel_with_the_belt() -> None:
    frames = list(conveyor_frames(0, 60, speed=16))
    moved = 0
    for prev, cur in itertools.pairwise(frames):
        for box, cls in zip(prev.boxes, prev.classes, strict=True):
            shifted = box - np.array([16, 0, 16, 0], np.float32)
            same = np.all(np.abs(cur.boxes - shifted) < 1e-3, axis=1) & (cur.classes == cls)
            if shifted[0] >= 0:
                assert same.any(), "a defect left the belt while still in view"
                moved += 1
    assert moved > 20
    # the pixels move too: the window at frame 1 is the window at frame 0 shifted by 16 px
    np.testing.assert_array_equal(frames[1].image[:, :-16], frames[0].image[:, 16:])


def test_write_video_reads_back(tmp_path: Path) -> None:
    path = write_video("conveyor", tmp_path / "belt.mp4", seconds=1, fps=10)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (480, 640, 3)
        n += 1
    cap.release()
    assert n == 10
    lines = Path(str(path) + ".jsonl").read_text().splitlines()
    assert len(lines) == 10 and "boxes" in json.loads(lines[0])
    with pytest.raises(EdgeInferError, match="unknown scene"):
        write_video("parking", tmp_path / "x.mp4", 1)


@pytest.mark.slow
def test_blazeface_finds_the_generated_faces(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from edgeinfer import zoo
    from edgeinfer.pipeline.predict import Predictor
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.vision.metrics import DetectionScore

    predictor = Predictor(Engine(zoo.get("blazeface-short", tmp_path / "bf")))
    score = DetectionScore(1)
    false_alarms = empty = 0
    for k, f in enumerate(entrance_frames(0, 600)):
        if k % 4:
            continue
        d = predictor.predict(f.image).result
        score.add(d.boxes, d.scores, d.class_ids, f.boxes, f.classes)
        if not len(f.boxes):
            empty += 1
            false_alarms += len(d) > 0
    s = score.summary()
    assert s["defects"] > 40 and s["recall"] > 0.7 and s["precision"] > 0.8
    assert empty > 40 and false_alarms <= 0.1 * empty
