"""Soak: three streams at saturation through one scheduler for a long run; memory must not drift.

Streams (all SYNTHETIC, :mod:`edgeinfer.synthetic.retail`), run by
:class:`~edgeinfer.pipeline.multistream.MultiStreamRunner`:

- ``entrance``: BlazeFace on an MJPEG-over-HTTP camera served from this process on loopback
  (15 fps, generated entrance frames). The server is killed ``--kills`` times (down for
  ``--down-s`` seconds each, then restarted on the same port); the stream must reconnect
  every time, counted by the source.
- ``conveyor-1``: the defect detector on a generated conveyor video replayed in a loop as fast
  as it is read (not live: the reader waits for the worker, the worker never idles).
- ``conveyor-2``: the same detector on another conveyor video, live at ``--live-fps`` (more than
  the box sustains next to the others: the drop-oldest queue drops, and they are counted).

Checks (exit status 1 when one fails): RSS drift = (median RSS of the last window - median of
the second window) / median of the second window < 2% (windows of 60 s for a run of 5 min or
more, else a fifth of the run); no stream's queue ever held more than its bound (the
high-water mark the runner keeps, sampled with RSS); reconnects == kills; every stream
produced results and none ended with an error.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--sample-s 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from edgeinfer.machine import rss_bytes
from edgeinfer.pipeline.multistream import MultiStreamRunner, parse_streams_config
from edgeinfer.runtime.scheduler import Scheduler
from edgeinfer.synthetic.mjpeg_camera import MjpegCamera
from edgeinfer.synthetic.retail import entrance_frames, write_video


def _entrance_jpegs(n: int = 150) -> list[bytes]:
    return [cv2.imencode(".jpg", f.image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for f in entrance_frames(7, n)]


def _config(work: Path, url: str, defects: str, live_fps: float) -> Any:
    for name, seed in (("conveyor-1.mp4", 1), ("conveyor-2.mp4", 2)):
        if not (work / name).exists():
            write_video("conveyor", work / name, 8.0, 15.0, seed)
    reconnect = {"initial_s": 0.2, "max_backoff_s": 1.0, "max_retries": None,
                 "open_timeout_s": 3.0, "read_timeout_s": 2.0}
    return parse_streams_config({
        "scheduler": {"workers": 1},
        "models": {"faces": "blazeface-short", "defects": defects},
        "streams": [
            {"name": "entrance", "source": url, "model": "faces", "priority": 2,
             "queue": 2, "reconnect": reconnect},
            {"name": "conveyor-1", "source": "conveyor-1.mp4", "model": "defects",
             "live": False, "loop": True, "queue": 4},
            {"name": "conveyor-2", "source": "conveyor-2.mp4", "model": "defects",
             "live": True, "fps": live_fps, "loop": True, "queue": 2},
        ],
    }, work)


def _median_between(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    vals = [r for t, r in samples if t0 <= t < t1]
    if not vals:
        raise RuntimeError(f"no RSS sample between {t0:.0f} s and {t1:.0f} s: sample more often")
    return float(statistics.median(vals))


def run_soak(duration_s: float = 600.0, sample_s: float = 5.0, kills: int = 2,
             down_s: float = 3.0, live_fps: float = 30.0, defects: str = "defect-detector",
             workdir: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Run the soak; its figures and checks (``passed``)."""
    window = 60.0 if duration_s >= 300 else duration_s / 5
    kill_at = [duration_s * (k + 1) / (kills + 1) for k in range(kills)]
    tmp = tempfile.TemporaryDirectory(prefix="edgeinfer-soak-") if workdir is None else None
    work = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    camera = MjpegCamera(_entrance_jpegs()).start()
    samples: list[tuple[float, int]] = []
    queue_violations: list[str] = []
    restarts = 0
    try:
        config = _config(work, camera.url, defects, live_fps)
        with Scheduler(config.scheduler_config()) as scheduler:
            runner = MultiStreamRunner(scheduler, config).start()
            t0 = time.monotonic()
            next_sample, pending = t0, list(kill_at)
            try:
                while (now := time.monotonic()) - t0 < duration_s:
                    if pending and now - t0 >= pending[0]:
                        pending.pop(0)
                        camera.stop()
                        log(f"{now - t0:6.0f} s: camera killed for {down_s:g} s")
                        time.sleep(down_s)
                        camera.start()
                        restarts += 1
                    if now >= next_sample:
                        samples.append((now - t0, rss_bytes() or 0))
                        for name, st in runner.stats().items():
                            if st["queue_max"] > st["queue_bound"]:
                                queue_violations.append(f"{name}: {st['queue_max']} queued")
                        next_sample += sample_s
                    time.sleep(min(0.1, max(0.0, next_sample - time.monotonic())))
                # the last reconnect may still be in its backoff: give it up to 10 s
                end = time.monotonic() + 10
                while (runner.stats()["entrance"]["reconnects"] < restarts
                       and time.monotonic() < end):
                    time.sleep(0.1)
                stats = runner.stats()
            finally:
                runner.stop()
            sched = scheduler.stats()
    finally:
        camera.stop()
        if tmp is not None:
            tmp.cleanup()
    second = _median_between(samples, window, 2 * window)
    last = _median_between(samples, duration_s - window, duration_s + 1)
    drift = (last - second) / second
    reconnects = stats["entrance"]["reconnects"]
    checks = {
        "rss_drift_under_2pct": drift < 0.02,
        "queues_within_bounds": not queue_violations,
        "reconnected_every_time": reconnects == restarts == kills,
        "every_stream_produced": all(s["frames"] > 0 for s in stats.values()),
        "no_stream_errors": all(s["error"] is None for s in stats.values()),
    }
    return {
        "duration_s": duration_s, "sample_s": sample_s, "window_s": window,
        "rss_mib": {"second_window_median": second / 2**20, "last_window_median": last / 2**20,
                    "min": min(r for _, r in samples) / 2**20,
                    "max": max(r for _, r in samples) / 2**20, "samples": len(samples)},
        "rss_drift": drift, "kills": kills, "restarts": restarts, "reconnects": reconnects,
        "queue_violations": queue_violations[:10],
        "streams": stats,
        "scheduler": {k: {f: v.get(f) for f in ("completed", "run_ms_p50", "run_ms_p99",
                                                  "loads", "measured_bytes")}
                      for k, v in sched["models"].items()},
        "rss_series": [(round(t, 1), round(r / 2**20, 2)) for t, r in samples],
        "checks": checks, "passed": all(checks.values()),
    }


