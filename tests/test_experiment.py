"""`defectgen experiment`: the whole protocol as one command, resumable, fit part only."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import folder_dataset
from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import Split, carve_validation
from defectgen.errors import ConfigError, DataError
from defectgen.experiment import BASELINES, ExperimentConfig, borrow_generator, borrow_runs, run_experiment
from defectgen.gan.checkpoint import CheckpointError
from defectgen.settings import build_config

TINY_SETTINGS = [
    "generator.preset=tiny", "generator.model.resolution=32", "generator.batch_size=2",
    "generator.sample_every=1000", "generator.precision=fp32",
    "evaluation.steps=3", "evaluation.crop_size=32", "evaluation.batch_size=4",
    "evaluation.quality_samples=0",
]  # fmt: skip
TINY_FLAGS = ["--generators", "2", "--gan-steps", "2", "--synthetic", "4", "--seeds", "2",
              "--label-fraction", "1"]  # fmt: skip


def _args(data: Path, out: Path) -> list[str]:
    return ["experiment", str(data), "--out", str(out), *TINY_FLAGS,
            *(x for s in TINY_SETTINGS for x in ("--set", s))]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An experiment killed (SIGKILL) as soon as its first evaluation run is recorded, then
    continued by the same command: the finished folder every test below reads, and what the kill
    left (`test_kill_9_then_the_same_command_continues`)."""
    work = tmp_path_factory.mktemp("experiment")
    data = folder_dataset(work / "data", images=40, seed=3)
    out = work / "out"
    command = [sys.executable, "-m", "defectgen", *_args(data, out), "--workers", "2"]  # two processes
    killed = _kill_after_the_first_run(command, out)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return data, out, killed


