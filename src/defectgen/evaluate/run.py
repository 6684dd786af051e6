"""`defectgen evaluate`: what synthetic data is worth, measured the same way for every arm.

Protocol (docs/ARCHITECTURE.md):

1. The training half is cut into a *fit* part and a stratified *validation* part. Segmenters
   train on crops of the fit part only; the validation part chooses the step count (once, on
   the `real` arm) and each run's post-processing; the test half only scores.
2. Every arm at seed s starts from the same initial weights and sees the same real crops in
   the same order (`sampling.py`); arms only add crops or augment them (`arms.py`).
3. Each run picks its own per-class threshold and minimum component area on the validation
   part (`postprocess.py`), then predicts whole test images at native resolution.
4. Arms are compared by per-seed paired differences with a seed-aware interval
   (`metrics.paired_difference`); the `control` arm, the twin of `real`, measures the noise
   floor and the smallest effect the seed count can detect.

Each finished (arm, seed) is saved under a key of everything that changes it (settings, data,
split, the synthetic sets it uses, steps) and reused only under the same key, so an
interrupted evaluation continues where it stopped and a changed one never reuses stale runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

import defectgen
from defectgen import distributed
from defectgen.data import SeverstalDataset, open_dataset
from defectgen.data.dataset import DefectDataset
from defectgen.data.split import Split, stratify
from defectgen.distributed import resolve_bf16
from defectgen.errors import DataError
from defectgen.evaluate import postprocess, quality
from defectgen.evaluate.arms import FILTERED, Arm, parse_arms
from defectgen.evaluate.config import MIN_AREAS, THRESHOLDS, EvalConfig
from defectgen.evaluate.judge import accepts, class_thresholds
from defectgen.evaluate.metrics import (
    PAIRED_METRICS,
    ImageScores,
    contributions,
    minimal_detectable_effect,
    paired_difference,
    seeds_needed,
    summarize,
)
from defectgen.evaluate.sampling import (
    CONTROL_STREAM,
    COPYPASTE_STREAM,
    OVERSAMPLE_STREAM,
    REAL_STREAM,
    ArmSampler,
    Extra,
    Pool,
    classic_augmentation,
    copypaste_pool,
    dataset_pool,
    set_stream,
)
from defectgen.evaluate.segmenter import build_segmenter, probabilities, train_segmenter
from defectgen.fileio import claim_folder, file_digest, write_atomic

FORMAT = "defectgen-eval/2"
COPYPASTE_IMAGES = 1000  # pasted images per seed (made lazily, when a crop first needs one)
TARGET_EFFECT = 0.05  # the effect the mission asks the instrument to see (positive Dice)


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
    synthetic = {name: Path(path) for name, path in (synthetic or {}).items()}
    arms = parse_arms(config.arms, tuple(synthetic))
    used_sets = {name for arm in arms for name in arm.set_names}
    sets = {name: open_synthetic(synthetic[name], dataset) for name in synthetic}
    train_indices = split.indices(dataset, "train")
    test_indices = split.indices(dataset, "test")
    if not test_indices:
        raise DataError(
            "the split's test half is empty: nothing to score; make a split with --test-fraction > 0"
        )
    if not any(dataset.items[i].class_ids for i in test_indices):
        raise DataError(
            "the split's test half has no defect images: positive Dice cannot be scored; make a split "
            "with a larger --test-fraction"
        )
    fit, validation = carve_validation(dataset, train_indices, config.val_fraction, seed=0)
    if not any(dataset.items[i].class_ids for i in validation) or not any(
        dataset.items[i].class_ids for i in fit
    ):
        raise DataError(
            "the training half is too small to hold out a validation part with defects; "
            "use a larger --label-fraction or a larger training half"
        )
    out_dir = Path(out_dir)
    group = (
        distributed.init("cpu", distributed.LONG_WAIT) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    )
    group = group or distributed.Context(rank=0, world_size=1, device=torch.device("cpu"))
    distributed.on_main(group, lambda: _claim_folder(out_dir))
    progress = progress and group.is_main
    use_bf16 = resolve_bf16(config.precision, torch.device("cpu"))
    context = {
        "dataset": dataset.fingerprint(),
        "split": _digest([split.train, split.test]),
        "format": FORMAT,
        "grid": [THRESHOLDS, MIN_AREAS],
    }
    set_prints = {name: _set_fingerprint(synthetic[name]) for name in synthetic}
    ctx = EvalContext(dataset, fit, validation, test_indices, sets, synthetic, config, use_bf16, progress)

    # --- the step count, chosen once on the real arm ---------------------------------------
    selection = None
    steps = config.steps
    if steps is None:

        def select() -> dict:
            key = _key(config, context, "selection")
            chosen = _load_json(out_dir / "runs" / "step_selection.json", key)
            if chosen is None:
                chosen = _select_steps(ctx)
                _save_json(out_dir / "runs" / "step_selection.json", {**chosen, "key": key})
            return chosen

        selection = distributed.on_main(group, select)
        steps = int(selection["chosen"])
    ctx.steps = steps

    # --- every arm, every seed (the judge of filtered sets first) ---------------------------
    judge_seed = config.seeds[0]
    needs_judge = any(s.endswith(FILTERED) for arm in arms for s in arm.sets)
    order = sorted(arms, key=lambda a: (a.name != "real", any(s.endswith(FILTERED) for s in a.sets)))
    if needs_judge and "real" not in [a.name for a in arms]:
        order.insert(0, Arm("real", "real"))
    jobs = [(arm, seed) for arm in order for seed in (config.seeds if arm in arms else [judge_seed])]
    runs_dir = out_dir / "runs"

    def keyed(arm: Arm, seed: int, filters: dict) -> tuple[str, str]:
        """(file stem, key) of one run: the key holds everything that changes it."""
        key = _key(
            config,
            context,
            arm.name,
            steps=steps,
            seed=seed,
            definition=arm.describe(),
            sets={n: set_prints[n] for n in arm.set_names},
            kept={n: filters[n]["kept"] for n in arm.sets if n in filters},
        )
        return f"{arm.name}_s{seed}", key

    def run(arm: Arm, seed: int, filters: dict) -> dict:
        """The (arm, seed) run: from its saved files under the same key, else trained now."""
        name, key = keyed(arm, seed, filters)
        record = _load_json(runs_dir / f"{name}.json", key)
        if record is None or not (runs_dir / f"{name}.npz").exists():
            record = _train_and_score(ctx, arm, seed, filters, runs_dir, name)
            _save_json(runs_dir / f"{name}.json", {**record, "key": key})
        return record

    def filters_for(arm_list, judge: dict | None, filters: dict) -> dict:
        """`filters` with those of the filtered sets `arm_list` uses added (real arm as judge)."""
        for arm in arm_list:
            for name in arm.sets:
                if name.endswith(FILTERED) and name not in filters:
                    filters[name] = _label_filter(
                        ctx, name.removesuffix(FILTERED), judge, out_dir, context, set_prints
                    )
        return filters

    if group.world_size > 1:
        # Under torchrun: the processes share the runs, unfiltered ones first (the judge of the
        # filtered sets is among them), then the filtered ones; rank 0 then gathers them below.
        unfiltered = [(a, s) for a, s in jobs if not any(n.endswith(FILTERED) for n in a.sets)]
        filtered = [(a, s) for a, s in jobs if (a, s) not in unfiltered]

        def judged_filters() -> dict:  # on rank 0, once the judge (real arm, first seed) is saved
            judge = json.loads((runs_dir / f"real_s{judge_seed}.json").read_text())
            return filters_for([arm for arm, _ in filtered], judge, {})

        shared_filters: dict[str, dict] = {}
        for phase in (unfiltered, filtered):
            if phase is filtered and filtered:
                shared_filters = distributed.on_main(group, judged_filters)
            error = None
            try:
                for j, (arm, seed) in enumerate(phase):
                    if j % group.world_size == group.rank:
                        run(arm, seed, shared_filters)
            except Exception as err:  # noqa: BLE001 - the other processes must hear of it
                error = err
            distributed.settle(group, error)

    def gather() -> dict:
        runs: dict[tuple[str, int], dict] = {}
        arrays: dict[tuple[str, int], dict] = {}
        filters: dict[str, dict] = {}
        for arm, seed in jobs:
            filters_for([arm], runs.get(("real", judge_seed)), filters)
            record = run(arm, seed, filters)
            runs[(arm.name, seed)] = {k: v for k, v in record.items() if k != "key"}
            with np.load(runs_dir / f"{arm.name}_s{seed}.npz") as data:
                arrays[(arm.name, seed)] = {k: data[k] for k in data.files}
        return _results(runs, arrays, filters)

    def _results(runs: dict, arrays: dict, filters: dict) -> dict:
        """results.json from every run (written, and returned)."""
        arm_names = [a.name for a in arms]
        judge_record = runs.get(("real", judge_seed))
        quality_results, figures = (
            _quality(ctx, used_sets, checkpoint, out_dir, judge_record)
            if config.quality_samples
            else ({}, {})
        )
        results = {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": _versions(),
            "dataset": dataset.spec,
            "classes": dataset.classes.to_json(),
            "split": {
                "file": str(split_file) if split_file else None,
                "seed": split.seed,
                "test_fraction": split.test_fraction,
                "label_fraction": split.label_fraction,
                "train_images": len(train_indices),
                "fit_images": len(fit),
                "validation_images": len(validation),
                "test_images": len(test_indices),
                "test_images_per_class": {
                    dataset.classes.name(k): sum(1 for i in test_indices if k in dataset.items[i].class_ids)
                    for k in dataset.classes.ids
                },
            },
            "synthetic": {
                name: {
                    "path": str(synthetic[name]),
                    "images": len(sets[name]),
                    "fingerprint": set_prints[name],
                    "mask_source": _synth_params(synthetic[name]).get("mask_source"),
                }
                for name in synthetic
            },
            "config": {
                **asdict(config),
                "steps": steps,
                "loss": "BCE + Dice (multilabel) over valid pixels (synthetic seams ignored), AdamW, "
                "one-cycle LR",
                "std": "sample standard deviation over seeds (ddof 1)",
                "interval": "t over seeds (df S-1); se^2 = per-seed sd^2 / S + test-image se^2",
                "post_processing": {"thresholds": list(THRESHOLDS), "min_areas": list(MIN_AREAS)},
                "training_data": "the fit part of the training half; its validation part chooses steps and "
                "post-processing; the test half only scores",
            },
            "arm_descriptions": {arm.name: arm.describe() for arm in arms},
            "step_selection": None
            if selection is None
            else {k: v for k, v in selection.items() if k != "key"},
            "runs": [runs[(a, s)] for a in arm_names for s in config.seeds],
            "summary": _summary(runs, arm_names, config.seeds, dataset),
            "paired": {
                arm: _paired(arrays, arm, "real", config.seeds)
                for arm in arm_names
                if arm != "real" and "real" in arm_names
            },
            "noise_floor": _noise_floor(arrays, arm_names, config.seeds),
            "claim": _claim(arms, runs, arrays, config.seeds),
            "label_filter": filters,
            "quality": quality_results,
            "figures": figures,
        }
        _save_json(out_dir / "results.json", results)
        return results

    try:
        return distributed.on_main(group, gather)
    finally:
        distributed.shutdown(group)  # leave no process-group threads to the interpreter's exit


class EvalContext:
    """What every run of one evaluation shares: data, its parts, synthetic sets, settings."""

    @classmethod
    def create(
        cls,
        dataset: DefectDataset,
        split: Split,
        config: EvalConfig,
        synthetic: dict[str, Path] | None = None,
    ) -> EvalContext:
        train = split.indices(dataset, "train")
        fit, validation = carve_validation(dataset, train, config.val_fraction, seed=0)
        synthetic = {name: Path(path) for name, path in (synthetic or {}).items()}
        sets = {name: open_synthetic(path, dataset) for name, path in synthetic.items()}
        use_bf16 = resolve_bf16(config.precision, torch.device("cpu"))
        test = split.indices(dataset, "test")
        return cls(dataset, fit, validation, test, sets, synthetic, config, use_bf16, progress=False)

    def __init__(self, dataset, fit, validation, test, sets, synthetic_dirs, config, use_bf16, progress):
        self.dataset, self.fit, self.validation, self.test = dataset, fit, validation, test
        self.sets, self.synthetic_dirs = sets, synthetic_dirs
        self.config, self.use_bf16, self.progress = config, use_bf16, progress
        self.steps = 0

    def model(self, seed: int):
        config = self.config
        weights = Path(config.encoder_weights) if config.encoder_weights else None
        return build_segmenter(
            config.encoder, self.dataset.channels, len(self.dataset.classes), weights, seed=seed
        )


# --- one run -----------------------------------------------------------------------------------


def arm_sampler(ctx: EvalContext, arm: Arm, seed: int, filters: dict | None = None) -> ArmSampler:
    """The batches of `arm` at `seed` (public for tests: pairing is asserted on it)."""
    config, dataset = ctx.config, ctx.dataset
    filters = filters or {}
    batch = config.batch_size
    extra_count = max(1, int(round(batch * config.extra_share)))
    synthetic_count = max(1, int(round(batch * config.synthetic_share)))
    until = int(round(ctx.steps * config.synthetic_until)) if config.synthetic_until < 1 else None
    extras: list[Extra] = []
    if arm.base == "oversample":
        extras.append(
            Extra(dataset_pool(dataset, ctx.fit, defects_only=True), extra_count, OVERSAMPLE_STREAM)
        )
    elif arm.base in ("copypaste", "blendpaste"):  # one stream: the same placements, pasted or blended
        pool = copypaste_pool(dataset, ctx.fit, COPYPASTE_IMAGES, seed, blend=arm.base == "blendpaste")
        extras.append(Extra(pool, extra_count, COPYPASTE_STREAM))
    set_pools = {}
    for name in arm.sets:
        kept = filters[name]["kept_indices"] if name in filters else None
        set_pools[name] = synthetic_pool(ctx, name.removesuffix(FILTERED), kept)
        if arm.base is not None:
            extras.append(Extra(set_pools[name], synthetic_count, set_stream(name), until))
    if arm.base is None:  # NAME-only: the synthetic set replaces the real crops
        real = set_pools[arm.sets[0]]
    else:
        real = dataset_pool(dataset, ctx.fit)
    return ArmSampler(
        real,
        config.crop_size,
        batch,
        config.defect_crop_share,
        seed,
        real_stream=CONTROL_STREAM if arm.base == "control" else REAL_STREAM,
        augment=classic_augmentation(seed) if arm.base == "classic" else None,
        extras=extras,
    )


def synthetic_pool(ctx: EvalContext, name: str, kept: list[int] | None = None) -> Pool:
    """A synthetic set's items; the pixels each painted outside its label are ignored."""
    from defectgen.synth import painted_region, read_manifest

    synthetic, folder = ctx.sets[name], ctx.synthetic_dirs[name]
    manifest = read_manifest(folder)

    def ignore(index, sample):
        record = manifest.get(Path(synthetic.items[index].item_id).stem)
        if record is None:
            return None
        painted = painted_region(folder, record, sample.masks)
        return painted & ~sample.masks.any(axis=0)

    indices = list(range(len(synthetic))) if kept is None else kept
    return dataset_pool(synthetic, indices, ignore=ignore)


