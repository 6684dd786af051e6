"""Mask sources: determinism, exclusive classes, bounds, learned position / size / counts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import record_reads, write_gray
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.geometry import count_components
from defectgen.masks import (
    CountDistribution,
    MaskComposer,
    ProceduralShapes,
    RealMaskBank,
    UserMasks,
    build_mask_source,
    choose_family,
    defect_count_histogram,
    place,
    scan_components,
)
from defectgen.synth_config import SynthConfig

H, W = 64, 96
CLASSES = ["scratch", "pit", "patch"]


def _tiny_dataset(root, images: int = 12):
    """Index-mask folder dataset with known statistics:
    class 1 (scratch): one thin horizontal line per image, always in the top quarter;
    class 2 (pit): 3 or 4 separate discs of ~13 px, clustered, in the lower part;
    class 3 (patch): one large ellipse (~400 px) in the lower half, cut by the right border,
    with class 1.
    Image i holds class 1 (i % 3 == 0), class 2 (i % 3 == 1) or classes 1 + 3 (i % 3 == 2);
    two more images are defect-free."""
    rng = np.random.default_rng(7)
    counts = []
    for i in range(images + 2):
        index = np.zeros((H, W), np.uint8)
        row = [0, 0, 0]
        if i < images and i % 3 in (0, 2):
            y, x0 = int(rng.integers(3, 13)), int(rng.integers(5, 40))
            cv2.line(index, (x0, y), (x0 + int(rng.integers(30, 46)), y + int(rng.integers(-2, 3))), 1, 1)
            row[0] = 1
        if i < images and i % 3 == 1:
            n = int(rng.integers(3, 5))
            cy, cx = int(rng.integers(30, 50)), int(rng.integers(15, 70))
            for j in range(n):
                cv2.circle(index, (cx + 8 * j, cy + int(rng.integers(-3, 4))), 2, 2, -1)
            row[1] = n
        if i < images and i % 3 == 2:
            axes = (int(rng.integers(14, 19)), int(rng.integers(8, 13)))
            cv2.ellipse(index, (88, 42), axes, float(rng.uniform(0, 30)), 0, 360, 3, -1)
            row[2] = 1
        write_gray(root / "images" / f"img{i:02d}.png", np.full((H, W), 120))
        write_gray(root / "masks" / f"img{i:02d}.png", index)
        counts.append(row)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    dataset = open_dataset(str(root))
    return dataset, list(range(len(dataset))), np.asarray(counts)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sources(tiny):
    dataset, indices, _ = tiny
    table = scan_components(dataset, indices)
    return {
        "real": RealMaskBank(table),
        "shapes": ProceduralShapes.from_table(table),
        "mix": build_mask_source("mix", dataset, indices),
    }


@pytest.mark.parametrize("name", ["real", "shapes", "mix"])
def test_same_seed_same_masks_other_seed_other_masks(sources, name):
    source = sources[name]

    def draws(seed):
        rng = np.random.default_rng(seed)
        return np.stack([source.draw(rng, H, W) for _ in range(5)])

    first, again, other = draws(5), draws(5), draws(6)
    assert first.any()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", ["real", "shapes", "mix"])
@pytest.mark.parametrize("size", [(H, W), (24, 30), (128, 200)])
def test_masks_have_the_shape_asked_and_exclusive_classes(sources, name, size):
    rng = np.random.default_rng(0)
    drawn = 0
    for _ in range(25):
        masks = sources[name].draw(rng, *size)
        assert masks.shape == (len(CLASSES), *size) and masks.dtype == bool
        assert masks.sum(axis=0).max() <= 1  # a pixel belongs to at most one class
        drawn += int(masks.any())
    assert drawn == 25  # every call is a defect image


def test_classes_are_exclusive_when_big_defects_collide(sources):
    """On an image smaller than the patches, defects of different classes must collide; the
    earlier one keeps its pixels and the class channels stay disjoint."""
    composer = MaskComposer({"real": sources["real"]}, count_distribution=[0, 0, 0, 0, 0, 0, 1])
    rng = np.random.default_rng(1)
    collided = 0
    for _ in range(20):
        masks, info = composer.compose(rng, 12, 16)
        assert masks.sum(axis=0).max() <= 1
        collided += len({d["class_id"] for d in info["defects"]}) > 1
    assert collided > 0  # the case under test happened


def test_classes_argument_restricts_the_channels(sources):
    rng = np.random.default_rng(2)
    for name in ("real", "shapes", "mix"):
        for _ in range(10):
            masks = sources[name].draw(rng, H, W, classes=[2])
            assert masks[1].any() and not masks[[0, 2]].any()
    with pytest.raises(ConfigError):
        sources["mix"].draw(rng, H, W, classes=[4])


def test_place_keeps_a_fitting_shape_whole_and_cuts_a_larger_one():
    shape = np.ones((5, 7), bool)
    for centre in [(0, 0), (0, 99), (49, 0), (49, 99), (-30, 200)]:
        canvas = place(shape, 50, 100, *centre)
        assert canvas.shape == (50, 100) and canvas.sum() == shape.sum()
    big = np.ones((80, 30), bool)
    canvas = place(big, 50, 100, 25, 50)
    assert canvas.sum() == 50 * 30 and canvas[:, 35:65].all()


def test_bank_position_prior_follows_the_data(sources):
    """Class 1 sits in the top quarter of every real image: it must be drawn in the top half
    (a uniform placement would put half of them below)."""
    bank = sources["real"]
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(200):
        ys = np.nonzero(bank.draw_defect(rng, H, W, 1))[0]
        rows.append(ys.mean() / H)
    assert np.mean(np.asarray(rows) < 0.5) >= 0.9
    bottom = [np.nonzero(bank.draw_defect(rng, H, W, 3))[0].mean() / H for _ in range(100)]
    assert np.mean(np.asarray(bottom) > 0.5) >= 0.9  # and patches stay at the bottom


def test_bank_variation_keeps_area_within_the_scale_range(sources):
    bank = sources["real"]
    rng = np.random.default_rng(4)
    crop = bank.table.crop(int(bank.table.of_class(3)[0]))
    for _ in range(20):
        varied, _ = bank.vary(rng, crop)
        ratio = varied.sum() / crop.sum()
        assert 0.8**2 * 0.95 <= ratio <= 1.25**2 * 1.05
    assert not all(np.array_equal(bank.vary(rng, crop)[0], crop) for _ in range(5))


def test_bank_keeps_thin_scratches_whole(sources):
    """Rotating a 1-px line and cutting at 0.5 leaves dashes; a varied scratch stays one piece."""
    bank = sources["real"]
    rng = np.random.default_rng(5)
    for index in bank.table.of_class(1)[:4]:
        for _ in range(5):
            varied, _ = bank.vary(rng, bank.table.crop(int(index)))
            assert count_components(varied) == 1
            assert varied.sum() <= 1.25**2 * 1.1 * bank.table.areas[index]  # and thin


def test_bank_puts_border_cut_components_back_on_a_border(sources):
    """Every real patch is cut by the right border: a drawn one must touch the left or right
    border (flips may move it), never float with a straight cut edge in mid-image."""
    bank = sources["real"]
    assert all(bank.table.borders[bank.table.of_class(3)] & 8)
    rng = np.random.default_rng(6)
    for size in [(H, W), (100, 400)]:  # on a wide image, only anchoring reaches the border
        for _ in range(20):
            shape = bank.draw_defect(rng, *size, 3)
            assert shape[:, 0].any() or shape[:, -1].any()


def test_bank_saves_and_loads_to_the_same_draws(sources, tmp_path):
    bank = sources["real"]
    bank.save(tmp_path / "bank.npz")
    loaded = RealMaskBank.load(tmp_path / "bank.npz")
    a = [bank.draw(np.random.default_rng(9), H, W) for _ in range(3)]
    b = [loaded.draw(np.random.default_rng(9), H, W) for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    shapes = ProceduralShapes.from_state_dict(sources["shapes"].state_dict())
    assert np.array_equal(
        shapes.draw(np.random.default_rng(9), H, W), sources["shapes"].draw(np.random.default_rng(9), H, W)
    )


def test_bank_stores_every_component(sources, tiny):
    _, _, counts = tiny
    table = sources["real"].table
    assert len(table) == counts.sum()
    assert [len(table.of_class(k)) for k in (1, 2, 3)] == counts.sum(axis=0).tolist()


def test_shapes_fit_real_sizes_and_pick_families(sources):
    shapes = sources["shapes"]
    assert [shapes.family(k) for k in (1, 2, 3)] == ["stroke", "pits", "patch"]
    report = shapes.fit_report(samples=150)
    for class_id, row in report.items():
        ratio = row["sampled_area"]["p50"] / row["real_area"]["p50"]
        assert 0.5 <= ratio <= 2.0, (class_id, row)
    assert report[1]["sampled_elongation_p50"] >= 4.0  # strokes stay thin


def test_choose_family_rules():
    assert choose_family(0.05, 1.5, 1) == "patch"
    assert choose_family(0.001, 8.0, 1) == "stroke"
    assert choose_family(0.001, 1.5, 4) == "pits"
    assert choose_family(0.001, 1.5, 1) == "blob"


def test_count_histogram_matches_the_data(tiny):
    dataset, indices, counts = tiny
    distribution = defect_count_histogram(dataset, indices)
    defect_rows = counts[counts.sum(axis=1) > 0]
    expected = np.bincount(defect_rows.sum(axis=1)) / len(defect_rows)
    assert np.allclose(distribution.components[: len(expected)], expected)
    assert distribution.images == len(defect_rows)
    assert np.isclose(distribution.mean_components(), defect_rows.sum(axis=1).mean())


def test_composer_respects_the_count_distribution_on_average(sources):
    histogram = [0.0, 0.5, 0.3, 0.2]  # mean 1.7 defects per image
    composer = MaskComposer({"real": sources["real"]}, count_distribution=histogram, class_weights={1: 1.0})
    rng = np.random.default_rng(11)
    found = [count_components(composer.draw(rng, 96, 160)[0]) for _ in range(400)]
    assert abs(np.mean(found) - 1.7) < 0.15  # 3.8 standard errors
    assert np.bincount(found, minlength=4)[3] > 40  # the tail is drawn, not just the mean


def test_composer_keeps_the_real_class_mix(sources, tiny):
    """No real image holds classes 2 and 3 together, none more than two classes; class 2 comes
    as 3-4 pits per image: the composer's images must look the same."""
    dataset, indices, _ = tiny
    composer = MaskComposer(
        {"real": sources["real"]}, count_distribution=defect_count_histogram(dataset, indices)
    )
    rng = np.random.default_rng(12)
    pits = []
    for _ in range(60):
        masks, info = composer.compose(rng, H, W)
        present = {d["class_id"] for d in info["defects"]}
        assert len(present) <= 2
        if 2 in present:
            pits.append(count_components(masks[1]))
    assert pits and 3 <= np.mean(pits) <= 4.5


