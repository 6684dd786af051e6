import json

import numpy as np
import pytest

from conftest import write_gray
from defectgen.data import open_dataset
from defectgen.data.split import Split, make_split, split_report
from defectgen.errors import ConfigError, DataError


def test_deterministic_and_stratified(magnetic_tile_dir, tmp_path):
    dataset = open_dataset(str(magnetic_tile_dir))
    a = make_split(dataset, test_fraction=0.5, seed=0)
    b = make_split(dataset, test_fraction=0.5, seed=0)
    c = make_split(dataset, test_fraction=0.5, seed=1)
    assert a == b and a.test != c.test
    assert not set(a.train) & set(a.test)
    assert len(a.train) + len(a.test) == len(dataset)
    report = split_report(a, dataset)
    for name, count in dataset.summary()["images_per_class"].items():
        train, test = report["train"][f"class {name}"], report["test"][f"class {name}"]
        assert train + test == count
        assert abs(train - test) <= 1  # stratified 50/50 per class
    a.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == a


def test_rare_classes_land_on_both_sides(severstal_dir):
    dataset = open_dataset(f"severstal:{severstal_dir / 'train.csv'}")
    split = make_split(dataset, test_fraction=0.5, seed=0)
    report = split_report(split, dataset)
    for class_id in dataset.classes.ids:
        assert report["train"][f"class {class_id}"] > 0 and report["test"][f"class {class_id}"] > 0
    assert abs(report["train"]["class 2"] - report["test"]["class 2"]) <= 3


def test_label_fraction_subsamples_training_defects_only(magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    full = make_split(dataset, seed=0)
    quarter = make_split(dataset, seed=0, label_fraction=0.25)
    assert quarter.test == full.test  # the test half does not move
    by_id = {i.item_id: i for i in dataset.items}
    train_defects = [i for i in full.train if by_id[i].class_ids]
    kept = [i for i in quarter.train if by_id[i].class_ids]
    assert abs(len(kept) - 0.25 * len(train_defects)) <= len(dataset.classes)
    assert set(kept) | set(quarter.train_unlabelled) == set(train_defects)
    free = lambda s: {i for i in s.train if not by_id[i].class_ids}  # noqa: E731
    assert free(quarter) == free(full)
    report = split_report(quarter, dataset)
    assert all(report["train"][f"class {n}"] >= 1 for n in dataset.classes.names)


def test_foreign_split_refused(magnetic_tile_dir, tmp_path):
    tiles = open_dataset(str(magnetic_tile_dir))
    write_gray(tmp_path / "images" / "a.png", np.zeros((8, 8)))
    write_gray(tmp_path / "masks" / "a.png", np.zeros((8, 8)))
    write_gray(tmp_path / "images" / "b.png", np.zeros((8, 8)))
    write_gray(tmp_path / "masks" / "b.png", np.ones((8, 8)))
    other = open_dataset(str(tmp_path))
    split = make_split(other, seed=0)
    with pytest.raises(DataError, match="split was made for"):
        split.check(tiles)


def test_bad_split_files_and_options(tmp_path, magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    with pytest.raises(ConfigError, match="test-fraction"):
        make_split(dataset, test_fraction=1.0)
    with pytest.raises(ConfigError, match="label-fraction"):
        make_split(dataset, label_fraction=0)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable split file"):
        Split.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(DataError, match="not a defectgen split file"):
        Split.load(tmp_path / "other.json")
    with pytest.raises(DataError, match="not found"):
        Split.load(tmp_path / "missing.json")