def _train_and_score(ctx: EvalContext, arm: Arm, seed: int, filters: dict, runs_dir: Path, name: str) -> dict:
    config, dataset = ctx.config, ctx.dataset
    sampler = arm_sampler(ctx, arm, seed, filters)
    model = ctx.model(seed)
    log = train_segmenter(
        model,
        sampler.batch,
        ctx.steps,
        lr=config.lr,
        use_bf16=ctx.use_bf16,
        description=f"{arm.name} seed {seed}",
        progress=ctx.progress,
    )
    validation = _predict_all(ctx, model, ctx.validation, f"validating {name}")
    params, table = postprocess.choose([p for p, _ in validation], [t for _, t in validation])
    validation_plain = ImageScores(len(dataset.classes))
    for probability, target in validation:
        validation_plain.add(probability > 0.5, target, probability)
    del validation
    scores = ImageScores(len(dataset.classes))
    for index in track(ctx.test, description=f"testing {name}", transient=True, disable=not ctx.progress):
        sample = dataset[index]
        probability = probabilities(model, sample.image, ctx.use_bf16)
        scores.add(postprocess.apply(probability, params), sample.masks, probability)
    runs_dir.mkdir(parents=True, exist_ok=True)
    np.savez(runs_dir / f"{name}.npz", **scores.arrays())
    if arm.name == "real":
        write_atomic(runs_dir / f"{name}.pt", _state_bytes(model))
    used: set[str] = set()
    for pool in [sampler.real, *(e.pool for e in sampler.extras)]:
        used |= pool.used | pool.sources_used
    real_ids = sorted(used & {item.item_id for item in dataset.items})
    return {
        "arm": arm.name,
        "seed": seed,
        "steps": ctx.steps,
        "seconds": log["seconds"],
        "curve": log["curve"],
        "post_processing": {dataset.classes.name(k + 1): table[k] for k in range(len(table))},
        "validation": summarize(validation_plain.arrays(), dataset.classes.names),
        "test": summarize(scores.arrays(), dataset.classes.names),
        "real_items_trained_on": real_ids,
        "segmenter": {
            "encoder": config.encoder,
            "channels": dataset.channels,
            "classes": len(dataset.classes),
        },
    }


