"""`defectgen evaluate`: what synthetic data is worth, measured the same way for every arm.

Protocol (docs/ARCHITECTURE.md):

1. The training half is cut into a *fit* part and a stratified *validation* part. Segmenters
   train on crops of the fit part only (`context.py`); the test half only scores.
2. Every arm at seed s starts from the same initial weights and sees the same real crops in
   the same order (`sampling.py`); arms only add crops or augment them (`arms.py`).
3. Each run keeps per-image score records of the validation part and the test half
   (`scores.py`). The real arm's first seed is also trained for 1/3 and 2/3 of the steps, each
   on its own schedule: with step 0 and the full run, the validation part draws the learning
   curve of the schedule the runs use, and says whether the budget is flat.
4. When every run has finished: one post-processing per class for all arms, chosen on the real
   arm's validation records pooled over seeds (`postprocess.py`); summaries; paired
   differences with intervals that count seeds, generators and test images once each
   (`statistics.py`); the noise floor; and the claim of the arm declared in the settings
   against every baseline (`comparison.py`).

Each finished (arm, seed) is saved under a key of everything that changes it (settings, data,
split, the synthetic sets it uses) and reused only under the same key, so an interrupted
evaluation continues where it stopped and a changed one never reuses stale runs.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from defectgen import distributed, launch
from defectgen.data.dataset import DefectDataset
from defectgen.data.split import Split, check_parts
from defectgen.errors import ConfigError, DataError
from defectgen.evaluate import quality
from defectgen.evaluate.arms import FILTERED, Arm, parse_arms, parse_synthetic
from defectgen.evaluate.cache import claim_evaluation_folder, digest, load_keyed, run_key, save_json, versions
from defectgen.evaluate.comparison import Verdict, learning_curve
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.context import (
    EvalContext,
    arm_sampler,
    crops_per_step,
    state_bytes,
    train_and_score,
    untrained_validation,
)
from defectgen.evaluate.judge import accepts, class_thresholds
from defectgen.evaluate.schema import FORMAT, RESULTS_FILE
from defectgen.evaluate.scores import MIN_AREAS, THRESHOLDS
from defectgen.evaluate.set_quality import set_quality
from defectgen.fileio import parse_json, write_atomic
from defectgen.synthset import read_params, set_fingerprint
from defectgen.ui import say

__all__ = ["RESULT_COLUMNS", "evaluate", "result_rows"]


def evaluate(
    dataset: DefectDataset,
    split: Split,
    out_dir: Path,
    config: EvalConfig,
    synthetic: dict[str, Path] | None = None,
    checkpoint: Path | None = None,
    split_file: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train and score every (arm, seed) of `config`; writes OUT/results.json and returns it.

    `synthetic` maps set names (used in arm names, e.g. 'oversample+tiles') to `defectgen synth`
    output folders. `checkpoint` (optional) is the generator of one of them, for diversity."""
    config.validate()
    split.check(dataset)
    dirs = {name: Path(path) for name, path in (synthetic or {}).items()}
    parse_synthetic([f"{name}={path}" for name, path in dirs.items()])  # the names the CLI accepts
    arms = parse_arms(config.arms, tuple(dirs))
    ctx = EvalContext.create(dataset, split, config, dirs, progress)
    declared = declared_arms(config, arms, ctx.lineages)
    check_parts(ctx.dataset, ctx.fit, ctx.validation, ctx.test)
    _check_arms(ctx, arms)
    out_dir = Path(out_dir)
    group = distributed.init(config.device, distributed.LONG_WAIT) if launch.world_size() > 1 else None
    group = group or distributed.Context(rank=0, world_size=1, device=ctx.device)
    ctx.place(group.device)
    distributed.on_main(group, lambda: claim_evaluation_folder(out_dir))
    ctx.progress = progress and group.is_main
    evaluation = Evaluation(ctx, arms, declared, out_dir, split, split_file, checkpoint)
    try:
        if group.world_size > 1:
            evaluation.share_runs(group)
        return distributed.on_main(group, evaluation.gather)
    finally:
        distributed.shutdown(group)  # leave no process-group threads to the interpreter's exit


