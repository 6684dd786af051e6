import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import write_gray
from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.classes import ClassTable
from defectgen.data.dataset import DefectDataset, Item
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


def _two_images(root: Path, value: float) -> DefectDataset:
    for name, mask in (("a", np.zeros((8, 8))), ("b", np.ones((8, 8)))):
        write_gray(root / "images" / f"{name}.png", np.full((8, 8), value) + np.arange(8))
        write_gray(root / "masks" / f"{name}.png", mask)
    return open_dataset(str(root))


def test_the_fingerprint_reads_content_not_only_names(tmp_path):
    """Lineage (#32 item 5): the same file names with other pixels (same file sizes) or other
    labels are another dataset; the same content under another root is the same one."""
    first = _two_images(tmp_path / "first", 10)
    split = make_split(first, seed=0)
    assert _two_images(tmp_path / "copy", 10).fingerprint() == first.fingerprint()
    other = _two_images(tmp_path / "other", 20)
    assert (tmp_path / "other/images/a.png").stat().st_size == (
        tmp_path / "first/images/a.png"
    ).stat().st_size
    assert other.fingerprint() != first.fingerprint()
    with pytest.raises(DataError, match="other content"):
        split.check(other)
    relabelled = _two_images(tmp_path / "relabelled", 10)
    assert relabelled.fingerprint() == first.fingerprint()
    write_gray(tmp_path / "relabelled/masks/b.png", np.pad(np.ones((4, 4)), 2))  # same class, other pixels
    assert open_dataset(str(tmp_path / "relabelled")).fingerprint() != first.fingerprint()
    assert relabelled.fingerprint() == first.fingerprint()  # computed once per opened dataset


def test_fit_out_writes_the_fit_part_as_a_split(tiny_dataset, tmp_path):
    """`split --fit-out`: the training half without the evaluation's validation part, the rest
    its test part; what `experiment` trains generators on."""
    from defectgen.data.split import carve_validation

    assert (
        main(["split", str(TINY), "--out", str(tmp_path / "s.json"), "--fit-out", str(tmp_path / "f.json")])
        == 0
    )
    dataset = tiny_dataset
    split, fit = Split.load(tmp_path / "s.json"), Split.load(tmp_path / "f.json")
    keep, validation = carve_validation(dataset, split.indices(dataset, "train"), 0.2)
    assert set(fit.train) == {dataset.items[i].item_id for i in keep}
    assert set(fit.test) == set(split.test) | {dataset.items[i].item_id for i in validation}
    assert validation and fit.digest() != split.digest()
    assert main(["split", str(TINY), "--out", str(tmp_path / "t.json"), "--fit-out", str(tmp_path / "g.json"),
                 "--val-fraction", "1.5"]) == 2  # fmt: skip
    settings = tmp_path / "split.yaml"
    settings.write_text("test_fraction: 0.25\nlabel_fraction: 0.5\n")
    args = [
        "split",
        str(TINY),
        "--out",
        str(tmp_path / "c.json"),
        "--config",
        str(settings),
        "--set",
        "seed=3",
    ]
    assert main(args) == 0  # one config for the verb: a file and --set, as every verb with settings
    made = Split.load(tmp_path / "c.json")
    assert (made.test_fraction, made.label_fraction, made.seed) == (
        make_split(tiny_dataset, 0.25, 3, 0.5).test_fraction,
        0.5,
        3,
    )
    same = str(tmp_path / "same.json")
    assert main(["split", str(TINY), "--out", same, "--fit-out", same]) == 2 and not Path(same).exists()


