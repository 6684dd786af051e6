"""`defectgen experiment`: the whole proof as one resumable command, on any dataset layout.

    split -> generators (fit part only, one per generator seed) -> synth (paint; harmonize)
          -> evaluate (every baseline, the declared arm with each generator, its siblings)
          -> report

The declared arm is the generator's own painted set stacked on `real` (`real+painted_gG`, one
arm per generator); the claim pools the generators, so its interval covers generator variance
as well as segmenter seeds and test images (`evaluate/statistics.py`). The harmonised sets
(real defects pasted, their seams repainted) are measured beside it as siblings; they are not
part of the claim.

Nothing here chooses anything on the test half, and nothing from the validation part or the
test half reaches a generator or a synthetic set: the generator stage works on `fit_split`
(training part = the evaluation's fit part). Each stage skips what an earlier call finished,
so the same command continues after an interruption (kill -9 included). An estimate of the
time comes first, from short probes of the real code paths on this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from defectgen.data.dataset import DefectDataset
from defectgen.errors import ConfigError, DataError
from defectgen.evaluate.config import MAX_SEEDS, EvalConfig
from defectgen.fileio import claim_folder, file_digest, parse_json, write_atomic
from defectgen.gan.config import TrainConfig
from defectgen.gan.health import healthy_checkpoint, read_metrics
from defectgen.settings import MAX_SEED, build_config, setting
from defectgen.synth_config import SynthConfig
from defectgen.ui import say

FORMAT = "defectgen-experiment/1"
BASELINES = ("real", "control", "oversample", "copypaste", "blendpaste", "classic")
MAX_AUTO_WORKERS = 8
PROCESS_BYTES = 1_500_000_000  # what one evaluation process holds besides its images (torch, U-Nets)
MEMORY_SHARE = 0.6  # of the memory available when the evaluate stage starts
NOT_IDENTITY = ("workers", "runs_from", "device")  # settings a folder may continue with changed, not recorded
# Settings added after the record's format was fixed, with the value a record without them meant.
ADDED_LATER = {"painting": {}}
# `synth` settings the experiment sets itself, or that could bring in images it cannot trace
# (a background or mask folder, a judge trained on anything): `painting` may not hold them.
PAINTING_RESERVED = ("n", "seed", "format", "mode", "device", "backgrounds", "judge", "attempts")
# Recorded, and a folder may continue with them changed: runs are keyed without the seed count,
# and the harmonised sets only add (or leave out) sibling arms.
CONTINUABLE = ("seeds", "harmonize")
GENERATORS = "generators.json"
CHECKPOINTS = 5  # each generator's checkpoints, one every fifth of its run (138 MB each at `small`)


@dataclass
class ExperimentConfig:
    """Every setting of `defectgen experiment` (the CLI's options come from here)."""

    label_fraction: float = setting(
        0.25, "Share of the training half's defect images that keep their labels."
    )
    test_fraction: float = setting(0.5, "Held-out share that only scores.")
    split_seed: int = setting(0, "Seed of the split.")
    generators: int = setting(2, "Generators trained with seeds 0..N-1; 2+ puts their variance in the claim.")
    gan_steps: int = setting(1000, "Steps of each generator.")
    synthetic: int = setting(500, "Images each generator paints (and harmonises).")
    harmonize: bool = setting(True, "Also measure the harmonised sets beside the claim.")
    seeds: int = setting(5, "Segmenter seeds per arm (at least 2).")
    generator: dict = setting({}, "`train` settings of the generators: --set generator.KEY=VALUE.", flag="")
    evaluation: dict = setting(
        {}, "`evaluate` settings (not arms, seeds or declared_arms): --set evaluation.KEY=VALUE.", flag=""
    )
    painting: dict = setting(
        {},
        "`synth` settings of the painted sets, e.g. --set painting.mask_source=learned:RUN (a StyleGAN "
        "run trained on this experiment's fit part) or painting.severity=0.5:1 (not n, seed, format, "
        "mode, device, backgrounds, judge, attempts, band or rim; mask_source not folder:PATH).",
        flag="",
    )
    # Not part of what the experiment is: they change where runs come from, not what they are.
    runs_from: str = setting(
        "",
        "Another experiment folder of the same data and split: its finished evaluation runs are "
        "copied in where this folder has none, and evaluate reuses those whose settings match (the "
        "baselines, when only the generator settings differ); the others are trained anew. Its "
        "generators are copied too where this folder's would be trained with the same settings "
        "(to judge another `painting` setting). The up-front estimate still counts every run.",
    )
    device: str = setting(
        "",
        "Where the generators train and paint: cpu, cuda, cuda:N (default: they train on a GPU when "
        "there is one and paint on the CPU; the U-Nets: evaluation.device).",
    )
    workers: int = setting(
        0,
        "Evaluation processes sharing the runs, the cores split between them (0: one per core as "
        f"memory allows, at most {MAX_AUTO_WORKERS}; 1: one process using every core).",
    )

    def validate(self) -> None:
        if not 0 < self.label_fraction <= 1 or not 0 < self.test_fraction < 1:
            raise ConfigError("`label_fraction` must be in (0, 1] and `test_fraction` in (0, 1)")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise ConfigError(f"`split_seed` must be in 0..{MAX_SEED}, got {self.split_seed}")
        if not 1 <= self.generators <= 16:
            raise ConfigError(f"`generators` must be in 1..16, got {self.generators}")
        if not 1 <= self.gan_steps <= 10_000_000 or not 1 <= self.synthetic <= 1_000_000:
            raise ConfigError("`gan_steps` and `synthetic` must be positive")
        if not 2 <= self.seeds <= MAX_SEEDS:
            raise ConfigError(
                f"`seeds` must be in 2..{MAX_SEEDS} (the interval of a paired difference needs seed "
                f"variance), got {self.seeds}"
            )
        if not re.fullmatch(r"|cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(
                f"`device` must be cpu, cuda or cuda:N (or empty: automatic), got {self.device!r}"
            )
        if not 0 <= self.workers <= 64:
            raise ConfigError(f"`workers` must be in 0..64 (0: one per core), got {self.workers}")
        reserved = {"arms", "seeds", "declared_arms"} & set(self.evaluation)
        if reserved:
            raise ConfigError(
                f"evaluation.{sorted(reserved)[0]} is set by the experiment itself (seeds: use `seeds`)"
            )
        reserved = {"steps", "seed"} & set(self.generator)
        if reserved:
            raise ConfigError(
                f"generator.{sorted(reserved)[0]} is set by the experiment itself (steps: use `gan_steps`; "
                "the generators are seeded 0..N-1)"
            )
        try:
            self.eval_config().validate()
        except ConfigError as err:  # name the setting as this config holds it: `evaluation.KEY`
            raise _renamed(err, EvalConfig, "evaluation") from None
        self.synth_config(0, "paint")  # refuses `painting` settings synth would refuse
        if not self.train_config(0).model_spec.is_stylegan:
            return
        from defectgen.synth.stylegan import PAINTING_ONLY

        painting_only = sorted(set(self.painting) & set(PAINTING_ONLY))
        if painting_only:
            raise ConfigError(
                f"painting.{painting_only[0]}: a StyleGAN generator draws each crop and its mask whole, "
                "with no background, mask source or painting; drop the painting settings"
            )
        if self.harmonize:
            raise ConfigError(
                "a StyleGAN generator draws whole crops and cannot harmonise (repaint the seam around a "
                "pasted real defect, which only an inpainter does): add --no-harmonize"
            )

    def train_config(self, seed: int, **probe) -> TrainConfig:
        """The `train` config of generator `seed`: `generator` settings over `gan_steps` steps, the
        seed and CHECKPOINTS checkpoints spread over the run; `probe` settings (the estimate's
        short run) over everything."""
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(self.generator) - known)
        if unknown:
            raise ConfigError(f"generator.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        # a checkpoint every fifth of the run, all kept: one from before a late collapse to paint with
        base = {
            "steps": self.gan_steps,
            "seed": seed,
            "checkpoint_every": max(1, self.gan_steps // CHECKPOINTS),
            "keep_checkpoints": CHECKPOINTS + 1,  # all kept, a last one off the fifths included
        }
        try:
            return build_config(TrainConfig, base=base, given={**self.generator, **probe})
        except ConfigError as err:
            raise ConfigError(f"generator settings: {_renamed(err, TrainConfig, 'generator')}") from None

    def synth_config(self, g: int, mode: str, n: int | None = None) -> SynthConfig:
        """The `synth` config of generator `g`'s painted (`mode` paint, with the `painting`
        settings) or harmonised set of `n` images (default `synthetic`)."""
        known = {f.name for f in dataclasses.fields(SynthConfig)}
        unknown = sorted(set(self.painting) - known)
        if unknown:
            raise ConfigError(f"painting.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        if {"band", "rim"} & set(self.painting):
            raise ConfigError(
                "painting.band and painting.rim belong to harmonising; the painted sets draw their masks, "
                "and the harmonised sets keep synth's defaults"
            )
        reserved = sorted(set(self.painting) & set(PAINTING_RESERVED))
        if reserved:
            raise ConfigError(
                f"painting.{reserved[0]} is not an experiment setting: the experiment sets n (use "
                "`synthetic`), seed, format, mode and device (use `device`) itself, and paints only on the "
                "fit part's own images, unfiltered"
            )
        if str(self.painting.get("mask_source", "")).startswith("folder:"):
            raise ConfigError(
                "painting.mask_source folder:PATH: the experiment cannot tell which images a mask folder's "
                "shapes came from (the test half's would leak into training); use real, shapes, mix or "
                "learned:RUN (a StyleGAN run's lineage is checked)"
            )
        base = {"n": self.synthetic if n is None else n, "seed": g, "format": "folder", "mode": mode}
        given = {**(self.painting if mode == "paint" else {}), "device": self.synth_device}
        try:
            return build_config(SynthConfig, base=base, given=given)
        except ConfigError as err:
            raise ConfigError(f"painting settings: {_renamed(err, SynthConfig, 'painting')}") from None

    def eval_config(self) -> EvalConfig:
        known = {f.name for f in dataclasses.fields(EvalConfig)}
        unknown = sorted(set(self.evaluation) - known)
        if unknown:
            raise ConfigError(f"evaluation.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        arms = [*BASELINES, *self.declared(), *self.siblings()]
        return EvalConfig(
            **self.evaluation, arms=arms, seeds=list(range(self.seeds)), declared_arms=self.declared()
        )

    @property
    def train_device(self) -> str | None:
        """The generators' device for `train`: None (a GPU when there is one) unless `device` says."""
        return self.device or None

    @property
    def synth_device(self) -> str:
        """The device the sets are painted on: `device`, else the CPU (synth's own default)."""
        return self.device or "cpu"

    def evaluation_workers(self, memory_per_worker: int | None = None) -> int:
        """Processes of the evaluate stage: `workers`, or one per core (at most MAX_AUTO_WORKERS)
        as far as memory holds `memory_per_worker` bytes (the decoded images each one keeps) for
        each, or one when the U-Nets train on a GPU (`--set evaluation.device=cuda`)."""
        if self.workers:
            return self.workers
        if self.evaluation.get("device", "cpu") != "cpu":
            return 1  # the U-Nets train on one GPU; several GPUs: torchrun with `defectgen evaluate`
        workers = max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
        available = available_memory()
        if memory_per_worker is not None and available is not None:
            fits = int(MEMORY_SHARE * available // (memory_per_worker + PROCESS_BYTES))
            workers = max(1, min(workers, fits))
        return workers

    def declared(self) -> list[str]:
        return [f"real+painted_g{g}" for g in range(self.generators)]

    def siblings(self) -> list[str]:
        return [f"real+harmonized_g{g}" for g in range(self.generators)] if self.harmonize else []


def _renamed(err: ConfigError, cls, mapping: str) -> ConfigError:
    """`err` with each setting of `cls` it names as `field` named as this config holds it:
    `mapping.field`."""
    message = str(err)
    for field in dataclasses.fields(cls):
        message = message.replace(f"`{field.name}`", f"`{mapping}.{field.name}`")
    return ConfigError(message)


def is_started(out_dir: Path) -> bool:
    """Has an experiment been started in `out_dir` (its settings recorded)?"""
    return (Path(out_dir) / "experiment.json").is_file()


def run_experiment(
    dataset: DefectDataset, out_dir: Path, config: ExperimentConfig, progress: bool = True
) -> dict:
    """Run (or continue) every stage into `out_dir`; returns the evaluation's results."""
    from defectgen.data.split import Split, fit_split, make_split
    from defectgen.distributed import run_local
    from defectgen.evaluate import evaluate
    from defectgen.report import write_report

    config.validate()
    out_dir = Path(out_dir)
    eval_config = config.eval_config()
    split = make_split(dataset, config.test_fraction, config.split_seed, config.label_fraction)
    _, validation, test = evaluation_parts(dataset, split, eval_config)
    generator_split = fit_split(split, dataset, eval_config.val_fraction)
    # refused before the folder records these settings (corrected, they start it afresh)
    check_mask_source(config.synth_config(0, "paint"), dataset, generator_split)
    claim_folder(out_dir, "experiment")
    _check_same_experiment(out_dir, dataset, config)
    split_file = out_dir / "split.json"
    split.save(split_file)
    generator_split.save(out_dir / "fit_split.json")
    if config.runs_from:  # refused now, not after the generators have trained
        check_runs_source(Path(config.runs_from), out_dir, dataset)
    _stage(
        1,
        "split",
        f"{len(split.train)} training images ({len(generator_split.train)} in the fit part), "
        f"{len(split.test)} test images",
    )
    sets: dict[str, Path] = {}
    for g in range(config.generators):
        with _timed(out_dir, f"generator_g{g}"):
            checkpoint = _generator(dataset, generator_split, config, g, out_dir, progress)
        modes = [("paint", "painted")] + ([("harmonize", "harmonized")] if config.harmonize else [])
        for mode, name in modes:
            with _timed(out_dir, f"{name}_g{g}"):
                sets[f"{name}_g{g}"] = _synth(
                    checkpoint, dataset, generator_split, config, g, mode, out_dir, progress
                )
    if config.runs_from:
        copied = borrow_runs(Path(config.runs_from), out_dir, dataset)
        say(
            ("note:", "cyan"),
            f" {copied} finished runs copied from {config.runs_from}; evaluate reuses those whose "
            "settings match this experiment's and trains the others",
        )
    workers = config.evaluation_workers(worker_memory(dataset, [*validation, *test]))
    _stage(
        4,
        "evaluate",
        f"{len(eval_config.arms)} arms x {config.seeds} seeds, {eval_config.steps} steps each"
        + (f", {workers} processes" if workers > 1 else ""),
    )
    arguments = (
        dataset,
        Split.load(split_file),
        out_dir / "eval",
        eval_config,
        sets,
        None,
        split_file,
        progress,
    )
    with _timed(out_dir, "evaluate", workers=workers):
        if workers > 1:  # each process trains its share of the runs; rank 0 writes results.json
            run_local(evaluate, arguments, workers)
            results = parse_json((out_dir / "eval" / "results.json").read_text())
        else:
            results = evaluate(*arguments)
    _stage(5, "report", str(write_report(out_dir / "eval")))
    return results


def check_mask_source(settings: SynthConfig, dataset: DefectDataset, generator_split) -> None:
    """Refuse a `learned:RUN` mask source (of the painted sets' `settings`) that is missing, that
    read anything outside the fit part (`generator_split`'s training part), that is not a StyleGAN
    run of this data's classes, or that cannot draw one of the classes asked for: asked before
    any generator trains, as `synth` would ask after."""
    from defectgen.data.lineage import check_lineage
    from defectgen.gan.checkpoint import checkpoint_lineage
    from defectgen.masks import build_mask_source
    from defectgen.masks.learned import stylegan_checkpoint

    if not str(settings.mask_source).startswith("learned:"):
        return
    path = stylegan_checkpoint(str(settings.mask_source).partition(":")[2])
    if not path.is_file():
        raise ConfigError(
            f"painting.mask_source {settings.mask_source}: no checkpoint at {path}; name a StyleGAN run "
            "folder (train --preset stylegan-small) or its checkpoint"
        )
    fix = (
        "train the StyleGAN run on this experiment's fit part (`defectgen train --split OUT/fit_split.json`, "
        "or the gan_g0 of an experiment with --set generator.preset=stylegan-small on the same split)"
    )
    check_lineage(checkpoint_lineage(path), f"learned mask source {path}", dataset, generator_split, fix)
    only = sorted(set(settings.classes)) if settings.classes else None
    build_mask_source(settings.mask_source, dataset, generator_split.indices(dataset, "train"), only=only)


def check_runs_source(source: Path, out_dir: Path, dataset: DefectDataset) -> None:
    """Refuse `runs_from` = `source` unless it is another experiment folder on the same data and
    split as `out_dir` (whose split.json is written): asked before any generator trains."""
    from defectgen.data.split import Split

    source = Path(source)
    if source.resolve() == out_dir.resolve():
        raise ConfigError("`runs_from` names this experiment's own folder; give another experiment folder")
    try:
        record = parse_json((source / "experiment.json").read_text())
        theirs, ours = Split.load(source / "split.json"), Split.load(out_dir / "split.json")
    except (OSError, ValueError, DataError) as err:
        raise ConfigError(
            f"`runs_from`: {source} is not a readable experiment folder ({str(err)[:120]}); "
            "give a folder `defectgen experiment` wrote"
        ) from None
    if not isinstance(record, dict) or record.get("fingerprint") != dataset.fingerprint():
        raise ConfigError(f"`runs_from`: {source} is an experiment on other data; its runs cannot be reused")
    if (theirs.train, theirs.test) != (ours.train, ours.test):
        raise ConfigError(
            f"`runs_from`: {source} was split otherwise (label_fraction, test_fraction or split_seed); "
            "its runs cannot be reused"
        )


def borrow_generator(source: Path, out_dir: Path, config: ExperimentConfig, g: int) -> bool:
    """Copy generator `g`'s finished run from experiment folder `source` into `out_dir` when it
    is what generator `g` would be here: the same `train` settings (models written out whole),
    trained on the same fit part, to `gan_steps` steps, with no guide (whose file could have
    changed since). The run is copied whole (regular files; links left) under a temporary name
    and then renamed, so an interrupted copy leaves no run. Returns whether it copied."""
    from defectgen.data.split import Split
    from defectgen.errors import DefectgenError
    from defectgen.gan.checkpoint import load_checkpoint

    theirs = Path(source) / f"gan_g{g}"
    wanted = config.train_config(g)
    if wanted.guide or theirs.is_symlink() or not (theirs / "checkpoints" / "last.pt").is_file():
        return False
    _check_same_models(out_dir, g, wanted)  # as for a generator trained here
    try:
        if TrainConfig.load(theirs / "config.yaml", written_by_a_run=True).resolved() != wanted.resolved():
            return False
        if Split.load(Path(source) / "fit_split.json").train != Split.load(out_dir / "fit_split.json").train:
            return False
        if int(load_checkpoint(theirs / "checkpoints" / "last.pt")["step"]) < config.gan_steps:
            return False
    except (OSError, ValueError, KeyError, TypeError, DefectgenError):  # unreadable: trained here instead
        return False
    partial = out_dir / f".gan_g{g}.copying"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(
            theirs,
            partial,
            ignore=lambda folder, names: [n for n in names if (Path(folder) / n).is_symlink()],
        )
        os.replace(partial, out_dir / f"gan_g{g}")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk or ^C leaves no partial copy
        raise
    return True


def borrow_runs(source: Path, out_dir: Path, dataset: DefectDataset) -> int:
    """Copy the finished evaluation runs of experiment folder `source` (same data, same split:
    `check_runs_source`) into `out_dir`'s evaluation where it has no run of that name; returns
    how many. A run is copied whole or not at all: its record with the score arrays an (arm,
    seed) run keeps and, for `real`, its U-Net (the judge and the guide read it), each a regular
    file (links are left). Copies, not links: a run `evaluate` trains anew is written in place.
    Each run's record comes last, so an interrupted copy leaves no run that counts as finished."""
    from defectgen.evaluate.cache import claim_evaluation_folder

    check_runs_source(source, out_dir, dataset)
    runs = Path(source) / "eval" / "runs"
    target = out_dir / "eval" / "runs"
    claim_evaluation_folder(out_dir / "eval")
    copied = 0
    for record_file in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        if (target / record_file.name).exists():
            continue
        stem = record_file.stem
        needed = [".json"]
        if re.fullmatch(r".+_s\d+", stem) and not stem.startswith(("curve_", "label_scores_")):
            needed.append(".npz")  # an (arm, seed) run: its per-image scores
        if re.fullmatch(r"real_s\d+", stem):
            needed.append(".pt")
        parts = [record_file.with_suffix(suffix) for suffix in needed]
        if any(part.is_symlink() or not part.is_file() for part in parts):
            continue
        for part in sorted(parts, key=lambda part: part.suffix == ".json"):  # the record last
            write_atomic(target / part.name, part.read_bytes())
        copied += 1
    return copied


TIMINGS = "timings.jsonl"


@contextlib.contextmanager
def _timed(out_dir: Path, stage: str, **details):
    """Append one line to OUT/timings.jsonl when `stage` finishes: its wall seconds in this call
    (a stage finished by an earlier call takes about 0 s). A stage continued after an
    interruption has one line per call that worked on it; their sum is its time."""
    start = time.perf_counter()
    yield
    line = {"stage": stage, "seconds": round(time.perf_counter() - start, 1), **details}
    line["finished"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(out_dir / TIMINGS, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


def available_memory() -> int | None:
    """Bytes of memory available now (Linux /proc/meminfo's MemAvailable); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_memory(dataset: DefectDataset, scored: list[int]) -> int:
    """Bytes one evaluation process keeps of the images it scores (`scored`: its validation and
    test items; image and masks, as `EvalContext.decoded` keeps them), from 8 items spread over them."""
    sample = scored[:: max(1, len(scored) // 8)][:8]
    sizes = [dataset[index].image.nbytes + dataset[index].masks.nbytes for index in sample]
    return int(sum(sizes) / max(1, len(sizes)) * len(scored))


def evaluation_parts(dataset: DefectDataset, split, eval_config: EvalConfig) -> tuple[list, list, list]:
    """(fit, validation, test) indices as the evaluate stage cuts them, refused as it would refuse
    them (a test half and a fit and a validation part that hold defects): asked before any
    generator trains."""
    from defectgen.data.split import carve_validation, check_parts

    fit, validation = carve_validation(
        dataset, split.indices(dataset, "train"), eval_config.val_fraction, seed=0
    )
    test = split.indices(dataset, "test")
    check_parts(dataset, fit, validation, test)
    return fit, validation, test


def _generator(dataset, split, config: ExperimentConfig, g: int, out_dir: Path, progress: bool) -> Path:
    """Generator `g`'s checkpoint to paint with, trained now unless an earlier call finished it:
    the run's last one, or, when the run ended collapsed, the newest one written before the
    collapse (`gan.health.healthy_checkpoint`, which reads only the training log). The choice is
    recorded in OUT/generators.json."""
    from defectgen.gan.checkpoint import load_checkpoint
    from defectgen.gan.train import train

    run = out_dir / f"gan_g{g}"
    last = run / "checkpoints" / "last.pt"
    if config.runs_from and not run.exists() and borrow_generator(Path(config.runs_from), out_dir, config, g):
        say(
            ("note:", "cyan"),
            f" generator {g} copied from {config.runs_from}: trained with the same settings",
        )
    if last.is_file() and int(load_checkpoint(last)["step"]) >= config.gan_steps:
        _stage(2, f"generator {g}", f"done before ({last})")
    else:
        _stage(2, f"generator {g}", f"{config.gan_steps} steps on the fit part, seed {g}")
        train_config = config.train_config(g)
        if not (run / "config.yaml").is_file():  # a new run: the folder's other generators' models
            _check_same_models(out_dir, g, train_config)
        # resume whatever the folder holds: a run killed before its first checkpoint has only its config
        train(
            dataset,
            split,
            train_config,
            run,
            resume=run.is_dir(),
            device=config.train_device,
            progress=progress,
        )
    checkpoint, record = healthy_checkpoint(run)
    if record["collapse"] is not None:
        chosen = record["collapse"]["healthy_checkpoint"]
        say(
            ("warning:", "yellow"),
            f" generator {g} collapsed from step {record['collapse']['onset_step']}; "
            + (
                f"its sets are painted with {chosen}, written before it"
                if chosen
                else "no checkpoint from before it is kept: its sets are painted with the collapsed last.pt"
            ),
        )
    _record_generator(out_dir, g, {"step": int(load_checkpoint(checkpoint)["step"]), **record})
    return checkpoint


def _check_same_models(out_dir: Path, g: int, train_config: TrainConfig) -> None:
    """Refuse to start generator `g` with other models than the folder's other generators were
    trained with (a preset changed between the calls): their sets would not be replicates of one
    recipe, and the claim pools them as such."""
    spec = train_config.model_spec
    for other in sorted(out_dir.glob("gan_g*/config.yaml")):
        if other.parent.name == f"gan_g{g}":
            continue
        if TrainConfig.load(other, written_by_a_run=True).model_spec != spec:
            raise ConfigError(
                f"{other.parent} was trained with other models than generator {g} would be now (a preset "
                "of this defectgen version differs from the one that started the folder); continue it "
                "with that version, or give another --out"
            )


def _record_generator(out_dir: Path, g: int, record: dict) -> None:
    """Write generator `g`'s checkpoint choice into OUT/generators.json (one entry per generator)."""
    path = out_dir / GENERATORS
    try:
        entries = parse_json(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        entries = {}
    entries = entries if isinstance(entries, dict) else {}
    entries[f"g{g}"] = record
    write_atomic(path, json.dumps(dict(sorted(entries.items())), indent=1) + "\n")


def _synth(checkpoint, dataset, split, config: ExperimentConfig, g: int, mode: str, out_dir: Path, progress):
    """Generator `g`'s painted or harmonised set, written (or continued) now. A set this folder
    holds from another checkpoint of the generator (one chosen before a collapse was found, or
    a generator trained again) is painted anew."""
    from defectgen.synth import synthesize

    name = "painted" if mode == "paint" else "harmonized"
    folder = out_dir / f"{name}_g{g}"
    if _painted_with_another(folder, checkpoint, g):
        from defectgen.synthset.writer import locked

        say(
            ("note:", "cyan"),
            f" {folder} was painted with another checkpoint of generator {g}: painting anew",
        )
        with locked(folder, who="experiment"):  # not while a synth writes it
            for path in folder.iterdir():
                if path.name != ".lock":
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    _stage(3, f"{name} set {g}", f"{config.synthetic} images")
    synthesize(
        checkpoint,
        dataset,
        split,
        folder,
        config.synth_config(g, mode),
        progress=progress,
    )
    return folder


def _painted_with_another(folder: Path, checkpoint: Path, g: int) -> bool:
    """Does `folder` hold generator `g`'s set (its synth.json: painted by a checkpoint, with seed
    `g`, as `_synth` writes it) painted with another checkpoint file? Anything else there is left
    for `synthesize` to accept or refuse."""
    from defectgen.synthset.reader import PARAMS_FILE

    if folder.is_symlink():
        raise DataError(f"{folder} is a link; the experiment writes its sets itself: remove the link")
    try:
        params = parse_json((folder / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(params, dict) or params.get("seed") != g:
        return False
    recorded = params.get("checkpoint_sha256")
    return isinstance(recorded, str) and recorded != file_digest(checkpoint)


def _check_same_experiment(out_dir: Path, dataset: DefectDataset, config: ExperimentConfig) -> None:
    """Refuse to continue an experiment folder made with other data or settings. Another number
    of segmenter `seeds` is accepted (and recorded): every finished run is reused, so a folder
    can be continued with more seeds for a narrower interval; so is `harmonize`, which adds or
    leaves out the harmonised sets' sibling arms."""
    record = {
        "format": FORMAT,
        "dataset": dataset.spec,
        "fingerprint": dataset.fingerprint(),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_IDENTITY},
    }
    path = out_dir / "experiment.json"
    if path.is_file():
        try:
            earlier = parse_json(path.read_text())
        except (OSError, ValueError):
            earlier = None
        if _identity(earlier) != _identity(record):
            raise ConfigError(
                f"{out_dir} holds an experiment with other data or settings; continue it with its own "
                f"settings ({path}; only --seeds and --[no-]harmonize may change) or give another --out"
            )
        if earlier == record:
            return
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def _identity(record) -> object:
    """What an experiment is: its record without the settings a folder may continue with changed."""
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return record
    config = {**ADDED_LATER, **record["config"]}
    return {**record, "config": {k: v for k, v in config.items() if k not in CONTINUABLE}}


def _stage(number: int, name: str, text: str) -> None:
    say(("experiment", "bold cyan"), f" {number}/5 {name}: {text}")


# --- the up-front estimate ---------------------------------------------------------------------


def estimate(dataset: DefectDataset, config: ExperimentConfig) -> dict:
    """Seconds each stage should take on this machine, from short probes: a few segmenter steps
    and a test-image scoring pass, a few generator steps and a few synthetic images."""
    from defectgen.data.split import fit_split, make_split

    config.validate()
    eval_config = config.eval_config()
    split = make_split(dataset, config.test_fraction, config.split_seed, config.label_fraction)
    evaluation_parts(dataset, split, eval_config)  # refused before the probes' imports and work

    import torch

    from defectgen.evaluate.arms import Arm
    from defectgen.evaluate.context import EvalContext, arm_sampler
    from defectgen.evaluate.segmenter import train_segmenter
    from defectgen.gan.train import train
    from defectgen.synth import synthesize

    ctx = EvalContext.create(dataset, split, eval_config)
    sampler = arm_sampler(ctx, Arm("real", "real"), 0)
    model = ctx.model(0)
    workers = config.evaluation_workers(worker_memory(dataset, [*ctx.validation, *ctx.test]))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // workers))  # one worker's share of the cores, as it will run
    try:
        train_segmenter(model, sampler.batch, 3, use_bf16=ctx.use_bf16, progress=False)  # warm-up
        step = (
            train_segmenter(model, sampler.batch, 10, use_bf16=ctx.use_bf16, progress=False)["seconds"] / 10
        )
        probe = ctx.test[:: max(1, len(ctx.test) // 16)][:16]  # spread over the test half's sizes
        ctx.score(model, probe[:2])  # warm-up
        start = time.perf_counter()
        ctx.score(model, probe)
        score = (time.perf_counter() - start) / len(probe) * (len(ctx.test) + len(ctx.validation))
    finally:
        torch.set_num_threads(threads)
    runs = len(eval_config.arms) * config.seeds
    with tempfile.TemporaryDirectory() as tmp:
        generator_split = fit_split(split, dataset, eval_config.val_fraction)
        train_config = config.train_config(0, steps=6, log_every=3, sample_every=10_000)
        checkpoint = train(
            dataset,
            generator_split,
            train_config,
            Path(tmp) / "gan",
            device=config.train_device,
            progress=False,
        )
        records = read_metrics(Path(tmp) / "gan" / "metrics.jsonl")
        gan_step = float(records[-1]["seconds_per_step"])  # steps 4-6: past start-up
        synth = Path(tmp) / "synth"

        def paint(n: int) -> None:  # the same folder continued: items 0..n-1
            settings = config.synth_config(0, "paint", n=n)
            synthesize(checkpoint, dataset, generator_split, synth, settings, progress=False)

        paint(2)  # warm-up
        start = time.perf_counter()
        paint(6)
        image = (time.perf_counter() - start) / 4
    sets = 2 if config.harmonize else 1
    stages = {
        "generators": config.generators * config.gan_steps * gan_step,
        "synth": config.generators * sets * config.synthetic * image,
        "evaluate": _evaluate_seconds(
            config, eval_config, workers, step, score, len(ctx.validation), len(ctx.test)
        ),
    }
    return {
        "seconds": stages,
        "total_seconds": sum(stages.values()),
        "probes": {
            "segmenter_step": step,
            "scoring_per_run": score,
            "generator_step": gan_step,
            "synthetic_image": image,
        },
        "runs": runs,
        "workers": workers,
        "note": "steady-state probes (warm-up excluded); a generator's checkpoints and sample grids "
        "and each stage's start-up are not counted",
    }


def _evaluate_seconds(
    config, eval_config, workers: int, step: float, score: float, validation: int, test: int
) -> float:
    """The evaluate stage's wall time: the runs and curve runs split between the processes as
    `evaluate` splits them (`run.work_items`, `run.share_out`), each costing its steps at its
    arm's crops per step (`step` is the probe's, at the real arm's batch) plus its scoring
    (`score`: validation part and test half; the curve's shorter runs score the validation part
    only); the busiest process sets the time."""
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import share_out, work_items

    names = tuple(f"{kind}_g{g}" for g in range(config.generators) for kind in ("painted", "harmonized"))
    jobs = [(arm, seed) for arm in parse_arms(eval_config.arms, names) for seed in range(config.seeds)]
    items = work_items(jobs, eval_config, eval_config.steps, eval_config.curve)
    per_crop_step = step / eval_config.batch_size
    validation_share = validation / max(1, validation + test)
    seconds = [
        cost * per_crop_step + (score * validation_share if isinstance(task, int) else score)
        for cost, task in items
    ]
    shares = share_out([(cost, i) for i, (cost, _) in enumerate(items)], workers)
    return max(sum(seconds[i] for i in share) for share in shares)