def test_mix_uses_every_source_by_weight(tiny):
    dataset, indices, _ = tiny
    composer = build_mask_source("mix", dataset, indices, weights={"real": 3.0, "shapes": 1.0})
    rng = np.random.default_rng(13)
    names = [d["source"] for _ in range(100) for d in composer.compose(rng, H, W)[1]["defects"]]
    share = names.count("real") / len(names)
    assert 0.6 <= share <= 0.9
    assert all(
        set(d) == {"source", "class_id", "area", "components"}
        for d in composer.compose(rng, H, W)[1]["defects"]
    )


def test_build_mask_source_refuses_unknown_kinds(tiny):
    dataset, indices, _ = tiny
    with pytest.raises(ConfigError, match="unknown mask kind"):
        build_mask_source("noise", dataset, indices)
    with pytest.raises(ConfigError):
        build_mask_source("real", dataset, None)


def _user_folder(root):
    index = np.zeros((32, 48), np.uint8)
    index[4:10, 5:30] = 1
    index[20:28, 30:40] = 3
    write_gray(root / "two_classes.png", index)
    binary = np.zeros((16, 24), np.uint8)
    binary[4:12, 6:18] = 255
    binary[3, 6:18] = 100  # a soft edge: below 128, background
    binary[12, 6:18] = 200  # above 128: defect
    write_gray(root / "c2_scratch.png", binary)
    return root