def test_bad_split_files_and_options(tmp_path, magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    with pytest.raises(ConfigError, match="`test_fraction`"):
        make_split(dataset, test_fraction=1.0)
    with pytest.raises(ConfigError, match="`label_fraction`"):
        make_split(dataset, label_fraction=0)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable split file"):
        Split.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(DataError, match="not a defectgen split file"):
        Split.load(tmp_path / "other.json")
    with pytest.raises(DataError, match="not found"):
        Split.load(tmp_path / "missing.json")


# --- splits that leak are refused -------------------------------------------------------------

TINY = Path(__file__).parent / "fixtures" / "tiny_folder"
REMEDY = "make a new split with `defectgen split`"
PARTS = ("train", "test", "train_unlabelled")


@pytest.fixture(scope="module")
def tiny_dataset():
    return open_dataset(str(TINY))


@st.composite
def valid_split_json(draw, dataset):
    """A clean split of `dataset` as its JSON dict: a random partition of (some of) its ids into
    a non-empty train part, a test part and a train_unlabelled part."""
    ids = draw(st.permutations([item.item_id for item in dataset.items]))
    n_train = draw(st.integers(1, len(ids)))
    n_test = draw(st.integers(0, len(ids) - n_train))
    n_unlabelled = draw(st.integers(0, len(ids) - n_train - n_test))
    data = make_split(dataset, seed=0).to_json()
    data["train"] = ids[:n_train]
    data["test"] = ids[n_train : n_train + n_test]
    data["train_unlabelled"] = ids[n_train + n_test : n_train + n_test + n_unlabelled]
    return data


# (where a copied id comes from, where it goes): a repeat within a part, or an id in two parts
LEAKS = [(a, b) for a in PARTS for b in PARTS]


@st.composite
def leaking_split_json(draw, dataset):
    """A clean split with 1-3 ids copied into a part that already holds them or into another
    part. Returns (data, the first leak's source part, target part, id)."""
    data = draw(valid_split_json(dataset))
    leaks = []
    for _ in range(draw(st.integers(1, 3))):
        source, target = draw(st.sampled_from([(a, b) for a, b in LEAKS if data[a]]))
        item_id = draw(st.sampled_from(data[source]))
        position = draw(st.integers(0, len(data[target])))
        data[target] = data[target][:position] + [item_id] + data[target][position:]
        leaks.append((source, target, item_id))
    return data, leaks


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_leaking_split_files_are_refused_on_load(tiny_dataset, tmp_path_factory, data):
    split_json, leaks = data.draw(leaking_split_json(tiny_dataset))
    path = _write(tmp_path_factory.mktemp("leak") / "split.json", split_json)
    with pytest.raises(DataError) as refused:
        Split.load(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and message.endswith(REMEDY)
    if len(leaks) == 1:  # one copied id: the message counts and names it
        source, target, item_id = leaks[0]
        assert "1 id(s)" in message and f"(first: {item_id})" in message
        if source == target:
            assert f"more than once in its {target} part" in message
        else:
            assert "share" in message and source in message and target in message


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_leaking_splits_built_in_python_are_refused(tiny_dataset, data):
    split_json, _ = data.draw(leaking_split_json(tiny_dataset))
    parts = {part: tuple(split_json[part]) for part in PARTS}
    clean = make_split(tiny_dataset, seed=0)
    with pytest.raises(DataError, match="make a new split"):
        dataclasses.replace(clean, **parts)
    # a Split whose parts were changed behind the constructor's back is still caught by check
    # (which every verb runs, directly or through `indices`)
    sneaky = make_split(tiny_dataset, seed=0)
    for part, ids in parts.items():
        object.__setattr__(sneaky, part, ids)
    with pytest.raises(DataError, match="make a new split"):
        sneaky.check(tiny_dataset)
    with pytest.raises(DataError, match="make a new split"):
        sneaky.indices(tiny_dataset, "train")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_clean_splits_of_the_fixture_round_trip(tiny_dataset, tmp_path_factory, data):
    split_json = data.draw(valid_split_json(tiny_dataset))
    path = _write(tmp_path_factory.mktemp("clean") / "split.json", split_json)
    split = Split.load(path)
    split.check(tiny_dataset)
    assert split.to_json() == split_json
    split.save(path)
    assert Split.load(path) == split
    for part in PARTS:
        indices = split.indices(tiny_dataset, part)
        assert [tiny_dataset.items[i].item_id for i in indices] == split_json[part]


def test_empty_train_part_is_refused(tiny_dataset, tmp_path):
    data = make_split(tiny_dataset, seed=0).to_json()
    data["test"] += data["train"]
    data["train"] = []
    path = _write(tmp_path / "split.json", data)
    with pytest.raises(DataError, match=r"split.json: split has an empty train part.*defectgen split"):
        Split.load(path)
    with pytest.raises(DataError, match="empty train part"):
        dataclasses.replace(make_split(tiny_dataset, seed=0), train=())


@pytest.mark.parametrize(
    "field, value",
    [("train", "tile_0"), ("test", [1, 2]), ("train_unlabelled", {"tile_0": 1}), ("train", None)],
)
def test_parts_must_be_lists_of_id_strings(tiny_dataset, tmp_path, field, value):
    data = make_split(tiny_dataset, seed=0).to_json()
    data[field] = value
    with pytest.raises(DataError, match=f"bad field.*{field} must be a list of item id strings"):
        Split.load(_write(tmp_path / "split.json", data))


def _memory_dataset(combos: list[tuple[int, ...]], num_classes: int) -> DefectDataset:
    items = [Item(f"item{n:03d}", None, combo) for n, combo in enumerate(combos)]
    classes = ClassTable(tuple(f"c{k}" for k in range(1, num_classes + 1)))
    return DefectDataset(
        kind="folder", spec="memory", root=Path("."), classes=classes, channels=1, items=items
    )


@st.composite
def memory_datasets(draw):
    num_classes = draw(st.integers(1, 4))
    combo = st.lists(st.integers(1, num_classes), max_size=num_classes, unique=True).map(
        lambda ids: tuple(sorted(ids))
    )
    return _memory_dataset(draw(st.lists(combo, min_size=2, max_size=40)), num_classes)


@settings(max_examples=200, deadline=None)
@given(
    dataset=memory_datasets(),
    test_fraction=st.floats(0.01, 0.99),
    label_fraction=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
@example(dataset=_memory_dataset([(), (1,)], 1), test_fraction=0.9, label_fraction=1.0, seed=0)
def test_make_split_output_always_passes(dataset, test_fraction, label_fraction, seed):
    split = make_split(dataset, test_fraction=test_fraction, seed=seed, label_fraction=label_fraction)
    split.check(dataset)  # also re-runs the leak checks
    assert split.train
    everything = [*split.train, *split.test, *split.train_unlabelled]
    assert sorted(everything) == sorted(item.item_id for item in dataset.items)
    assert Split(**{f.name: getattr(split, f.name) for f in dataclasses.fields(Split)}) == split


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("label_fraction", [1.0, 0.5])
def test_make_split_of_the_fixture_round_trips(tiny_dataset, tmp_path, seed, label_fraction):
    split = make_split(tiny_dataset, seed=seed, label_fraction=label_fraction)
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


@pytest.fixture
def overlapping_split_file(tiny_dataset, tmp_path):
    data = make_split(tiny_dataset, seed=0).to_json()
    data["test"].append(data["train"][0])
    return _write(tmp_path / "split.json", data), data["train"][0]


@pytest.mark.parametrize("verb", ["train", "synth", "evaluate"])
def test_every_verb_refuses_an_overlapping_split(overlapping_split_file, tmp_path, capsys, verb):
    split_file, shared_id = overlapping_split_file
    out_dir = tmp_path / "out"
    common = [str(TINY), "--split", str(split_file), "--out", str(out_dir)]
    extra = {
        "train": ["--preset", "tiny", "--steps", "1"],
        # not a checkpoint: if the split were accepted, synth would stop on this file instead
        "synth": ["--checkpoint", str(_write(tmp_path / "last.pt", {})), "--n", "1"],
        # the smallest evaluation, should the refusal ever be lost
        "evaluate": ["--arms", "real", "--seeds", "2", "--steps", "1", "--size", "32", "--batch-size", "2"],
    }[verb]
    assert main([verb, *common, *extra]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"{split_file}: split's train and test parts share 1 id(s) (first: {shared_id})" in lines[0]
    assert "test images would leak into training" in lines[0] and lines[0].endswith(REMEDY)
    assert not out_dir.exists()  # refused before any work
