"""Quality of synthetic sets, judged by the `real` arm's U-Net of an evaluation (its first
seed): label fidelity per class on the same metric as on real test images, KID in a feature
space, diversity of a generator's draws, and the figures that show them (`quality.py` holds
the measurements; this module runs them for an evaluation folder).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from defectgen.data.dataset import DefectDataset
from defectgen.data.split import Split
from defectgen.errors import DataError
from defectgen.evaluate import quality
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.context import EvalContext
from defectgen.evaluate.sampling import copypaste_pool, dataset_pool
from defectgen.fileio import file_digest, parse_json
from defectgen.models.unet import build_segmenter, unet_shape
from defectgen.synthset import read_params


def _rel(path: Path, root: Path) -> str:
    return str(Path(path).relative_to(root))


def set_quality(
    ctx: EvalContext, used_sets: set, checkpoint, out_dir: Path, judge: dict | None
) -> tuple[dict, dict]:
    """Label fidelity, KID and diversity of each synthetic set (judge: the real arm's first seed)."""
    figures = _paste_examples(ctx, out_dir)
    results: dict = {}
    model, judge_digest = _load_judge(ctx, out_dir, judge) if judge is not None else (None, None)
    for name in sorted(used_sets):
        figures[name] = _set_figures(ctx, name, out_dir)
        if model is None:
            results[name] = {"label_fidelity": None, "kid": None, "diversity": None}
        elif read_params(ctx.synthetic_dirs[name]).get("guide_sha256") == judge_digest:
            results[name] = {
                "label_fidelity": {
                    "not_independent": f"the judge (real arm, seed {judge['seed']}) is the U-Net this set's "
                    "generator was trained against (its guide); judge it with an evaluation whose first seed "
                    "is another"
                },
                "kid": None,
                "diversity": None,
            }
        else:
            results[name] = _measure(ctx, name, model, judge, checkpoint, out_dir, figures[name])
    return results, figures


def _paste_examples(ctx: EvalContext, out_dir: Path) -> dict:
    """Sheets of what the copy-paste arms that ran add."""
    figures = {}
    for base in ("copypaste", "blendpaste"):
        if any(d.startswith(base) for d in ctx.config.arms):
            pasted = copypaste_pool(ctx.dataset, ctx.fit, 8, seed=0, blend=base == "blendpaste")
            samples = [(e.key, *pasted.get(i)[:2]) for i, e in enumerate(pasted.examples)]
            path = quality.overlay_sheet(samples, out_dir / "figures" / f"{base}_examples.png")
            figures[f"{base}_examples"] = _rel(path, out_dir)
    return figures


def _load_judge(ctx: EvalContext, out_dir: Path, judge: dict):
    """(the real arm's U-Net of the judge's seed, rebuilt at its own size, its file digest)."""
    judge_file = out_dir / "runs" / f"real_s{judge['seed']}.pt"
    state = torch.load(judge_file, map_location="cpu", weights_only=True)
    depth, widths = unet_shape(state)  # the judge's own size, whatever the config says
    model = build_segmenter(
        ctx.config.encoder, ctx.dataset.channels, len(ctx.dataset.classes), encoder_depth=depth,
        decoder_channels=widths,
    )  # fmt: skip
    model.load_state_dict(state)
    return model.eval(), file_digest(judge_file)


def _set_figures(ctx: EvalContext, name: str, out_dir: Path) -> dict:
    """A set's overlays and, per class, its defect crops beside real ones."""
    dataset, synthetic, figures_dir = ctx.dataset, ctx.sets[name], out_dir / "figures"
    samples = [
        (synthetic.items[i].item_id, *(lambda s: (s.image, s.masks))(synthetic[i]))
        for i in range(min(8, len(synthetic)))
    ]
    figures: dict = {
        "overlays": _rel(quality.overlay_sheet(samples, figures_dir / f"{name}_overlays.png"), out_dir),
        "real_vs_synthetic": {},
    }
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
                (f"real {class_name}", quality.defect_crops(real_k, 8, ctx.config.crop_size, 1)),
                (f"synthetic {class_name}", quality.defect_crops(synth_k, 8, ctx.config.crop_size, 1)),
            ],
            figures_dir / f"{name}_real_vs_synthetic_{class_id}.png",
        )
        figures["real_vs_synthetic"][class_name] = _rel(path, out_dir)
    return figures


def _measure(
    ctx: EvalContext, name: str, model, judge: dict, checkpoint, out_dir: Path, figures: dict
) -> dict:
    """Label fidelity (with a sheet of the worst items), KID and, for the set `checkpoint` made,
    diversity."""
    config, synthetic = ctx.config, ctx.sets[name]
    summary, ranked = quality.label_fidelity(model, synthetic, config.quality_samples, ctx.use_bf16)
    entry: dict = {
        "label_fidelity": {
            "synthetic": summary,
            "real_test": judge["test_plain"],
            "per_class": quality.fidelity_per_class(summary, judge["test_plain"], config.filter_floor),
            "segmenter": f"real arm, seed {judge['seed']} "
            "(fit part of the training half; never saw the generator)",
        },
        "kid": None,
        "diversity": None,
    }
    if ranked:
        path = out_dir / "figures" / f"{name}_label_fidelity_failures.png"
        figures["label_fidelity_failures"] = _rel(
            quality.failures_sheet(model, synthetic, ranked[:6], path, ctx.use_bf16), out_dir
        )
    if config.inception_weights:
        features = quality.InceptionFeatures(Path(config.inception_weights))
        space = "InceptionV3 (user weights)"
    else:
        features = quality.EncoderFeatures(model)
        space = "domain encoder (real-arm U-Net encoder, trained on the fit part of the training half)"
    real_defects = dataset_pool(ctx.dataset, ctx.fit, defects_only=True)
    real_crops = quality.defect_crops(real_defects, config.quality_samples, config.crop_size, seed=2)
    synthetic_pool_all = dataset_pool(synthetic, list(range(len(synthetic))))
    synthetic_crops = quality.defect_crops(
        synthetic_pool_all, config.quality_samples, config.crop_size, seed=3
    )
    entry["kid"] = {"feature_space": space, **quality.kid(features, real_crops, synthetic_crops)}
    made_by = read_params(ctx.synthetic_dirs[name]).get("checkpoint_sha256")
    if checkpoint is not None and made_by == file_digest(Path(checkpoint)):  # the set it made
        entry["diversity"] = _diversity(ctx, checkpoint, synthetic, quality.EncoderFeatures(model))
    return entry


