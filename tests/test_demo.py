"""The embedded demo dataset: exact labels, determinism, the Severstal layout, safe re-runs."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectgen.data import SeverstalDataset, open_dataset, rle
from defectgen.data.demo import (
    demo_plan,
    demo_shape,
    generate_demo,
    render_demo_image,
    write_demo_sheet,
)
from defectgen.errors import ConfigError, DataError

SMALL = {"n_images": 12, "defect_share": 0.5, "height": 64, "width": 400, "seed": 3}


def _generate(out: Path, **overrides) -> Path:
    return generate_demo(out, **{**SMALL, **overrides, "progress": False})


def _csv_masks(out: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """ImageId -> bool [4, H, W] decoded from train.csv."""
    masks: dict[str, np.ndarray] = {}
    with open(out / "train.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ImageId", "ClassId", "EncodedPixels"]
    for image_id, class_id, encoded in rows[1:]:
        assert encoded, "positive rows only"
        per_image = masks.setdefault(image_id, np.zeros((4, *shape), dtype=bool))
        assert not per_image[int(class_id) - 1].any(), "one row per (image, class)"
        per_image[int(class_id) - 1] = rle.decode(encoded, shape)
    return masks


def _images(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted((out / "train_images").iterdir())}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("demo") / "small")


# --- one image ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 400), (256, 1600), (40, 160)])
def test_defects_change_pixels_only_inside_their_masks(shape):
    rng = np.random.default_rng(0)
    for number in range(24):
        classes = [1 + number % 4, *rng.integers(1, 5, size=number % 3).tolist()]
        clean, image, masks = render_demo_image(rng, *shape, classes)
        assert clean.shape == image.shape == shape and clean.dtype == image.dtype == np.uint8
        assert masks.shape == (4, *shape) and masks.dtype == bool
        changed = image != clean
        assert not (changed & ~masks.any(axis=0)).any(), "a pixel outside every mask changed"
        assert masks.sum(axis=0).max() <= 1, "classes overlap"
        assert masks[classes[0] - 1].any(), "the first defect is always placed"
        assert not masks[[k - 1 for k in range(1, 5) if k not in classes]].any()
        for k in np.flatnonzero(masks.any(axis=(1, 2))):
            # Tight masks: nearly every mask pixel was painted (soft edges may round to 0).
            assert (changed & masks[k]).sum() >= 0.8 * masks[k].sum(), f"class {k + 1}: loose mask"


def test_defect_free_image_is_its_background():
    clean, image, masks = render_demo_image(np.random.default_rng(1), 64, 400, [])
    assert np.array_equal(clean, image) and not masks.any()


def test_classes_look_different():
    """Scratches and cracks are thin, pits small, scale large; cracks and pits are dark."""
    rng = np.random.default_rng(5)
    areas: dict[int, list[float]] = {k: [] for k in range(1, 5)}
    darkening: dict[int, list[float]] = {k: [] for k in range(1, 5)}
    heights: dict[int, list[int]] = {k: [] for k in range(1, 5)}
    for number in range(40):
        class_id = 1 + number % 4
        clean, image, masks = render_demo_image(rng, 256, 1600, [class_id])
        mask = masks[class_id - 1]
        areas[class_id].append(mask.sum())
        darkening[class_id].append(float((clean[mask].astype(float) - image[mask]).mean()))
        rows = np.flatnonzero(mask.any(axis=1))
        heights[class_id].append(rows[-1] - rows[0] + 1)
    median = {k: float(np.median(v)) for k, v in areas.items()}
    assert median[3] > 5 * max(median[1], median[2], median[4])  # scale patches are large
    assert min(darkening[2]) > 10 and min(darkening[4]) > 10  # pits and cracks are dark
    assert np.median(heights[4]) > 0.5 * 256  # cracks run across the strip
    assert np.median(heights[4]) > 2 * np.median(heights[2])


def test_bad_class_id_is_refused():
    with pytest.raises(ValueError, match="1..4"):
        render_demo_image(np.random.default_rng(0), 64, 400, [5])


# --- a small dataset ----------------------------------------------------------------------------


def test_small_demo_layout(small_demo):
    assert (small_demo / "README.txt").read_text().count("crack") >= 1
    assert (small_demo / "shape.txt").read_text().split() == ["64", "400"]
    assert demo_shape(small_demo) == (64, 400)
    meta = json.loads((small_demo / "demo.json").read_text())
    assert {k: meta[k] for k in SMALL} == SMALL
    images = _images(small_demo)
    assert len(images) == 12 and all(name.endswith(".jpg") for name in images)
    for image in images.values():
        assert image.shape == (64, 400) and image.dtype == np.uint8  # grayscale JPEG
    masks = _csv_masks(small_demo, (64, 400))
    assert set(masks) <= set(images)
    assert len(masks) == 6, "defect_share 0.5 of 12 images carry defects"
    for per_image in masks.values():
        assert per_image.any()
        assert per_image.sum(axis=0).max() <= 1, "classes overlap in the CSV"
    assert not list((small_demo / "train_images").glob(".*")), "temporary files left behind"


def test_defect_free_share(tmp_path):
    for share, expected in ((0.0, 0), (0.25, 3), (1.0, 12)):
        out = _generate(tmp_path / f"share{share}", defect_share=share)
        assert len(_csv_masks(out, (64, 400))) == expected
        plan, _ = demo_plan(12, share, SMALL["seed"])
        assert sum(1 for classes in plan if classes) == expected


def test_same_seed_same_dataset_other_seed_other_dataset(small_demo, tmp_path):
    again = _generate(tmp_path / "again")
    assert (again / "train.csv").read_bytes() == (small_demo / "train.csv").read_bytes()
    first, second = _images(small_demo), _images(again)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[name], second[name]) for name in first)

    other = _generate(tmp_path / "other", seed=4)
    assert (other / "train.csv").read_bytes() != (small_demo / "train.csv").read_bytes()
    third = _images(other)
    assert not any(np.array_equal(first[name], third[name]) for name in first)


def test_rerun_with_same_parameters_writes_nothing(small_demo):
    before = {p: p.stat().st_mtime_ns for p in small_demo.rglob("*")}
    assert _generate(small_demo) == small_demo
    assert {p: p.stat().st_mtime_ns for p in small_demo.rglob("*")} == before


def test_rerun_with_other_parameters_is_refused(small_demo):
    with pytest.raises(DataError, match="seed 3 \\(asked 9\\).*another folder"):
        _generate(small_demo, seed=9)
    with pytest.raises(DataError, match="n_images 12 \\(asked 13\\)"):
        _generate(small_demo, n_images=13)


def test_foreign_folders_are_refused(tmp_path):
    severstal = tmp_path / "severstal"
    severstal.mkdir()
    (severstal / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    with pytest.raises(DataError, match="not a defectgen demo"):
        _generate(severstal)
    images = tmp_path / "photos" / "train_images"
    images.mkdir(parents=True)
    (images / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError, match="did not generate"):
        _generate(tmp_path / "photos")
    assert (images / "holiday.jpg").read_bytes() == b"not ours"


def test_interrupted_run_is_redone(small_demo, tmp_path):
    out = _generate(tmp_path / "cut", n_images=20)
    # Interrupted before the CSV (written last), then restarted with fewer images: leftovers
    # of the first run must not survive as unlabelled "defect-free" images.
    (out / "train.csv").unlink()
    (out / "train_images" / ".demo_00003.jpg.tmp123").write_bytes(b"half a file")
    assert _generate(out) == out
    assert (out / "train.csv").read_bytes() == (small_demo / "train.csv").read_bytes()
    assert sorted(p.name for p in (out / "train_images").iterdir()) == sorted(_images(small_demo))


def test_bad_parameters(tmp_path):
    for bad in ({"n_images": 0}, {"defect_share": 1.5}, {"height": 8}, {"seed": -1}):
        with pytest.raises(ConfigError):
            _generate(tmp_path / "bad", **bad)


def test_demo_sheet(small_demo, tmp_path):
    path = write_demo_sheet(small_demo, tmp_path / "sheets" / "demo.png", n=5)
    sheet = Image.open(path)
    assert sheet.format == "PNG" and sheet.mode == "RGB"
    assert sheet.width > 800 and sheet.height > 4 * 64
    assert not list(path.parent.glob(".*")), "temporary file left behind"


# --- the Severstal reader ----------------------------------------------------------------------


def test_default_size_passes_the_severstal_reader(tmp_path):
    out = generate_demo(tmp_path / "demo", n_images=6, defect_share=0.7, seed=1, progress=False)
    assert not (out / "shape.txt").exists()
    dataset = SeverstalDataset(out / "train.csv", out / "train_images")
    assert len(dataset) == 6
    summary = dataset.summary()
    assert summary["defect_free"] == 6 - round(6 * 0.7)
    assert all(count >= 1 for count in summary["images_per_class"].values()), summary
    assert open_dataset(str(out)).summary()["images_per_class"] == summary["images_per_class"]

    plan, seeds = demo_plan(6, 0.7, 1)
    for index in range(6):
        _, image, masks = render_demo_image(np.random.default_rng(seeds[index]), 256, 1600, plan[index])
        sample = dataset[dataset.index_of(f"demo_{index:05d}.jpg")]
        assert np.array_equal(sample.masks, masks)
        assert sample.class_ids == tuple(k for k in range(1, 5) if masks[k - 1].any())
        # The JPEG (quality 95) is the rendered image up to compression noise.
        assert np.abs(sample.image[:, :, 0].astype(int) - image).mean() < 2.0


def test_default_size_is_fast(tmp_path):
    """240 default-size images take ~2 s on 2 cores; time 24 against the 30 s budget."""
    start = time.perf_counter()
    generate_demo(tmp_path / "demo", n_images=24, progress=False)
    assert time.perf_counter() - start < 30 * 24 / 240, "demo generation got slow (> 30 s / 240)"
