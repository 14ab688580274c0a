"""INT8 timed against FP32 before any calibration or fallback search: the stop rule with an
injected timer (both branches, on any CPU), the same rule with the real timer, and the accuracy
guard's sample count and interval."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli.render import render_optimize
from edgeinfer.machine import cpu_features
from edgeinfer.optimization.evaluate import Latency, compare
from edgeinfer.optimization.guard import MIN_SAMPLES, estimate_drop
from edgeinfer.optimization.int8 import SLOWER_MARGIN, SPEED_CHECK_SAMPLES, features_text
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize
from edgeinfer.stats import wilson_interval

torch = pytest.importorskip("torch")


def _artifact(tmp_path: Path) -> Artifact:
    from edgeinfer.model.export import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()
    path = export(net, torch.zeros(1, 3, 16, 16), tmp_path / "net.onnx", simplify=False)
    return Artifact.create(tmp_path / "art", path, name="net", task="classification",
                           inputs=(InputSpec(name="input", shape=(1, 3, 16, 16)),),
                           decoder="classification", source=SourceInfo(name="net"))


def _samples(n_cal: int = 24, n_eval: int = 40) -> Samples:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n_cal + n_eval, 3, 16, 16)).astype(np.float32)
    return Samples(data[:n_cal], data[n_cal:], origin="synthetic normal noise")


class FakeTimer:
    """Reports FP32 at 10 ms and every other model at ``ratio`` x 10 ms; records its calls."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.calls: list[list[str]] = []

    def __call__(self, paths, sample) -> list[Latency]:
        self.calls.append([Path(p).name for p in paths])
        return [Latency(10.0 if i == 0 else 10.0 * self.ratio, 11.0, 10, 0)
                for i in range(len(paths))]


def test_int8_not_faster_stops_before_calibration_and_search(tmp_path, capsys) -> None:
    from rich.console import Console

    timer = FakeTimer(1.2)
    t0 = time.perf_counter()
    out = optimize(_artifact(tmp_path), tmp_path / "o", OptimizeConfig(max_drop=0.0), _samples(),
                   timer=timer)
    report = out.manifest.reports["optimize"]
    assert timer.calls == [["fp32.onnx", "int8-speed-check.onnx"]]  # timed once, first
    assert report["int8_speed_check"]["ratio"] == pytest.approx(1.2)
    assert report["int8_speed_check"]["calibration_samples"] == SPEED_CHECK_SAMPLES
    assert report["int8_speed_check"]["faster"] is False
    assert "plain_int8" not in report and "fallback_trials" not in report  # no calibration
    assert report["recommended"] == "fp32" and out.manifest.model.precision == "fp32"
    (problem,) = report["problems"]
    assert problem.startswith("INT8 not faster here") and features_text() in problem
    assert str(SLOWER_MARGIN) in problem
    assert time.perf_counter() - t0 < 60
    render_optimize(report, Console(file=None, width=200))
    assert "INT8 not faster here" in capsys.readouterr().out


def test_int8_faster_goes_on_to_calibration_and_the_fallback(tmp_path) -> None:
    timer = FakeTimer(0.5)
    out = optimize(_artifact(tmp_path), tmp_path / "o",
                   OptimizeConfig(max_drop=0.0, latency_rounds=1), _samples(), timer=timer)
    report = out.manifest.reports["optimize"]
    assert report["int8_speed_check"]["faster"] is True
    assert "plain_int8" in report and "fallback_trials" in report  # max_drop 0: it searched
    assert timer.calls[0] == ["fp32.onnx", "int8-speed-check.onnx"]
    assert timer.calls[-1][:2] == ["fp32.onnx", "candidate.onnx"]


def test_the_stop_rule_holds_with_the_real_timer(tmp_path) -> None:
    """Whatever this CPU measures: stopped if and only if full INT8 was slower than the
    margin allows."""
    out = optimize(_artifact(tmp_path), tmp_path / "o", OptimizeConfig(latency_rounds=2),
                   _samples())
    report = out.manifest.reports["optimize"]
    check = report["int8_speed_check"]
    assert ("stopped" in report) == (check["ratio"] > SLOWER_MARGIN)
    if "stopped" in report:
        assert report["recommended"] == "fp32"


def test_the_cpu_wording_for_avx2_without_vnni() -> None:
    from edgeinfer.optimization.hardware import int8_advice

    flags = "processor\t: 0\nflags\t\t: sse sse2 avx avx2 fma\n\n"
    f = cpu_features(flags, "x86_64")
    assert features_text(f) == "x86_64: AVX2, no AVX-512, no VNNI"
    reason = int8_advice(f).reason
    assert "often no faster than FP32" in reason and "modest speed-up" not in reason


# --- the accuracy guard ----------------------------------------------------------------------


def test_wilson_interval() -> None:
    assert wilson_interval(0, 19) == pytest.approx((0.0, 0.1682), abs=1e-3)
    lo, hi = wilson_interval(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)


@pytest.mark.parametrize("n", [19, MIN_SAMPLES])
def test_drop_is_established_only_from_enough_samples(n) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(n, 10)) * 4
    ref = compare(logits, logits)
    cand = compare(logits, logits + rng.normal(scale=1e-3, size=logits.shape))
    est = estimate_drop(logits, logits, cand, ref, None, 0.5)
    assert est.value == 0.0 and est.low == 0.0
    assert est.high > 0  # 0 disagreements do not prove a 0 drop
    assert est.samples <= n and est.established == (est.samples >= MIN_SAMPLES)
    if not est.established:
        assert "not established" in est.text()


def test_the_report_shows_samples_and_interval(tmp_path) -> None:
    out = optimize(_artifact(tmp_path), tmp_path / "o",
                   OptimizeConfig(precision="fp16", latency_rounds=1), _samples())
    report = out.manifest.reports["optimize"]
    interval = report["drop_interval"]
    assert interval["samples"] == 40 and interval["established"] is False
    assert interval["low"] <= report["result"]["drop"] <= interval["high"]
    html = (out.path / "optimize-report.html").read_text()
    assert "not established" in html and "40 samples" in html
