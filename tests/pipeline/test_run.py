"""`edgeinfer run`: image, folder and video sources, annotated output, JSON lines, summary."""

from __future__ import annotations

import json

import cv2
import numpy as np
from onnx_builders import tiny_classifier

from edgeinfer.artifact import Artifact
from edgeinfer.cli import main
from edgeinfer.pipeline.sources import iter_frames


def _classifier(tmp_path) -> Artifact:
    return tiny_classifier(tmp_path)


def _video(path, frames: int = 5) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()


def test_folder_to_json_and_annotated_images(tmp_path, capsys):
    art = _classifier(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((40, 50, 3), 80 * i, np.uint8))
    rc = main(["run", str(art.path), "--source", str(images), "--json", "--top-k", "1",
               "--save", str(tmp_path / "out")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    frames, summary = doc["frames"], doc["summary"]
    assert [f["source"].split("/")[-1] for f in frames] == ["0.png", "1.png", "2.png"]
    assert all(len(f["result"]) == 1 and f["result"][0]["label"] in ("dark", "bright")
               for f in frames)
    assert summary["frames"] == 3 and summary["fps"] > 0 and summary["p50_ms"] > 0
    assert set(summary["stages_ms"]) == {"preprocess", "infer", "decode"}
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert saved == ["0.jpg", "1.jpg", "2.jpg"]
    drawn = cv2.imread(str(tmp_path / "out" / "0.jpg"))
    assert drawn.shape == (40, 50, 3) and drawn.any()  # text drawn on a black frame


def test_video_source_with_limit_writes_an_annotated_video(tmp_path, capsys):
    art = _classifier(tmp_path)
    clip = tmp_path / "clip.mp4"
    _video(clip)
    assert [n for n, _ in iter_frames(clip)] == [f"{clip}#{i}" for i in range(5)]
    rc = main(["run", str(art.path), "--source", str(clip), "--limit", "3",
               "--save", str(tmp_path / "out")])
    assert rc == 0
    assert "3 frames" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_bad_sources_and_options_are_one_line_errors(tmp_path, capsys):
    art = _classifier(tmp_path)
    assert main(["run", str(art.path), "--source", str(tmp_path / "nope.jpg")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["run", str(art.path), "--source", str(broken)]) == 2
    assert "video" in capsys.readouterr().err
    assert main(["run", str(art.path), "--source", str(tmp_path), "--overlap", "1.5"]) == 2