def _print(result: dict[str, Any]) -> None:
    rss = result["rss_mib"]
    print(f"\nsoak {result['duration_s']:.0f} s; RSS median second window "
          f"{rss['second_window_median']:.1f} MiB, last window {rss['last_window_median']:.1f} "
          f"MiB (min {rss['min']:.1f}, max {rss['max']:.1f}, {rss['samples']} samples)")
    print(f"drift (last - second) / second = {result['rss_drift'] * 100:+.2f}% (target < 2%)")
    print(f"camera kills {result['kills']}, restarts {result['restarts']}, "
          f"reconnects counted {result['reconnects']}")
    print(f"{'stream':<12}{'frames':>8}{'mean fps':>9}{'p50 ms':>8}{'p99 ms':>8}{'drops':>7}"
          f"{'queue max/bound':>17}")
    for name, s in result["streams"].items():
        print(f"{name:<12}{s['frames']:>8}{s['mean_fps']:>9.1f}"
              f"{s['latency_ms_p50'] or 0:>8.1f}{s['latency_ms_p99'] or 0:>8.1f}"
              f"{s['drops']:>7}{s['queue_max']:>9}/{s['queue_bound']}")
    for k, ok in result["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {k}")


def main() -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    ap.add_argument("--kills", type=int, default=2, help="times the HTTP camera is killed")
    ap.add_argument("--down-s", type=float, default=3.0, help="seconds it stays down")
    ap.add_argument("--live-fps", type=float, default=30.0, help="conveyor-2's camera rate")
    ap.add_argument("--defects", default="defect-detector",
                    help="detector: zoo name, artifact dir or model file")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    result = run_soak(args.duration, args.sample_s, args.kills, args.down_s, args.live_fps,
                      args.defects)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
