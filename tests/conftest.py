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
