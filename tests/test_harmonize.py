"""`synth --mode harmonize`: real training defects pasted, only their seam repainted; the label
is the pasted mask, `painted` is the band and rim, and the mode keeps synthesis' formats,
determinism, resume and refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_gray
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.painter import seam
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig
from defectgen.synthset import painted_region, read_manifest

SIZE = 48


@pytest.fixture(scope="module")
def harmonize_run(tmp_path_factory):
    """Defects are squares whose pixels hold 10 + the image's number, on a noisy 150 background:
    a label pixel the generator did not repaint names the training image it came from."""
    root = tmp_path_factory.mktemp("harmonize")
    rng = np.random.default_rng(0)
    for n in range(6):
        image = rng.integers(140, 160, (SIZE, SIZE)).astype(np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[10 + 3 * n : 22 + 3 * n, 12:26] = 1 + n % 2
        image[mask > 0] = 10 + n
        write_gray(root / "data" / "images" / f"defect_{n}.png", image)
        write_gray(root / "data" / "masks" / f"defect_{n}.png", mask)
        write_gray(root / "data" / "images" / f"free_{n}.png", rng.integers(140, 160, (SIZE, SIZE)))
        write_gray(root / "data" / "masks" / f"free_{n}.png", np.zeros((SIZE, SIZE), np.uint8))
    (root / "data" / "classes.txt").write_text("dark\nlight\nunseen\n")  # no image holds class 3
    dataset = open_dataset(str(root / "data"))
    split = make_split(dataset, seed=0)
    split.save(root / "split.json")
    config = TrainConfig(
        preset="tiny",
        model={"resolution": 32},
        batch_size=2,
        steps=2,
        precision="fp32",
        sample_every=100,
        checkpoint_every=100,
    )
    checkpoint = train(dataset, split, config, root / "run", progress=False)
    return dataset, split, checkpoint, root


def _records(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_the_defect_keeps_its_real_pixels_and_only_the_seam_is_repainted(harmonize_run, tmp_path):
    dataset, split, checkpoint, _ = harmonize_run
    out = tmp_path / "out"
    synthesize(
        checkpoint,
        dataset,
        split,
        out,
        SynthConfig(n=6, mode="harmonize", band=3, rim=1, seed=4, background_source="free"),
        progress=False,
    )
    params = json.loads((out / "synth.json").read_text())
    assert (params["mode"], params["band"], params["rim"], params["mask_source"]) == (
        "harmonize",
        3,
        1,
        "paste",
    )
    synthetic = open_dataset(str(out))
    manifest = read_manifest(out)
    for index in range(len(synthetic)):
        sample = synthetic[index]
        record = manifest[sample.item_id]
        label = sample.masks.any(axis=0)
        assert label.any() and record["mask_source"] == "paste"
        painted = painted_region(out, record, sample.masks)
        assert np.array_equal(painted, seam(label, 3, 1))  # the band and the rim, nothing else
        assert painted.any() and (painted & ~label).any() and (painted & label).any()
        background = dataset[dataset.index_of(record["background"])].image[..., 0]
        image = sample.image[..., 0]
        assert np.array_equal(image[~label & ~painted], background[~label & ~painted])  # background kept
        inside = image[label & ~painted]  # the defect's own pixels, from training images only
        training = [name for name in split.train if name.startswith("defect")]
        assert inside.size and set(np.unique(inside).tolist()) <= {10 + int(n[-1]) for n in training}
        assert {d["source"] for d in record["defects"]} <= set(training)
        for k in sample.class_ids:  # each class's label is its pasted defect's class
            assert {d["class_id"] for d in record["defects"]} >= {k}


def test_same_seed_same_files_and_a_resumed_run_matches_one_run(harmonize_run, tmp_path):
    dataset, split, checkpoint, _ = harmonize_run

    def run(folder, n, seed=2):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / folder,
            SynthConfig(n=n, mode="harmonize", seed=seed, background_source="free"),
            progress=False,
        )

    run("whole", 5)
    run("resumed", 2)
    run("resumed", 5)
    run("other", 5, seed=3)

    def files(name):
        return {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.png")}

    whole, resumed, other = files("whole"), files("resumed"), files("other")
    assert whole == resumed
    assert whole != other


def test_the_cli_writes_a_harmonized_set_with_the_band_asked_for(harmonize_run, tmp_path):
    dataset, _, checkpoint, root = harmonize_run
    out = tmp_path / "cli"
    command = [
        sys.executable, "-m", "defectgen", "synth", str(root / "data"), "--checkpoint", str(checkpoint),
        "--split", str(root / "split.json"), "--n", "3", "--out", str(out), "--mode", "harmonize",
        "--band", "2", "--rim", "0", "--precision", "fp32", "--background-source", "free",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    synthetic = open_dataset(str(out))
    for record in _records(out):
        sample = synthetic[synthetic.index_of(record["image"].split("/")[-1].rsplit(".", 1)[0])]
        label = sample.masks.any(axis=0)
        painted = painted_region(out, record, sample.masks)
        assert np.array_equal(painted, seam(label, 2, 0)) and not (painted & label).any()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "blend"}, "`mode` must be one of paint, harmonize"),
        ({"mode": "harmonize", "mask_source": "shapes"}, "takes no `mask_source`"),
        ({"mode": "harmonize", "band": 0}, "`band` must be in 1..64"),
        ({"mode": "harmonize", "band": 65}, "`band` must be in 1..64"),
        ({"mode": "harmonize", "rim": -1}, "`rim` must be in 0..16"),
        ({"band": 3}, "belong to `mode` harmonize"),
        ({"mode": "harmonize", "classes": [2, 4]}, "class id 4"),
        ({"mode": "harmonize", "classes": [3]}, r"no defect of class\(es\) \[3\]"),  # a class with no defect
        ({"classes": [3]}, r"no mask source can draw class"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(harmonize_run, tmp_path, options, message):
    dataset, split, checkpoint, _ = harmonize_run
    with pytest.raises((ConfigError, DataError), match=message):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out",
            SynthConfig(n=2, **options, background_source="free"),
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_seam_is_a_band_outside_and_a_rim_inside():
    label = np.zeros((20, 20), dtype=bool)
    label[5:15, 0:10] = True  # cut by the left border
    ring = seam(label, 2, 1)
    assert ring[4, 5] and ring[5, 5] and not ring[7, 5]  # outside, rim, interior
    assert not ring[10, 0]  # the border is not a seam: no rim along it
    assert ring[10, 11] and ring[10, 9] and not ring[10, 13]  # band 2 outside the right edge, rim 1