def _kill_after_the_first_run(command: list[str], out: Path) -> dict:
    """Start `command`, SIGKILL it once a run's record is written (written last), and say what
    was left: its worker processes and whether they outlived it, the records, and the files of
    finished work with their modification times."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    runs = out / "eval" / "runs"
    while time.time() < deadline and not list(runs.glob("*_s*.json")):
        time.sleep(0.2)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    records = set(runs.glob("*.json"))
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    time.sleep(0.5)  # a worker that outlived the command would write its next record by now
    done = [p.with_suffix(".npz") for p in runs.glob("*_s*.json") if not p.name.startswith("curve_")]
    return {
        "workers": workers,
        "alive": [pid for pid in workers if _alive(pid)],
        "records": records,
        "records_after": set(runs.glob("*.json")),
        "results": (out / "eval" / "results.json").exists(),
        "finished": {p: p.stat().st_mtime_ns for p in [*done, *out.glob("gan_g*/checkpoints/last.pt")]},
    }


def test_the_experiment_declares_the_painted_sets_and_pools_two_generators(finished):
    _, out, _ = finished
    results = json.loads((out / "eval" / "results.json").read_text())
    claim = results["claim"]
    assert claim["declared_arms"] == ["real+painted_g0", "real+painted_g1"]
    assert claim["generators"] == 2 and not claim["conditional_on_one_generator"]
    assert claim["baselines"] == ["real", "oversample", "copypaste", "blendpaste", "classic"]
    assert len(claim["versus"]["real"]["class_mean_pixel_ap"]["cells"]) == 2  # generators x seeds
    assert {"real+harmonized_g0", "real+harmonized_g1"} <= set(results["summary"])  # the siblings
    assert (out / "eval" / "report.html").is_file()


def test_a_generator_killed_before_its_first_checkpoint_trains_again(finished, tmp_path):
    """A generator folder holding only its config (killed before the first checkpoint) is
    continued, not refused with "already holds a run" (the mission's own run stopped there)."""
    import shutil

    from defectgen.experiment import _generator

    data, out, _ = finished
    dataset, split = open_dataset(str(data)), Split.load(out / "fit_split.json")
    shutil.copytree(out / "gan_g1", tmp_path / "gan_g1")
    shutil.rmtree(tmp_path / "gan_g1" / "checkpoints")
    config = build_config(ExperimentConfig, overrides=["gan_steps=2", *TINY_SETTINGS])
    last = _generator(dataset, split, config, 1, tmp_path, progress=False)
    assert last == tmp_path / "gan_g1" / "checkpoints" / "last.pt" and last.is_file()


def test_generators_and_sets_see_the_fit_part_only(finished):
    data, out, _ = finished
    dataset = open_dataset(str(data))
    split = Split.load(out / "split.json")
    fit, validation = carve_validation(dataset, split.indices(dataset, "train"), 0.2)
    fit_ids = {dataset.items[i].item_id for i in fit}
    generator_split = Split.load(out / "fit_split.json")
    assert set(generator_split.train) == fit_ids
    held_out = set(split.test) | {dataset.items[i].item_id for i in validation}
    assert held_out <= set(generator_split.test)
    for g in (0, 1):
        assert f"\nseed: {g}\n" in (out / f"gan_g{g}" / "config.yaml").read_text()
        for name in ("painted", "harmonized"):
            for line in (out / f"{name}_g{g}" / "manifest.jsonl").read_text().splitlines():
                record = json.loads(line)
                sources = [str(record["background"]), *(str(d["source"]) for d in record["defects"])]
                assert not [i for i in held_out for s in sources if i in s], (name, record)
                assert [i for i in fit_ids for s in sources if i in s]  # named sources, from the fit part


def test_the_same_command_redoes_nothing(finished):
    """Also with another number of evaluation processes: they share the work, not define it; and
    from a record written before `painting` was a setting (its absence means the default)."""
    data, out, _ = finished
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"].pop("painting") == {}
    (out / "experiment.json").write_text(json.dumps(record))
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".pt", ".npz")}
    assert main([*_args(data, out), "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    stages = [t["stage"] for t in timings]
    assert stages[:6] == ["generator_g0", "painted_g0", "harmonized_g0", "generator_g1", "painted_g1",
                          "harmonized_g1"]  # fmt: skip
    assert [t.get("workers") for t in timings if t["stage"] == "evaluate"] == [2, 1]


def test_other_settings_in_the_same_folder_are_refused(finished):
    data, out, _ = finished
    for change in ("gan_steps=3", "evaluation.steps=4", "label_fraction=0.5", "painting.mask_source=shapes"):
        assert main([*_args(data, out), "--set", change]) == 2, change


def test_more_seeds_continue_the_folder_and_reuse_every_finished_run(finished, tmp_path):
    """`--seeds 3` on a 2-seed folder trains only the third seed's runs and records 3 seeds."""
    import shutil

    data, finished_out, _ = finished
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    assert main([*_args(data, out), "--workers", "1", "--set", "seeds=3"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    assert {k: after[k] for k in stamps} == stamps  # nothing finished was trained again
    arms = {run["arm"] for run in json.loads((finished_out / "eval" / "results.json").read_text())["runs"]}
    assert sorted(set(after) - set(stamps)) == sorted(f"{arm}_s2.npz" for arm in arms)
    assert json.loads((out / "experiment.json").read_text())["config"]["seeds"] == 3
    assert json.loads((out / "eval" / "results.json").read_text())["config"]["seeds"] == [0, 1, 2]


def test_harmonize_can_be_left_out_or_added_when_a_folder_continues(finished, tmp_path):
    """The harmonised sets only add sibling arms: `--no-harmonize` on a folder that has them
    gathers the results without them, trains nothing, and is recorded; `--harmonize` adds them
    back (their runs, already finished here, are reused)."""
    import shutil

    data, finished_out, _ = finished
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    assert main([*_args(data, out), "--workers", "1", "--no-harmonize"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")} == stamps
    summary = json.loads((out / "eval" / "results.json").read_text())["summary"]
    assert not [arm for arm in summary if "harmonized" in arm] and "real+painted_g1" in summary
    assert json.loads((out / "experiment.json").read_text())["config"]["harmonize"] is False
    assert main([*_args(data, out), "--workers", "1"]) == 0  # added back: their finished runs are reused
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")} == stamps
    results = json.loads((out / "eval" / "results.json").read_text())
    assert {"real+harmonized_g0", "real+harmonized_g1"} <= set(results["summary"])
    assert list(results["beside_the_claim"]) == ["real+harmonized_g*"]  # both generators pooled


def test_the_decoder_s_drawn_set_is_judged_as_the_declared_arm(tmp_path, capsys):
    """A StyleGAN generator (`generator.preset=stylegan-tiny`) goes through every stage: it draws
    its set whole (no painting on backgrounds, no harmonising) and that set is the declared arm."""
    data = folder_dataset(tmp_path / "data", images=24, seed=5)
    out = tmp_path / "out"
    settings = [s for s in TINY_SETTINGS if not s.startswith("generator.")] + [
        "generator.preset=stylegan-tiny", "generator.batch_size=2", "generator.sample_every=1000",
        "generator.precision=fp32",
    ]  # fmt: skip
    flags = [
        "--generators",
        "1",
        "--gan-steps",
        "2",
        "--synthetic",
        "4",
        "--seeds",
        "2",
        "--label-fraction",
        "1",
    ]
    command = ["experiment", str(data), "--out", str(out), *flags, "--no-harmonize", "--workers", "1"]
    assert main([*command, "--workers", "1", *(x for s in settings for x in ("--set", s))]) == 0
    claim = json.loads((out / "eval" / "results.json").read_text())["claim"]
    assert claim["declared_arms"] == ["real+painted_g0"] and claim["conditional_on_one_generator"]
    assert json.loads((out / "painted_g0" / "synth.json").read_text())["mask_source"] == "stylegan"

    # its run as the learned mask source of an inpainter's painted set, on the same split
    inpainter = [x for s in TINY_SETTINGS for x in ("--set", s)]
    learned = ["--set", f"painting.mask_source=learned:{out / 'gan_g0'}"]
    tried = ["experiment", str(data), *flags, "--no-harmonize", "--workers", "1", *inpainter, *learned]
    other = tmp_path / "other_split"  # another split: the StyleGAN run read some of its test half
    assert main([*tried, "--out", str(other), "--split-seed", "1"]) == 2  # the CLI's estimate paints
    assert "learned mask source" in capsys.readouterr().err
    shutil.rmtree(other, ignore_errors=True)
    elsewhere = [
        "generators=1",
        "gan_steps=2",
        "synthetic=4",
        "seeds=2",
        "label_fraction=1",
        "harmonize=false",
    ]
    config = build_config(
        ExperimentConfig,
        overrides=[
            *TINY_SETTINGS,
            *elsewhere,
            "split_seed=1",
            f"painting.mask_source=learned:{out / 'gan_g0'}",
        ],
    )
    with pytest.raises(DataError, match="learned mask source"):  # the API runs no estimate
        run_experiment(open_dataset(data), other, config, progress=False)
    assert not other.exists()  # refused before the folder recorded anything (no generator trained)
    inpainter = [
        *TINY_SETTINGS,
        *elsewhere,
        f"painting.mask_source=learned:{tmp_path / 'learned' / 'gan_g0'}",
    ]
    painted = tmp_path / "learned"
    assert main([*tried, "--out", str(painted)]) == 0
    with pytest.raises(CheckpointError, match="needs a stylegan"):  # an inpainter's run: no shapes to draw
        run_experiment(
            open_dataset(data), other, build_config(ExperimentConfig, overrides=inpainter), progress=False
        )
    assert not other.exists()
    params = json.loads((painted / "painted_g0" / "synth.json").read_text())
    assert params["mask_source"] == f"learned:{out / 'gan_g0'}" and params["learned_sha256"]
    assert params["lineage"]["mask_generator"]["read"] == params["lineage"]["generator"]["read"]  # fit part


def test_runs_from_another_folder_reuses_the_baselines_and_trains_what_differs(finished, tmp_path):
    """A second generator recipe on the same data and split, `--runs-from` the first folder: every
    baseline run is taken over as it was (same record, not trained again), the declared arms,
    painted by other generators, are trained anew, and the setting is not part of the folder's
    identity (the folder continues without it)."""
    data, source, _ = finished
    out = tmp_path / "out"
    recipe = ["--set", "generator.mode_seeking=0.5", "--workers", "1"]
    assert main([*_args(data, out), *recipe, "--runs-from", str(source)]) == 0

    def records(folder: Path) -> dict:
        runs = folder / "eval" / "runs"
        return {p.stem: json.loads(p.read_text()) for p in runs.glob("*_s*.json") if "curve" not in p.name}

    theirs, ours = records(source), records(out)
    baselines = [name for name in theirs if name.rsplit("_s", 1)[0] in BASELINES]
    painted = [name for name in theirs if "painted" in name]
    assert baselines and painted and set(ours) == set(theirs)
    assert all(ours[name] == theirs[name] for name in baselines)  # reused, not trained again
    assert all(ours[name]["key"] != theirs[name]["key"] for name in painted)  # other sets: trained
    assert "runs_from" not in json.loads((out / "experiment.json").read_text())["config"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    assert main([*_args(data, out), *recipe]) == 0  # continues without it; nothing trained again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")} == stamps


def test_runs_from_copies_the_generators_a_new_painting_setting_would_train_again(finished, tmp_path):
    """Only `painting` differs: the generators are copied from the other folder (the same
    checkpoints, nothing trained), their sets are painted anew with the new setting, and only the
    arms that use those sets train. A generator of other settings, or of another fit part, is not
    copied."""
    data, source, _ = finished
    out = tmp_path / "out"
    shapes = ["--set", "painting.mask_source=shapes", "--workers", "1"]
    assert main([*_args(data, out), *shapes, "--runs-from", str(source)]) == 0
    for g in (0, 1):
        ours, theirs = out / f"gan_g{g}", source / f"gan_g{g}"
        assert (ours / "checkpoints" / "last.pt").read_bytes() == (
            theirs / "checkpoints" / "last.pt"
        ).read_bytes()
        assert (ours / "metrics.jsonl").read_text() == (theirs / "metrics.jsonl").read_text()
        assert json.loads((out / f"painted_g{g}" / "synth.json").read_text())["mask_source"] == "shapes"
    assert not list(out.glob(".gan_g*.copying"))
    runs = {folder: folder / "eval" / "runs" for folder in (source, out)}
    for record in runs[source].glob("*_s*.json"):
        if record.name.startswith(("curve_", "label_scores_")):
            continue
        same = json.loads(record.read_text()) == json.loads((runs[out] / record.name).read_text())
        assert same == (record.stem.rsplit("_s", 1)[0] in BASELINES or "harmonized" in record.stem), (
            record.name
        )
    config = build_config(ExperimentConfig, overrides=[*TINY_SETTINGS, "gan_steps=2", "generators=2"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "fit_split.json").write_bytes((out / "fit_split.json").read_bytes())
    assert borrow_generator(source, other, config, 0) and (other / "gan_g0" / "config.yaml").is_file()
    stepped = build_config(ExperimentConfig, overrides=[*TINY_SETTINGS, "gan_steps=3", "generators=2"])
    assert not borrow_generator(source, other, stepped, 1)  # another number of steps
    fit = json.loads((other / "fit_split.json").read_text())
    fit["train"] = fit["train"][1:]
    (other / "fit_split.json").write_text(json.dumps(fit))
    assert not borrow_generator(source, other, config, 1)  # another fit part
    assert not (other / "gan_g1").exists()


def test_runs_from_refuses_its_own_folder_other_data_another_split_and_a_non_experiment(finished, tmp_path):
    import shutil

    data, source, _ = finished
    dataset = open_dataset(str(data))
    out = tmp_path / "out"
    shutil.copytree(source, out)
    with pytest.raises(ConfigError, match="own folder"):
        borrow_runs(out, out, dataset)
    with pytest.raises(ConfigError, match="not a readable experiment"):
        borrow_runs(data, out, dataset)
    other = tmp_path / "other"
    shutil.copytree(source, other)
    record = json.loads((other / "experiment.json").read_text())
    (other / "experiment.json").write_text(json.dumps({**record, "fingerprint": "0" * 16}))
    with pytest.raises(ConfigError, match="other data"):
        borrow_runs(other, out, dataset)
    (other / "experiment.json").write_text(json.dumps(record))
    split = json.loads((other / "split.json").read_text())
    (other / "split.json").write_text(json.dumps({**split, "test": split["test"][1:]}))
    with pytest.raises(ConfigError, match="split otherwise"):
        borrow_runs(other, out, dataset)
    assert borrow_runs(source, out, dataset) == 0  # every run already here: nothing copied over it
    (other / "split.json").write_text(json.dumps(split))
    theirs, ours = other / "eval" / "runs", out / "eval" / "runs"
    for name in ("oversample_s0.json", "real_s1.json"):
        (ours / name).unlink()  # two runs this folder lacks
    moved = shutil.move(theirs / "oversample_s0.npz", tmp_path / "elsewhere.npz")
    (theirs / "oversample_s0.npz").symlink_to(moved)  # a linked part
    (theirs / "real_s1.pt").unlink()  # the real run's U-Net missing
    assert borrow_runs(other, out, dataset) == 0  # a run is copied whole or not at all
    assert not (ours / "oversample_s0.json").exists() and not (ours / "real_s1.json").exists()
    (theirs / "oversample_s0.npz").unlink()
    shutil.copy(moved, theirs / "oversample_s0.npz")
    shutil.copy(source / "eval" / "runs" / "real_s1.pt", theirs / "real_s1.pt")
    assert borrow_runs(other, out, dataset) == 2
    assert (ours / "real_s1.pt").read_bytes() == (source / "eval" / "runs" / "real_s1.pt").read_bytes()


def test_a_collapsed_generator_paints_with_its_checkpoint_from_before_the_collapse(finished, tmp_path):
    """Generator 0's log is replaced by the mission's collapsed g0 (steps 10-600, collapse from 560)
    and its checkpoints by one written at step 1 (generator 1's): the continued experiment paints
    g0's sets anew with that checkpoint, records the choice, and retrains only g0's arms."""
    import shutil

    from defectgen.fileio import file_digest
    from test_health import G0, _records

    data, finished_out, _ = finished
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    checkpoints = out / "gan_g0" / "checkpoints"
    for old in checkpoints.glob("step_*.pt"):
        old.unlink()
    earlier = checkpoints / "step_0000001.pt"
    shutil.copy(out / "gan_g1" / "checkpoints" / "last.pt", earlier)
    (out / "gan_g0" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(G0)))
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    assert main([*_args(data, out), "--workers", "1"]) == 0
    chosen = json.loads((out / "generators.json").read_text())
    assert chosen["g0"]["checkpoint"] == "step_0000001.pt" and chosen["g0"]["collapse"]["onset_step"] == 560
    assert chosen["g1"] == {"step": 2, "checkpoint": "last.pt", "collapse": None}
    for name in ("painted_g0", "harmonized_g0"):
        assert json.loads((out / name / "synth.json").read_text())["checkpoint_sha256"] == file_digest(
            earlier
        )
    after = {p.name: p.stat().st_mtime_ns for p in (out / "eval" / "runs").glob("*.npz")}
    retrained = sorted(name for name in stamps if after[name] != stamps[name])
    assert retrained == [f"real+{kind}_g0_s{s}.npz" for kind in ("harmonized", "painted") for s in (0, 1)]


def test_the_generators_train_and_paint_on_the_experiment_s_device(tmp_path, monkeypatch):
    """`--device` reaches `train` and `synth` (the U-Nets' is evaluation.device)."""
    import defectgen.gan.train
    import defectgen.synth
    from defectgen.experiment import _generator, _synth

    asked = {}

    def fake_train(*args, device=None, **kwargs):
        asked["train"] = device
        raise KeyboardInterrupt

    def fake_synthesize(checkpoint, dataset, split, folder, config, progress=True):
        asked["synth"] = config.device

    monkeypatch.setattr(defectgen.gan.train, "train", fake_train)
    monkeypatch.setattr(defectgen.synth, "synthesize", fake_synthesize)
    config = build_config(ExperimentConfig, overrides=["device=cuda:1"])
    with pytest.raises(KeyboardInterrupt):
        _generator(None, None, config, 0, tmp_path, False)
    _synth(tmp_path / "g.pt", None, None, config, 0, "paint", tmp_path, False)
    assert asked == {"train": "cuda:1", "synth": "cuda:1"}


def test_a_new_generator_with_other_models_than_the_folder_s_others_is_refused(tmp_path):
    """Generator 0 trained before a preset changed (no texture noise): generator 1 would train
    with today's preset, so the two would not be replicates of one recipe."""
    from defectgen.experiment import _generator
    from defectgen.gan.config import TrainConfig
    from defectgen.models import preset

    old = preset("small").to_dict()
    old["generator"]["texture_noise"] = False
    (tmp_path / "gan_g0").mkdir()
    TrainConfig(model=old).resolved().save(tmp_path / "gan_g0" / "config.yaml")
    config = build_config(ExperimentConfig, overrides=["generator.preset=small"])
    with pytest.raises(ConfigError, match="gan_g0 was trained with other models than generator 1"):
        _generator(None, None, config, 1, tmp_path, False)


def test_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(ExperimentConfig, overrides=["evaluation.stepz=3"])
    with pytest.raises(ConfigError, match="set by the experiment"):
        build_config(ExperimentConfig, overrides=["evaluation.seeds=[0,1]"])
    with pytest.raises(ConfigError, match="generators"):
        build_config(ExperimentConfig, overrides=["generators=0"])
    with pytest.raises(ConfigError, match="^`seeds` must be in 2"):  # the experiment's own setting named
        build_config(ExperimentConfig, overrides=["seeds=1"])
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(ExperimentConfig, overrides=["generatorz=1"])
    with pytest.raises(ConfigError, match="`device` must be cpu, cuda or cuda:N"):
        build_config(ExperimentConfig, overrides=["device=gpu"])
    with pytest.raises(ConfigError, match="StyleGAN .* cannot harmonise.*--no-harmonize"):
        build_config(ExperimentConfig, overrides=["generator.preset=stylegan-tiny"])
    build_config(ExperimentConfig, overrides=["generator.preset=stylegan-tiny", "harmonize=false"])
    with pytest.raises(ConfigError, match="painting.severity: a StyleGAN generator draws each crop"):
        build_config(
            ExperimentConfig,
            overrides=["generator.preset=stylegan-tiny", "harmonize=false", "painting.severity=0.5:1"],
        )
    for setting, message in [
        ("painting.seed=3", "painting.seed is not an experiment setting"),
        ("painting.backgrounds=x", "painting.backgrounds is not an experiment setting"),
        ("painting.mask_source=folder:x", "cannot tell which images a mask folder"),
        ("painting.rim=2", "belong to harmonising"),
        ("painting.tile=7", "`painting.tile` must be a multiple of 8"),
        ("painting.mask_sourze=real", "painting.mask_sourze: unknown setting"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_config(ExperimentConfig, overrides=[setting])
    config = build_config(
        ExperimentConfig, overrides=["painting.mask_source=shapes", "painting.severity=0.5:1"]
    )
    painted, harmonized = config.synth_config(1, "paint"), config.synth_config(1, "harmonize")
    assert (painted.mask_source, painted.severity, painted.seed, painted.n) == ("shapes", "0.5:1", 1, 500)
    assert (harmonized.mask_source, harmonized.severity) == ("real", None)  # the painted sets' settings
    config = build_config(ExperimentConfig, overrides=["generators=1", "evaluation.steps=50"])
    assert config.eval_config().declared_arms == ["real+painted_g0"] and config.eval_config().steps == 50
    (tmp_path / "settings.yaml").write_text("generators: 3\nevaluation:\n  steps: 40\n")
    config = build_config(
        ExperimentConfig, tmp_path / "settings.yaml", {"generators": 1}, ["evaluation.lr=0.01"]
    )
    assert config.generators == 1  # a flag the user typed beats the file
    assert config.evaluation == {"steps": 40, "lr": 0.01}


def test_only_the_generators_own_set_from_another_checkpoint_is_painted_anew(tmp_path):
    """A set is repainted only when its synth.json says generator g's seed and another checkpoint's
    digest; a folder of another seed, without a digest, or from this checkpoint is left to
    `synthesize` to accept or refuse; a link is refused."""
    from defectgen.errors import DataError
    from defectgen.experiment import _painted_with_another
    from defectgen.fileio import file_digest

    checkpoint = tmp_path / "step_0000500.pt"
    checkpoint.write_bytes(b"weights")
    folder = tmp_path / "painted_g1"
    folder.mkdir()
    for params, expected in (
        ({"seed": 1, "checkpoint_sha256": "0123456789abcdef"}, True),
        ({"seed": 1, "checkpoint_sha256": file_digest(checkpoint)}, False),
        ({"seed": 0, "checkpoint_sha256": "0123456789abcdef"}, False),
        ({"seed": 1}, False),
        ([1, 2], False),
    ):
        (folder / "synth.json").write_text(json.dumps(params))
        assert _painted_with_another(folder, checkpoint, 1) is expected, params
    assert _painted_with_another(tmp_path / "absent", checkpoint, 1) is False
    (tmp_path / "linked").symlink_to(folder)
    with pytest.raises(DataError, match="link"):
        _painted_with_another(tmp_path / "linked", checkpoint, 1)


def test_each_generator_keeps_a_checkpoint_every_fifth_of_its_run_unless_told_otherwise():
    """So a collapse late in the run leaves a checkpoint from before it to paint with."""
    config = ExperimentConfig(gan_steps=1000).train_config(1)
    assert (config.steps, config.seed, config.checkpoint_every, config.keep_checkpoints) == (1000, 1, 200, 6)
    assert ExperimentConfig(gan_steps=3).train_config(0).checkpoint_every == 1
    given = ExperimentConfig(generator={"checkpoint_every": 50, "keep_checkpoints": 2}).train_config(0)
    assert (given.checkpoint_every, given.keep_checkpoints) == (50, 2)


def test_automatic_workers_fit_the_memory_their_images_need(monkeypatch):
    """One process per core, but no more than the memory holds each one's decoded images (a
    full Severstal test half is about 13 GB per process)."""
    from defectgen import experiment

    monkeypatch.setattr(experiment.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(experiment, "available_memory", lambda: 20 * 10**9)
    config = ExperimentConfig()
    assert config.evaluation_workers(10**8) == 4  # small images: every core
    assert config.evaluation_workers(3 * 10**9) == 2  # 0.6 x 20 GB / (3 + 1.5 GB)
    assert config.evaluation_workers(13 * 10**9) == 1  # never fewer than one
    assert ExperimentConfig(workers=3).evaluation_workers(13 * 10**9) == 3  # what the user asked
    assert ExperimentConfig(evaluation={"device": "cuda"}).evaluation_workers(10**8) == 1
    dataset = open_dataset(str(Path(__file__).parent / "fixtures" / "tiny_folder"))
    every = list(range(len(dataset)))  # 8 items: the sample is all of them, so the figure is exact
    exact = sum(dataset[i].image.nbytes + dataset[i].masks.nbytes for i in every)
    assert experiment.worker_memory(dataset, every) == exact


def test_data_the_evaluation_would_refuse_is_refused_before_any_generator_trains(tmp_path):
    """Six images leave no validation part with defects: said at once, not after the generators."""
    from defectgen.ui import console

    data = folder_dataset(tmp_path / "data", images=6, seed=1)
    with console.capture() as captured:
        code = main(_args(data, tmp_path / "out"))
    assert code == 2 and "too small to hold out a validation part" in " ".join(captured.get().split())
    assert not list((tmp_path / "out").glob("gan_g*"))


def test_kill_9_then_the_same_command_continues(finished):
    _, out, killed = finished
    if sys.platform.startswith("linux"):  # the workers die with it (they would finish the tiny runs)
        assert killed["workers"], "the evaluation ran in no worker process"
        assert not killed["alive"], "workers outlived the command"
        assert killed["records_after"] == killed["records"] and not killed["results"]
    assert [p for p in killed["finished"] if p.suffix == ".npz"], "killed before any evaluation run finished"
    assert {p: p.stat().st_mtime_ns for p in killed["finished"]} == killed["finished"]  # nothing redone
    assert (out / "eval" / "results.json").is_file()


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc; empty elsewhere)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that was killed to be reaped."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    except (OSError, ValueError):
        return False
    return not fields.get("State", "").startswith("Z")


def test_the_estimate_counts_each_arms_crops_and_the_curve_runs_as_the_processes_share_them():
    """Known answer: 7 arms x 2 seeds at 30 steps, 0.1 s per crop-step (0.8 s a step at batch 8),
    5 s of scoring per run. 12-crop arms (oversample, copypaste, blendpaste, the painted set)
    cost 36 + 5 s a run, 8-crop ones 24 + 5 s; the curve's runs of 10 and 20 steps score the
    validation part only (1 of 4 scored images): 9.25 and 17.25 s. One process: the sum, 528.5 s;
    two: 268.25 s for the busier one (longest first to the less loaded)."""
    from defectgen.experiment import _evaluate_seconds

    config = ExperimentConfig(generators=1, harmonize=False, seeds=2, evaluation={"steps": 30})
    eval_config = config.eval_config()
    assert _evaluate_seconds(config, eval_config, 1, 0.8, 5.0, 1, 3) == pytest.approx(528.5)
    assert _evaluate_seconds(config, eval_config, 2, 0.8, 5.0, 1, 3) == pytest.approx(268.25)
    no_curve = ExperimentConfig(
        generators=1, harmonize=False, seeds=2, evaluation={"steps": 30, "curve": False}
    )
    assert _evaluate_seconds(no_curve, no_curve.eval_config(), 1, 0.8, 0.0, 1, 3) == pytest.approx(432.0)


def test_the_mission_result_script_reads_a_finished_experiment(finished, tmp_path):
    """`benchmarks/mission_result.py` on a finished folder: the fields the README quotes, and the
    command that made the folder (its settings that differ from the defaults)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mission_result.py"
    spec = importlib.util.spec_from_file_location("mission_result", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, out, _ = finished
    result = module.mission_result(out)
    claim = result["claim"]
    assert claim["declared_arm"] == "real+painted_g*" and claim["declared_arms"] == [
        "real+painted_g0",
        "real+painted_g1",
    ]
    assert set(claim["versus"]) == {"real", "oversample", "copypaste", "blendpaste", "classic"}
    for entry in claim["versus"].values():
        assert len(entry["class_mean_pixel_ap"]["ci95"]) == 2
    assert "minimal_detectable_effect" in result["noise_floor"]
    assert "positive_dice_plain" in result["mean"]["real"]
    command = result["command"]
    for part in ("--gan-steps 2", "--synthetic 4", "--seeds 2", "--label-fraction 1.0",
                 "--set generator.preset=tiny", "--set evaluation.steps=3"):  # fmt: skip
        assert f" {part}" in command, (part, command)
    for default in ("--generators", "--test-fraction", "--harmonize"):  # 2, 0.5, on: the defaults
        assert default not in command


def test_the_estimate_probes_the_segmenter_at_the_precision_the_runs_use(tmp_path, monkeypatch):
    """On a bf16 machine the runs train in bf16 (0.155 s a step here) while the probe trained in
    fp32 (0.233 s): the estimate was 29 % pessimistic. The probe now asks for what the runs use;
    bf16 is forced here so that the check holds on any CPU."""
    from defectgen.evaluate import context, segmenter
    from defectgen.experiment import estimate

    data = folder_dataset(tmp_path / "data", images=40, seed=4)
    monkeypatch.setattr(context, "resolve_bf16", lambda precision, device: True)
    asked = []

    def probe(model, batch, steps, use_bf16=False, **kwargs):
        asked.append(use_bf16)
        return {"seconds": 0.1 * steps}

    monkeypatch.setattr(segmenter, "train_segmenter", probe)
    config = build_config(
        ExperimentConfig, overrides=[*TINY_SETTINGS, "gan_steps=2", "synthetic=4", "seeds=2"]
    )
    guess = estimate(open_dataset(str(data)), config)
    assert asked == [True, True] and guess["probes"]["segmenter_step"] == pytest.approx(0.1)
