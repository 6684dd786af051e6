"""Severity: contrast against the surrounding ring, its rank within the class, the map the
generator is conditioned on (training crops and synthesis), `synth --severity`, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURE, TINY
from defectgen.data import open_dataset
from defectgen.data.patches import DefectCrops
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.gan.checkpoint import load_checkpoint, load_generator
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.models import PRESETS
from defectgen.severity import (
    DEFAULT_SEVERITY,
    SeverityTable,
    contrast,
    defect_contrasts,
    drawn_map,
    grey,
    parse_range,
)
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig
from defectgen.synthset import read_manifest


def _square(level: int, size: int = 40, background: int = 128) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((size, size, 1), background, dtype=np.uint8)
    masks = np.zeros((2, size, size), dtype=bool)
    masks[0, 15:25, 15:25] = True
    image[masks[0]] = level
    return image, masks


def test_contrast_is_the_difference_to_the_ring_in_intensity_units():
    image, masks = _square(28)
    ((class_id, part, value),) = defect_contrasts(image, masks)
    assert class_id == 1 and part.sum() == 100
    assert value == pytest.approx(100 / 255, abs=1e-6)
    # a neighbouring defect's pixels are not the surface: leaving them out keeps the value
    image[15:25, 25:29] = 0
    masks[1, 15:25, 25:29] = True
    assert contrast(grey(image), masks[0], masks.any(axis=0)) == pytest.approx(100 / 255, abs=1e-6)
    assert contrast(grey(image), masks[0]) != pytest.approx(100 / 255, abs=1e-3)
    # no surface around it: not measurable
    assert np.isnan(contrast(grey(image), np.ones((40, 40), dtype=bool)))


def test_the_table_ranks_contrasts_within_their_class():
    samples = [_square(128 - step) for step in range(10, 110, 10)]  # contrasts 10..100 grey levels
    table = SeverityTable.measure(samples, num_classes=2)
    assert table.quantiles[2] == ()  # no defect of class 2
    faint, strong = table.severity(1, 10 / 255), table.severity(1, 100 / 255)
    assert faint == pytest.approx(0.0, abs=1e-4) and strong == pytest.approx(1.0, abs=1e-4)
    levels = [table.severity(1, c / 255) for c in range(10, 101, 5)]
    assert levels == sorted(levels) and 0.4 < table.severity(1, 55 / 255) < 0.6
    assert np.isnan(table.severity(2, 0.3)) and np.isnan(table.severity(1, float("nan")))
    assert SeverityTable.from_json(json.loads(json.dumps(table.to_json()))) == table
    # a defect measured on its own image gets its rank; off the defect the map is 0
    image, masks = _square(128 - 100)
    severity = table.severity_map(image, masks)
    assert severity.shape == (1, 40, 40) and severity[0][masks[0]].min() == pytest.approx(1.0, abs=1e-4)
    assert severity[0][~masks[0]].max() == 0.0
    # an unmeasurable defect gets the default, not NaN
    whole = np.ones((1, 40, 40), dtype=bool)
    assert (table.severity_map(image, np.concatenate([whole, whole * 0]))[0] == DEFAULT_SEVERITY).all()


def test_a_flat_table_gives_ties_the_middle_rank():
    table = SeverityTable.measure([_square(100)] * 5, num_classes=2)
    assert table.severity(1, 28 / 255) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text", ["1:0", "-0.1:0.5", "0.2:1.5", "nan", "nan:1", "0:inf", "a:b", "0.1:0.2:0.3", ""]
)
def test_bad_severity_ranges_are_refused(text):
    with pytest.raises(ConfigError, match="--severity"):
        parse_range(text)


def test_good_severity_ranges():
    assert parse_range("0:1") == (0.0, 1.0)
    assert parse_range("0.8") == (0.8, 0.8)
    assert parse_range(" 0.25 : 0.5 ") == (0.25, 0.5)


def test_drawn_maps_give_each_defect_one_value_in_range():
    masks = np.zeros((2, 30, 30), dtype=bool)
    masks[0, 2:6, 2:6] = masks[0, 20:25, 20:25] = masks[1, 10:14, 2:9] = True
    severity, drawn = drawn_map(masks, 0.3, 0.6, np.random.default_rng(0))
    assert [k for k, _ in drawn] == [1, 1, 2]
    for (_, value), box in zip(drawn, [(2, 2), (20, 20), (10, 2)], strict=True):
        assert 0.3 <= value <= 0.6 and severity[0, box[0], box[1]] == pytest.approx(value, abs=1e-4)
    assert (severity[0][~masks.any(axis=0)] == 0).all()


def test_training_crops_carry_the_severity_of_their_defects():
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    crops = DefectCrops(dataset, split.indices(dataset, "train"), crop_size=32, progress=False)
    batch = crops.batch(0, size=4)
    severity, labels = batch["severity"], batch["labels"]
    assert severity.shape == (4, 1, 32, 32)
    on_defects = labels.amax(dim=1, keepdim=True) > 0
    assert (severity[~on_defects] == 0).all()
    assert ((severity[on_defects] >= 0) & (severity[on_defects] <= 1)).all()
    # the map is what the table says about the crop itself
    image = ((batch["image"][0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    expected = crops.severity.severity_map(image, labels[0].numpy() > 0.5)
    np.testing.assert_allclose(severity[0].numpy(), expected, atol=0.02)


def test_the_generator_reads_its_severity_input():
    G = PRESETS["tiny"].generator.build(1, 2)
    assert G.severity
    image, hole = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    hole[..., 16:40, 16:40] = 1
    labels = torch.zeros(1, 2, 64, 64)
    labels[:, 0, 20:36, 20:36] = 1
    z = G.draw_style(1, torch.Generator().manual_seed(0))
    noise = G.draw_noise(1, 64, 64, torch.Generator().manual_seed(1))
    outputs = [G(image, hole, labels, z=z, noise=noise, severity=labels[:, :1] * s) for s in (0.0, 1.0)]
    assert not torch.equal(*outputs)
    default = G(image, hole, labels, z=z, noise=noise)
    assert torch.equal(default, G(image, hole, labels, z=z, noise=noise, severity=labels[:, :1] * 0.5))
    with pytest.raises(ValueError, match="severity must be"):
        G(image, hole, labels, z=z, noise=noise, severity=torch.zeros(1, 2, 64, 64))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("severity")
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    with_severity = train(dataset, split, TrainConfig(steps=1, **TINY), work / "run", progress=False)
    plain = dict(TINY, model={"resolution": 32, "generator": {"severity": False}})
    without = train(dataset, split, TrainConfig(steps=1, **plain), work / "plain", progress=False)
    return dataset, split, with_severity, without, work


def test_a_run_keeps_its_severity_table(runs):
    _, _, checkpoint, _, _ = runs
    table = SeverityTable.from_json(load_checkpoint(checkpoint)["severity_table"])
    assert any(table.quantiles.values())
    saved = json.loads((checkpoint.parents[1] / "severity.json").read_text())
    assert SeverityTable.from_json(saved) == table


def test_synth_draws_severities_in_the_asked_range(runs):
    dataset, split, checkpoint, _, work = runs

    def run(name, severity):
        out = work / name
        synthesize(
            checkpoint,
            dataset,
            split,
            out,
            SynthConfig(n=4, seed=3, severity=severity, background_source="free"),
            progress=False,
        )
        return out

    default, high = run("default", None), run("high", "0.9:1")
    assert json.loads((default / "synth.json").read_text())["severity"] == [0.0, 1.0]
    assert json.loads((high / "synth.json").read_text())["severity"] == [0.9, 1.0]
    default_records, high_records = read_manifest(default), read_manifest(high)
    for name, record in high_records.items():
        assert record["severity"] and all(0.9 <= value <= 1.0 for _, value in record["severity"])
        assert [k for k, _ in record["severity"]] == [k for k, _ in default_records[name]["severity"]]
        # the masks and backgrounds do not depend on the severity: only the painting does
        assert record["defects"] == default_records[name]["defects"]
        assert record["background"] == default_records[name]["background"]
    assert any(
        (high / r["image"]).read_bytes() != (default / default_records[n]["image"]).read_bytes()
        for n, r in high_records.items()
    )
    with pytest.raises(DataError, match="severity"):  # a folder is not mixed with another range
        run("high", "0.1:0.2")


def test_severity_is_refused_where_it_cannot_apply(runs):
    dataset, split, checkpoint, without, work = runs
    G, *_ = load_generator(without)
    assert not G.severity
    with pytest.raises(ConfigError, match="trained without it"):
        synthesize(without, dataset, split, work / "x", SynthConfig(n=1, severity="0:1"), progress=False)
    with pytest.raises(ConfigError, match="harmonize"):
        synthesize(
            checkpoint,
            dataset,
            split,
            work / "y",
            SynthConfig(n=1, severity="0:1", mode="harmonize"),
            progress=False,
        )
    with pytest.raises(ConfigError, match="--severity"):
        synthesize(
            checkpoint, dataset, split, work / "z", SynthConfig(n=1, severity="0.5:0.1"), progress=False
        )
    assert not (work / "x").exists() and not (work / "y").exists() and not (work / "z").exists()
    # a generator without severity still synthesises as before, recording no severity
    synthesize(
        without,
        dataset,
        split,
        work / "plain_out",
        SynthConfig(n=2, seed=0, background_source="free"),
        progress=False,
    )
    assert "severity" not in json.loads((work / "plain_out" / "synth.json").read_text())
    assert all("severity" not in r for r in read_manifest(work / "plain_out").values())


def test_on_labelled_backgrounds_only_new_defects_get_a_severity(runs):
    """A defect image's own defects are not repainted: the manifest lists one severity per new
    defect component, none for the old ones."""
    from defectgen.geometry import components

    dataset, split, checkpoint, _, work = runs
    out = work / "labelled"
    synthesize(
        checkpoint,
        dataset,
        split,
        out,
        SynthConfig(n=4, seed=1, background_source="labelled"),
        progress=False,
    )
    written = open_dataset(str(out))
    for record in read_manifest(out).values():
        masks = written[written.index_of(Path(record["image"]).stem)].masks
        old = dataset[dataset.index_of(record["background"])].masks
        new = masks & ~old
        expected = [k + 1 for k in range(len(new)) for _ in components(new[k])]
        assert [k for k, _ in record["severity"]] == expected


def test_paint_one_gives_the_severity_to_the_painted_defects_only(monkeypatch):
    """With a hole that leaves an old defect out (the studio on a defect image), the old defect
    gets no severity: only what is painted is told how strong to be."""
    import defectgen.painter as painter

    seen = {}

    def run(G, images, hole, labels, generators, device, amp, severity=None):
        seen["severity"] = severity
        return images

    monkeypatch.setattr(painter, "run_generator", run)
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 2:8, 2:8] = True  # old
    masks[1, 20:26, 20:26] = True  # new
    hole = np.zeros((32, 32), dtype=bool)
    hole[18:28, 18:28] = True
    image = np.zeros((32, 32, 1), dtype=np.uint8)
    painter.paint_one(None, image, masks, 0, 2, "cpu", None, hole=hole, severity=0.8)
    severity = seen["severity"][0, 0].numpy()
    assert (severity[masks[1]] == pytest.approx(0.8)) and (severity[masks[0]] == 0).all()
