"""Synthesis on a training half without defect-free images: new defects painted on labelled
images away from their defects, or on images whose defects the generator erased first."""

import json

import cv2
import numpy as np
import pytest

from conftest import write_gray
from defectgen.data import open_dataset
from defectgen.data.rle import decode
from defectgen.data.split import make_split
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.masks import build_mask_source
from defectgen.synth import BACKGROUND_TEXT, synthesize
from defectgen.synth_config import SynthConfig
from defectgen.synthset import read_manifest

TINY = dict(preset="tiny", model={"resolution": 32}, batch_size=2, sample_every=100, checkpoint_every=100)


@pytest.fixture(scope="module")
def defects_only(tmp_path_factory):
    """12 grayscale 48x96 images, each with one or two bright bars (classes 1, 2): no
    defect-free image anywhere. A 1-step tiny GAN on its training half."""
    root = tmp_path_factory.mktemp("defects_only")
    rng = np.random.default_rng(0)
    for i in range(12):
        image = rng.normal(90, 5, (48, 96))
        mask = np.zeros((48, 96), np.uint8)
        for k in range(1 + i % 2):
            y, x = int(rng.integers(2, 40)), int(rng.integers(2, 80))
            mask[y : y + 5, x : x + 12] = 1 + (i + k) % 2
        image[mask > 0] += 80
        write_gray(root / "data" / "images" / f"im{i:02d}.png", image.clip(0, 255))
        write_gray(root / "data" / "masks" / f"im{i:02d}.png", mask)
    (root / "data" / "classes.txt").write_text("bar\nspot\n")
    dataset = open_dataset(str(root / "data"))
    split = make_split(dataset, seed=0)
    checkpoint = train(dataset, split, TrainConfig(steps=1, **TINY), root / "run", progress=False)
    return dataset, split, checkpoint


