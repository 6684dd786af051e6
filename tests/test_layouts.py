"""Each dataset layout a user arrives with, made here as a tiny fixture, goes once through
`split` -> `train` (tiny) -> `synth` -> `evaluate` (tiny) on the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_gray
from defectgen.cli import main
from defectgen.data import open_dataset, rle
from defectgen.data.split import Split, make_split
from defectgen.errors import ConfigError, DataError


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


# --- MVTec AD ----------------------------------------------------------------------------------


def _mvtec_category(root: Path, per_type: int = 6, seed: int = 0) -> Path:
    """An MVTec AD category: RGB 64x96 images, train/good, test/good and two defect types
    with their ground_truth masks (0/255, `<stem>_mask.png`)."""
    rng = np.random.default_rng(seed)

    def image() -> np.ndarray:
        return rng.normal(120, 6, (64, 96, 3))

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array.clip(0, 255).astype(np.uint8)).save(path)

    for i in range(8):
        save(root / "train" / "good" / f"{i:03d}.png", image())
    for i in range(4):
        save(root / "test" / "good" / f"{i:03d}.png", image())
    for kind, (h, w) in {"crack": (3, 30), "scratch": (12, 12)}.items():
        for i in range(per_type):
            picture, mask = image(), np.zeros((64, 96), dtype=np.uint8)
            y, x = rng.integers(4, 64 - h - 4), rng.integers(4, 96 - w - 4)
            mask[y : y + h, x : x + w] = 255
            picture[mask > 0] -= 80
            save(root / "test" / kind / f"{i:03d}.png", picture)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


def test_mvtec_layout_is_read_as_it_ships(tmp_path):
    root = _mvtec_category(tmp_path / "mvtec" / "tile")
    dataset = open_dataset(str(root))
    assert dataset.kind == "mvtec" and dataset.classes.names == ("crack", "scratch")
    assert dataset.channels == 3
    summary = dataset.summary()
    assert summary["defect_free"] == 12 and summary["images_per_class"] == {"crack": 6, "scratch": 6}
    sample = dataset[dataset.index_of("test/scratch/002")]
    mask = np.asarray(Image.open(root / "ground_truth" / "scratch" / "002_mask.png")) > 0
    assert sample.class_ids == (2,) and np.array_equal(sample.masks[1], mask) and not sample.masks[0].any()
    assert not dataset[dataset.index_of("train/good/000")].masks.any()
    assert open_dataset(f"mvtec:{root}").fingerprint() == dataset.fingerprint()
    with pytest.raises(DataError, match=r"holds 1 MVTec AD categories \(tile\); name one"):
        open_dataset(str(tmp_path / "mvtec"))


def test_mvtec_missing_mask_is_an_error_not_a_free_image(tmp_path):
    root = _mvtec_category(tmp_path / "tile")
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"crack/001.png: no mask ground_truth/crack/001_mask.png"):
        open_dataset(str(root))
    dataset = open_dataset(str(root), skip_bad=True)
    assert [s.item_id for s in dataset.skipped] == ["test/crack/001"]
    assert dataset.summary()["images_per_class"]["crack"] == 5


def test_mvtec_layout_split_keeps_the_layouts_parts(tmp_path, capsys):
    root = _mvtec_category(tmp_path / "tile")
    out = tmp_path / "split.json"
    assert main(["split", str(root), "--out", str(out), "--layout-split"]) == 0
    assert "training half holds no defect images" in capsys.readouterr().err
    split = Split.load(out)
    assert split.layout and all(i.startswith("train/") for i in split.train)
    assert all(i.startswith("test/") for i in split.test) and len(split.test) == 16
    drawn = make_split(open_dataset(str(root)), seed=0)
    assert not drawn.layout and any(i.startswith("test/crack") for i in drawn.train)
    with pytest.raises(ConfigError, match="no train/test parts of its own"):
        make_split(open_dataset(str(_severstal_at(tmp_path / "sev", 64, 96))), layout=True)


def test_mvtec_round_trip(tmp_path):
    root = _mvtec_category(tmp_path / "tile", per_type=8)
    results = _round_trip(str(root), tmp_path)
    assert {run["arm"] for run in results["runs"]} == {"real", "real+gen"}
