"""Images for the compress tests: random smooth colour pictures written as PNG files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch_pruning")


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """24 smooth random 64x64 colour images (unlabelled)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(24):
        rng = np.random.default_rng(i)
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        img = cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return folder
