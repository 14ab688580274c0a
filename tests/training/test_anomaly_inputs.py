"""Bad input to ``edgeinfer train anomaly``: one clean line on stderr and exit code 2 each
(checked before any model is built: no torch needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.training.images import DatasetError, read_folder


def _images(folder: Path, n: int, grey: int = 0, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size, size) if i < grey else (size, size, 3)
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, shape, dtype=np.uint8))
    return folder


def _train(capsys: pytest.CaptureFixture, good: Path, *extra: str) -> str:
    out = good.parent / "out"
    code = main(["train", "anomaly", "--good", str(good), "-o", str(out), "--tile", "64",
                 *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("edgeinfer: error:") and "\n" not in err, err
    assert "Traceback" not in err
    return err


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _train(capsys, tmp_path / "nowhere")
    assert "no such folder" in err


def test_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "notes.txt").write_text("not an image")
    err = _train(capsys, tmp_path / "good")
    assert "holds no image files" in err


def test_fewer_than_ten_usable_images_counts_the_unreadable(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    good = _images(tmp_path / "good", 7)
    (good / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (good / "empty.png").write_bytes(b"")
    err = _train(capsys, good)
    assert "7 usable image(s) (2 unreadable skipped), at least 10 needed" in err


def test_mixed_channel_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = _images(tmp_path / "good", 12, grey=3)
    err = _train(capsys, good)
    assert "mixes channel counts" in err and "1" in err and "3" in err


def test_val_in_another_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = _images(tmp_path / "good", 12)
    val = _images(tmp_path / "val", 3, grey=3)
    err = _train(capsys, good, "--val", str(val))
    assert "--val" in err and "1-channel" in err


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--tile", "100", "multiple of 32"),
    ("--fpr", "0", "false-alarm rate"),
    ("--fpr", "1.5", "false-alarm rate"),
    ("--bank-size", "0", "--bank-size"),
    ("--backbone", "resnet-9000", "unknown backbone"),
    ("--layers", "s8,s7", "bad layers"),
])
def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str,
                     words: str) -> None:
    good = _images(tmp_path / "good", 12)
    err = _train(capsys, good, flag, value)
    assert words in err


def test_existing_output_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = _images(tmp_path / "good", 12)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    err = _train(capsys, good)
    assert "--force" in err
    assert (tmp_path / "out" / "keep.txt").exists()


def test_reader_skips_and_converts(tmp_path: Path) -> None:
    good = _images(tmp_path / "good", 3)
    (good / "bad.png").write_bytes(b"\x89PNG nope")
    folder = read_folder(good, minimum=3)
    assert len(folder) == 3 and folder.skipped == ["bad.png"] and folder.channels == 3
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in folder.images)
    with pytest.raises(DatasetError, match="at least 4"):
        read_folder(good, minimum=4)
