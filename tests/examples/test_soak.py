"""benchmarks/soak.py, short: the same code path as the 10-minute soak in ~20 s (three
streams at saturation, the loopback MJPEG camera killed and restarted twice, RSS drift;
the 2% drift target is checked by the full run only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_soak_passes_its_checks(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks/soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    # conveyor-2's camera at 400 fps: far above what any 2-4 core box's detector sustains
    # beside two other streams (at the benchmark's 30 fps a fast CI box kept up: 0 drops)
    result = soak.run_soak(duration_s=20, sample_s=0.5, kills=2, down_s=1.5, live_fps=400.0,
                           workdir=tmp_path, log=lambda *_: None)
    assert result["reconnects"] == result["restarts"] == 2
    for name, s in result["streams"].items():
        assert s["frames"] > 0 and s["queue_max"] <= s["queue_bound"], name
    c2 = result["streams"]["conveyor-2"]
    assert c2["drops"] > 0, c2  # live above capacity: drops counted
    # every frame read is processed, evicted, skipped, or still queued / in flight (<= 2 workers)
    unaccounted = (c2["frames_in"] - c2["frames"] - c2["queue_drops"] - c2["rejected"]
                   - c2["idle_skipped"])
    assert 0 <= unaccounted <= c2["queue_bound"] + 2, c2
    assert result["rss_mib"]["samples"] >= 30
    checks = {k: v for k, v in result["checks"].items() if k != "rss_drift_under_2pct"}
    assert all(checks.values()), checks
    # 20 s is too short for the 2% target (the first seconds still grow arenas and caches; the
    # 10-minute run is what measures it): here only a bound that a leak of one frame a frame
    # (~1 MB x ~15 fps) would break
    assert abs(result["rss_drift"]) < 0.10, result["rss_series"]