def test_user_masks_read_index_and_prefixed_binary_masks(tmp_path, tiny):
    dataset = tiny[0]
    user = UserMasks(_user_folder(tmp_path), dataset.classes)
    assert user.class_ids == (1, 2, 3)
    rng = np.random.default_rng(0)
    masks = user.draw(rng, 16, 24, classes=[2])  # same size: used as drawn
    assert masks.shape == (3, 16, 24) and not masks[[0, 2]].any()
    assert masks[1].sum() == 9 * 12 and masks[1][12].any() and not masks[1][3].any()
    big = user.draw(rng, 64, 96, classes=[1, 3])  # another size: resized, nearest
    assert big[0].sum() == 12 * 50 and big[2].sum() == 16 * 20
    assert big.sum(axis=0).max() <= 1
    composer = build_mask_source(f"folder:{tmp_path}", None, None, classes=dataset.classes)
    assert composer.draw(rng, 32, 48).any()


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [("bad.png", 4, "bad.png: value 4"), ("c9_scratch.png", 255, "c9_scratch.png: the name says class 9")],
)
def test_user_masks_out_of_range_raise_data_error(tmp_path, tiny, name, value, match):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = value
    write_gray(tmp_path / name, mask)
    with pytest.raises(DataError, match=match):
        UserMasks(tmp_path, tiny[0].classes)


