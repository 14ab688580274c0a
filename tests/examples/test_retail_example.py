"""The retail example end to end: short generated videos, the scenario for a few seconds.

The entrance video of seed 0 is empty for its first ~6 s (figures enter after that), so the
entrance's idle mode (after 3 s without a face) must engage and then end when faces appear.
The FP32 detector is used: the INT8 build (~20 s) is what ``run.py`` does by default and is
exercised by ``edgeinfer demo``'s tests.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_retail_scenario_runs_every_stream_and_idles_the_empty_entrance(tmp_path):
    make_videos = _load("retail_make_videos", ROOT / "examples/retail/make_videos.py")
    run = _load("retail_run", ROOT / "examples/retail/run.py")
    videos = tmp_path / "videos"
    make_videos.make_videos(videos, seconds=12, conveyor_seconds=5)
    truth = [json.loads(line) for line in (videos / "entrance.mp4.jsonl").open()]
    first_face = next(i for i, t in enumerate(truth) if t["boxes"]) / 15.0
    assert first_face > 4.5, "the entrance must start empty for idle mode to engage"
    console = Console(record=True, width=120)
    summary = run.run_scenario(first_face + 3.0, videos, tmp_path / "out", "fp32",
                               console=console)
    streams = summary["streams"]
    assert set(streams) == {"entrance", "conveyor-1", "conveyor-2"}
    for name, s in streams.items():
        assert s["frames"] > 0 and s["mean_fps"] > 0 and s["error"] is None, name
    entrance = streams["entrance"]
    assert entrance["idle_entries"] >= 1 and entrance["idle_skipped"] > 0
    assert summary["detections"]["entrance"] > 0  # faces found once they walked in
    assert summary["detections"]["conveyor-2"] > 0  # defects on its belt from 2 s on
    assert entrance["state"] == "active"  # faces are in view at the end
    acc = summary["accuracy"]  # against the generator's ground truth, IoU 0.5
    assert acc["entrance"]["recall"] > 0.5 and acc["conveyor-2"]["recall"] > 0.5, acc
    assert set(summary["energy"]["phases"]) == {"busy", "idle"}
    assert json.loads((tmp_path / "out/summary.json").read_text())["precision"] == "fp32"
    assert "energy view" in console.export_text()
