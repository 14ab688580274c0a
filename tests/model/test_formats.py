"""Format detection by content, and every error path of ONNX model import."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeinfer.errors import EdgeInferError, ModelLoadError, UnsupportedOpsetError
from edgeinfer.model.formats import (
    MAX_OPSET,
    MIN_OPSET,
    check_onnx_opset,
    detect_format,
    load_onnx,
    onnx_opset,
)


def assert_one_line(exc: BaseException, path: Path) -> str:
    """The message is one line and names the file."""
    msg = str(exc)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


def tflite_bytes() -> bytes:
    # A flatbuffer: 4-byte root offset, then the 'TFL3' file identifier at bytes 4:8.
    return b"\x1c\x00\x00\x00TFL3" + bytes(56)


def torch_checkpoint(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.save({"weight": torch.zeros(2, 2)}, str(path))
    return path


# --- detect_format ---------------------------------------------------------------------------


def test_detect_onnx(tiny_onnx: Path) -> None:
    assert detect_format(tiny_onnx) == "onnx"


def test_onnx_renamed_tflite_is_still_onnx(tiny_onnx: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.tflite"
    shutil.copyfile(tiny_onnx, renamed)
    assert detect_format(renamed) == "onnx"
    # and it loads as ONNX despite the extension
    assert load_onnx(renamed).graph.node[0].op_type == "Conv"


def test_tflite_magic_renamed_onnx_is_tflite(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(tflite_bytes())
    assert detect_format(path) == "tflite"


def test_torch_zip_checkpoint_is_torch(tmp_path: Path) -> None:
    path = torch_checkpoint(tmp_path / "weights.pt")
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    assert detect_format(path) == "torch"


def test_plain_zip_is_not_torch(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelLoadError, match="unknown model format"):
        detect_format(path)


def test_random_bytes_unknown_format(tmp_path: Path) -> None:
    data = bytearray(np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes())
    data[0] = 0xFF  # not a protobuf tag, not a pickle, not a zip
    data[4:8] = b"abcd"
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="unknown model format") as info:
        detect_format(path)
    assert_one_line(info.value, path)


# --- load_onnx error paths -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    for fn in (detect_format, load_onnx):
        with pytest.raises(ModelLoadError, match="no such file") as info:
            fn(path)
        assert_one_line(info.value, path)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "somedir"
    path.mkdir()
    with pytest.raises(ModelLoadError, match="is a directory") as info:
        load_onnx(path)
    assert_one_line(info.value, path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is empty") as info:
        load_onnx(path)
    assert_one_line(info.value, path)


def test_truncated_onnx(tiny_onnx: Path, tmp_path: Path) -> None:
    data = tiny_onnx.read_bytes()
    assert len(data) > 100
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:100])
    with pytest.raises(ModelLoadError) as info:
        load_onnx(path)
    msg = assert_one_line(info.value, path)
    assert "truncated or corrupt" in msg
    assert not isinstance(info.value, UnsupportedOpsetError)


def test_corrupt_bytes_with_onnx_like_start(tmp_path: Path) -> None:
    # Starts like a protobuf ModelProto (field 1 varint) and then is garbage.
    data = b"\x08\x07" + np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(data)
    assert detect_format(path) == "onnx"
    with pytest.raises(ModelLoadError) as info:
        load_onnx(path)
    assert "truncated or corrupt" in assert_one_line(info.value, path)


def test_unknown_format_load(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="unknown model format") as info:
        load_onnx(path)
    assert_one_line(info.value, path)


def test_tflite_passed_to_load_onnx(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_bytes())
    with pytest.raises(ModelLoadError, match="tflite model, not ONNX") as info:
        load_onnx(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("opset", [3, 99])
def test_unsupported_opset(opset: int, tmp_path: Path, make_conv_model) -> None:
    path = tmp_path / f"opset{opset}.onnx"
    onnx.save(make_conv_model([1, 3, 8, 8], opset=opset), str(path))
    with pytest.raises(UnsupportedOpsetError) as info:
        load_onnx(path)
    msg = assert_one_line(info.value, path)
    assert f"opset {opset}" in msg
    assert "re-export with opset 17" in msg
    assert isinstance(info.value, ModelLoadError)


def test_opset_bounds_accepted(tmp_path: Path, make_conv_model) -> None:
    for opset in (11, 17, MAX_OPSET):
        model = make_conv_model([1, 3, 8, 8], opset=opset)
        check_onnx_opset(model)  # no error
        assert onnx_opset(model) == opset
    with pytest.raises(UnsupportedOpsetError):
        check_onnx_opset(make_conv_model([1, 3, 8, 8], opset=MIN_OPSET - 1))
    with pytest.raises(UnsupportedOpsetError):
        check_onnx_opset(make_conv_model([1, 3, 8, 8], opset=MAX_OPSET + 1))


def test_check_opset_off_skips_the_check(tmp_path: Path, make_conv_model) -> None:
    path = tmp_path / "opset99.onnx"
    onnx.save(make_conv_model([1, 3, 8, 8], opset=99), str(path))
    model = load_onnx(path, check_opset=False)
    assert onnx_opset(model) == 99


def test_torch_checkpoint_passed_to_load_onnx(tmp_path: Path) -> None:
    path = torch_checkpoint(tmp_path / "model.onnx")  # named .onnx, holds a checkpoint
    with pytest.raises(ModelLoadError, match="PyTorch checkpoint") as info:
        load_onnx(path)
    assert "edgeinfer.export" in assert_one_line(info.value, path)


def test_model_with_no_graph(tmp_path: Path) -> None:
    model = onnx.ModelProto(ir_version=8)
    path = tmp_path / "nograph.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="no ONNX graph") as info:
        load_onnx(path)
    assert_one_line(info.value, path)


def test_every_error_is_an_edgeinfer_error(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    path.write_bytes(b"")
    with pytest.raises(EdgeInferError) as info:
        load_onnx(path)
    assert info.value.exit_code == 2