def curve_budgets(steps: int) -> list[int]:
    """Step counts of the learning curve's shorter runs, 1/3 and 2/3 of `steps` (the full run is
    the real arm's first seed)."""
    return sorted({b for b in (steps // 3, 2 * steps // 3) if 0 < b < steps})


def work_items(jobs: list[tuple[Arm, int]], config: EvalConfig, steps: int, curve: bool) -> list[tuple]:
    """(cost, task) of each (arm, seed) run in `jobs` and, with `curve`, of the learning curve's
    shorter runs (task: their step count): the cost is crops per step x steps. What `share_out`
    splits between processes, here and in `experiment`'s estimate."""
    items: list[tuple] = [(crops_per_step(arm, config) * steps, (arm, seed)) for arm, seed in jobs]
    if curve:
        real = crops_per_step(Arm("real", "real"), config)
        items += [(real * budget, budget) for budget in curve_budgets(steps)]
    return items


def share_out(tasks: list[tuple[float, object]], workers: int) -> list[list]:
    """`tasks` ((cost, task) pairs) split between `workers` processes: longest first, each to the
    process with the least cost so far (ties: the lowest rank), each process's share in the
    given order. Deterministic, so every process computes the same split."""
    loads, shares = [0.0] * workers, [[] for _ in range(workers)]
    order = sorted(range(len(tasks)), key=lambda i: (-tasks[i][0], i))
    for i in order:
        rank = min(range(workers), key=lambda r: (loads[r], r))
        loads[rank] += tasks[i][0]
        shares[rank].append(i)
    return [[tasks[i][1] for i in sorted(share)] for share in shares]


def declared_arms(config: EvalConfig, arms: list[Arm], lineages: dict[str, dict] | None = None) -> list[Arm]:
    """The claim's arm(s): `config.declared_arms`, else the one stacked arm if there is one.
    `lineages` (set name -> `set_lineage`): a set that saw what the evaluation holds out (its
    validation items, on which the evaluation's choices are made; labels the split withholds; a
    judge's validation scores) cannot be declared; an implicit claim on one is dropped, saying so."""
    by_name = {arm.name: arm for arm in arms}
    saw = {
        name: entry
        for name, entry in (lineages or {}).items()
        if entry.get("validation_items_read") or entry.get("unlabelled_items_read") or entry.get("judged")
    }
    if saw and launch.is_main():  # under torchrun, rank 0 speaks for all
        name, entry = next(iter(saw.items()))
        say(
            ("warning:", "yellow"),
            f" synthetic set(s) {sorted(saw)} saw what this evaluation holds out (in {name}: "
            f"{entry['validation_items_read']} validation and {entry['unlabelled_items_read']} unlabelled "
            f"items{', and a judge chose its items by validation scores' if entry.get('judged') else ''}); "
            "they are measured but cannot carry the claim. Train and synthesize with the fit split of "
            "this split (`defectgen split --fit-out`) and no --judge, as `defectgen experiment` does",
        )
    if config.declared_arms:
        chosen = [by_name[parse_arm_name(name, arms)] for name in config.declared_arms]
        tainted = [arm.name for arm in chosen if any(s.removesuffix(FILTERED) in saw for s in arm.sets)]
        if tainted:
            raise DataError(
                f"declared arm(s) {tainted} use a set made from validation or unlabelled items (or chosen "
                "by a judge): the claim needs sets whose generator and sources never saw them; train and "
                "synthesize with the fit split (`defectgen split --fit-out`), or use `defectgen experiment`"
            )
        plain = [arm.name for arm in chosen if not arm.sets or arm.base is None]
        if plain:
            raise ConfigError(
                f"declared arm(s) {plain} add no synthetic set to a base: declare an arm BASE+SET"
            )
        shapes = {(arm.base, len(arm.sets)) for arm in chosen}
        if len(shapes) > 1:
            raise ConfigError(
                f"declared arms {[a.name for a in chosen]} are not one recipe: generator replicates share "
                "their base and number of sets"
            )
        return chosen
    stacked = [arm for arm in arms if arm.sets and arm.base is not None]
    clean = len(stacked) == 1 and not any(s.removesuffix(FILTERED) in saw for s in stacked[0].sets)
    return stacked if clean else []


def parse_arm_name(name: str, arms: list[Arm]) -> str:
    """`name` as the arm list normalised it ('tiles' is 'real+tiles')."""
    for arm in arms:
        if name in (arm.name, arm.name.removeprefix("real+")):
            return arm.name
    raise ConfigError(f"declared arm {name!r} is not among the arms {[a.name for a in arms]}")


def _check_arms(ctx: EvalContext, arms: list[Arm]) -> None:
    """Every arm draws its first batch before any run starts: an arm this data cannot feed stops
    the evaluation now, naming the arm, not after the others have trained."""
    for arm in arms:
        try:
            arm_sampler(ctx, arm, ctx.config.seeds[0]).batch(0)
        except (ValueError, IndexError, DataError) as err:
            raise DataError(f"arm {arm.name} cannot run on this data: {err}") from err


class Evaluation:
    """The runs of one evaluation folder: each (arm, seed) trained once, saved, then gathered."""

    def __init__(self, ctx, arms, declared, out_dir, split, split_file, checkpoint):
        self.ctx, self.arms, self.declared, self.out_dir = ctx, arms, declared, out_dir
        self.split, self.split_file, self.checkpoint = split, split_file, checkpoint
        self.runs_dir = out_dir / "runs"
        self.seeds = list(ctx.config.seeds)
        self.judge_seed = self.seeds[0]
        self.set_prints = {name: set_fingerprint(path) for name, path in ctx.synthetic_dirs.items()}
        self.context = {
            "dataset": ctx.dataset.fingerprint(),
            "split": digest([split.train, split.test]),
            "format": FORMAT,
        }
        order = sorted(arms, key=lambda a: (a.name != "real", any(s.endswith(FILTERED) for s in a.sets)))
        if "real" not in [a.name for a in arms]:
            order.insert(0, Arm("real", "real"))  # the post-processing and the judge come from it
        self.jobs = [(arm, seed) for arm in order for seed in self.seeds]

    # --- one run ---------------------------------------------------------------------------

    def keyed(self, arm: Arm, seed: int, filters: dict) -> tuple[str, str]:
        """(file stem, key) of one run: the key holds everything that changes it."""
        key = run_key(
            self.ctx.config,
            self.context,
            arm.name,
            seed=seed,
            definition=arm.describe(),
            sets={n: self.set_prints[n] for n in arm.set_names},
            kept={n: filters[n]["kept"] for n in arm.sets if n in filters},
        )
        return f"{arm.name}_s{seed}", key

    def run(self, arm: Arm, seed: int, filters: dict) -> dict:
        """The (arm, seed) run: from its saved files under the same key, else trained now."""
        name, key = self.keyed(arm, seed, filters)
        record = load_keyed(self.runs_dir / f"{name}.json", key)
        if record is None or not (self.runs_dir / f"{name}.npz").exists():
            record, validation, test, model = train_and_score(self.ctx, arm, seed, filters)
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            arrays = {f"test_{k}": v for k, v in test.items()} | {
                f"val_{k}": v for k, v in validation.items()
            }
            np.savez_compressed(self.runs_dir / f"{name}.npz", **arrays)
            if arm.name == "real":
                write_atomic(self.runs_dir / f"{name}.pt", state_bytes(model))
            save_json(self.runs_dir / f"{name}.json", {**record, "key": key})
        return record

    def curve_budgets(self) -> list[int]:
        return curve_budgets(self.ctx.steps) if self.ctx.config.curve else []

    def curve_point(self, steps: int) -> dict:
        """The validation summary of the real arm's first seed after `steps` steps on its own
        schedule (0: untrained), from its saved file under the same key, else trained now."""
        ctx, seed = self.ctx, self.judge_seed
        path = self.runs_dir / f"curve_real_{steps}_s{seed}.json"
        key = run_key(ctx.config, self.context, "curve", seed=seed, budget=steps)
        record = load_keyed(path, key)
        if record is None:
            if steps == 0:
                summary = untrained_validation(ctx, seed)
            else:
                summary = train_and_score(ctx, Arm("real", "real"), seed, {}, steps=steps)[0]["validation"]
            record = {"validation": summary, "key": key}
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            save_json(path, record)
        return record["validation"]

    def curve_points(self) -> list[list[float]]:
        """[step, validation class-mean pixel AP, validation positive Dice] of the real arm's
        first seed at step 0, 1/3 and 2/3 of the steps (the full run is added by the caller)."""
        points = []
        for steps in [0, *self.curve_budgets()]:
            summary = self.curve_point(steps)
            points.append([steps, summary["class_mean_pixel_ap"], summary["positive_dice_plain"]])
        return points

    def arrays(self, arm: Arm, seed: int) -> tuple[dict, dict]:
        with np.load(self.runs_dir / f"{arm.name}_s{seed}.npz") as data:
            test = {k.removeprefix("test_"): data[k] for k in data.files if k.startswith("test_")}
            validation = {k.removeprefix("val_"): data[k] for k in data.files if k.startswith("val_")}
        return test, validation

    def filters_for(self, arms: list[Arm], judge: dict | None, filters: dict) -> dict:
        """`filters` with those of the filtered sets `arms` use added (real arm as judge)."""
        for arm in arms:
            for name in arm.sets:
                if name.endswith(FILTERED) and name not in filters:
                    filters[name] = _label_filter(
                        self.ctx,
                        name.removesuffix(FILTERED),
                        judge,
                        self.out_dir,
                        self.context,
                        self.set_prints,
                    )
        return filters

    def share_runs(self, group) -> None:
        """Under torchrun: the processes share the runs (the learning curve's shorter runs
        among them), unfiltered ones first (the judge of the filtered sets is among them), then
        the filtered ones, each phase split by `share_out`; rank 0 gathers them afterwards."""
        ctx = self.ctx
        unfiltered = [(a, s) for a, s in self.jobs if not any(n.endswith(FILTERED) for n in a.sets)]
        filtered = [(a, s) for a, s in self.jobs if (a, s) not in unfiltered]

        def judged_filters() -> dict:  # on rank 0, once the judge (real arm, first seed) is saved
            judge = parse_json((self.runs_dir / f"real_s{self.judge_seed}.json").read_text())
            return self.filters_for([arm for arm, _ in filtered], judge, {})

        shared: dict[str, dict] = {}
        for phase in (unfiltered, filtered):
            if phase is filtered and filtered:
                shared = distributed.on_main(group, judged_filters)
            error = None
            try:
                items = work_items(phase, ctx.config, ctx.steps, ctx.config.curve and phase is unfiltered)
                for task in share_out(items, group.world_size)[group.rank]:
                    if isinstance(task, int):
                        self.curve_point(task)
                    else:
                        self.run(*task, shared)
            except Exception as err:  # noqa: BLE001 - the other processes must hear of it
                error = err
            distributed.settle(group, error)

    # --- every run, gathered -----------------------------------------------------------------

    def gather(self) -> dict:
        records, arrays, validation, filters = {}, {}, {}, {}
        for arm, seed in self.jobs:
            self.filters_for([arm], records.get(("real", self.judge_seed)), filters)
            record = self.run(arm, seed, filters)
            records[(arm.name, seed)] = {k: v for k, v in record.items() if k != "key"}
            arrays[(arm.name, seed)], validation[(arm.name, seed)] = self.arrays(arm, seed)
        verdict = Verdict(arrays, validation, self.seeds, self.ctx.dataset.classes.names)
        return self.results(records, verdict, filters)

    def results(self, records: dict, verdict: Verdict, filters: dict) -> dict:
        """results.json (written, and returned)."""
        ctx, config = self.ctx, self.ctx.config
        arm_names = [a.name for a in self.arms]
        judge = records[("real", self.judge_seed)]
        quality_results, figures = (
            set_quality(
                ctx, {n for a in self.arms for n in a.set_names}, self.checkpoint, self.out_dir, judge
            )
            if config.quality_samples
            else ({}, {})
        )
        crops = {arm.name: crops_per_step(arm, config) for arm in self.arms}
        paired = (
            {arm: verdict.compare([arm], "real") for arm in arm_names if arm != "real"}
            if "real" in arm_names
            else {}
        )
        runs = []
        for arm in arm_names:
            for seed in self.seeds:
                runs.append({**records[(arm, seed)], "test": verdict.run_summary(arm, seed)})
        results = {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": versions(),
            "dataset": ctx.dataset.spec,
            "classes": ctx.dataset.classes.to_json(),
            "split": self.split_record(),
            "synthetic": {
                name: {
                    "path": str(path),
                    "images": len(ctx.sets[name]),
                    "fingerprint": self.set_prints[name],
                    "mask_source": read_params(path).get("mask_source"),
                    "lineage": ctx.lineages.get(name),
                }
                for name, path in ctx.synthetic_dirs.items()
            },
            "config": self.config_record(),
            "arm_descriptions": {arm.name: arm.describe() for arm in self.arms},
            "crops_per_step": crops,
            "learning_curve": learning_curve(
                [
                    *self.curve_points(),
                    [
                        ctx.steps,
                        judge["validation"]["class_mean_pixel_ap"],
                        judge["validation"]["positive_dice_plain"],
                    ],
                ]
            )
            if config.curve
            else None,
            "post_processing": verdict.post_processing_table,
            "runs": runs,
            "summary": verdict.summary(arm_names),
            "paired": paired,
            "noise_floor": verdict.noise_floor(paired, arm_names) if paired else None,
            "claim": verdict.claim(self.declared, self.arms, crops),
            "beside_the_claim": verdict.beside_the_claim(self.declared, self.arms),
            "label_filter": filters,
            "quality": quality_results,
            "figures": figures,
        }
        save_json(self.out_dir / RESULTS_FILE, results)
        return results

    def split_record(self) -> dict:
        ctx, split = self.ctx, self.split
        items = ctx.dataset.items
        return {
            "file": str(self.split_file) if self.split_file else None,
            "seed": split.seed,
            "test_fraction": split.test_fraction,
            "label_fraction": split.label_fraction,
            "train_images": len(ctx.fit) + len(ctx.validation),
            "fit_images": len(ctx.fit),
            "validation_images": len(ctx.validation),
            "test_images": len(ctx.test),
            "test_images_per_class": {
                ctx.dataset.classes.name(k): sum(1 for i in ctx.test if k in items[i].class_ids)
                for k in ctx.dataset.classes.ids
            },
        }

    def config_record(self) -> dict:
        return {
            **asdict(self.ctx.config),
            "declared_arms": [arm.name for arm in self.declared],
            "loss": "BCE + Dice (multilabel) over valid pixels (synthetic seams ignored), AdamW, "
            "one-cycle LR",
            "std": "sample standard deviation over seeds (ddof 1)",
            "interval": "t (Satterthwaite df); variance = crossed generator x seed ANOVA term + the "
            "shared test images' term (bootstrap covariance of cells sharing no seed and no generator)",
            "post_processing": {
                "thresholds": list(THRESHOLDS),
                "min_areas": list(MIN_AREAS),
                "rule": "one per class for every arm: best pooled Dice on the real arm's validation "
                "predictions pooled over seeds; applies to Kaggle Dice and the FP rate only",
            },
            "training_data": "the fit part of the training half; its validation part gives the learning "
            "curve and the post-processing; the test half only scores",
        }


# --- label-consistency filter ---------------------------------------------------------------


def _label_filter(
    ctx: EvalContext, name: str, judge: dict, out_dir: Path, context: dict, set_prints: dict
) -> dict:
    """Score every item of set `name` with the real arm's first-seed U-Net and keep the items
    it recognises (the rule: `defectgen.evaluate.judge`)."""
    config, dataset = ctx.config, ctx.dataset
    path = out_dir / "runs" / f"label_scores_{name}.json"
    key = run_key(config, context, f"scores_{name}", sets={name: set_prints[name]})
    cached = load_keyed(path, key)
    if cached is None:
        weights = out_dir / "runs" / f"real_s{judge['seed']}.pt"
        model = ctx.model(0)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        scores = quality.label_scores(model, ctx.sets[name], ctx.use_bf16)
        cached = {"scores": [{str(k): v for k, v in s.items()} for s in scores], "key": key}
        save_json(path, cached)
    thresholds = class_thresholds(
        judge["validation"]["positive_dice"], dataset.classes, config.filter_floor, config.filter_ratio
    )
    kept = [
        i
        for i, item in enumerate(cached["scores"])
        if accepts({int(k): v for k, v in item.items()}, thresholds)
    ]
    items = ctx.sets[name].items
    return {
        "set": name,
        "judge": f"real arm, seed {judge['seed']} (fit part of the training half only)",
        "thresholds": {dataset.classes.name(k): t for k, t in thresholds.items()},
        "not_judgeable": [dataset.classes.name(k) for k, t in thresholds.items() if t is None],
        "items": len(items),
        "kept": len(kept),
        "kept_per_class": {
            dataset.classes.name(k): sum(1 for i in kept if k in items[i].class_ids)
            for k in dataset.classes.ids
        },
        "kept_indices": kept,
    }


# --- tables ------------------------------------------------------------------------------------

RESULT_COLUMNS = (
    "arm",
    "pixel AP (class mean)",
    "vs real (95% CI)",
    "positive Dice (0.5)",
    "Kaggle Dice",
    "FP rate (defect-free)",
    "crops/step",
)


def result_rows(results: dict) -> list[tuple[str, ...]]:
    """One row of text per arm (see RESULT_COLUMNS): mean ± std over seeds, paired difference."""

    def cell(entry: dict) -> str:
        return "-" if entry["mean"] is None else f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    rows = []
    for arm, entry in results["summary"].items():
        paired = results["paired"].get(arm, {}).get("class_mean_pixel_ap")
        versus = "-"
        if paired and paired["ci95"][0] is not None:
            low, high = paired["ci95"]
            versus = f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        rows.append(
            (
                arm,
                cell(entry["class_mean_pixel_ap"]),
                versus,
                cell(entry["positive_dice_plain"]),
                cell(entry["kaggle_dice"]),
                cell(entry["fp_rate_defect_free"]),
                str(results.get("crops_per_step", {}).get(arm, "-")),
            )
        )
    return rows