def _predict_all(
    ctx: EvalContext, model, indices: list[int], description: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for index in track(indices, description=description, transient=True, disable=not ctx.progress):
        sample = ctx.dataset[index]
        out.append(
            (
                probabilities(model, sample.image, ctx.use_bf16).astype(np.float16).astype(np.float32),
                sample.masks,
            )
        )
    return out


def _state_bytes(model) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


# --- step count --------------------------------------------------------------------------------


def carve_validation(
    dataset: DefectDataset, indices: list[int], fraction: float, seed: int
) -> tuple[list, list]:
    """Deterministic, stratified (fit, validation) parts of the training half."""
    by_id = {dataset.items[i].item_id: i for i in indices}
    rng = np.random.default_rng([seed, 77])
    validation: list[int] = []
    for _key, ids in sorted(stratify([dataset.items[i] for i in indices]).items()):
        ids = list(ids)
        rng.shuffle(ids)
        take = max(1, int(round(len(ids) * fraction))) if len(ids) > 1 else 0
        validation += [by_id[i] for i in ids[:take]]
    chosen = set(validation)
    return [i for i in indices if i not in chosen], sorted(validation)


def _select_steps(ctx: EvalContext) -> dict:
    """Train the real arm (seed 0) for max_steps, validating every eval_every; the chosen step is
    the first within `tolerance` of the best. 'flattened' says whether the curve's last third
    gained less than `tolerance` over the best before it."""
    config, dataset = ctx.config, ctx.dataset
    ctx.steps = config.max_steps
    sampler = arm_sampler(ctx, Arm("real", "real"), 0)
    model = ctx.model(0)
    curve: list[list[float]] = []

    def on_eval(step: int) -> None:
        scores = ImageScores(len(dataset.classes))
        for probability, target in _predict_all(ctx, model, ctx.validation, "validating"):
            scores.add(probability > 0.5, target)
        summary = summarize(scores.arrays(), dataset.classes.names)
        curve.append([step, summary["mean_positive_dice"] or 0.0, summary["kaggle_dice"] or 0.0])

    train_segmenter(
        model,
        sampler.batch,
        config.max_steps,
        lr=config.lr,
        use_bf16=ctx.use_bf16,
        on_eval=on_eval,
        eval_every=config.eval_every,
        description="choosing steps (real arm, validation part)",
        progress=ctx.progress,
    )
    chosen, flattened, late_gain = choose_steps([(p[0], p[1]) for p in curve], config.tolerance)
    best = max(point[1] for point in curve)
    return {
        "arm": "real",
        "curve": curve,
        "curve_columns": ["step", "validation positive Dice (0.5)", "validation class-mean Dice (0.5)"],
        "chosen": int(chosen),
        "flattened": bool(flattened),
        "late_gain": float(late_gain),
        "validation_images": len(ctx.validation),
        "rule": f"first step within {config.tolerance} of the best validation positive Dice ({best:.3f}); "
        f"flattened when the last third of the curve gained less than {config.tolerance}",
    }


def choose_steps(curve: list[tuple[int, float]], tolerance: float) -> tuple[int, bool, float]:
    """(step, validation score) points -> (chosen step, flattened, late gain): the first step
    within `tolerance` of the best score; flattened when the last third of the curve gained
    less than `tolerance` over the best score before it."""
    best = max(score for _, score in curve)
    chosen = next(step for step, score in curve if score >= best - tolerance)
    cut = max(1, len(curve) * 2 // 3)
    before = max(score for _, score in curve[:cut])
    late_gain = max(score for _, score in curve[cut:]) - before if cut < len(curve) else float("nan")
    return int(chosen), bool(late_gain < tolerance), float(late_gain)


# --- label-consistency filter ---------------------------------------------------------------


def _label_filter(
    ctx: EvalContext, name: str, judge: dict, out_dir: Path, context: dict, set_prints: dict
) -> dict:
    """Score every item of set `name` with the real arm's first-seed U-Net and keep the items
    it recognises (the rule: `defectgen.evaluate.judge`)."""
    config, dataset = ctx.config, ctx.dataset
    path = out_dir / "runs" / f"label_scores_{name}.json"
    key = _key(config, context, f"scores_{name}", steps=ctx.steps, sets={name: set_prints[name]})
    cached = _load_json(path, key)
    if cached is None:
        weights = out_dir / "runs" / f"real_s{judge['seed']}.pt"
        model = ctx.model(0)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        scores = quality.label_scores(model, ctx.sets[name], ctx.use_bf16)
        cached = {"scores": [{str(k): v for k, v in s.items()} for s in scores], "key": key}
        _save_json(path, cached)
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


# --- summaries -------------------------------------------------------------------------------


def _summary(runs: dict, arms: list[str], seeds: list[int], dataset) -> dict:
    summary = {}
    for arm in arms:
        tests = [runs[(arm, s)]["test"] for s in seeds]
        entry = {
            key: _mean_std([t[key] for t in tests])
            for key in ("kaggle_dice", "mean_positive_dice", "mean_iou", "fp_rate_defect_free", "mean_auroc")
        }
        for key in ("positive_dice", "auroc"):
            entry[key] = {name: _mean_std([t[key][name] for t in tests]) for name in dataset.classes.names}
        summary[arm] = entry
    return summary


def _paired(arrays: dict, arm: str, base: str, seeds: list[int]) -> dict:
    return {
        metric: paired_difference(
            [contributions(arrays[(arm, s)], metric) for s in seeds],
            [contributions(arrays[(base, s)], metric) for s in seeds],
        )
        for metric in PAIRED_METRICS
    }


def _noise_floor(arrays: dict, arms: list[str], seeds: list[int]) -> dict | None:
    if "control" not in arms or "real" not in arms:
        return None
    paired = _paired(arrays, "control", "real", seeds)["mean_positive_dice"]
    sd, image_se = paired["seed_sd"], paired["image_se"]
    return {
        "arms": ["control", "real"],
        "per_seed_differences": paired["per_seed"],
        "seed_sd": sd,
        "image_se": image_se,
        "minimal_detectable_effect": minimal_detectable_effect(sd, image_se, len(seeds)),
        "seeds": len(seeds),
        "seeds_needed_for": {str(TARGET_EFFECT): seeds_needed(sd, image_se, TARGET_EFFECT)},
        "rule": "two-sided 5 % paired t-test, 80 % power, positive Dice; "
        "control = real with an independent crop stream",
    }


def _claim(arms: list[Arm], runs: dict, arrays: dict, seeds: list[int]) -> dict | None:
    """Best synthetic arm against the best cheap baseline (by mean positive Dice over seeds)."""

    def mean(arm: Arm) -> float:
        values = [runs[(arm.name, s)]["test"]["mean_positive_dice"] for s in seeds]
        return float(np.mean([v for v in values if v is not None] or [float("-inf")]))

    cheap = [a for a in arms if a.is_cheap_baseline]
    stacked = [a for a in arms if a.sets]
    if not cheap or not stacked:
        return None
    best_cheap = max(cheap, key=mean)
    best_synthetic = max(stacked, key=mean)
    paired = _paired(arrays, best_synthetic.name, best_cheap.name, seeds)
    dice, kaggle, fp = (paired[m] for m in PAIRED_METRICS)
    met = (
        dice["difference"] >= TARGET_EFFECT
        and dice["ci95"][0] is not None
        and dice["ci95"][0] > 0
        and kaggle["ci95"][1] >= 0
        and fp["ci95"][0] <= 0
    )
    return {
        "best_cheap_baseline": best_cheap.name,
        "best_synthetic_arm": best_synthetic.name,
        "paired": paired,
        "target": f"positive Dice difference >= +{TARGET_EFFECT} with its 95 % interval above 0; class-mean "
        "Dice not significantly worse (interval reaches 0 or above); FP rate not significantly higher",
        "met": bool(met),
    }


def _quality(
    ctx: EvalContext, used_sets: set, checkpoint, out_dir: Path, judge: dict | None
) -> tuple[dict, dict]:
    """Label fidelity, KID and diversity of each synthetic set (judge: the real arm's first seed)."""
    dataset, config = ctx.dataset, ctx.config
    figures: dict = {}
    results: dict = {}
    figures_dir = out_dir / "figures"
    for base in ("copypaste", "blendpaste"):
        if any(d.startswith(base) for d in config.arms):
            pasted = copypaste_pool(dataset, ctx.fit, 8, seed=0, blend=base == "blendpaste")
            samples = [(e.key, *pasted.get(i)[:2]) for i, e in enumerate(pasted.examples)]
            figures[f"{base}_examples"] = _rel(
                quality.overlay_sheet(samples, figures_dir / f"{base}_examples.png"), out_dir
            )
    model, judge_digest = None, None
    if judge is not None:
        judge_file = out_dir / "runs" / f"real_s{judge['seed']}.pt"
        model = ctx.model(0)
        model.load_state_dict(torch.load(judge_file, map_location="cpu", weights_only=True))
        model.eval()
        judge_digest = file_digest(judge_file)
    real_defects = dataset_pool(dataset, ctx.fit, defects_only=True)
    for name in sorted(used_sets):
        synthetic = ctx.sets[name]
        entry: dict = {"label_fidelity": None, "kid": None, "diversity": None}
        set_figures: dict = {}
        samples = [
            (synthetic.items[i].item_id, *(lambda s: (s.image, s.masks))(synthetic[i]))
            for i in range(min(8, len(synthetic)))
        ]
        set_figures["overlays"] = _rel(
            quality.overlay_sheet(samples, figures_dir / f"{name}_overlays.png"), out_dir
        )
        synthetic_pool_all = dataset_pool(synthetic, list(range(len(synthetic))))
        set_figures["real_vs_synthetic"] = {}
        for class_id in dataset.classes.ids:
            real_k = dataset_pool(dataset, [i for i in ctx.fit if class_id in dataset.items[i].class_ids])
            synth_k = dataset_pool(
                synthetic, [i for i in range(len(synthetic)) if class_id in synthetic.items[i].class_ids]
            )
            if not real_k.examples or not synth_k.examples:
                continue
            class_name = dataset.classes.name(class_id)
            path = quality.crops_sheet(
                [
                    (f"real {class_name}", quality.defect_crops(real_k, 8, config.crop_size, 1)),
                    (f"synthetic {class_name}", quality.defect_crops(synth_k, 8, config.crop_size, 1)),
                ],
                figures_dir / f"{name}_real_vs_synthetic_{class_id}.png",
            )
            set_figures["real_vs_synthetic"][class_name] = _rel(path, out_dir)
        figures[name] = set_figures
        if model is None:
            results[name] = entry
            continue
        if _synth_params(ctx.synthetic_dirs[name]).get("guide_sha256") == judge_digest:
            entry["label_fidelity"] = {
                "not_independent": f"the judge (real arm, seed {judge['seed']}) is the U-Net this set's "
                "generator was trained against (its guide); judge it with an evaluation whose first seed "
                "is another"
            }
            results[name] = entry
            continue
        summary, ranked = quality.label_fidelity(model, synthetic, config.quality_samples, ctx.use_bf16)
        entry["label_fidelity"] = {
            "synthetic": summary,
            "real_test": judge["test"],
            "per_class": quality.fidelity_per_class(summary, judge["test"], config.filter_floor),
            "segmenter": f"real arm, seed {judge['seed']} "
            "(fit part of the training half; never saw the generator)",
        }
        if ranked:
            set_figures["label_fidelity_failures"] = _rel(
                quality.failures_sheet(
                    model,
                    synthetic,
                    ranked[:6],
                    figures_dir / f"{name}_label_fidelity_failures.png",
                    ctx.use_bf16,
                ),
                out_dir,
            )
        if config.inception_weights:
            features = quality.InceptionFeatures(Path(config.inception_weights))
            space = "InceptionV3 (user weights)"
        else:
            features = quality.EncoderFeatures(model)
            space = "domain encoder (real-arm U-Net encoder, trained on the fit part of the training half)"
        count = config.quality_samples
        real_crops = quality.defect_crops(real_defects, count, config.crop_size, seed=2)
        synthetic_crops = quality.defect_crops(synthetic_pool_all, count, config.crop_size, seed=3)
        entry["kid"] = {"feature_space": space, **quality.kid(features, real_crops, synthetic_crops)}
        made_by = _synth_params(ctx.synthetic_dirs[name]).get("checkpoint_sha256")
        if checkpoint is not None and made_by == file_digest(Path(checkpoint)):  # the set it made
            entry["diversity"] = _diversity(
                checkpoint, synthetic, features, config, ctx.use_bf16, real_crops, space
            )
        results[name] = entry
    return results, figures


def _diversity(checkpoint, synthetic, features, config, use_bf16, real_crops, space) -> dict:
    from defectgen.checkpoint import load_generator
    from defectgen.tensors import image_to_tensor

    G, _, _, _ = load_generator(Path(checkpoint))
    size = config.crop_size
    if getattr(G, "is_decoder", False):
        return _decoder_diversity(G, synthetic, features, config, use_bf16, real_crops, space)
    windows = []
    for index in range(min(config.diversity_masks, len(synthetic))):
        sample = synthetic[index]
        ys, xs = np.nonzero(sample.masks.any(axis=0))
        if len(ys) == 0 or sample.image.shape[0] < size or sample.image.shape[1] < size:
            continue
        top = int(np.clip((ys.min() + ys.max()) // 2 - size // 2, 0, sample.image.shape[0] - size))
        left = int(np.clip((xs.min() + xs.max()) // 2 - size // 2, 0, sample.image.shape[1] - size))
        window = (slice(top, top + size), slice(left, left + size))
        masks = sample.masks[:, window[0], window[1]]
        windows.append(
            {
                "image": image_to_tensor(np.ascontiguousarray(sample.image[window]))[None],
                "hole": torch.from_numpy(masks.any(axis=0)[None, None].astype(np.float32)),
                "labels": torch.from_numpy(masks[None].astype(np.float32)),
            }
        )
    generated = quality.diversity(G, features, windows, config.diversity_draws, seed=0, use_bf16=use_bf16)
    return {
        "mean_pairwise_distance": generated,
        "real_pairwise_distance": quality.pairwise_feature_distance(features, real_crops),
        "masks": len(windows),
        "draws": config.diversity_draws,
        "feature_space": space,
        "note": "generated: same mask and background, different draws; real: different real defects",
    }


def _decoder_diversity(G, synthetic, features, config, use_bf16, real_crops, space) -> dict:
    """A decoder's diversity: mean pairwise feature distance between `diversity_draws` crops it
    draws for one class (new z and noise each; the crop centred to the evaluation's crop size),
    for the classes of the first `diversity_masks` synthetic items. Unlike an inpainter's (same
    mask and background), the decoder's draws differ in shape and surface too."""
    size, resolution = config.crop_size, G.resolution
    distances, used = [], 0
    for index in range(min(config.diversity_masks, len(synthetic))):
        present = np.flatnonzero(synthetic[index].masks.any(axis=(1, 2)))
        if not len(present):
            continue
        generator = torch.Generator().manual_seed(index)
        classes = torch.full((config.diversity_draws,), int(present[0]), dtype=torch.long)
        z = G.draw_style(config.diversity_draws, generator)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            output = G(z, classes, generator=generator).float()
        crops = output[:, : G.image_channels].clamp(-1, 1)
        if resolution > size:
            start = (resolution - size) // 2
            crops = crops[:, :, start : start + size, start : start + size]
        elif resolution < size:
            crops = torch.nn.functional.interpolate(
                crops, size=(size, size), mode="bilinear", align_corners=False
            )
        distances.append(float(torch.pdist(features(crops)).mean()))
        used += 1
    return {
        "mean_pairwise_distance": float(np.mean(distances)) if distances else float("nan"),
        "real_pairwise_distance": quality.pairwise_feature_distance(features, real_crops),
        "masks": used,
        "draws": config.diversity_draws,
        "feature_space": space,
        "note": "generated: decoder draws of one class (shape, defect and surface vary); "
        "real: different real defects",
    }


def measure_quality(
    dataset: DefectDataset,
    split: Split,
    eval_dir: Path,
    config: EvalConfig,
    synthetic: dict[str, Path],
    checkpoint: Path | None = None,
    judge_seed: int | None = None,
) -> dict:
    """Label fidelity (per class), KID and diversity of synthetic sets, judged by the `real` run
    of an existing evaluation folder (`judge_seed`, default its lowest), without training any
    arm: how a generator recipe is compared with another. Figures go to EVAL/figures."""
    eval_dir = Path(eval_dir)
    if config.quality_samples < 1:
        raise ValueError(
            f"quality_samples is {config.quality_samples}: there is nothing to measure; "
            "give the number of synthetic images (and crops) to judge, e.g. 200"
        )
    seeds = sorted(int(p.stem.removeprefix("real_s")) for p in eval_dir.glob("runs/real_s*.pt"))
    if not seeds or (judge_seed is not None and judge_seed not in seeds):
        raise DataError(
            f"{eval_dir}: no real-arm U-Net{'' if judge_seed is None else f' of seed {judge_seed}'} to judge "
            "with; run `defectgen evaluate --arms real` into that folder first"
        )
    seed = seeds[0] if judge_seed is None else judge_seed
    judge = json.loads((eval_dir / "runs" / f"real_s{seed}.json").read_text())
    ctx = EvalContext.create(dataset, split, replace(config, arms=["real"]), synthetic)
    results, _ = _quality(ctx, set(synthetic), checkpoint, eval_dir, {**judge, "seed": seed})
    return results


# --- tables ------------------------------------------------------------------------------------

RESULT_COLUMNS = (
    "arm",
    "positive Dice",
    "vs real (95% CI)",
    "per-seed Δ",
    "class-mean Dice",
    "FP rate (defect-free)",
    "AUROC",
)


def result_rows(results: dict) -> list[tuple[str, ...]]:
    """One row of text per arm (see RESULT_COLUMNS): mean ± std over seeds, paired difference."""

    def cell(entry: dict) -> str:
        return "-" if entry["mean"] is None else f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    rows = []
    for arm, entry in results["summary"].items():
        paired = results["paired"].get(arm, {}).get("mean_positive_dice")
        versus, per_seed = "-", "-"
        if paired and paired["ci95"][0] is not None:
            low, high = paired["ci95"]
            versus = f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
            per_seed = " ".join(f"{v:+.2f}" for v in paired["per_seed"])
        rows.append(
            (
                arm,
                cell(entry["mean_positive_dice"]),
                versus,
                per_seed,
                cell(entry["kaggle_dice"]),
                cell(entry["fp_rate_defect_free"]),
                cell(entry["mean_auroc"]),
            )
        )
    return rows


# --- files -------------------------------------------------------------------------------------


def open_synthetic(path: Path, dataset: DefectDataset) -> DefectDataset:
    """A `defectgen synth` output folder (either format) as a dataset with the real classes."""
    if not path.is_dir():
        raise DataError(f"{path}: synthetic folder not found; create it with `defectgen synth`")
    if (path / "train.csv").is_file():
        synthetic = SeverstalDataset(
            path / "train.csv",
            path / "images",
            classes=dataset.classes,
        )
    else:
        synthetic = open_dataset(f"folder:{path}")
    if synthetic.classes != dataset.classes or synthetic.channels != dataset.channels:
        raise DataError(
            f"{path} has classes {list(synthetic.classes.names)} ({synthetic.channels} channel(s)), but "
            f"{dataset.spec} has {list(dataset.classes.names)} ({dataset.channels}); "
            "synthesize for this dataset"
        )
    if not len(synthetic):
        raise DataError(f"{path}: the synthetic set is empty; run `defectgen synth` into it")
    return synthetic


def _claim_folder(out_dir: Path) -> None:
    """Refuse to write into a folder that holds something other than a defectgen evaluation."""
    claim_folder(out_dir, "evaluation", legacy=_is_evaluation)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)


def _is_evaluation(folder: Path) -> bool:
    """An evaluation folder written before folders were marked: its results.json is ours."""
    try:
        fmt = json.loads((folder / "results.json").read_text()).get("format", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(fmt).startswith("defectgen-eval/")


def _set_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for name in ("synth.json", "manifest.jsonl"):
        file = Path(path) / name
        digest.update(file.read_bytes() if file.is_file() else b"-")
    return digest.hexdigest()[:16]


def _mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


# Settings that do not change how one (arm, seed) is trained and scored: a run finished under
# another arm list, seed list or quality setting is reused (so arms can run in parallel
# processes into one folder, then one more call gathers them).
_NOT_IN_RUN_KEY = (
    "arms",
    "seeds",
    "quality_samples",
    "inception_weights",
    "diversity_masks",
    "diversity_draws",
)


def _key(config: EvalConfig, context: dict, name: str, **extra) -> str:
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_RUN_KEY}
    data = json.dumps({**settings, **context, "name": name, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, default=list).encode()).hexdigest()[:16]


def _load_json(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def _save_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def _rel(path: Path, root: Path) -> str:
    return str(Path(path).relative_to(root))


def _synth_params(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "synth.json").read_text())
    except (OSError, ValueError):
        return {}


def _versions() -> dict:
    import segmentation_models_pytorch as smp

    return {
        "defectgen": defectgen.__version__,
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "numpy": np.__version__,
    }
