"""Synthesis end to end on tiny models: both formats, determinism, labels = masks, known pixels
kept, kill -9 and re-run, disk full, locking, and every refused input."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURE, TINY, write_gray
from defectgen import painter
from defectgen import synth as synth_module
from defectgen.data import SeverstalDataset, open_dataset
from defectgen.data.demo import generate_demo
from defectgen.data.rle import decode
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError, DefectgenError
from defectgen.gan.checkpoint import load_checkpoint, load_generator, save_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig
from defectgen.synthset import painted_region, read_manifest
from defectgen.synthset import writer as synthset_writer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    split.save(work / "split.json")
    checkpoint = train(dataset, split, TrainConfig(steps=2, **TINY), work / "run", progress=False)
    return dataset, split, checkpoint, work


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _assert_same_folder(a: Path, b: Path) -> None:
    """Labels, manifest and every other file byte for byte; painted images and the contact
    sheet within 2 grey levels: oneDNN picks its convolution kernels by batch size, and a
    process painting other items beside an item can move a pixel by a rounding step."""
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b)
    for name, data in files_a.items():
        if name.startswith("images/") or name == "contact_sheet.png":
            one = np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)
            two = np.asarray(Image.open(io.BytesIO(files_b[name])), dtype=np.int16)
            assert one.shape == two.shape and np.abs(one - two).max() <= 2, name
            assert (one != two).mean() <= 0.01, name
        else:
            assert data == files_b[name], name


def test_folder_format_labels_and_known_pixels(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    summary = synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=5, seed=3, background_source="free"),
        progress=False,
    )
    assert summary["items"] == 5
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(5))
    synthetic = open_dataset(str(tmp_path / "out"))  # a drop-in folder dataset
    assert synthetic.classes == dataset.classes and len(synthetic) == 5
    radius = json.loads((tmp_path / "out" / "synth.json").read_text())["hole_dilation"]
    for record, sample in zip(records, (synthetic[i] for i in range(5)), strict=True):
        assert list(sample.class_ids) == record["classes"] and record["classes"]
        assert {str(k): int(sample.masks[k - 1].sum()) for k in sample.class_ids} == record["areas"]
        background = dataset[dataset.index_of(record["background"])].image
        hole = cv2.dilate(
            sample.masks.any(0).astype(np.uint8),
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2),
        ).astype(bool)
        assert np.array_equal(sample.image[~hole], background[~hole])  # known pixels kept exactly
        assert not np.array_equal(sample.image[hole], background[hole])  # and the hole was painted
    assert (tmp_path / "out" / "contact_sheet.png").stat().st_size > 1000


def test_same_seed_same_files(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    for name in ("a", "b"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / name,
            SynthConfig(n=4, seed=1, background_source="free"),
            progress=False,
        )
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "c",
        SynthConfig(n=4, seed=2, background_source="free"),
        progress=False,
    )
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a["images/synth_000000.png"] != c["images/synth_000000.png"]


def test_the_model_spec_reaches_the_checkpoint_and_synthesis(tmp_path):
    """A run with `--set model.generator.ratio_g=0.5` (not the presets') is loaded and
    synthesised with the generator it trained: the spec travels in the checkpoint. A checkpoint
    of another version (here: from before model specs) is refused, not converted."""
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    model = {**TINY["model"], "generator": {"ratio_g": 0.5}}
    checkpoint = train(
        dataset, split, TrainConfig(steps=1, **{**TINY, "model": model}), tmp_path / "run", progress=False
    )
    G, *_ = load_generator(checkpoint)
    assert G.blocks[0].global_channels == G.blocks[0].local_channels
    summary = synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=2, seed=0, background_source="free"),
        progress=False,
    )
    assert summary["items"] == 2
    state = load_checkpoint(checkpoint)
    old = {k: v for k, v in state["config"].items() if k != "model"}
    save_checkpoint(
        {**state, "config": {**old, "resolution": 32, "g_upsampling": "transposed"}}, tmp_path / "old.pt"
    )
    with pytest.raises(DefectgenError, match="written by another defectgen version"):
        load_generator(tmp_path / "old.pt")


def test_severstal_format_on_whole_strips(tmp_path):
    data = generate_demo(tmp_path / "demo", n_images=6, defect_share=0.5, seed=0, progress=False)
    dataset = open_dataset(str(data))
    split = make_split(dataset, seed=0)
    checkpoint = train(dataset, split, TrainConfig(steps=1, **TINY), tmp_path / "run", progress=False)
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=3, format="severstal", mask_source="shapes", background_source="free"),
        progress=False,
    )
    out = SeverstalDataset(tmp_path / "out" / "train.csv", tmp_path / "out" / "images")
    assert len(out) == 3
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    for index, record in enumerate(records):
        sample = out[out.index_of(Path(record["image"]).name)]
        assert sample.image.shape == (256, 1600, 1)
        assert {str(k): int(sample.masks[k - 1].sum()) for k in sample.class_ids} == record["areas"]
        assert record["mask_source"] == "shapes" and index == record["index"]


def test_kill_9_then_rerun_finishes_exactly_n(tiny_run, tmp_path):
    _, _, checkpoint, work = tiny_run
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "defectgen",
        "synth",
        str(FIXTURE),
        "--checkpoint",
        str(checkpoint),
        "--split",
        str(work / "split.json"),
        "--n",
        "40",
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--precision",
        "fp32",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (manifest.exists() and len(manifest.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(manifest.read_text().splitlines())
    assert 3 <= done_before < 40, "the kill should land mid-run"
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(40))
    images = sorted(p.name for p in (out / "images").iterdir())
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert images == [f"synth_{i:06d}.png" for i in range(40)] and masks == images
    assert not [p for p in out.rglob(".*tmp*")]  # no partial files left
    for path in (out / "images").iterdir():
        Image.open(path).load()  # every image decodes


def test_disk_full_keeps_earlier_outputs_and_rerun_completes(tiny_run, tmp_path, monkeypatch):
    dataset, split, checkpoint, _ = tiny_run

    real_fsync, calls = os.fsync, {"n": 0}

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(synthset_writer.os, "fsync", failing_fsync)
    with pytest.raises(DefectgenError, match="disk full while writing .*run the same command again"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out",
            SynthConfig(n=6, background_source="free"),
            progress=False,
        )
    kept = _files(tmp_path / "out")
    assert any(name.startswith("images/") for name in kept)
    monkeypatch.setattr(synthset_writer.os, "fsync", real_fsync)
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=6, background_source="free"),
        progress=False,
    )
    after = _files(tmp_path / "out")
    for name, data in kept.items():
        if name.startswith(("images/", "masks/")):
            assert after[name] == data  # earlier outputs intact
    assert len([n for n in after if n.startswith("images/")]) == 6


def test_second_writer_is_refused(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(DefectgenError, match="another defectgen synth is writing"):
            synthesize(
                checkpoint, dataset, split, out, SynthConfig(n=2, background_source="free"), progress=False
            )


def test_refused_inputs_leave_outputs_untouched(tiny_run, tmp_path, magnetic_tile_dir):
    dataset, split, checkpoint, _ = tiny_run
    with pytest.raises(ConfigError, match=r"`n` must be a number of images in 1\.\."):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "a",
            SynthConfig(n=0, background_source="free"),
            progress=False,
        )
    with pytest.raises(ConfigError, match="`format`"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "a",
            SynthConfig(n=1, format="coco", background_source="free"),
            progress=False,
        )
    tiles = open_dataset(str(magnetic_tile_dir))
    with pytest.raises(DataError, match="was trained for classes"):
        synthesize(
            checkpoint,
            tiles,
            make_split(tiles),
            tmp_path / "a",
            SynthConfig(n=1, background_source="free"),
            progress=False,
        )
    with pytest.raises(DataError, match="not found|no mask"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "a",
            SynthConfig(n=1, mask_source="folder:/no/such/masks", background_source="free"),
            progress=False,
        )
    # another run's folder: refused, nothing changed
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "b",
        SynthConfig(n=2, seed=0, background_source="free"),
        progress=False,
    )
    before = _files(tmp_path / "b")
    with pytest.raises(DataError, match="holds another synthesis run"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "b",
            SynthConfig(n=2, seed=5, background_source="free"),
            progress=False,
        )
    assert _files(tmp_path / "b") == before
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "c",
            SynthConfig(n=2, background_source="free"),
            progress=False,
        )
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"


def test_no_defect_free_backgrounds(tmp_path):
    for i in range(4):
        mask = np.zeros((32, 32), np.uint8)
        mask[4 + i : 10 + i, 5:20] = 1
        write_gray(tmp_path / "ds" / "images" / f"a{i}.png", np.full((32, 32), 90))
        write_gray(tmp_path / "ds" / "masks" / f"a{i}.png", mask)
    dataset = open_dataset(str(tmp_path / "ds"))
    split = make_split(dataset, seed=0)
    checkpoint = train(dataset, split, TrainConfig(steps=1, **TINY), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match="no defect-free images.*cleaned or labelled.*--backgrounds"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out",
            SynthConfig(n=1, background_source="free"),
            progress=False,
        )
    write_gray(tmp_path / "bg" / "free.png", np.full((32, 32), 120))
    summary = synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out2",
        SynthConfig(n=2, backgrounds=tmp_path / "bg"),
        progress=False,
    )
    assert summary["items"] == 2
    with pytest.raises(ConfigError, match="give one or the other"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out3",
            SynthConfig(n=1, backgrounds=tmp_path / "bg", background_source="labelled"),
            progress=False,
        )
    with pytest.raises(ConfigError, match="`background_source` must be one of"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out3",
            SynthConfig(n=1, background_source="dirty"),
            progress=False,
        )
    assert not (tmp_path / "out3").exists()


def test_tiled_mode_paints_only_the_holes(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "whole",
        SynthConfig(n=4, seed=4, background_source="free"),
        progress=False,
    )
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "tiled",
        SynthConfig(n=4, seed=4, tile=16, background_source="free"),
        progress=False,
    )
    whole, tiled = open_dataset(str(tmp_path / "whole")), open_dataset(str(tmp_path / "tiled"))
    radius = json.loads((tmp_path / "tiled" / "synth.json").read_text())["hole_dilation"]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    for index in range(4):
        a, b = whole[index], tiled[index]
        assert np.array_equal(a.masks, b.masks)  # same labels: masks do not depend on the mode
        hole = cv2.dilate(b.masks.any(0).astype(np.uint8), kernel).astype(bool)
        assert np.array_equal(a.image[~hole], b.image[~hole])  # known pixels kept in both modes
        assert hole.any() and not np.array_equal(b.image[hole], a.image[hole])
    with pytest.raises(ConfigError, match="`tile`"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "bad",
            SynthConfig(n=1, tile=20, background_source="free"),
            progress=False,
        )


def test_tiled_windows_are_independent_of_batching_and_of_each_other(tiny_run, tmp_path):
    """Windows of a batch are painted together, grouped by shape: the files are those of one item
    per batch, and a window composites only its own regions (overlapping windows included)."""
    dataset, split, checkpoint, _ = tiny_run
    common = dict(seed=5, tile=16, background_source="free", precision="fp32")
    synthesize(checkpoint, dataset, split, tmp_path / "one", SynthConfig(n=6, batch_size=1, **common), False)
    synthesize(checkpoint, dataset, split, tmp_path / "four", SynthConfig(n=6, batch_size=4, **common), False)
    assert _files(tmp_path / "one") == _files(tmp_path / "four")
    hole = np.zeros((40, 60), dtype=np.float32)
    hole[5:9, 5:9] = hole[5:9, 14:18] = hole[30:34, 40:44] = 1  # two regions share a window
    windows = painter._windows(hole, 16)
    assert len(windows) == 2
    union = np.zeros(hole.shape, dtype=bool)
    for (rows, cols), region in windows:
        assert not (union[rows, cols] & region).any()  # each region painted once
        union[rows, cols] |= region
    assert np.array_equal(union, hole > 0)


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _dilated_union(masks: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return cv2.dilate(masks.any(0).astype(np.uint8), kernel).astype(bool)


def _check_painted(dataset, out: Path) -> list[dict]:
    """Every record's `painted` field is the dilated union of its labels (recomputed here from
    the mask PNG and synth.json), holds every labelled pixel, and is exactly where the image may
    differ from its background; `painted_region` gives the same with and without the field."""
    radius = json.loads((out / "synth.json").read_text())["hole_dilation"]
    assert radius > 0  # else the painted region could not be told from the label
    synthetic = open_dataset(str(out))
    by_stem = read_manifest(out)
    records = _records(out)
    assert sorted(by_stem) == [f"synth_{r['index']:06d}" for r in records]
    for record in records:
        assert by_stem[Path(record["image"]).stem] == record
        sample = synthetic[synthetic.index_of(Path(record["image"]).stem)]
        masks = sample.masks  # bool [K, H, W], read back from the mask PNG
        painted = decode(record["painted"], masks.shape[1:])
        assert painted.dtype == bool and record["painted_pixels"] == int(painted.sum())
        labelled = masks.any(0)
        assert labelled.any() and not (labelled & ~painted).any()  # every labelled pixel painted
        assert painted.sum() > labelled.sum()  # and the dilation ring too
        assert np.array_equal(painted, _dilated_union(masks, radius))
        background = dataset[dataset.index_of(record["background"])].image
        assert np.array_equal(sample.image[~painted], background[~painted])  # outside: untouched
        assert not np.array_equal(sample.image[painted], background[painted])  # inside: painted
        assert np.array_equal(painted_region(out, record, masks), painted)
        legacy = {k: v for k, v in record.items() if k not in ("painted", "painted_pixels")}
        assert np.array_equal(painted_region(out, legacy, masks), painted)  # from hole_dilation
    return records


def test_manifest_records_the_painted_region(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=4, seed=5, background_source="free"),
        progress=False,
    )
    assert len(_check_painted(dataset, tmp_path / "out")) == 4


def test_tiled_synthesis_paints_every_hole_and_records_it(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "tiled",
        SynthConfig(n=4, seed=6, tile=16, background_source="free"),
        progress=False,
    )
    assert json.loads((tmp_path / "tiled" / "synth.json").read_text())["tile"] == 16
    assert len(_check_painted(dataset, tmp_path / "tiled")) == 4


def test_backgrounds_come_only_from_the_training_half(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    free = {item.item_id for item in dataset.items if not item.class_ids}
    train_free, test_free = free & set(split.train), free & set(split.test)
    assert train_free and test_free  # a test-half background is available to misuse
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=12, seed=0, background_source="free"),
        progress=False,
    )
    used = {record["background"] for record in _records(tmp_path / "out")}
    assert used and used <= train_free
    assert not used & set(split.test)


def test_item_seeds_are_keyed_by_index_not_queue_position(tiny_run, tmp_path):
    dataset, split, checkpoint, _ = tiny_run
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synthesize(
        checkpoint,
        dataset,
        split,
        a,
        SynthConfig(n=4, seed=2, batch_size=4, background_source="free"),
        progress=False,
    )
    synthesize(
        checkpoint,
        dataset,
        split,
        b,
        SynthConfig(n=4, seed=2, batch_size=4, background_source="free"),
        progress=False,
    )
    # a partial run: items 0 and 2 missing (files and manifest lines); the rerun makes only those
    for index in (0, 2):
        (b / "images" / f"synth_{index:06d}.png").unlink()
        (b / "masks" / f"synth_{index:06d}.png").unlink()
    kept = [r for r in _records(b) if r["index"] not in (0, 2)]
    (b / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    synthesize(
        checkpoint,
        dataset,
        split,
        b,
        SynthConfig(n=4, seed=2, batch_size=4, background_source="free"),
        progress=False,
    )
    files_a = _files(a)
    assert [n for n in files_a if n.startswith("images/")] == [f"images/synth_{i:06d}.png" for i in range(4)]
    assert _files(b) == files_a
    # a run of 2 is the first 2 items of a run of 4
    synthesize(
        checkpoint,
        dataset,
        split,
        c,
        SynthConfig(n=2, seed=2, batch_size=4, background_source="free"),
        progress=False,
    )
    files_c = _files(c)
    for index in range(2):
        for kind in ("images", "masks"):
            name = f"{kind}/synth_{index:06d}.png"
            assert files_c[name] == files_a[name]
    assert _records(c) == _records(a)[:2]


def test_a_failure_near_the_end_stops_the_run_instead_of_hanging(tiny_run, tmp_path, monkeypatch):
    """The prefetch thread may be blocked handing over its last batch when a writer fails."""
    from defectgen.synth import prefetched

    def numbers():
        yield from range(3)

    with pytest.raises(RuntimeError, match="consumer"):
        for _ in prefetched(numbers(), 2):
            time.sleep(0.3)
            raise RuntimeError("consumer stops early")
    dataset, split, checkpoint, _ = tiny_run
    real_write = synth_module.write_item

    def full_disk(out_dir, item, *args):
        if item["index"] == 0:  # as _write_bytes reports it
            raise synthset_writer.write_error(out_dir / "x.png", OSError(errno.ENOSPC, "No space left"))
        return real_write(out_dir, item, *args)

    monkeypatch.setattr(synth_module, "write_item", full_disk)
    start = time.time()
    with pytest.raises(DefectgenError, match="disk full"):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "out",
            SynthConfig(n=4, batch_size=1, background_source="free"),
            progress=False,
        )
    assert time.time() - start < 60


def _torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, "-m", "defectgen", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_torchrun_shares_the_items_and_writes_the_single_process_folder(tiny_run, tmp_path):
    """Under torchrun with 2 CPU processes each paints its share (i % 2 == rank) and the folder
    (images, masks, manifest, classes, contact sheet) is byte for byte the one a single process
    writes with the same command; a second run finds nothing to do, and with --n raised it
    paints only the new items."""
    dataset, split, checkpoint, work = tiny_run
    common = [
        "synth", str(FIXTURE), "--checkpoint", str(checkpoint), "--split", str(work / "split.json"),
        "--precision", "fp32", "--seed", "4", "--background-source", "free",
    ]  # fmt: skip
    single = subprocess.run(
        [sys.executable, "-m", "defectgen", *common, "--n", "9", "--out", str(tmp_path / "single")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    shared = _torchrun(2, *common, "-n", "7", "--out", str(tmp_path / "shared"))  # torchrun owns --n
    assert shared.returncode == 0, shared.stderr[-3000:]
    again = _torchrun(2, *common, "-n", "9", "--out", str(tmp_path / "shared"))  # resume, 2 more
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_folder(tmp_path / "shared", tmp_path / "single")
    records = [json.loads(line) for line in (tmp_path / "shared" / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(9))


def test_torchrun_failure_on_one_process_stops_all(tiny_run, tmp_path):
    """Rank 0 refusing the folder (another run's) is heard by every process: no hang, no files."""
    dataset, split, checkpoint, work = tiny_run
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = _torchrun(
        2, "synth", str(FIXTURE), "--checkpoint", str(checkpoint), "--split", str(work / "split.json"),
        "-n", "4", "--out", str(tmp_path / "busy"), "--background-source", "free",
    )  # fmt: skip
    assert result.returncode != 0
    assert "not empty and holds no defectgen images" in result.stderr + result.stdout
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]  # untouched, no .lock
    # rank 0 finding the folder locked by another synth: every process says so and stops
    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        result = _torchrun(
            2, "synth", str(FIXTURE), "--checkpoint", str(checkpoint), "--split", str(work / "split.json"),
            "-n", "4", "--out", str(out), "--background-source", "free",
        )  # fmt: skip
    assert result.returncode != 0
    assert (result.stderr + result.stdout).count("another defectgen synth is writing") >= 2  # both ranks


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1), (20, 30, 3)])
def test_png_bytes_round_trips_every_layout_and_keeps_rgb_order(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(synthset_writer.png_bytes(pixels))))
    assert decoded.shape == shape[:2] + ((3,) if shape[-1] == 3 else ())
    assert np.array_equal(decoded, pixels.reshape(decoded.shape))


def test_severstal_format_takes_backgrounds_of_one_size_and_names_two_sizes_otherwise(tiny_run, tmp_path):
    """The fixture's images are all 64x48: the Severstal format is written (it was refused with
    a message saying the sizes differ); backgrounds of two sizes are refused, naming both."""
    dataset, split, checkpoint, _ = tiny_run
    config = SynthConfig(n=2, format="severstal", background_source="free")
    summary = synthesize(checkpoint, dataset, split, tmp_path / "one", config, progress=False)
    assert summary["items"] == 2 and (tmp_path / "one" / "train.csv").is_file()
    (tmp_path / "bg").mkdir()
    write_gray(tmp_path / "bg" / "a.png", np.full((48, 64), 90, np.uint8))
    write_gray(tmp_path / "bg" / "b.png", np.full((64, 96), 90, np.uint8))
    config = SynthConfig(n=2, format="severstal", backgrounds=str(tmp_path / "bg"))
    with pytest.raises(ConfigError, match=r"2 sizes \(e\.g\. 64x48 and 96x64\)"):
        synthesize(checkpoint, dataset, split, tmp_path / "two", config, progress=False)
