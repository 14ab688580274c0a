"""The YAML multi-stream runner: config validation, streams through one scheduler, idle mode,
rejected frames as drops, the on_result contract, the latest annotated frame and the CLI.

Real parts: BlazeFace (zoo, LiteRT) on generated entrance frames (faces, or the empty shop),
written as short MJPG videos in tmp_path; a tiny ONNX classifier built in code.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from onnx_builders import tiny_classifier

from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.multistream import (
    LoopingSource,
    MultiStreamRunner,
    load_streams_config,
    parse_streams_config,
)
from edgeinfer.pipeline.sources import FileSource
from edgeinfer.runtime.scheduler import Scheduler, SchedulerConfig
from edgeinfer.synthetic.retail import entrance_frames

STATS_KEYS = {"fps", "latency_ms_p50", "latency_ms_p99", "frames", "drops", "state",
              "reconnects", "queue_len", "queue_max"}


def _video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """faces.avi: 2 s of the entrance while figures cross it; empty.avi: the empty shop."""
    d = tmp_path_factory.mktemp("videos")
    scene = [f for f in entrance_frames(0, 15 * 14)]
    faces = [f.image for f in scene if len(f.boxes)][:30]
    empty = [f.image for f in scene[:60] if not len(f.boxes)][:30]
    assert len(faces) == 30 and len(empty) == 30
    return {"faces": _video(d / "faces.avi", faces), "empty": _video(d / "empty.avi", empty)}


@pytest.fixture
def classifier(tmp_path) -> Path:
    return tiny_classifier(tmp_path).path


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _good(videos) -> dict:
    return {"models": {"faces": "blazeface-short"},
            "streams": [{"name": "door", "source": str(videos["faces"]), "model": "faces"}]}


# ---------------------------------------------------------------- config


def test_config_resolves_paths_from_its_folder_and_keeps_zoo_names(tmp_path, videos,
                                                                   classifier):
    (tmp_path / "v.avi").write_bytes(videos["faces"].read_bytes())
    cfg = load_streams_config(_write(tmp_path, {
        "scheduler": {"workers": 2, "threads": 1},
        "models": {"faces": "blazeface-short", "tiny": "art"},
        "streams": [{"name": "a", "source": "v.avi", "model": "faces", "priority": 2,
                     "deadline_ms": 100, "idle": {"after_s": 1, "idle_fps": 2}},
                    {"name": "b", "source": "http://127.0.0.1:9/x.mjpg", "model": "tiny",
                     "reconnect": {"max_retries": 3}}],
    }))
    assert cfg.models == {"faces": "blazeface-short", "tiny": str(tmp_path / "art")}
    a, b = cfg.streams
    assert a.source == str(tmp_path / "v.avi") and a.priority == 2 and a.idle.after_s == 1
    assert b.source == "http://127.0.0.1:9/x.mjpg"  # a URL is not a path
    sc = cfg.scheduler_config()
    assert (sc.workers, sc.threads) == (2, 1)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["streams"][0].update(model="nope"), r"unknown model 'nope'.*define it"),
    (lambda d: d["streams"][0].update(source="missing.mp4"), r"source 'missing.mp4' not found"),
    (lambda d: d["streams"][0].pop("source"), r"stream 'door': missing 'source'"),
    (lambda d: d["streams"][0].update(prio=1), r"stream 'door': unknown key 'prio'"),
    (lambda d: d.update(camera=1), r"config: unknown key 'camera'"),
    (lambda d: d["streams"][0].update(idle={"after": 1}), r"door' idle: unknown key 'after'"),
    (lambda d: d["streams"][0].update(queue=0), r"bad queue 0"),
    (lambda d: d["streams"][0].update(idle={"idle_fps": 60}), r"door' idle: idle mode needs"),
    (lambda d: d["streams"][0].update(reconnect={"factor": 0.5}), r"reconnect: bad reconnect"),
    (lambda d: d["streams"].append(dict(d["streams"][0])), r"'door' used twice"),
    (lambda d: d["models"].update(faces="no-such-model"), r"model 'faces'.*no zoo model"),
    (lambda d: d.update(streams=[]), r"no streams"),
])
def test_bad_configs_are_one_line_errors_naming_the_key(tmp_path, videos, mutate, message):
    data = _good(videos)
    mutate(data)
    with pytest.raises(EdgeInferError, match=message) as err:
        load_streams_config(_write(tmp_path, data))
    assert "\n" not in str(err.value) and "streams.yaml" in str(err.value)


def test_unreadable_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(EdgeInferError, match=r"not valid YAML at line"):
        load_streams_config(bad)
    with pytest.raises(EdgeInferError, match="no such config file"):
        load_streams_config(tmp_path / "none.yaml")


def test_looping_source_replays_the_file(videos):
    src = LoopingSource(FileSource(videos["faces"]))
    frames = src.frames()
    n = sum(1 for _ in zip(range(75), frames, strict=False))
    assert n == 75 and src.loops == 2


# ---------------------------------------------------------------- running


def _run(cfg, seconds: float, on_result=None, workers: int = 1):
    with Scheduler(SchedulerConfig(workers=workers)) as sch:
        runner = MultiStreamRunner(sch, cfg, on_result).start()
        try:
            runner.wait(seconds)
            stats = runner.stats()
            latest = {n: runner.latest_frame(n) for n in runner.names}
        finally:
            runner.stop()
        return runner, stats, latest, sch.stats()


def test_streams_share_the_scheduler_and_keep_the_on_result_contract(videos, classifier):
    cfg = parse_streams_config({
        "models": {"faces": "blazeface-short", "tiny": str(classifier)},
        "streams": [
            {"name": "door", "source": str(videos["faces"]), "model": "faces", "live": False,
             "priority": 2},
            {"name": "shop", "source": str(videos["empty"]), "model": "tiny", "live": False},
        ],
    })
    calls: list[tuple[str, object, np.ndarray]] = []
    runner, stats, latest, sched = _run(cfg, 30, lambda s, p, f: calls.append((s, p, f)))
    assert set(stats) == {"door", "shop"}
    for name in ("door", "shop"):
        s = stats[name]
        assert STATS_KEYS <= set(s)
        assert s["frames"] == 30 and s["drops"] == 0 and s["error"] is None  # not live: no loss
        assert s["queue_max"] <= s["queue_bound"] == 2
    assert sched["models"]["faces"]["completed"] == 30  # through the scheduler
    assert sched["models"]["tiny"]["completed"] == 30
    door = [c for c in calls if c[0] == "door"]
    assert len(door) == 30 and all(isinstance(f, np.ndarray) and f.shape == (480, 640, 3)
                                   for _, _, f in door)
    found = sum(len(p.result) for _, p, _ in door)
    assert found >= 25, f"BlazeFace found {found} faces in 30 frames that all show one"
    assert latest["door"].shape == (480, 640, 3)
    assert not np.array_equal(latest["door"], door[-1][2])  # boxes drawn on a copy
    with pytest.raises(EdgeInferError, match="unknown stream"):
        runner.latest_frame("nope")


def test_idle_mode_slows_an_empty_stream_and_a_busy_one_stays_active(videos):
    idle = {"after_s": 0.5, "idle_fps": 2, "full_fps": 15}
    cfg = parse_streams_config({
        "models": {"faces": "blazeface-short"},
        "streams": [
            {"name": "empty", "source": str(videos["empty"]), "model": "faces", "loop": True,
             "idle": idle},
            {"name": "faces", "source": str(videos["faces"]), "model": "faces", "loop": True,
             "idle": idle},
        ],
    })
    runner, stats, _, _ = _run(cfg, 3.0)
    empty, faces = stats["empty"], stats["faces"]
    assert empty["state"] == "idle" and empty["idle_entries"] == 1
    assert faces["state"] == "active" and faces["idle_entries"] == 0
    # 3 s of a 15 fps camera: ~0.5 s at full rate, then 2 frames a second
    assert empty["idle_skipped"] > 20 and empty["frames"] < 20
    assert faces["frames"] > 30
    assert runner.energy()["phases"]  # the meter saw the run


def test_motion_gate_keeps_a_still_idle_stream_off_the_model(videos, tmp_path):
    """``idle: {motion: 4}``: a camera on a still scene (one frame plus sensor noise) is
    looked at at the idle rate, but once idle the model does not run on it."""
    cap = cv2.VideoCapture(str(videos["empty"]))
    ok, still = cap.read()
    cap.release()
    assert ok
    rng = np.random.default_rng(1)
    frames = [np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)
              for _ in range(30)]
    video = _video(tmp_path / "still.avi", frames)
    idle = {"after_s": 0.5, "idle_fps": 4, "full_fps": 15}
    cfg = parse_streams_config({
        "models": {"faces": "blazeface-short"},
        "streams": [{"name": s, "source": str(video), "model": "faces", "loop": True,
                     "idle": {**idle, **extra}}
                    for s, extra in (("gated", {"motion": 4.0}), ("plain", {}))],
    })
    _, stats, _, _ = _run(cfg, 3.0)
    gated, plain = stats["gated"], stats["plain"]
    assert gated["state"] == plain["state"] == "idle"
    # ~2.5 s idle at 4 fps: about 10 due frames; the plain stream runs them, the gated one not
    assert gated["still_skipped"] >= 5 and plain["still_skipped"] == 0
    assert gated["frames"] + 5 <= plain["frames"]


def test_frames_the_scheduler_rejects_are_drops_and_the_stream_goes_on(videos, classifier):
    cfg = parse_streams_config({
        "models": {"tiny": str(classifier)},
        "streams": [{"name": "s", "source": str(videos["empty"]), "model": "tiny",
                     "live": False, "deadline_ms": 0.001}],
    })
    _, stats, latest, sched = _run(cfg, 20)
    s = stats["s"]
    assert s["error"] is None and s["rejected"] == 30 and s["drops"] == 30 and s["frames"] == 0
    assert latest["s"] is None
    m = sched["models"]["tiny"]
    assert m["rejected_deadline"] + m["skipped"] == 30


def test_a_failing_on_result_is_counted_not_fatal(videos, classifier):
    cfg = parse_streams_config({
        "models": {"tiny": str(classifier)},
        "streams": [{"name": "s", "source": str(videos["empty"]), "model": "tiny",
                     "live": False}],
    })

    def boom(*_):
        raise RuntimeError("dashboard down")

    _, stats, _, _ = _run(cfg, 20, boom)
    assert stats["s"]["frames"] == 30 and stats["s"]["callback_errors"] == 30
    assert stats["s"]["error"] is None


# ---------------------------------------------------------------- CLI


def test_cli_streams_help():
    assert main(["streams", "--help"]) == 0


def test_cli_runs_a_config_and_prints_the_energy_view(tmp_path, videos, capsys):
    data = _good(videos)
    data["streams"][0].update(idle={"after_s": 0.3, "idle_fps": 2}, loop=True)
    data["streams"].append({"name": "shop", "source": str(videos["empty"]), "model": "faces",
                            "idle": {"after_s": 0.3, "idle_fps": 2}, "loop": True})
    out = tmp_path / "summary.json"
    t0 = time.monotonic()
    assert main(["streams", str(_write(tmp_path, data)), "--duration", "2",
                 "-o", str(out)]) == 0
    assert time.monotonic() - t0 < 20
    text = capsys.readouterr().out
    assert "energy view" in text and "CPU s per hour" in text and "summary" in text
    import json

    summary = json.loads(out.read_text())
    assert summary["streams"]["door"]["frames"] > 0 and summary["energy"]["phases"]


def test_cli_bad_config_exits_2_with_one_line(tmp_path, videos, capsys):
    data = _good(videos)
    data["streams"][0]["model"] = "nope"
    assert main(["streams", str(_write(tmp_path, data))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeinfer: error:") and "unknown model 'nope'" in err
    assert len(err.splitlines()) == 1


def test_a_jsonl_sink_from_the_config_gets_every_result(tmp_path, videos, classifier):
    cfg = parse_streams_config({
        "models": {"tiny": str(classifier)},
        "streams": [{"name": "s", "source": str(videos["empty"]), "model": "tiny",
                     "live": False, "sink": "out/s.jsonl"}],
    }, tmp_path)
    _, stats, _, _ = _run(cfg, 20)
    lines = (tmp_path / "out/s.jsonl").read_text().splitlines()
    assert stats["s"]["frames"] == len(lines) == 30