def test_user_masks_empty_or_missing_folder_raise_data_error(tmp_path, tiny):
    with pytest.raises(DataError, match="no PNG masks"):
        UserMasks(tmp_path, tiny[0].classes)
    with pytest.raises(DataError, match="not found"):
        UserMasks(tmp_path / "nowhere", tiny[0].classes)
    write_gray(tmp_path / "blank.png", np.zeros((8, 8)))
    with pytest.raises(DataError, match="blank.png: the mask has no defect pixel"):
        UserMasks(tmp_path, tiny[0].classes)


def test_count_distribution_refuses_masks_without_defects():
    with pytest.raises(DataError):
        CountDistribution.from_counts(np.zeros((3, 2), int))


def test_magnetic_tile_training_half(magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    train = make_split(dataset, seed=0).indices(dataset, "train")
    by_class = {k: [i for i in train if dataset.items[i].class_ids == (k,)][:6] for k in dataset.classes.ids}
    indices = [i for chosen in by_class.values() for i in chosen] + [
        i for i in train if not dataset.items[i].class_ids
    ][:4]
    composer = build_mask_source("mix", dataset, indices)
    assert composer.class_ids == dataset.classes.ids
    rng = np.random.default_rng(0)
    for _ in range(10):
        masks = composer.draw(rng, 200, 250)
        assert masks.shape == (5, 200, 250) and masks.any() and masks.sum(axis=0).max() <= 1
    again = composer.draw(np.random.default_rng(4), 200, 250)
    assert np.array_equal(again, composer.draw(np.random.default_rng(4), 200, 250))
    for class_id, row in composer.sources["shapes"].fit_report(samples=60).items():
        ratio = row["sampled_area"]["p50"] / row["real_area"]["p50"]
        assert 0.5 <= ratio <= 2.0, (dataset.classes.name(class_id), row)


# --- the real-mask bank learns from the training half only -----------------------------------

TINY_FOLDER = Path(__file__).parent / "fixtures" / "tiny_folder"


@pytest.fixture
def fixture_split():
    dataset = open_dataset(str(TINY_FOLDER))
    split = make_split(dataset, seed=0)
    test_defects = {i for i in split.indices(dataset, "test") if dataset.items[i].class_ids}
    assert test_defects  # so a bank built from the test half (or everything) would show
    return dataset, split


def _bank_ids(composer, dataset) -> set[str]:
    return {dataset.items[int(i)].item_id for i in composer.sources["real"].table.items}


@pytest.mark.parametrize("kind", ["real", "mix"])
def test_real_mask_bank_is_built_from_training_masks_only(fixture_split, monkeypatch, kind):
    dataset, split = fixture_split
    train_defect_ids = {i for i in split.train if dataset.items[dataset.index_of(i)].class_ids}
    reads = record_reads(dataset, monkeypatch, ("load_masks",))
    composer = build_mask_source(kind, dataset, split.indices(dataset, "train"))
    assert _bank_ids(composer, dataset) == train_defect_ids
    assert {dataset.items[i].item_id for i in reads} <= set(split.train)


@pytest.mark.parametrize("kind", ["real", "mix"])
def test_synth_mask_bank_is_built_from_training_masks_only(fixture_split, tmp_path, monkeypatch, kind):
    """Through `synthesize` (what `defectgen synth --mask-source real|mix` runs): every real
    component in the bank, and every mask or image read, comes from the split's training half."""
    from defectgen.gan.config import TrainConfig
    from defectgen.gan.train import train
    from defectgen.synth import synthesize

    dataset, split = fixture_split
    config = TrainConfig(preset="tiny", model={"resolution": 32}, batch_size=2, precision="fp32", steps=1)
    checkpoint = train(dataset, split, config, tmp_path / "run", progress=False)

    banks: list[RealMaskBank] = []
    real_init = RealMaskBank.__init__

    def recorded_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        banks.append(self)

    monkeypatch.setattr(RealMaskBank, "__init__", recorded_init)
    reads = record_reads(dataset, monkeypatch, ("load_masks", "load_image"))
    synthesize(
        checkpoint, dataset, split, tmp_path / "synth", SynthConfig(n=2, mask_source=kind), progress=False
    )

    train_defect_ids = {i for i in split.train if dataset.items[dataset.index_of(i)].class_ids}
    assert banks, "synthesize built no real-mask bank"
    for bank in banks:
        assert {dataset.items[int(i)].item_id for i in bank.table.items} == train_defect_ids
    assert reads and {dataset.items[i].item_id for i in reads} <= set(split.train)
