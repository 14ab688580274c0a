"""Calibration data: images, folders, videos and .npy arrays -> preprocessed SampleSets."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnxruntime.quantization import CalibrationDataReader

from edgeinfer.artifact import InputSpec, Preprocess
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.optimization.calibration import (
    CalibrationReader,
    SampleSet,
    load_samples,
    split_samples,
)
from edgeinfer.vision.preprocess import to_tensor

SPEC = InputSpec(name="x", shape=(1, 3, 16, 24))
NHWC = InputSpec(name="x", shape=(1, 16, 24, 3), layout="NHWC")
PRE = Preprocess(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _write_images(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (20, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"img{i:03d}.png"), img)


def test_constant_image_is_preprocessed_exactly(tmp_path: Path) -> None:
    bgr = (10, 128, 250)
    img = np.empty((40, 50, 3), np.uint8)
    img[:] = bgr
    path = tmp_path / "const.png"
    cv2.imwrite(str(path), img)
    s = load_samples(path, SPEC, PRE)
    assert s.inputs.shape == (1, 3, 16, 24) and s.inputs.dtype == np.float32
    assert s.names == ("const.png",) and s.skipped == ()
    rgb = bgr[::-1]
    for c in range(3):
        expected = np.float32(
            (np.float32(rgb[c]) * np.float32(PRE.scale) - np.float32(PRE.mean[c]))
            / np.float32(PRE.std[c])
        )
        np.testing.assert_allclose(s.inputs[0, c], expected, rtol=1e-6)


def test_folder_matches_to_tensor_and_ignores_non_images(tmp_path: Path) -> None:
    _write_images(tmp_path, 4)
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_samples(tmp_path, SPEC, PRE)
    assert s.names == ("img000.png", "img001.png", "img002.png", "img003.png")
    assert s.skipped == ()
    for i, name in enumerate(s.names):
        ref, _ = to_tensor(cv2.imread(str(tmp_path / name)), SPEC, PRE)
        np.testing.assert_array_equal(s.inputs[i], ref[0])


def test_corrupt_image_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_images(tmp_path, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with caplog.at_level(logging.WARNING, logger="edgeinfer.optimization.calibration"):
        s = load_samples(tmp_path, SPEC, PRE)
    assert len(s) == 3 and s.inputs.shape[0] == 3
    assert s.skipped == ("broken.jpg",)
    assert "broken.jpg" not in s.names
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)


def test_limit_takes_deterministic_subset_and_replaces_unreadable(tmp_path: Path) -> None:
    _write_images(tmp_path, 10)
    a = load_samples(tmp_path, SPEC, PRE, limit=4, seed=1)
    b = load_samples(tmp_path, SPEC, PRE, limit=4, seed=1)
    c = load_samples(tmp_path, SPEC, PRE, limit=4, seed=2)
    assert len(a) == 4 and a.names == b.names and list(a.names) == sorted(a.names)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert a.names != c.names
    # An unreadable file in the subset is replaced by another image.
    (tmp_path / a.names[0]).write_bytes(b"garbage")
    d = load_samples(tmp_path, SPEC, PRE, limit=4, seed=1)
    assert len(d) == 4 and d.skipped == (a.names[0],)


def test_only_corrupt_files_is_an_error(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"nope")
    with pytest.raises(EdgeInferError, match="no calibration data: .* holds no readable images"):
        load_samples(tmp_path, SPEC, PRE)


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(EdgeInferError, match="holds no readable images"):
        load_samples(tmp_path, SPEC, PRE)


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeInferError, match="no such calibration data"):
        load_samples(tmp_path / "nowhere", SPEC, PRE)


def test_unknown_file_kind_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3")
    with pytest.raises(EdgeInferError, match="not a kind of calibration data"):
        load_samples(path, SPEC, PRE)


def test_nhwc_spec(tmp_path: Path) -> None:
    _write_images(tmp_path, 2)
    s = load_samples(tmp_path, NHWC, PRE)
    assert s.inputs.shape == (2, 16, 24, 3)
    nchw = load_samples(tmp_path, SPEC, PRE)
    np.testing.assert_array_equal(s.inputs, nchw.inputs.transpose(0, 2, 3, 1))


def test_non_image_input_needs_npy(tmp_path: Path) -> None:
    _write_images(tmp_path, 1)
    with pytest.raises(ShapeError, match="not a 3-channel image input"):
        load_samples(tmp_path, InputSpec(name="x", shape=(1, 1, 16, 16)), PRE)


def _write_video(path: Path, n_frames: int = 30) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    for i in range(n_frames):
        frame = np.full((24, 32, 3), i * 8, np.uint8)  # frame i is constant gray i*8
        writer.write(frame)
    writer.release()


def test_video_gives_evenly_spaced_frames(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video)
    pre = Preprocess()  # identity values: the tensor holds the pixel value
    s = load_samples(video, SPEC, pre, limit=5)
    expected = [0, 7, 14, 22, 29]  # linspace(0, 29, 5) rounded
    assert s.names == tuple(f"clip.avi#frame{i}" for i in expected)
    assert s.inputs.shape == (5, 3, 16, 24)
    means = s.inputs.reshape(5, -1).mean(axis=1)
    # MJPG is lossy: each frame stays within a few levels of its gray value.
    np.testing.assert_allclose(means, [i * 8 for i in expected], atol=3)


def test_video_with_fewer_frames_than_limit(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, n_frames=6)
    s = load_samples(video, SPEC, PRE)  # default limit 100
    assert len(s) == 6 and s.names[-1] == "clip.avi#frame5"


def test_unopenable_video_is_an_error(tmp_path: Path) -> None:
    video = tmp_path / "bad.mp4"
    video.write_bytes(b"not a video at all")
    with pytest.raises(EdgeInferError, match="cannot open the video"):
        load_samples(video, SPEC, PRE)


def test_npy_batch_single_and_limit(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).standard_normal((6, 3, 16, 24)).astype(np.float64)
    path = tmp_path / "x.npy"
    np.save(path, arr)
    s = load_samples(path, SPEC, PRE)
    assert s.inputs.dtype == np.float32 and s.inputs.shape == (6, 3, 16, 24)
    assert s.names[3] == "x.npy[3]"
    np.testing.assert_allclose(s.inputs, arr.astype(np.float32))
    sub = load_samples(path, SPEC, PRE, limit=2, seed=3)
    assert len(sub) == 2
    idx = [int(n[len("x.npy[") : -1]) for n in sub.names]
    np.testing.assert_array_equal(sub.inputs, arr[idx].astype(np.float32))

    one = tmp_path / "one.npy"
    np.save(one, arr[0])
    s1 = load_samples(one, SPEC, PRE)
    assert s1.inputs.shape == (1, 3, 16, 24) and s1.names == ("one.npy[0]",)


def test_npy_wrong_shape_is_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((4, 16, 24, 3), np.float32))
    with pytest.raises(ShapeError) as info:
        load_samples(path, SPEC, PRE)
    msg = str(info.value)
    assert "bad.npy" in msg and "[N, 3, 16, 24]" in msg and "\n" not in msg


def test_calibration_reader_yields_then_none_and_rewinds() -> None:
    inputs = np.arange(3 * 2 * 2 * 2, dtype=np.float32).reshape(3, 2, 2, 2)
    reader = CalibrationReader(SampleSet(inputs, ("a", "b", "c")), "x")
    assert isinstance(reader, CalibrationDataReader)
    first = [reader.get_next() for _ in range(3)]
    assert reader.get_next() is None and reader.get_next() is None
    for i, d in enumerate(first):
        assert list(d) == ["x"] and d["x"].shape == (1, 2, 2, 2)
        np.testing.assert_array_equal(d["x"][0], inputs[i])
    reader.rewind()
    assert len(list(reader)) == 3  # the ORT base class iterates get_next() until None
    reader.set_range(1, 2)
    assert [d["x"][0, 0, 0, 0] for d in reader] == [inputs[1, 0, 0, 0]]


def test_split_samples_disjoint_and_deterministic() -> None:
    inputs = np.arange(10, dtype=np.float32).reshape(10, 1)
    s = SampleSet(inputs, tuple(f"s{i}" for i in range(10)), ("bad.jpg",))
    cal, ev = split_samples(s, 0.3, seed=5)
    cal2, ev2 = split_samples(s, 0.3, seed=5)
    assert (cal.names, ev.names) == (cal2.names, ev2.names)
    assert len(ev) == 3 and len(cal) == 7
    assert set(cal.names).isdisjoint(ev.names)
    assert set(cal.names) | set(ev.names) == set(s.names)
    for part in (cal, ev):
        np.testing.assert_array_equal(part.inputs[:, 0], [int(n[1:]) for n in part.names])
    assert split_samples(s, 0.3, seed=6)[1].names != ev.names
    with pytest.raises(EdgeInferError):
        split_samples(s, 1.0)
    with pytest.raises(EdgeInferError, match="at least 2"):
        split_samples(SampleSet(inputs[:1], ("s0",)), 0.5)


def test_video_seeks_across_long_gaps(tmp_path: Path) -> None:
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for i in range(120):
        writer.write(np.full((24, 32, 3), 2 * i, np.uint8))
    writer.release()
    s = load_samples(video, SPEC, Preprocess(), limit=3)
    assert s.names == ("long.avi#frame0", "long.avi#frame60", "long.avi#frame119")
    np.testing.assert_allclose(s.inputs.reshape(3, -1).mean(axis=1), [0, 120, 238], atol=3)


def test_loading_prints_nothing_and_reports_progress_through_the_callback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_images(tmp_path, 3)
    steps: list = []
    load_samples(tmp_path, SPEC, PRE, progress=steps.append)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert [s.kind for s in steps] == ["start", "advance", "advance", "advance", "finish"]
    assert steps[0].total == 3 and steps[-2].done == 3


def test_reader_drives_ort_quantize_static(tiny_onnx: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    spec = InputSpec(name="x", shape=(1, 3, 8, 8))
    _write_images(tmp_path / "imgs", 4)
    samples = load_samples(tmp_path / "imgs", spec, PRE)
    out = tmp_path / "tiny.int8.onnx"
    quantize_static(
        str(tiny_onnx), str(out), CalibrationReader(samples, "x"),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    assert out.stat().st_size > 0
