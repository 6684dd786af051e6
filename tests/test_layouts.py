"""Each dataset layout a user arrives with, made here as a tiny fixture, goes once through
`split` -> `train` (tiny) -> `synth` -> `evaluate` (tiny) on the command line."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_gray
from defectgen.cli import main
from defectgen.data import open_dataset, rle


def _round_trip(data: str, work: Path, synth_format: str = "folder") -> dict:
    """The whole pipeline on `data`; returns evaluate's results.json."""
    split, gan, synth, out = work / "split.json", work / "gan", work / "synth", work / "eval"
    assert main(["split", data, "--out", str(split), "--seed", "0"]) == 0
    train = ["train", data, "--split", str(split), "--out", str(gan), "--preset", "tiny", "--steps", "2"]
    sets = ["model.resolution=32", "batch_size=2", "sample_every=100"]
    assert main([*train, *(a for s in sets for a in ("--set", s))]) == 0
    checkpoint = gan / "checkpoints" / "last.pt"
    assert main(["synth", data, "--checkpoint", str(checkpoint), "--split", str(split), "--n", "4",
                 "--out", str(synth), "--format", synth_format]) == 0  # fmt: skip
    assert len((synth / "manifest.jsonl").read_text().splitlines()) == 4
    assert main(["evaluate", data, "--split", str(split), "--synthetic", f"gen={synth}", "--out", str(out),
                 "--arms", "real,real+gen", "--seeds", "2", "--steps", "2", "--size", "32",
                 "--batch-size", "2"]) == 0  # fmt: skip
    return json.loads((out / "results.json").read_text())


# --- Severstal-style CSV at a size other than Kaggle's ------------------------------------------


def _severstal_at(root: Path, height: int, width: int, images: int = 24, seed: int = 0) -> Path:
    """A Severstal CSV (current form) over `images` grayscale HxW JPEGs; two in three hold a
    bright bar of class 1 or 3, the rest are defect-free."""
    rng = np.random.default_rng(seed)
    (root / "train_images").mkdir(parents=True)
    rows = ["ImageId,ClassId,EncodedPixels"]
    for i in range(images):
        image = rng.normal(100, 8, (height, width))
        name = f"{i:04d}.jpg"
        if i % 3:
            mask = np.zeros((height, width), dtype=bool)
            y, x = rng.integers(4, height - 12), rng.integers(4, width - 24)
            mask[y : y + 6, x : x + 18] = True
            image[mask] += 90
            rows.append(f"{name},{1 if i % 3 == 1 else 3},{rle.encode(mask)}")
        write_gray(root / "train_images" / name, image.clip(0, 255))
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("synth_format", ["severstal", "folder"])
def test_severstal_at_any_size_round_trip(tmp_path, synth_format):
    data = _severstal_at(tmp_path / "data", height=64, width=96)
    dataset = open_dataset(str(data))
    assert dataset.kind == "severstal" and dataset.image_shape == (64, 96)
    results = _round_trip(str(data), tmp_path, synth_format)
    assert {run["arm"] for run in results["runs"]} == {"real", "real+gen"}
    if synth_format == "severstal":
        out = tmp_path / "synth"
        synthetic = open_dataset(f"severstal:{out / 'train.csv'},{out / 'images'}")
        assert synthetic.image_shape == (64, 96)
        assert all(synthetic[i].masks.shape == (4, 64, 96) for i in range(len(synthetic)))