def _disc(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _grown(mask, radius):
    return cv2.dilate(mask.astype(np.uint8), _disc(radius)).astype(bool) if radius else mask


def _items(out, dataset):
    """(record, synthetic sample, its background's real sample) per written item."""
    synthetic = open_dataset(str(out))
    for stem, record in sorted(read_manifest(out).items()):
        yield record, synthetic[synthetic.index_of(stem)], dataset[dataset.index_of(record["background"])]


def test_auto_paints_on_the_defect_images_of_a_half_without_free_images(defects_only, tmp_path):
    dataset, split, checkpoint = defects_only
    synthesize(checkpoint, dataset, split, tmp_path / "auto", SynthConfig(n=2, seed=1), progress=False)
    params = json.loads((tmp_path / "auto" / "synth.json").read_text())
    assert params["backgrounds"] == BACKGROUND_TEXT["labelled"]


def test_cleaned_backgrounds_erase_the_old_defects(defects_only, tmp_path):
    dataset, split, checkpoint = defects_only
    out = tmp_path / "cleaned"
    synthesize(
        checkpoint, dataset, split, out, SynthConfig(n=6, seed=1, background_source="cleaned"), progress=False
    )
    params = json.loads((out / "synth.json").read_text())
    assert params["backgrounds"] == "training half, defect images with their defects erased"
    radius = params["hole_dilation"]
    for record, sample, background in _items(out, dataset):
        old = background.masks.any(0)
        painted = decode(record["painted"], old.shape)
        assert painted[old].all()  # every old defect pixel was repainted (erased)
        new_hole = _grown(sample.masks.any(0), radius)
        assert np.array_equal(painted, _grown(old, radius + 2) | new_hole)
        assert np.array_equal(sample.image[~painted], background.image[~painted])  # the rest kept
        assert sample.masks.any()  # the label holds only the new defects


def test_labelled_backgrounds_keep_their_defects_in_the_label_and_new_ones_away(defects_only, tmp_path):
    dataset, split, checkpoint = defects_only
    out = tmp_path / "labelled"
    synthesize(
        checkpoint,
        dataset,
        split,
        out,
        SynthConfig(n=8, seed=2, background_source="labelled"),
        progress=False,
    )
    radius = json.loads((out / "synth.json").read_text())["hole_dilation"]
    for record, sample, background in _items(out, dataset):
        old = background.masks
        assert (sample.masks >= old).all()  # the label is the union of old and new
        new = sample.masks.any(0) & ~old.any(0)
        assert new.any()
        assert not (new & _grown(old.any(0), radius + 1)).any()  # kept away from the old defects
        painted = decode(record["painted"], new.shape)
        assert not (painted & old.any(0)).any()  # an old defect is never repainted
        assert np.array_equal(sample.image[~painted], background.image[~painted])


def test_harmonize_on_labelled_backgrounds(defects_only, tmp_path):
    dataset, split, checkpoint = defects_only
    out = tmp_path / "harmonized"
    synthesize(
        checkpoint,
        dataset,
        split,
        out,
        SynthConfig(n=4, seed=3, mode="harmonize", band=2, rim=1, background_source="labelled"),
        progress=False,
    )
    for record, sample, background in _items(out, dataset):
        old = background.masks
        assert (sample.masks >= old).all() and (sample.masks.any(0) & ~old.any(0)).any()
        painted = decode(record["painted"], old.shape[1:])
        assert not (painted & old.any(0)).any()


def test_the_same_command_gives_the_same_files(defects_only, tmp_path):
    dataset, split, checkpoint = defects_only
    for name in ("a", "b"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / name,
            SynthConfig(n=4, seed=5, background_source="cleaned", batch_size=3),
            progress=False,
        )
    files = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert files and all(
        (tmp_path / "a" / "images" / f).read_bytes() == (tmp_path / "b" / "images" / f).read_bytes()
        for f in files
    )


def test_composed_masks_never_enter_the_avoided_region(defects_only):
    dataset, split, _ = defects_only
    composer = build_mask_source("real", dataset, split.indices(dataset, "train"))
    rng = np.random.default_rng(0)
    for trial in range(40):
        avoid = np.zeros((48, 96), dtype=bool)
        y, x = rng.integers(0, 40), rng.integers(0, 70)
        avoid[y : y + 8 + trial % 5, x : x + 20] = True
        masks, _ = composer.compose(rng, 48, 96, avoid=avoid)
        assert not (masks.any(0) & avoid).any()
    with pytest.raises(ValueError, match="avoid must be bool"):
        composer.compose(rng, 48, 96, avoid=np.zeros((4, 4), bool))


def test_backgrounds_folder_with_test_images_is_refused_and_defect_images_warned(
    defects_only, tmp_path, capsys
):
    """Lineage (#32 item 3): a --backgrounds folder holding a copy of a test-half image is refused
    (the test image would reach training), one holding a training defect image is painted on with
    a warning (its defects are not labelled); byte-identical copies under any name count."""
    import shutil

    from defectgen.errors import DataError

    dataset, split, checkpoint = defects_only
    test_item = dataset.items[dataset.index_of(split.test[0])]
    train_item = dataset.items[dataset.index_of(split.train[0])]
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    shutil.copy(test_item.image_path, leaky / "renamed.png")
    with pytest.raises(
        DataError, match=f"copies of this split's test half.*renamed.png = {test_item.item_id}"
    ):
        synthesize(
            checkpoint, dataset, split, tmp_path / "a", SynthConfig(n=2, backgrounds=leaky), progress=False
        )
    assert not (tmp_path / "a").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(train_item.image_path, mine / "copy.png")
    write_gray(mine / "other.png", np.full((48, 96), 90.0))
    from defectgen.ui import console

    with console.capture() as captured:
        synthesize(
            checkpoint, dataset, split, tmp_path / "b", SynthConfig(n=2, backgrounds=mine), progress=False
        )
    text = " ".join(captured.get().split())
    assert "1 image(s) are the dataset's own defect images (first: copy.png)" in text


def test_a_mask_folder_holding_test_labels_is_refused(defects_only, tmp_path):
    """`--mask-source folder:DIR` with a copy of a test item's mask would paint the test labels."""
    import shutil

    from defectgen.errors import DataError

    dataset, split, checkpoint = defects_only
    folder = tmp_path / "masks"
    folder.mkdir()
    shutil.copy(dataset.items[dataset.index_of(split.test[0])].mask_path, folder / "mine.png")
    config = SynthConfig(n=2, mask_source=f"folder:{folder}", background_source="labelled")
    with pytest.raises(DataError, match=f"mine.png is a copy of the mask of {split.test[0]}"):
        synthesize(checkpoint, dataset, split, tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()
