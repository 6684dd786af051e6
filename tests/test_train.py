"""GAN training at tiny sizes: files, resume determinism, divergence guard, unsafe or corrupt
checkpoints, bad configs, and a 2-process DDP run through torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import record_reads
from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.gan import losses
from defectgen.gan.checkpoint import CheckpointError, load_checkpoint
from defectgen.gan.config import INPAINTER_ONLY, TrainConfig
from defectgen.gan.train import DivergenceError, train
from defectgen.models import PRESETS
from defectgen.settings import build_config, dump_yaml

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_folder"
FAST = dict(
    preset="tiny",
    model={"resolution": 32},
    batch_size=2,
    precision="fp32",
    log_every=1,
    sample_every=2,
    checkpoint_every=2,
    r1_interval=2,
    ada_interval=1,
    mode_seeking=0.01,  # a small weight: the tiny runs only check that the term is wired
)


@pytest.fixture(scope="module")
def tiny():
    dataset = open_dataset(str(FIXTURE))
    return dataset, make_split(dataset, seed=0)


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{**FAST, **changes})


def test_a_run_written_with_a_retired_setting_reads_only_at_the_value_whose_behaviour_was_kept(tmp_path):
    """`contrast` left the product (RESULTS.md): a run that recorded it at 0 (no such term) reads
    as without it; one that trained with the term is refused, never read as something else."""
    data = _config(steps=4).resolved().to_dict()
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml({**data, "contrast": 0.0}))
    assert TrainConfig.load(path, written_by_a_run=True) == _config(steps=4).resolved()
    assert build_config(TrainConfig, path).steps == 4  # also as `train --config OLD_RUN/config.yaml`
    path.write_text(dump_yaml({**data, "contrast": 10.0}))
    with pytest.raises(ConfigError, match="`contrast` = 10.0: a setting this version no longer has"):
        TrainConfig.load(path, written_by_a_run=True)
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(TrainConfig, overrides=["contrast=1"])  # and no one can ask for it now


def test_run_folder_describes_itself(tiny, tmp_path):
    dataset, split = tiny
    config = _config(steps=4, keep_checkpoints=1)
    last = train(dataset, split, config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert last == run / "checkpoints" / "last.pt"
    written = TrainConfig.load(run / "config.yaml")
    assert written == config.resolved()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    keys = ("d_relativistic", "logits_gap_hole", "d_accuracy_hole", "g_adversarial", "feature_matching")
    for key in (*keys, "hole_l1", "mode_seeking", "ada_p"):
        assert key in records[-1] and all(map(lambda r: r[key] == r[key], records))  # logged, not NaN
    assert "r1_penalty" in records[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_0000004.pt"]
    assert (run / "samples" / "step_0000004.png").stat().st_size > 1000
    state = load_checkpoint(last)
    assert state["step"] == 4 and state["classes"] == dataset.classes.to_json()
    assert {"G", "D", "ema", "opt_g", "opt_d", "ada", "config"} <= set(state)


def test_resume_gives_the_same_weights(tiny, tmp_path):
    dataset, split = tiny
    train(dataset, split, _config(steps=4), tmp_path / "straight", progress=False)
    train(dataset, split, _config(steps=2), tmp_path / "resumed", progress=False)
    train(dataset, split, _config(steps=4), tmp_path / "resumed", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for part in ("G", "D", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume"
    assert a["ada"] == b["ada"]


def test_checkpoints_record_their_lineage_and_resume_only_with_their_split(tiny, tmp_path):
    """Lineage (#32 item 4): a checkpoint names the dataset, the split and the items it trained on;
    --resume with another split is refused before a step is taken."""
    from defectgen.data.split import make_split

    dataset, split = tiny
    run = tmp_path / "run"
    train(dataset, split, _config(steps=1), run, progress=False)
    lineage = load_checkpoint(run / "checkpoints" / "last.pt")["lineage"]
    assert lineage == {
        "dataset_fingerprint": dataset.fingerprint(),
        "split_digest": split.digest(),
        "read": sorted(split.train),
    }
    other = make_split(dataset, seed=split.seed + 1)
    assert other.digest() != split.digest()
    with pytest.raises(ConfigError, match="another split"):
        train(dataset, other, _config(steps=2), run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    from defectgen.gan.checkpoint import save_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    del state["lineage"]  # as a run of an older version wrote it
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError, match="another defectgen version"):
        train(dataset, split, _config(steps=2), run, resume=True, progress=False)


def test_nan_stops_cleanly_and_keeps_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    dataset, split = tiny
    real = losses.hole_reconstruction
    calls = {"n": 0}

    def poisoned(output, target, hole, **kwargs):
        calls["n"] += 1
        loss, logs = real(output, target, hole, **kwargs)
        return (loss * float("nan"), logs) if calls["n"] == 3 else (loss, logs)

    monkeypatch.setattr(losses, "hole_reconstruction", poisoned)
    with pytest.raises(DivergenceError, match=r"G loss became nan at step 3.*last good checkpoint.*--resume"):
        train(dataset, split, _config(steps=6), tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_corrupt_last_checkpoint_falls_back(tiny, tmp_path, capsys):
    dataset, split = tiny
    run = tmp_path / "run"
    train(dataset, split, _config(steps=4, keep_checkpoints=2), run, progress=False)
    last = run / "checkpoints" / "last.pt"
    data = (run / "checkpoints" / "step_0000004.pt").read_bytes()
    last.unlink()  # last.pt is a hard link: replace it by a truncated copy
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt: corrupt or truncated"):
        load_checkpoint(last)
    (run / "checkpoints" / "step_0000004.pt").write_bytes(data[:100])
    train(dataset, split, _config(steps=6, keep_checkpoints=2), run, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "resuming from step_0000002.pt instead of last.pt" in err
    assert load_checkpoint(last)["step"] == 6


def test_hostile_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "defectgen-checkpoint/1", "G": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_resume_of_a_run_from_another_version_is_refused_with_what_to_do(tiny, tmp_path):
    """A config.yaml without the whole model spec (a run of an older version) is not converted:
    resuming it says so and what to do."""
    dataset, split = tiny
    run = tmp_path / "run"
    train(dataset, split, _config(steps=1), run, progress=False)
    old = yaml.safe_load((run / "config.yaml").read_text())
    del old["model"]["generator"]["severity"]  # a spec as runs wrote it before the severity input
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="written by another defectgen version .*train it again"):
        train(dataset, split, _config(steps=2), run, resume=True, progress=False)


def test_a_run_stores_its_whole_model_spec_and_only_the_spec_builds_its_models(tiny, tmp_path, monkeypatch):
    """config.yaml and every checkpoint hold the whole spec; editing the preset afterwards
    changes neither what synthesis builds nor what a resumed run trains."""
    from defectgen.gan.checkpoint import load_generator
    from defectgen.models import preset

    dataset, split = tiny
    run = tmp_path / "run"
    config = _config(steps=1, model={"resolution": 32, "generator": {"width": 12}})
    train(dataset, split, config, run, progress=False)
    written = yaml.safe_load((run / "config.yaml").read_text())["model"]
    stored = load_checkpoint(run / "checkpoints" / "last.pt")["config"]["model"]
    expected = preset("tiny").merged({"resolution": 32, "generator": {"width": 12}})
    assert written == stored == expected.to_dict()
    edited = dataclasses.replace(
        PRESETS["tiny"], generator=dataclasses.replace(PRESETS["tiny"].generator, width=20)
    )
    monkeypatch.setitem(PRESETS, "tiny", edited)
    G, classes, channels, _ = load_generator(run / "checkpoints" / "last.pt")
    built = expected.generator.build(channels, len(classes))
    assert [p.shape for p in G.parameters()] == [p.shape for p in built.parameters()]  # not the edited preset
    train(dataset, split, _config(steps=2, model=written), run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_resume_without_model_settings_continues_the_runs_own_models(tiny, tmp_path, monkeypatch):
    """The command that started a run resumes it after the preset changed (e.g. a new input
    channel): without model settings, --resume takes the run's stored spec."""
    dataset, split = tiny
    run = tmp_path / "run"
    plain = dict(FAST, model={})
    train(dataset, split, TrainConfig(**plain, steps=1), run, progress=False)
    edited = dataclasses.replace(
        PRESETS["tiny"], generator=dataclasses.replace(PRESETS["tiny"].generator, severity=False, width=20)
    )
    monkeypatch.setitem(PRESETS, "tiny", edited)
    train(dataset, split, TrainConfig(**plain, steps=2), run, resume=True, progress=False)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["config"]["model"]["generator"]["width"] == 8
    assert state["config"]["model"]["generator"]["severity"] is True
    # how often it checkpoints and logs may change (an experiment started before its cadence changed)
    cadence = {"checkpoint_every": 1, "keep_checkpoints": 5, "log_every": 2}
    train(dataset, split, TrainConfig(**{**plain, **cadence}, steps=3), run, resume=True, progress=False)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))[-2:] == [
        "step_0000002.pt", "step_0000003.pt"]  # fmt: skip
    with pytest.raises(ConfigError, match="different config"):  # asked for other models: refused
        train(dataset, split, TrainConfig(**{**plain, "model": {"generator": {"width": 20}}}, steps=4), run,
              resume=True, progress=False)  # fmt: skip


