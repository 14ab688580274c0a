"""The command line, in-process through ``edgeinfer.cli.main`` (plus one real subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer import zoo
from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli import main

EXE = Path(sys.executable).parent / "edgeinfer"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def result_rows(out: str) -> list[tuple[str, str, str]]:
    """The '  class_id  label  score' lines of `edgeinfer run` output."""
    return re.findall(r"^\s+(\d+)\s+(\S+)\s+(\d\.\d{3})\s*$", out, flags=re.MULTILINE)


def assert_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgeinfer: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)


@pytest.fixture
def classifier(tiny_onnx: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "classifier"
    Artifact.create(
        directory, tiny_onnx,
        name="tiny-classifier", task="classification",
        inputs=(InputSpec(name="x", shape=(1, 3, 8, 8), layout="NCHW"),),
        outputs=("y",), labels=["a", "b"], decoder="classification",
        source=SourceInfo(name="tests"),
    )
    return directory


@pytest.fixture
def images(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name in ("one.png", "two.png"):
        img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        assert cv2.imwrite(str(directory / name), img)
    (directory / "notes.txt").write_text("not an image, skipped")
    return directory


# --- inspect ---------------------------------------------------------------------------------


def test_inspect_table(capsys, tiny_onnx: Path) -> None:
    code, out, err = cli(capsys, "inspect", tiny_onnx)
    assert code == 0, err
    assert "MACs" in out
    assert "6.92 K" in out  # 6912 Conv + 8 Gemm MACs
    assert "Activation memory" in out
    assert "MACs per op" not in out
    assert err == ""


def test_inspect_json(capsys, tiny_onnx: Path) -> None:
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--json")
    assert code == 0
    report = json.loads(out)
    assert {"macs", "memory", "params"} <= set(report)
    assert report["macs"]["total"] == 256 * 27 + 8
    assert report["params"]["count"] == 108 + 4 + 8 + 2
    assert report["params"]["bytes"] == 4 * (108 + 4 + 8 + 2)
    assert report["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32",
                                 "bytes": 768}]
    assert report["path"] == str(tiny_onnx)
    assert "per_op" not in report["macs"]
    assert "budget" not in report


def test_inspect_json_per_op(capsys, tiny_onnx: Path) -> None:
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--json", "--per-op")
    assert code == 0
    per_op = json.loads(out)["macs"]["per_op"]
    assert [(o["op_type"], o["macs"]) for o in per_op] == [
        ("Conv", 6912), ("Relu", None), ("GlobalAveragePool", None), ("Flatten", None),
        ("Gemm", 8),
    ]


def test_inspect_per_op_table(capsys, tiny_onnx: Path) -> None:
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--per-op")
    assert code == 0
    assert "MACs per op" in out
    for name in ("conv", "relu", "pool", "flatten", "fc"):
        assert name in out


def test_budget_too_small(capsys, tiny_onnx: Path) -> None:
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--budget", "1KB")
    assert code == 1
    assert "does not fit" in out


def test_budget_fits(capsys, tiny_onnx: Path) -> None:
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--budget", "10MB")
    assert code == 0
    assert "fits" in out
    assert "does not fit" not in out
    code, out, _ = cli(capsys, "inspect", tiny_onnx, "--budget", "10MB", "--json")
    budget = json.loads(out)["budget"]
    assert budget["fits"] is True
    assert budget["budget_bytes"] == 10 * 1024**2


def test_bad_budget(capsys, tiny_onnx: Path) -> None:
    code, _, err = cli(capsys, "inspect", tiny_onnx, "--budget", "lots")
    assert code == 2
    assert_error_line(err, "'lots'")


def test_input_shape_on_dynamic_model(capsys, dynamic_onnx: Path) -> None:
    code, out, err = cli(capsys, "inspect", dynamic_onnx, "--input-shape", "x=1x3x16x16",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert report["macs"]["total"] == 4 * 16 * 16 * 27 + 8


def test_dynamic_model_without_input_shape(capsys, dynamic_onnx: Path) -> None:
    code, _, err = cli(capsys, "inspect", dynamic_onnx)
    assert code == 2
    assert_error_line(err, "--input-shape x=")


@pytest.mark.parametrize(
    ("value", "needle"),
    [("x=1xfoox16", "bad shape '1xfoox16'"), ("1x3x16x16", "NAME=1x3x640x640"),
     ("y=1x3x16x16", "['y']"), ("x=1x3x16", "match the model's rank")],
)
def test_bad_input_shape(capsys, dynamic_onnx: Path, value: str, needle: str) -> None:
    code, _, err = cli(capsys, "inspect", dynamic_onnx, "--input-shape", value)
    assert code == 2
    assert_error_line(err, needle)


def test_missing_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "missing.onnx"
    code, out, err = cli(capsys, "inspect", path)
    assert code == 2
    assert out == ""
    assert_error_line(err, str(path), "zoo list")


def test_truncated_model(capsys, tiny_onnx: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(tiny_onnx.read_bytes()[:100])
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2
    assert_error_line(err, str(path), "truncated or corrupt")


# --- zoo -------------------------------------------------------------------------------------


def test_zoo_get_unknown(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "nope-out"
    code, _, err = cli(capsys, "zoo", "get", "nope", "-o", out_dir)
    assert code == 2
    assert_error_line(err, "unknown zoo model 'nope'", "efficientnet-lite0")
    assert not out_dir.exists()


def test_zoo_list(capsys) -> None:
    code, out, _ = cli(capsys, "zoo", "list")
    assert code == 0
    for name in ("efficientnet-lite0", "ppocrv4-det", "ppocrv4-rec", "blazeface-short",
                 "defect-detector", "defect-detector-small"):
        assert name in zoo.ZOO
    for name in zoo.ZOO:
        assert name in out
    # the install hint is shown whole, rich markup does not eat '[zoo]'
    assert "edgeinfer[" in out


# --- run -------------------------------------------------------------------------------------


def test_run_prints_labels(capsys, classifier: Path, images: Path) -> None:
    code, out, err = cli(capsys, "run", classifier, "--source", images / "one.png")
    assert code == 0, err
    assert "one.png" in out
    rows = result_rows(out)
    assert sorted(r[1] for r in rows) == ["a", "b"]
    assert sorted(r[0] for r in rows) == ["0", "1"]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=2e-3)


def test_run_top_k(capsys, classifier: Path, images: Path) -> None:
    code, out, _ = cli(capsys, "run", classifier, "-s", images / "one.png", "--top-k", "1")
    assert code == 0
    assert [r[1] for r in result_rows(out)] in (["a"], ["b"])


def test_run_json_is_one_document(capsys, classifier: Path, images: Path) -> None:
    code, out, err = cli(capsys, "run", classifier, "--source", images, "--json")
    assert code == 0, err
    doc = json.loads(out)
    records, summary = doc["frames"], doc
    assert summary["summary"]["frames"] == 2
    assert [Path(r["source"]).name for r in records] == ["one.png", "two.png"]
    for r in records:
        assert {x["label"] for x in r["result"]} == {"a", "b"}
        assert sum(x["score"] for x in r["result"]) == pytest.approx(1.0, abs=1e-5)
        assert set(r["times_ms"]) == {"preprocess", "infer", "decode"}


def test_run_matches_onnxruntime(capsys, classifier: Path, images: Path) -> None:
    import onnxruntime as ort

    code, out, _ = cli(capsys, "run", classifier, "-s", images / "two.png", "--json")
    assert code == 0
    result = json.loads(out)["frames"][0]["result"]
    img = cv2.imread(str(images / "two.png"))
    x = cv2.cvtColor(cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = x.astype(np.float32).transpose(2, 0, 1)[None]
    sess = ort.InferenceSession(str(classifier / "tiny.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"x": x})[0][0]
    assert result[0]["class_id"] == int(np.argmax(logits))


def test_run_corrupt_image_in_directory(capsys, classifier: Path, images: Path) -> None:
    """A folder: an unreadable image is skipped and counted (as optimize does), the others run;
    a single unreadable file is still one clean line."""
    bad = images / "three.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, out, err = cli(capsys, "run", classifier, "--source", images, "--json")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["frames"] == 2 and summary["skipped"] == 1
    assert summary["skipped_files"] == [str(bad)]
    code, _, err = cli(capsys, "run", classifier, "--source", bad)
    assert code == 2
    assert_error_line(err, str(bad), "not a readable image")


def test_run_missing_source(capsys, classifier: Path, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "run", classifier, "-s", tmp_path / "nothing.png")
    assert code == 2
    assert_error_line(err, "nothing.png")


def test_run_empty_directory(capsys, classifier: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "run", classifier, "-s", empty)
    assert code == 2
    assert_error_line(err, str(empty), "holds no images")


def test_run_artifact_without_decoder(capsys, tiny_onnx: Path, images: Path) -> None:
    code, _, err = cli(capsys, "run", tiny_onnx, "-s", images / "one.png")
    assert code == 2
    assert_error_line(err, "names no decoder")


# --- the real executable ---------------------------------------------------------------------


@pytest.mark.skipif(not EXE.exists(), reason="edgeinfer console script not installed")
def test_real_exit_code_and_debug(tmp_path: Path) -> None:
    path = tmp_path / "missing.onnx"
    proc = subprocess.run([str(EXE), "inspect", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in proc.stderr

    proc = subprocess.run([str(EXE), "--debug", "inspect", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ModelLoadError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("edgeinfer: error: ")
