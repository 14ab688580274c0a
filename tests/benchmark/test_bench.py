"""``edgeinfer bench``: measuring, shapes, errors, agreement, JSON/HTML, the command line."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgeinfer
from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.benchmark import BenchResult, bench, installed_backends
from edgeinfer.benchmark.harness import MIN_RUNS
from edgeinfer.benchmark.suite import _with_agreement
from edgeinfer.cli import app, main
from edgeinfer.errors import EdgeInferError, MissingDependencyError, ModelLoadError, ShapeError
from edgeinfer.report_html import cdf_chart, grouped_bar_chart
from edgeinfer.runtime.backends import TensorSpec
from edgeinfer.runtime.feeds import preprocess_range, synthetic_feeds

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino not installed"
)
needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert not installed"
)


def only(report):
    (r,) = report.results
    return r


# --- measuring -----------------------------------------------------------------------------


def test_percentiles_are_ordered_and_every_sample_is_kept(tiny_onnx: Path) -> None:
    r = only(bench(tiny_onnx, backends="ort", threads=1, runs=40, warmup=2))
    assert r.ok, r.error
    assert len(r.samples_ms) == r.runs == 40
    assert all(s > 0 for s in r.samples_ms)
    assert min(r.samples_ms) <= r.p50_ms <= r.p90_ms <= r.p99_ms <= max(r.samples_ms)
    assert r.p50_ms == pytest.approx(float(np.median(r.samples_ms)))
    assert r.mean_ms == pytest.approx(sum(r.samples_ms) / 40)
    # Throughput is runs over the wall time of the timed loop, which holds every sample.
    assert r.wall_s >= sum(r.samples_ms) / 1e3
    assert r.throughput == pytest.approx(40 / r.wall_s)
    assert r.load_ms > 0 and r.cold_ms > 0
    assert r.model_bytes == tiny_onnx.stat().st_size
    assert r.input_shapes == {"x": (1, 3, 8, 8)}


def test_duration_mode_times_until_the_deadline(tiny_onnx: Path) -> None:
    r = only(bench(tiny_onnx, backends="ort", threads=1, duration=0.2, warmup=0))
    assert r.wall_s >= 0.2 * 0.99  # the deadline is checked after each run
    assert r.runs >= MIN_RUNS
    assert r.runs > 100  # a microsecond model fits many runs in 0.2 s


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_figures_are_consistent(tiny_onnx: Path) -> None:
    report = bench(tiny_onnx, backends="ort", threads=[1, 2], runs=5, warmup=0)
    for r in report.results:
        assert r.rss_baseline_bytes > 0
        assert r.rss_peak_bytes >= r.rss_baseline_bytes
        assert r.rss_growth_bytes == r.rss_peak_bytes - r.rss_baseline_bytes
        assert r.rss_method == report.memory_method


def test_runs_and_duration_are_exclusive_and_checked(tiny_onnx: Path) -> None:
    with pytest.raises(EdgeInferError, match="not both"):
        bench(tiny_onnx, backends="ort", runs=5, duration=1.0)
    with pytest.raises(EdgeInferError, match="--runs 0"):
        bench(tiny_onnx, backends="ort", runs=0)
    with pytest.raises(EdgeInferError, match="--threads"):
        bench(tiny_onnx, backends="ort", threads="one")


# --- backends ------------------------------------------------------------------------------


def test_unknown_backend_is_a_clear_error(tiny_onnx: Path) -> None:
    with pytest.raises(EdgeInferError, match="unknown backend 'tensorrt'.*ort"):
        bench(tiny_onnx, backends="ort,tensorrt", runs=1)
    with pytest.raises(EdgeInferError, match="'all' alone"):
        bench(tiny_onnx, backends="all,ort", runs=1)


def test_backend_not_installed_is_a_clear_error(tiny_onnx: Path, monkeypatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == "openvino" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert "openvino" not in installed_backends()
    with pytest.raises(MissingDependencyError, match=r"'openvino'.*edgeinfer\[openvino\]"):
        bench(tiny_onnx, backends="openvino", runs=1)
    # `all` takes what is installed and reads the format: ONNX Runtime only, here.
    report = bench(tiny_onnx, backends="all", threads=1, runs=2, warmup=0)
    assert [r.backend for r in report.results] == ["ort"]


@needs_litert
def test_backend_that_cannot_load_is_a_row_unless_it_is_the_only_one(tiny_onnx: Path) -> None:
    report = bench(tiny_onnx, backends="ort,litert", threads=1, runs=3, warmup=0)
    ort, litert = report.results
    assert ort.ok and not litert.ok
    # the real cause, and the backends that read the format
    assert "backend 'litert' does not read onnx models" in litert.error
    assert "--backend ort" in litert.error
    assert litert.samples_ms == () and litert.p50_ms is None
    assert report.to_dict()["results"][1]["error"] == litert.error
    with pytest.raises(ModelLoadError, match="does not read onnx models"):
        bench(tiny_onnx, backends="litert", runs=3)


@needs_openvino
def test_all_on_onnx_is_ort_and_openvino_and_they_agree(tiny_onnx: Path) -> None:
    report = bench(tiny_onnx, backends="all", threads=[1, 2], runs=5, warmup=1)
    assert [(r.backend, r.threads) for r in report.results] == [
        ("ort", 1), ("ort", 2), ("openvino", 1), ("openvino", 2),
    ]
    ref, *others = report.results
    assert ref.agreement["is_reference"] is True
    assert len({r.feeds_sha256 for r in report.results}) == 1  # the same inputs for all
    for r in others:
        a = r.agreement
        assert a["reference"] == "ort, 1 thread"
        assert a["cosine"] > 0.99999
        assert a["max_abs_error"] < 1e-4
        assert a["top1_agreement"] == 1.0  # output y is [1, 2]: a class axis
    assert min(report.ratio(r) for r in report.results) == pytest.approx(1.0)


def test_spinning_is_one_more_ort_configuration(tiny_onnx: Path) -> None:
    """``spinning="run,never"``: ORT twice, OpenVINO once (spinning is an ORT option)."""
    report = bench(tiny_onnx, backends="ort,openvino", threads=[1], runs=5, warmup=1,
                   spinning="run,never")
    assert [(r.backend, r.spinning) for r in report.results] == [
        ("ort", "run"), ("ort", "never"), ("openvino", None)]
    assert [r.label for r in report.results] == [
        "ort, 1 thread", "ort never-spin, 1 thread", "openvino, 1 thread"]
    assert all(r.ok and r.runs == 5 for r in report.results)
    assert report.results[1].agreement["cosine"] > 0.99999
    assert report.settings["spinning"] == ["run", "never"]
    with pytest.raises(EdgeInferError, match="bad --spinning 'sometimes'"):
        bench(tiny_onnx, backends="ort", runs=1, spinning="sometimes")


def _result(backend: str, outputs: list[np.ndarray], digest: str = "same") -> BenchResult:
    return BenchResult(
        model="m", backend=backend, threads=1, model_bytes=1, samples_ms=(1.0,), wall_s=1.0,
        feeds_sha256=digest, outputs=tuple(outputs),
    )


def test_agreement_reports_disagreement() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], np.float32)
    flipped = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1]], np.float32)
    a, b, c = _with_agreement(
        [_result("ort", [ref]), _result("openvino", [flipped]), _result("x", [ref], "other")]
    )
    assert a.agreement["is_reference"]
    assert b.agreement["top1_agreement"] == 0.5
    assert b.agreement["max_abs_error"] == pytest.approx(0.8)
    assert b.agreement["cosine"] < 0.3  # the worst row: [0.1, 0.9] against [0.9, 0.1]
    assert "different" in c.agreement["error"]  # other inputs: not compared


# --- input shapes --------------------------------------------------------------------------


def test_dynamic_model_without_input_shape_names_the_input_and_the_flag(
    dynamic_onnx: Path,
) -> None:
    with pytest.raises(ShapeError) as info:
        bench(dynamic_onnx, backends="ort", runs=1)
    message = str(info.value)
    assert "'x'" in message and "--input-shape x=" in message
    assert "\n" not in message


def test_input_shape_resolves_dynamic_dims(dynamic_onnx: Path) -> None:
    r = only(bench(dynamic_onnx, backends="ort", threads=1, input_shapes={"x": (2, 3, 16, 16)},
                   runs=3, warmup=0))
    assert r.ok, r.error
    assert r.input_shapes == {"x": (2, 3, 16, 16)}
    assert r.outputs[0].shape == (2, 2)


def test_input_shape_must_name_an_input_and_fit(tiny_onnx: Path) -> None:
    with pytest.raises(ShapeError, match="'nope'.*\\['x'\\]"):
        bench(tiny_onnx, backends="ort", input_shapes={"nope": (1, 2)}, runs=1)
    with pytest.raises(ShapeError, match=r"\[1, 3, 8, 8\].*\[1, 3, 9, 9\]"):
        bench(tiny_onnx, backends="ort", input_shapes={"x": (1, 3, 9, 9)}, runs=1)


def test_input_shape_applies_to_the_models_it_fits(tiny_onnx: Path, dynamic_onnx: Path) -> None:
    report = bench([tiny_onnx, dynamic_onnx], backends="ort", threads=1,
                   input_shapes={"x": (1, 3, 12, 12)}, runs=2, warmup=0)
    assert [r.input_shapes["x"] for r in report.results] == [(1, 3, 8, 8), (1, 3, 12, 12)]


def test_artifact_manifest_shape_is_the_default(dynamic_onnx: Path, tmp_path: Path) -> None:
    directory = tmp_path / "art"
    Artifact.create(
        directory, dynamic_onnx, name="dyn-art", task="other",
        inputs=(InputSpec(name="x", shape=(1, 3, 12, 12)),), source=SourceInfo(name="tests"),
    )
    r = only(bench(directory, backends="ort", threads=1, runs=2, warmup=0))
    assert (r.model, r.input_shapes) == ("dyn-art", {"x": (1, 3, 12, 12)})
    r = only(bench(directory, backends="ort", threads=1, runs=2, warmup=0,
                   input_shapes={"x": (1, 3, 20, 20)}))
    assert r.input_shapes == {"x": (1, 3, 20, 20)}


# --- feeds ---------------------------------------------------------------------------------


def test_feeds_are_seeded_and_follow_dtype_and_preprocessing() -> None:
    specs = (TensorSpec("img", (1, None, 4, 3), "float32"), TensorSpec("ids", (1, 5), "int64"),
             TensorSpec("q", (2, 2), "uint8"))
    pre = Preprocess(scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    a = synthetic_feeds(specs, {"img": (1, 6, 4, 3)}, preprocess=pre, seed=3)
    b = synthetic_feeds(specs, {"img": (1, 6, 4, 3)}, preprocess=pre, seed=3)
    c = synthetic_feeds(specs, {"img": (1, 6, 4, 3)}, preprocess=pre, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["img"], c["img"])
    assert a["img"].shape == (1, 6, 4, 3) and a["img"].dtype == np.float32
    lo, hi = preprocess_range(pre)
    assert (lo, hi) == pytest.approx((-2.0, 2.0))
    assert lo <= a["img"].min() and a["img"].max() <= hi and a["img"].std() > 0.3
    assert a["ids"].dtype == np.int64 and 0 <= a["ids"].min() and a["ids"].max() < 10
    assert a["q"].dtype == np.uint8
    # the suggested fix is one the --input-shape parser accepts
    with pytest.raises(ShapeError, match="'img'.*--input-shape img=1x640x4x3"):
        synthetic_feeds(specs)


# --- reports -------------------------------------------------------------------------------


def test_json_has_every_field(tiny_onnx: Path, tmp_path: Path) -> None:
    report = bench(tiny_onnx, backends="ort", threads=[1, 2], runs=7, warmup=1)
    path = report.write_json(tmp_path / "out" / "bench.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "edgeinfer.bench/1"
    m = data["machine"]
    assert {"cpu", "cores", "usable_cpus", "python", "versions", "os"} <= set(m)
    assert m["cpu"] and m["cores"] >= 1 and "onnxruntime" in m["versions"]
    assert data["memory"]["method"] in ("clear_refs", "ru_maxrss") and data["memory"]["note"]
    assert data["settings"]["runs"] == 7 and data["settings"]["threads"] == [1, 2]
    (model,) = data["models"]
    assert model["bytes"] == tiny_onnx.stat().st_size and model["input_shapes"] == {
        "x": [1, 3, 8, 8]
    }
    for row in data["results"]:
        assert row["ok"] and row["error"] is None
        assert len(row["samples_ms"]) == row["runs"] == 7
        lat = row["latency_ms"]
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["throughput_ips"] > 0 and row["load_ms"] > 0 and row["cold_ms"] > 0
        assert set(row["memory"]) == {
            "baseline_rss_bytes", "peak_rss_bytes", "rss_growth_bytes", "method"
        }
        assert row["p50_ratio_to_best"] >= 1.0
        assert row["agreement"]["reference"] == "ort, 1 thread"
    assert data["results"][1]["agreement"]["cosine"] == pytest.approx(1.0)


def test_html_is_self_contained_with_svg_plots(tiny_onnx: Path, tmp_path: Path) -> None:
    report = bench(tiny_onnx, backends="ort", threads=[1, 2], runs=20, warmup=1)
    text = report.write_html(tmp_path / "bench.html").read_text()
    assert text.startswith("<!doctype html>")
    assert text.count("<svg") == 2  # percentile bars + the model's latency CDF
    assert "<polyline" in text and "tiny.onnx" in text
    assert "http" not in text and "<script" not in text


def test_svg_helpers_are_well_formed() -> None:
    bars = grouped_bar_chart("t", ["a", "b"], {"p50": [1.0, 2.0], "p99": [3.0, None]}, "ms")
    cdf = cdf_chart("c", {"a & b": [3.0, 1.0, 2.0], "many": list(np.linspace(1, 2, 5000))})
    for svg in (bars, cdf):
        ET.fromstring(svg)  # parses as XML
    assert bars.count("<rect") == 2 + 3  # legend swatches + the three bars with values
    assert "a &amp; b" in cdf
    many = ET.fromstring(cdf).findall("polyline")[1].get("points").split()
    assert len(many) <= 2 * 400 + 1  # long sample sets are thinned


def test_table_shows_every_configuration(tiny_onnx: Path) -> None:
    from rich.console import Console

    from edgeinfer.cli.render_bench import render_bench

    report = bench(tiny_onnx, backends="ort", threads=[1, 2], runs=5, warmup=0)
    console = Console(width=80, record=True, color_system=None)
    render_bench(report, console)
    text = console.export_text()
    assert "tiny.onnx: onnx fp32" in text and "inputs x=1x3x8x8" in text
    assert "p50 / best" in text and "1.00x" in text and "cold start" in text
    assert text.count("\n ort ") == 3 * 2  # both thread counts in each of the three tables
    assert report.machine["cpu"] in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_lazy_top_level_export() -> None:
    assert edgeinfer.bench is bench


# --- command line --------------------------------------------------------------------------


def test_cli_bench_json(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    html = tmp_path / "b.html"
    result = CliRunner().invoke(
        app,
        ["bench", str(tiny_onnx), "--backend", "ort", "--threads", "1,2", "--runs", "5",
         "--warmup", "1", "-o", str(out), "--html", str(html), "--spinning", "run,never"],
    )
    assert result.exit_code == 0, result.output
    assert "latency" in result.output and f"wrote {out}" in result.output
    assert "ort never-spin" in result.output
    data = json.loads(out.read_text())
    assert [(r["backend"], r["threads"], r["spinning"]) for r in data["results"]] == [
        ("ort", 1, "run"), ("ort", 1, "never"), ("ort", 2, "run"), ("ort", 2, "never")]
    assert all(len(r["samples_ms"]) == 5 for r in data["results"])
    assert "<svg" in html.read_text()


def test_cli_errors_are_one_line_exit_2(capsys, dynamic_onnx: Path, tiny_onnx: Path) -> None:
    for args, needle in (
        (["bench", str(dynamic_onnx), "--backend", "ort"], "--input-shape x="),
        (["bench", str(tiny_onnx), "--backend", "nope"], "unknown backend 'nope'"),
        (["bench", str(tiny_onnx), "--runs", "3", "--duration", "1"], "not both"),
        (["bench", "no-such-model"], "zoo"),
    ):
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeinfer: error: "), err
        assert needle in lines[0], (needle, err)


def test_cli_input_shape(capsys, dynamic_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    code = main(["bench", str(dynamic_onnx), "--backend", "ort", "--threads", "1", "--runs", "3",
                 "--input-shape", "x=1x3x10x10", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["results"][0]["input_shapes"] == {"x": [1, 3, 10, 10]}