def _diversity(ctx: EvalContext, checkpoint, synthetic, features) -> dict:
    """Per class: how far `diversity_draws` draws for one mask lie apart (windows around the
    class's defects of the first synthetic items that hold it, background and mask fixed), against
    how far real defects of the class in the fit part lie apart (one window per image), in the
    judge's feature space pooled over the defects (`ratio`) and over the whole window
    (`window_ratio`); and how much the hole's pixels move between draws."""
    from defectgen.gan.checkpoint import load_generator

    config = ctx.config
    G, _, _, _ = load_generator(Path(checkpoint))
    per_class = {}
    for class_id, name in enumerate(ctx.dataset.classes.names, start=1):
        real = quality.class_windows(ctx.dataset, class_id, config.crop_size, config.quality_samples, ctx.fit)
        if len(real) < 2:
            per_class[name] = {"measured": False, "why": f"{len(real)} real defect image(s) in the fit part"}
            continue
        images, holes = torch.cat([w["image"] for w in real]), torch.cat([w["hole"] for w in real])
        real_defect = quality.pairwise_feature_distance(features, images, holes)
        real_window = quality.pairwise_feature_distance(features, images)
        if getattr(G, "is_stylegan", False):
            spread, masks = _stylegan_draws(G, class_id, features, config, ctx.use_bf16), None
        else:
            windows = quality.class_windows(synthetic, class_id, config.crop_size, config.diversity_masks)
            if not windows:
                per_class[name] = {"measured": False, "why": "no synthetic item of the class"}
                continue
            spread = quality.diversity(G, features, windows, config.diversity_draws, class_id, ctx.use_bf16)
            masks = len(windows)
        per_class[name] = {
            "measured": True,
            "mean_pairwise_distance": spread.defect,
            "real_pairwise_distance": real_defect,
            "ratio": _ratio(spread.defect, real_defect),
            "window_ratio": _ratio(spread.window, real_window),
            "hole_pixel_change": spread.hole_pixel_change,
            "masks": masks,
            "real_defects": len(real),
        }
    ratios = [row["ratio"] for row in per_class.values() if row.get("ratio") is not None]
    return {
        "per_class": per_class,
        "worst_ratio": min(ratios) if ratios else None,
        "mean_ratio": float(np.mean(ratios)) if ratios else None,
        "draws": config.diversity_draws,
        "feature_space": "domain encoder (real-arm U-Net encoder, trained on the fit part of the training "
        "half), pooled over the defects (ratio) or the whole window (window_ratio)",
        "note": "generated: draws for the same mask and background (only the style code and noise "
        "change); real: different real defects of the class (fit part); hole_pixel_change: mean "
        "|difference| between draws inside the hole, 0..1",
    }


def _ratio(generated: float, real: float) -> float | None:
    return generated / real if real > 0 and np.isfinite(generated) else None


def _stylegan_draws(G, class_id: int, features, config, use_bf16) -> quality.Spread:
    """A StyleGAN generator's diversity for one class: mean pairwise feature distance between
    `diversity_draws` crops it draws for the class (new z and noise each; centred to the
    evaluation's crop size), over `diversity_masks` groups, pooled over each crop's drawn defects
    (any class; the whole crop where it drew none) and over the whole crop. Unlike an
    inpainter's draws (same mask and background), these differ in shape and surface too."""
    from defectgen.models.stylegan import binarised, mask_probability

    size, resolution = config.crop_size, G.resolution
    defect, whole = [], []
    for group in range(config.diversity_masks):
        generator = torch.Generator().manual_seed(class_id * 100_003 + group)
        classes = torch.full((config.diversity_draws,), class_id - 1, dtype=torch.long)
        z = G.draw_style(config.diversity_draws, generator)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            output = G(z, classes, generator=generator).float()
        images = output[:, : G.image_channels].clamp(-1, 1)
        drawn = binarised(mask_probability(output, G.image_channels)).amax(dim=1, keepdim=True)
        if resolution > size:
            start = (resolution - size) // 2
            images = images[:, :, start : start + size, start : start + size]
            drawn = drawn[:, :, start : start + size, start : start + size]
        elif resolution < size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear")
            drawn = torch.nn.functional.interpolate(drawn, size=(size, size), mode="nearest")
        drawn = torch.where(drawn.sum(dim=(1, 2, 3), keepdim=True) > 0, drawn, torch.ones_like(drawn))
        defect.append(float(torch.pdist(features(images, drawn)).mean()))
        whole.append(float(torch.pdist(features(images)).mean()))
    return quality.Spread(float(np.mean(defect)), float(np.mean(whole)), None)


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
    judge = parse_json((eval_dir / "runs" / f"real_s{seed}.json").read_text())
    ctx = EvalContext.create(dataset, split, replace(config, arms=["real"]), synthetic)
    results, _ = set_quality(ctx, set(synthetic), checkpoint, eval_dir, {**judge, "seed": seed})
    return results
