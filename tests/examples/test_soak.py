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
    result = soak.run_soak(duration_s=20, sample_s=0.5, kills=2, down_s=1.5,
                           workdir=tmp_path, log=lambda *_: None)
    assert result["reconnects"] == result["restarts"] == 2
    for name, s in result["streams"].items():
        assert s["frames"] > 0 and s["queue_max"] <= s["queue_bound"], name
    assert result["streams"]["conveyor-2"]["drops"] > 0  # live above capacity: drops counted
    assert result["rss_mib"]["samples"] >= 30
    checks = {k: v for k, v in result["checks"].items() if k != "rss_drift_under_2pct"}
    assert all(checks.values()), checks
    # 20 s is too short for the 2% target (the first seconds still grow arenas and caches; the
    # 10-minute run is what measures it): here only a bound that a leak of one frame a frame
    # (~1 MB x ~15 fps) would break
    assert abs(result["rss_drift"]) < 0.10, result["rss_series"]
