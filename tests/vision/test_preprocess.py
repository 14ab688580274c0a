"""Image -> tensor preprocessing, the letterbox transform, reading images, decoding classes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.artifact import InputSpec, Preprocess
from edgeinfer.errors import EdgeInferError
from edgeinfer.vision.decoders import DECODERS, decode_classification, get_decoder, softmax
from edgeinfer.vision.preprocess import Transform, read_image, resize, spatial_size, to_tensor

NCHW = InputSpec(name="x", shape=(1, 3, 4, 6), layout="NCHW")
NHWC = InputSpec(name="x", shape=(1, 4, 6, 3), layout="NHWC")


def constant_bgr(h: int, w: int, bgr: tuple[int, int, int] = (10, 20, 30)) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bgr
    return img


def random_bgr(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- layouts ---------------------------------------------------------------------------------


def test_spatial_size() -> None:
    assert spatial_size(NCHW) == (4, 6)
    assert spatial_size(NHWC) == (4, 6)


def test_nchw_and_nhwc_hold_the_same_values() -> None:
    img = random_bgr(12, 18)
    pre = Preprocess(resize="stretch", interpolation="nearest")
    x_nchw, _ = to_tensor(img, NCHW, pre)
    x_nhwc, _ = to_tensor(img, NHWC, pre)
    assert x_nchw.shape == (1, 3, 4, 6)
    assert x_nhwc.shape == (1, 4, 6, 3)
    assert x_nchw.dtype == np.float32
    assert x_nchw.flags["C_CONTIGUOUS"]
    assert x_nhwc.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(x_nchw[0].transpose(1, 2, 0), x_nhwc[0])


def test_non_float_input_dtype() -> None:
    spec = InputSpec(name="x", shape=(1, 2, 2, 3), dtype="uint8", layout="NHWC")
    img = constant_bgr(2, 2, (1, 2, 250))
    x, _ = to_tensor(img, spec, Preprocess(resize="none", channel_order="BGR"))
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], img)


# --- value transform -------------------------------------------------------------------------


def test_mean_std_scale_rgb() -> None:
    pre = Preprocess(resize="stretch", channel_order="RGB", scale=0.5, mean=(1.0, 2.0, 3.0),
                     std=(2.0, 4.0, 5.0))
    x, _ = to_tensor(constant_bgr(8, 8, (10, 20, 30)), NCHW, pre)
    # RGB: R=30, G=20, B=10; ((p * 0.5) - mean) / std
    expected = [(15 - 1) / 2, (10 - 2) / 4, (5 - 3) / 5]
    for c, value in enumerate(expected):
        np.testing.assert_allclose(x[0, c], value, rtol=1e-6)


def test_mean_std_scale_bgr() -> None:
    pre = Preprocess(resize="stretch", channel_order="BGR", scale=0.5, mean=(1.0, 2.0, 3.0),
                     std=(2.0, 4.0, 5.0))
    x, _ = to_tensor(constant_bgr(8, 8, (10, 20, 30)), NHWC, pre)
    expected = [(5 - 1) / 2, (10 - 2) / 4, (15 - 3) / 5]
    for c, value in enumerate(expected):
        np.testing.assert_allclose(x[0, ..., c], value, rtol=1e-6)


def test_imagenet_style_normalisation() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pre = Preprocess(scale=1 / 255, mean=mean, std=std)
    x, _ = to_tensor(constant_bgr(4, 6, (0, 128, 255)), NCHW, pre)
    rgb = np.array([255, 128, 0]) / 255
    np.testing.assert_allclose(x[0, :, 0, 0], (rgb - mean) / std, rtol=1e-5)


def test_channel_order_swaps_channels() -> None:
    img = random_bgr(8, 12, seed=3)
    rgb, _ = to_tensor(img, NCHW, Preprocess(channel_order="RGB", interpolation="nearest"))
    bgr, _ = to_tensor(img, NCHW, Preprocess(channel_order="BGR", interpolation="nearest"))
    np.testing.assert_array_equal(rgb[0, ::-1], bgr[0])
    assert not np.array_equal(rgb, bgr)


# --- resize modes ----------------------------------------------------------------------------


def test_stretch() -> None:
    img = random_bgr(10, 20)
    out, t = resize(img, (4, 6), Preprocess(resize="stretch"))
    assert out.shape == (4, 6, 3)
    assert t == Transform(6 / 20, 4 / 10, 0.0, 0.0)


def test_none_keeps_matching_image() -> None:
    img = random_bgr(4, 6)
    out, t = resize(img, (4, 6), Preprocess(resize="none"))
    np.testing.assert_array_equal(out, img)
    assert t == Transform(1.0, 1.0, 0.0, 0.0)


def test_none_with_mismatched_size() -> None:
    with pytest.raises(EdgeInferError) as info:
        to_tensor(random_bgr(5, 6), NCHW, Preprocess(resize="none"))
    msg = str(info.value)
    assert "6x5" in msg
    assert "6x4" in msg
    assert "\n" not in msg


def test_center_crop_shape_and_centre() -> None:
    img = random_bgr(100, 200)
    out, t = resize(img, (32, 32), Preprocess(resize="center-crop"))
    assert out.shape == (32, 32, 3)
    # the shorter side is scaled to 32 / 0.875 before cropping
    assert t.scale_y == pytest.approx(round(32 / 0.875) / 100, rel=0.02)
    # tensor centre maps back to the image centre
    cx = (16 - t.pad_x) / t.scale_x
    cy = (16 - t.pad_y) / t.scale_y
    assert cx == pytest.approx(100, abs=2)
    assert cy == pytest.approx(50, abs=2)


def test_center_crop_takes_the_middle() -> None:
    # left third red, middle third green, right third blue: the crop sees only green
    img = np.zeros((90, 270, 3), np.uint8)
    img[:, :90] = (0, 0, 255)
    img[:, 90:180] = (0, 255, 0)
    img[:, 180:] = (255, 0, 0)
    out, _ = resize(img, (16, 16), Preprocess(resize="center-crop", interpolation="nearest"))
    assert (out == (0, 255, 0)).all()


def test_letterbox_pads_and_keeps_aspect() -> None:
    img = constant_bgr(10, 20, (200, 200, 200))
    out, t = resize(img, (16, 16), Preprocess(resize="letterbox", pad_value=7))
    assert out.shape == (16, 16, 3)
    assert t == Transform(0.8, 0.8, 0.0, 4.0)
    assert (out[:4] == 7).all()
    assert (out[12:] == 7).all()
    assert (out[4:12] == 200).all()


def test_letterbox_maps_a_point_back() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 100:120] = 255  # a white square centred at (x=110, y=50)
    out, t = resize(img, (64, 64), Preprocess(resize="letterbox", pad_value=0))
    assert t.pad_y == 16
    assert t.pad_x == 0
    assert t.scale_x == t.scale_y == pytest.approx(0.32)
    weight = out[..., 0].astype(np.float64)
    ys, xs = np.indices(weight.shape)
    tx, ty = (xs * weight).sum() / weight.sum(), (ys * weight).sum() / weight.sum()
    # pixel centres: tensor pixel i covers image [i/r, (i+1)/r)
    ox = (tx + 0.5 - t.pad_x) / t.scale_x
    oy = (ty + 0.5 - t.pad_y) / t.scale_y
    assert ox == pytest.approx(110, abs=2)
    assert oy == pytest.approx(50, abs=2)


def test_letterbox_tall_image_pads_left_and_right() -> None:
    out, t = resize(constant_bgr(40, 10), (20, 20), Preprocess(resize="letterbox"))
    assert out.shape == (20, 20, 3)
    assert (t.pad_x, t.pad_y) == (7.0, 0.0)
    assert (out[:, :7] == 114).all()
    assert (out[:, 12:] == 114).all()


@pytest.mark.parametrize("interp", ["area", "linear", "nearest", "cubic"])
def test_interpolations_run(interp: str) -> None:
    x, _ = to_tensor(random_bgr(20, 30), NCHW, Preprocess(interpolation=interp))
    assert x.shape == (1, 3, 4, 6)


# --- read_image ------------------------------------------------------------------------------


def test_read_image_round_trip(tmp_path: Path) -> None:
    img = random_bgr(7, 9)
    path = tmp_path / "img.png"
    assert cv2.imwrite(str(path), img)
    np.testing.assert_array_equal(read_image(path), img)


def test_read_image_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing.jpg"
    with pytest.raises(EdgeInferError, match="no such image file") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 not really a jpeg", bytes(range(256))])
def test_read_image_corrupt(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(EdgeInferError, match="not a readable image") as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# --- classification decoder ------------------------------------------------------------------

IDENTITY = Transform(1.0, 1.0, 0.0, 0.0)


def test_softmax() -> None:
    p = softmax(np.array([1000.0, 1000.0, -1000.0]))  # stable with large logits
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(3.0)])), [0.25, 0.75])


def test_classification_top_k_sorted_with_labels() -> None:
    logits = np.array([[0.1, 3.0, -1.0, 2.0, 0.5]], np.float32)
    labels = ["zero", "one", "two", "three", "four"]
    res = decode_classification([logits], {"top_k": 3}, IDENTITY, labels)
    assert [r["class_id"] for r in res] == [1, 3, 4]
    assert [r["label"] for r in res] == ["one", "three", "four"]
    scores = [r["score"] for r in res]
    assert scores == sorted(scores, reverse=True)
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(scores, expected[[1, 3, 4]], rtol=1e-5)


def test_classification_softmax_sums_to_one() -> None:
    logits = np.random.default_rng(0).standard_normal((1, 10)).astype(np.float32)
    res = decode_classification([logits], {"top_k": 10}, IDENTITY, None)
    assert len(res) == 10
    assert sum(r["score"] for r in res) == pytest.approx(1.0, abs=1e-5)
    assert sorted(r["class_id"] for r in res) == list(range(10))
    assert [r["label"] for r in res] == [str(r["class_id"]) for r in res]


def test_classification_default_top5_and_probabilities() -> None:
    probs = np.array([0.05, 0.1, 0.3, 0.2, 0.15, 0.12, 0.08])
    res = decode_classification([probs], {"softmax": False}, IDENTITY, ["a", "b"])
    assert len(res) == 5
    assert [r["class_id"] for r in res] == [2, 3, 4, 5, 1]
    assert res[0]["score"] == pytest.approx(0.3)
    # labels shorter than the class count fall back to the class id
    assert [r["label"] for r in res] == ["2", "3", "4", "5", "b"]


def test_get_decoder() -> None:
    assert get_decoder("classification") is decode_classification
    assert "classification" in DECODERS
    with pytest.raises(EdgeInferError, match="unknown decoder 'nope'") as info:
        get_decoder("nope")
    assert "classification" in str(info.value)
