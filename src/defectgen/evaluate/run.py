"""`defectgen evaluate`: what synthetic data is worth, measured the same way for every arm.

Protocol (DESIGN.md): segmenters identical in everything but their training data are trained
on crops of the split's training half and scored on whole test images at native resolution
with a fixed 0.5 threshold. The number of steps is chosen once, on the `real` arm, from a
validation part carved out of the training half (never the test half): the first evaluation
step whose validation positive Dice is within `tolerance` of the best. Every arm then trains
for that many steps with the same batch size and the same seeds. Each finished (arm, seed) is
saved and not re-run, so an interrupted evaluation continues where it stopped.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import defectgen
from defectgen.data import SeverstalDataset, open_dataset
from defectgen.data.dataset import DefectDataset
from defectgen.data.split import Split, stratify
from defectgen.errors import ConfigError, DataError
from defectgen.evaluate import quality
from defectgen.evaluate.metrics import ImageScores, mean_positive_dice_per_image, paired_bootstrap, summarize
from defectgen.evaluate.sampling import (
    ARMS,
    CropSampler,
    classic_augmentation,
    copypaste_pool,
    dataset_pool,
)
from defectgen.evaluate.segmenter import build_segmenter, predict, train_segmenter
from defectgen.fileio import write_atomic
from defectgen.train import resolve_bf16

FORMAT = "defectgen-eval/1"


@dataclass
class EvalConfig:
    arms: list[str] = field(
        default_factory=lambda: ["real", "oversample", "copypaste", "classic", "synthetic"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int | None = None  # None: chosen on the real arm from the validation part
    max_steps: int = 1500  # step selection: train this long, evaluating every `eval_every`
    eval_every: int = 150
    tolerance: float = 0.02  # step selection: first step within this of the best validation Dice
    val_fraction: float = 0.2
    crop_size: int = 128
    batch_size: int = 8
    lr: float = 1e-3
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    extra_share: float = 0.5  # share of each batch from the extra pool (synthetic / oversample / copy-paste)
    defect_crop_share: float = 0.5  # share of crops centred on a defect
    threshold: float = 0.5
    precision: str = "auto"
    quality_samples: int = 200  # synthetic images for label fidelity; crops for KID
    inception_weights: str | None = None
    diversity_masks: int = 16
    diversity_draws: int = 4

    def validate(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ConfigError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
        if not self.seeds:
            raise ConfigError("--seeds must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.crop_size < 32 or self.crop_size % 32:
            raise ConfigError(f"--size must be a multiple of 32 (U-Net), got {self.crop_size}")
        if self.batch_size < 1 or not 0 <= self.extra_share <= 1 or not 0 <= self.defect_crop_share <= 1:
            raise ConfigError("batch size must be >= 1 and shares in [0, 1]")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must be in (0, 1)")


ARM_DESCRIPTIONS = {
    "real": "the labelled training half only",
    "oversample": "extra share of each batch: the real defect images again",
    "copypaste": "extra share: real defects cut by their masks, pasted onto defect-free training images "
    "at new positions (flipped at random)",
    "classic": "the real data with flips, affine (scale, rotation, shift), brightness/contrast and elastic "
    "transforms on every crop (albumentations); no extra share",
    "synthetic": "extra share of each batch: defectgen's synthetic images",
    "synthetic-only": "only defectgen's synthetic images",
}


def evaluate(
    dataset: DefectDataset,
    split: Split,
    out_dir: Path,
    config: EvalConfig,
    synthetic_dir: Path | None = None,
    checkpoint: Path | None = None,
    split_file: Path | None = None,
    progress: bool = True,
) -> dict:
    config.validate()
    split.check(dataset)
    needs_synthetic = {"synthetic", "synthetic-only"} & set(config.arms)
    if needs_synthetic and synthetic_dir is None:
        raise ConfigError(f"arm(s) {sorted(needs_synthetic)} need --synthetic DIR (from `defectgen synth`)")
    synthetic = open_synthetic(Path(synthetic_dir), dataset) if synthetic_dir else None
    out_dir = Path(out_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    use_bf16 = resolve_bf16(config.precision, torch.device("cpu"))
    train_indices = split.indices(dataset, "train")
    test_indices = split.indices(dataset, "test")
    extra_count = (
        len(synthetic)
        if synthetic is not None
        else max(1, sum(1 for i in train_indices if dataset.items[i].class_ids))
    )

    # --- the step count, chosen once on the real arm ---------------------------------------
    selection = None
    steps = config.steps
    if steps is None:
        selection = _load_json(out_dir / "runs" / "step_selection.json", _config_key(config, "selection"))
        if selection is None:
            selection = _select_steps(dataset, train_indices, config, use_bf16, progress)
            _save_json(
                out_dir / "runs" / "step_selection.json",
                {**selection, "key": _config_key(config, "selection")},
            )
        steps = int(selection["chosen"])

    # --- every arm, every seed ----------------------------------------------------------------
    runs, arrays = [], {}
    for arm in config.arms:
        for seed in config.seeds:
            name = f"{arm}_s{seed}"
            key = _config_key(config, name, steps)
            record = _load_json(out_dir / "runs" / f"{name}.json", key)
            weights_path = out_dir / "runs" / f"{name}.pt"
            if record is None or not (out_dir / "runs" / f"{name}.npz").exists():
                sampler = _sampler(arm, seed, dataset, train_indices, synthetic, extra_count, config)
                model = build_segmenter(
                    config.encoder,
                    dataset.channels,
                    len(dataset.classes),
                    Path(config.encoder_weights) if config.encoder_weights else None,
                )
                log = train_segmenter(
                    model,
                    lambda step, s=sampler: s.batch(step, config.batch_size),
                    steps,
                    lr=config.lr,
                    use_bf16=use_bf16,
                    seed=seed,
                    description=f"{arm} seed {seed}",
                    progress=progress,
                )
                scores = _score(model, dataset, test_indices, config, use_bf16, progress, f"testing {name}")
                np.savez(out_dir / "runs" / f"{name}.npz", **scores.arrays())
                record = {
                    "arm": arm,
                    "seed": seed,
                    "steps": steps,
                    "seconds": log["seconds"],
                    "curve": log["curve"],
                    "test": summarize(scores.arrays(), dataset.classes.names),
                    "key": key,
                }
                if arm == "real" and seed == config.seeds[0]:
                    torch.save(model.state_dict(), weights_path)
                _save_json(out_dir / "runs" / f"{name}.json", record)
            runs.append({k: v for k, v in record.items() if k != "key"})
            with np.load(out_dir / "runs" / f"{name}.npz") as data:
                arrays[(arm, seed)] = {k: data[k] for k in data.files}

    # --- quality of the synthetic data -------------------------------------------------------
    quality_results, figures = _quality(
        dataset, train_indices, synthetic, checkpoint, config, out_dir, use_bf16, extra_count
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
            "test_images": len(test_indices),
            "test_images_per_class": {
                dataset.classes.name(k): sum(1 for i in test_indices if k in dataset.items[i].class_ids)
                for k in dataset.classes.ids
            },
        },
        "synthetic": None
        if synthetic is None
        else {
            "path": str(synthetic_dir),
            "images": len(synthetic),
            "mask_source": _synth_params(synthetic_dir).get("mask_source"),
        },
        "config": {
            **asdict(config),
            "steps": steps,
            "loss": "BCE + Dice (multilabel), AdamW, one-cycle LR",
            "std": "sample standard deviation over seeds (ddof 1)",
            "bootstrap": "2000 resamples of test images, seed 0; 95 % percentile interval",
            "final_training_data": "the whole labelled training half (validation part only for step choice)",
        },
        "arm_descriptions": ARM_DESCRIPTIONS,
        "step_selection": None if selection is None else {k: v for k, v in selection.items() if k != "key"},
        "runs": runs,
        "summary": _summary(runs, config, dataset),
        "paired": _paired(arrays, config),
        "quality": quality_results,
        "figures": figures,
    }
    _save_json(out_dir / "results.json", results)
    return results


# --- pieces ------------------------------------------------------------------------------------


def open_synthetic(path: Path, dataset: DefectDataset) -> DefectDataset:
    """A `defectgen synth` output folder (either format) as a dataset with the real classes."""
    if not path.is_dir():
        raise DataError(f"{path}: synthetic folder not found; create it with `defectgen synth`")
    if (path / "train.csv").is_file():
        synthetic = SeverstalDataset(
            path / "train.csv",
            path / "images",
            classes=dataset.classes,
            image_shape=dataset.image_shape or (256, 1600),
        )
    else:
        synthetic = open_dataset(f"folder:{path}")
    if synthetic.classes != dataset.classes or synthetic.channels != dataset.channels:
        raise DataError(
            f"{path} has classes {list(synthetic.classes.names)} ({synthetic.channels} channel(s)), but "
            f"{dataset.spec} has {list(dataset.classes.names)} ({dataset.channels}); "
            "synthesize for this dataset"
        )
    return synthetic


def _sampler(arm, seed, dataset, train_indices, synthetic, extra_count, config) -> CropSampler:
    main = dataset_pool(dataset, train_indices)
    extra, augment = None, None
    if arm == "oversample":
        extra = dataset_pool(dataset, train_indices, defects_only=True)
    elif arm == "copypaste":
        extra = copypaste_pool(dataset, train_indices, extra_count, seed)
    elif arm == "classic":
        augment = classic_augmentation(seed)
    elif arm in ("synthetic", "synthetic-only"):
        extra = dataset_pool(synthetic, list(range(len(synthetic))))
        if arm == "synthetic-only":
            main = None
    return CropSampler(
        main,
        extra,
        config.crop_size,
        config.extra_share,
        config.defect_crop_share,
        augment=augment,
        seed=seed,
    )


def _score(model, dataset, indices, config, use_bf16, progress, description) -> ImageScores:
    from rich.progress import track

    scores = ImageScores(len(dataset.classes))
    for index in track(indices, description=description, transient=True, disable=not progress):
        sample = dataset[index]
        scores.add(predict(model, sample.image, config.threshold, use_bf16), sample.masks)
    return scores


def carve_validation(
    dataset: DefectDataset, indices: list[int], fraction: float, seed: int
) -> tuple[list, list]:
    """Deterministic, stratified (train, validation) parts of the training half."""
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


def _select_steps(dataset, train_indices, config, use_bf16, progress) -> dict:
    fit, validation = carve_validation(dataset, train_indices, config.val_fraction, seed=0)
    if not any(dataset.items[i].class_ids for i in validation):
        raise DataError(
            "the validation part has no defect image; use a larger --label-fraction or val fraction"
        )
    sampler = CropSampler(
        dataset_pool(dataset, fit), None, config.crop_size, 0.0, config.defect_crop_share, seed=0
    )
    model = build_segmenter(
        config.encoder,
        dataset.channels,
        len(dataset.classes),
        Path(config.encoder_weights) if config.encoder_weights else None,
    )
    curve: list[list[float]] = []

    def on_eval(step: int) -> None:
        scores = _score(model, dataset, validation, config, use_bf16, False, "validating")
        curve.append([step, summarize(scores.arrays(), dataset.classes.names)["mean_positive_dice"] or 0.0])

    train_segmenter(
        model,
        lambda step: sampler.batch(step, config.batch_size),
        config.max_steps,
        lr=config.lr,
        use_bf16=use_bf16,
        seed=0,
        on_eval=on_eval,
        eval_every=config.eval_every,
        description="choosing steps (real arm, validation part)",
        progress=progress,
    )
    best = max(score for _, score in curve)
    chosen = next(step for step, score in curve if score >= best - config.tolerance)
    return {
        "arm": "real",
        "curve": curve,
        "chosen": int(chosen),
        "validation_images": len(validation),
        "rule": f"first step within {config.tolerance} of the best validation positive Dice ({best:.3f})",
    }


def _summary(runs: list[dict], config: EvalConfig, dataset) -> dict:
    summary = {}
    for arm in config.arms:
        tests = [r["test"] for r in runs if r["arm"] == arm]
        entry = {
            key: _mean_std([t[key] for t in tests])
            for key in ("kaggle_dice", "mean_positive_dice", "mean_iou", "fp_rate_defect_free")
        }
        entry["positive_dice"] = {
            name: _mean_std([t["positive_dice"][name] for t in tests]) for name in dataset.classes.names
        }
        summary[arm] = entry
    return summary


def _paired(arrays: dict, config: EvalConfig) -> dict:
    if "real" not in config.arms:
        return {}
    rng = np.random.default_rng(0)
    paired = {}
    for arm in config.arms:
        if arm == "real":
            continue
        dice = paired_bootstrap(
            [mean_positive_dice_per_image(arrays[(arm, s)]) for s in config.seeds],
            [mean_positive_dice_per_image(arrays[("real", s)]) for s in config.seeds],
            rng,
        )
        fp = paired_bootstrap(
            [_fp_per_image(arrays[(arm, s)]) for s in config.seeds],
            [_fp_per_image(arrays[("real", s)]) for s in config.seeds],
            rng,
        )
        kaggle = paired_bootstrap(
            [arrays[(arm, s)]["dice"].mean(axis=1) for s in config.seeds],
            [arrays[("real", s)]["dice"].mean(axis=1) for s in config.seeds],
            rng,
        )
        paired[arm] = {"mean_positive_dice": dice, "fp_rate_defect_free": fp, "kaggle_dice": kaggle}
    return paired


def _fp_per_image(arrays: dict) -> np.ndarray:
    """1.0 where a defect-free image got any predicted pixel, 0.0 where not; NaN for defect images."""
    fp = arrays["predicted"].any(axis=1).astype(np.float64)
    return np.where(arrays["defect_free"], fp, np.nan)


def _quality(dataset, train_indices, synthetic, checkpoint, config, out_dir, use_bf16, extra_count):
    figures: dict = {}
    results = {"label_fidelity": None, "kid": None, "diversity": None}
    figures_dir = out_dir / "figures"
    weights = out_dir / "runs" / f"real_s{config.seeds[0]}.pt"
    real_defects = dataset_pool(dataset, train_indices, defects_only=True)
    if "copypaste" in config.arms:
        pool = copypaste_pool(dataset, train_indices, 8, seed=0)
        samples = [(e.key, *pool.get(i)[:2]) for i, e in enumerate(pool.examples)]
        figures["copypaste_examples"] = _rel(
            quality.overlay_sheet(samples, figures_dir / "copypaste_examples.png"), out_dir
        )
    if synthetic is None:
        return results, figures
    samples = [
        (synthetic.items[i].item_id, *(lambda s: (s.image, s.masks))(synthetic[i]))
        for i in range(min(8, len(synthetic)))
    ]
    figures["synthetic_overlays"] = _rel(
        quality.overlay_sheet(samples, figures_dir / "synthetic_overlays.png"), out_dir
    )
    synthetic_pool = dataset_pool(synthetic, list(range(len(synthetic))))
    figures["real_vs_synthetic"] = {}
    for class_id in dataset.classes.ids:
        real_k = dataset_pool(dataset, [i for i in train_indices if class_id in dataset.items[i].class_ids])
        synth_k = dataset_pool(
            synthetic, [i for i in range(len(synthetic)) if class_id in synthetic.items[i].class_ids]
        )
        if not real_k.examples or not synth_k.examples:
            continue
        name = dataset.classes.name(class_id)
        path = quality.crops_sheet(
            [
                (f"real {name}", quality.defect_crops(real_k, 8, config.crop_size, 1)),
                (f"synthetic {name}", quality.defect_crops(synth_k, 8, config.crop_size, 1)),
            ],
            figures_dir / f"real_vs_synthetic_{class_id}.png",
        )
        figures["real_vs_synthetic"][name] = _rel(path, out_dir)
    if not weights.exists():
        return results, figures  # label fidelity and KID need the real arm's segmenter
    model = build_segmenter(config.encoder, dataset.channels, len(dataset.classes))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    summary, ranked = quality.label_fidelity(model, synthetic, config.quality_samples, use_bf16)
    real_run = json.loads((out_dir / "runs" / f"real_s{config.seeds[0]}.json").read_text())
    results["label_fidelity"] = {
        "synthetic": summary,
        "real_test": real_run["test"],
        "segmenter": f"real arm, seed {config.seeds[0]}",
    }
    if ranked:
        figures["label_fidelity_failures"] = _rel(
            quality.failures_sheet(
                model, synthetic, ranked[:6], figures_dir / "label_fidelity_failures.png", use_bf16
            ),
            out_dir,
        )
    if config.inception_weights:
        features = quality.InceptionFeatures(Path(config.inception_weights))
        space = "InceptionV3 (user weights)"
    else:
        features = quality.EncoderFeatures(model)
        space = "domain encoder (real-arm U-Net encoder, trained on the real training half)"
    count = config.quality_samples
    real_crops = quality.defect_crops(real_defects, count, config.crop_size, seed=2)
    synthetic_crops = quality.defect_crops(synthetic_pool, count, config.crop_size, seed=3)
    results["kid"] = {"feature_space": space, **quality.kid(features, real_crops, synthetic_crops)}
    if checkpoint is not None:
        results["diversity"] = _diversity(
            checkpoint, synthetic, features, config, use_bf16, real_crops, space
        )
    return results, figures


def _diversity(checkpoint, synthetic, features, config, use_bf16, real_crops, space) -> dict:
    from defectgen.checkpoint import load_generator
    from defectgen.tensors import image_to_tensor

    G, _, _, _ = load_generator(Path(checkpoint))
    windows = []
    size = config.crop_size
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


RESULT_COLUMNS = ("arm", "positive Dice", "vs real (95% CI)", "Kaggle Dice", "FP rate (defect-free)")


def result_rows(results: dict) -> list[tuple[str, ...]]:
    """One row of text per arm (see RESULT_COLUMNS): mean ± std over seeds, paired difference."""

    def cell(entry: dict) -> str:
        return "-" if entry["mean"] is None else f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    rows = []
    for arm, entry in results["summary"].items():
        paired = results["paired"].get(arm, {}).get("mean_positive_dice")
        versus = "-"
        if paired and paired["difference"] is not None:
            low, high = paired["ci95"]
            versus = f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        rows.append(
            (
                arm,
                cell(entry["mean_positive_dice"]),
                versus,
                cell(entry["kaggle_dice"]),
                cell(entry["fp_rate_defect_free"]),
            )
        )
    return rows


def _mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


# Settings that do not change how one (arm, seed) is trained and scored: a run finished under
# another arm list, seed count or quality setting is reused (so arms can run in parallel
# processes into one folder, then one more call gathers them).
_NOT_IN_RUN_KEY = (
    "arms",
    "seeds",
    "quality_samples",
    "inception_weights",
    "diversity_masks",
    "diversity_draws",
)


def _config_key(config: EvalConfig, name: str, steps: int | None = None) -> str:
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_RUN_KEY}
    data = json.dumps({**settings, "name": name, "steps_used": steps}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _load_json(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("key") == key else None


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