def test_bad_configs(tiny, tmp_path):
    dataset, split = tiny
    with pytest.raises(ConfigError, match="unknown preset"):
        _config(preset="huge").validate()
    with pytest.raises(ConfigError, match="multiple of 8"):
        build_config(TrainConfig, overrides=["model.resolution=100"])
    with pytest.raises(ConfigError, match=r"`steps` must be in 1\.\."):
        build_config(TrainConfig, overrides=["steps=-1"])
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(TrainConfig, overrides=["adversarial_loss=standard"])  # removed: it measured worse
    with pytest.raises(ConfigError, match="conditioning must be projection, input or none"):
        build_config(TrainConfig, overrides=["model.discriminator.conditioning=late"])
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(TrainConfig, overrides=["model.generator.upsampling=transposed"])  # removed: worse
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(TrainConfig, overrides=["model.discriminator.stem_layers=2"])  # removed: measured worse
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(TrainConfig, overrides=["g_decoder_noise=true"])
    with pytest.raises(ConfigError, match="ratio_g must be in"):
        build_config(TrainConfig, overrides=["model.generator.ratio_g=1"])
    with pytest.raises(ConfigError, match="n_blocks: expected an integer"):
        build_config(TrainConfig, overrides=["model.generator.n_blocks=maybe"])
    with pytest.raises(ConfigError, match=r"width must be in 1\.\.4096"):
        build_config(TrainConfig, overrides=["model.generator.width=100000"])
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(TrainConfig, overrides=["model.generator.widht=8"])
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(TrainConfig, overrides=["g_upsampling=resize"])
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config(TrainConfig, overrides=["steps=abc"])
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(TrainConfig, overrides=["stepz=3"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(DataError, match="holds files defectgen did not write"):
        train(dataset, split, _config(steps=1), tmp_path / "run", progress=False)
    (tmp_path / "run" / "config.yaml").write_text("")  # a run (written before folders were marked)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(dataset, split, _config(steps=1), tmp_path / "run", progress=False)


def test_cli_bad_values_exit_2(magnetic_tile_dir, tmp_path, capsys):
    split_file = tmp_path / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(split_file)]) == 0
    base = ["train", str(FIXTURE), "--split", str(split_file), "--out", str(tmp_path / "r")]
    assert main([*base, "--preset", "huge"]) == 2
    assert main([*base, "--set", "model.resolution=60"]) == 2
    assert main([*base, "--steps", "-5"]) == 2
    # a split file made for another dataset
    assert (
        main(["train", str(magnetic_tile_dir), "--split", str(split_file), "--out", str(tmp_path / "r2")])
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown preset" in err and "multiple of 8" in err and "split was made for" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("model", ["inpainter", "stylegan"])
def test_two_process_ddp_smoke(tmp_path, model):
    split_file = tmp_path / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(split_file)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "defectgen",
        "train",
        str(FIXTURE),
        "--split",
        str(split_file),
        "--out",
        str(tmp_path / "ddp"),
        "--preset",
        "tiny",
        "--model",
        model,
        "--steps",
        "2",
        *[
            arg
            for key, value in FAST.items()
            if key != "preset" and not (model == "stylegan" and key in INPAINTER_ONLY)
            for arg in ("--set", f"{key}={value}")
        ],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["config"]["model"]["kind"] == model
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 writes only


def test_training_crops(tiny):
    from defectgen.data.patches import DefectCrops

    dataset, split = tiny
    crops = DefectCrops(dataset, split.indices(dataset, "train"), 32, seed=0, progress=False)
    paired = crops.batch(0, size=4)
    assert torch.equal(paired["image"][:2], paired["image"][2:])  # diversity pairs share inputs
    distinct = crops.batch(0, size=4, pairs=False)
    assert not torch.equal(distinct["image"][:2], distinct["image"][2:])
    again = crops.batch(3, size=4)
    assert all(torch.equal(again[k], crops.batch(3, size=4)[k]) for k in again)  # a function of the step
    assert (paired["labels"].amax(1, keepdim=True) <= paired["hole"]).all()  # the hole covers the defect
    assert paired["labels"].sum() > 0


def test_gan_training_crops_come_from_the_training_half_only(tmp_path, monkeypatch):
    import defectgen.gan.train as train_module

    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    train_indices = set(split.indices(dataset, "train"))
    test_indices = set(split.indices(dataset, "test"))
    # the test half holds defect images, so using it (or the whole dataset) would show below
    assert any(dataset.items[i].class_ids for i in test_indices)
    train_defects = {i for i in train_indices if dataset.items[i].class_ids}
    assert train_defects

    built = []

    class RecordedCrops(train_module.DefectCrops):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(train_module, "DefectCrops", RecordedCrops)
    reads = record_reads(dataset, monkeypatch)
    train(dataset, split, _config(steps=2), tmp_path / "run", progress=False)

    assert len(built) == 1
    crops = built[0]
    assert set(crops.source_indices) == train_defects
    used = {c.index for components in crops.components.values() for c in components}
    assert used == train_defects  # every crop the GAN sees is cut around one of these
    assert reads and set(reads) <= train_indices and not set(reads) & test_indices


def test_a_preset_and_a_whole_model_spec_cannot_disagree(tiny, tmp_path):
    """A run's config.yaml holds the whole spec: asking another preset on top of it is refused
    rather than silently training the file's models under the new name."""
    dataset, split = tiny
    train(dataset, split, _config(steps=1), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="override the preset"):
        build_config(TrainConfig, tmp_path / "run" / "config.yaml", overrides=["preset=small"])
    split_file = tmp_path / "split.json"
    split.save(split_file)
    base = ["train", str(FIXTURE), "--split", str(split_file), "--out", str(tmp_path / "r2")]
    assert main([*base, "--config", str(tmp_path / "run" / "config.yaml"), "--preset", "small"]) == 2
    with pytest.raises(ConfigError, match="multiple of 16 and at least 32"):
        build_config(TrainConfig, overrides=["model.resolution=16", "model.generator.n_downsample=4"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.from_dict({"model": {"generator": None}})
