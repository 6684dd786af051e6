"""Shared fixtures. Real data lives in ../shared/data (never copied into the repo); tests that
need it skip with a clear reason when it is absent, e.g. in a user's clone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SEVERSTAL = SHARED_DATA / "severstal_sample"
MAGNETIC_TILE = SHARED_DATA / "magnetic_tile"
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_folder"  # a 2-class folder dataset
TINY = dict(  # a tiny-preset GAN run on FIXTURE in seconds (synthesis and severity tests)
    preset="tiny",
    model={"resolution": 32},
    batch_size=2,
    precision="fp32",
    log_every=1,
    sample_every=100,
    checkpoint_every=100,
)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is only in the project workspace)")
    return path


@pytest.fixture
def severstal_dir() -> Path:
    return _require(SEVERSTAL)


@pytest.fixture
def magnetic_tile_dir() -> Path:
    return _require(MAGNETIC_TILE)


def write_gray(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def record_reads(dataset, monkeypatch, names=("load_image", "load_masks")) -> list[int]:
    """Every dataset index whose image or masks (as `names` says) are read from now on."""
    reads: list[int] = []
    for name in names:
        real = getattr(dataset, name)

        def recorded(index, real=real):
            reads.append(index)
            return real(index)

        monkeypatch.setattr(dataset, name, recorded)
    return reads


def folder_dataset(root: Path, images: int, seed: int, defect_free: bool = True) -> Path:
    """images/ + masks/ (index PNGs) + classes.txt: textured grey images, half of them (all,
    without `defect_free`) with a dark blob (class 1) and/or a bright scratch (class 2)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("blob\nscratch\n")
    for i in range(images):
        image = rng.normal(128, 12, (64, 96)).clip(0, 255)
        mask = np.zeros((64, 96), np.uint8)
        if i % 2 or not defect_free:
            kinds = [1, 2, (1, 2)][(i // 2) % 3]
            for k in np.atleast_1d(kinds):
                y, x = int(rng.integers(8, 48)), int(rng.integers(8, 80))
                if k == 1:
                    mask[y : y + 8, x : x + 10] = 1
                    image[y : y + 8, x : x + 10] -= 60
                else:
                    mask[y : y + 2, max(0, x - 8) : x + 8] = 2
                    image[y : y + 2, max(0, x - 8) : x + 8] += 70
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"im_{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"im_{i:03d}.png")
    return root
