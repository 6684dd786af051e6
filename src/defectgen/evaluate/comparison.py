"""From finished runs to the evaluation's verdict: the shared post-processing, per-arm
summaries, paired differences, the noise floor, the declared claim and the other synthetic arms
measured the same way beside it.

`arrays[(arm, seed)]` holds the per-image score arrays of one run on the test half
(`scores.ScoreSheet`), in the same image order for every run; `validation[(arm, seed)]` the same
on the validation part. Nothing here reads a test score to choose anything: the post-processing
comes from the real arm's validation arrays, the claim's arm is declared in the settings.
"""

from __future__ import annotations

import re

import numpy as np

from defectgen.evaluate import postprocess
from defectgen.evaluate.arms import FILTERED, Arm
from defectgen.evaluate.scores import HIGHER_IS_BETTER, PAIRED_METRICS, summarize
from defectgen.evaluate.statistics import (
    bootstrap_weights,
    compare,
    minimal_detectable_effect,
    pooled_noise,
    seeds_needed,
)

HEADLINE = "class_mean_pixel_ap"
TARGET_EFFECT = 0.03  # the effect (class-mean pixel AP) the mission asks the instrument to see
SUMMARY_METRICS = (*PAIRED_METRICS, "class_mean_pixel_auroc")
GENERATOR = re.compile(r"(.+)_g(\d+)")  # a set made by generator N: painted_g0


def mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


class Verdict:
    """Summaries and comparisons of one evaluation's runs (see the module docstring)."""

    def __init__(self, arrays: dict, validation: dict, seeds: list[int], class_names: tuple[str, ...]):
        self.arrays, self.seeds, self.class_names = arrays, list(seeds), class_names
        real_validation = [validation[("real", s)] for s in seeds if ("real", s) in validation]
        self.post_processing, self.post_processing_table = postprocess.choose_pooled(
            real_validation, class_names
        )
        images = len(next(iter(arrays.values()))["target"])
        self.weights = bootstrap_weights(images)

    def run_summary(self, arm: str, seed: int) -> dict:
        """One run's test numbers, Kaggle Dice and FP rate under the shared post-processing."""
        return summarize(self.arrays[(arm, seed)], self.class_names, self.post_processing)

    def summary(self, arms: list[str]) -> dict:
        out = {}
        for arm in arms:
            tests = [self.run_summary(arm, s) for s in self.seeds]
            entry = {key: mean_std([t[key] for t in tests]) for key in SUMMARY_METRICS}
            for key in ("pixel_ap", "positive_dice", "f1_max"):
                entry[key] = {c: mean_std([t[key][c] for t in tests]) for c in self.class_names}
            out[arm] = entry
        return out

    def compare(self, arm_names: list[str], base: str) -> dict:
        """Every paired metric of arm(s) `arm_names` (generator replicates of one recipe) minus
        `base`, by seed."""
        return {
            metric: compare(
                [[self.arrays[(name, s)] for s in self.seeds] for name in arm_names],
                [self.arrays[(base, s)] for s in self.seeds],
                lambda a, w, f=function: f(a, w, self.post_processing),
                self.weights,
            )
            for metric, function in PAIRED_METRICS.items()
        }

    def noise_floor(self, paired: dict, arms: list[str]) -> dict:
        """The smallest effect the evaluation can see, in the headline metric and positive Dice:
        from per-seed residuals pooled over every arm's comparison with `real`, and from the
        `control` twin alone when it ran."""
        seeds = len(self.seeds)
        out: dict = {"seeds": seeds, "metric": HEADLINE, "target_effect": TARGET_EFFECT}
        for metric in (HEADLINE, "positive_dice_plain"):
            seed_var, image_var, df = pooled_noise([paired[a][metric] for a in paired])
            entry = {"arms_pooled": sorted(paired), "residual_df": df}
            if df:
                entry.update(
                    seed_sd=float(np.sqrt(seed_var)),
                    image_se=float(np.sqrt(image_var)),
                    minimal_detectable_effect=minimal_detectable_effect(seed_var, image_var, seeds),
                    seeds_needed_for={
                        str(TARGET_EFFECT): seeds_needed(seed_var, image_var, TARGET_EFFECT),
                        "0.05": seeds_needed(seed_var, image_var, 0.05),
                    },
                )
            if "control" in paired:
                twin = paired["control"][metric]
                values = [v for v in twin["per_seed"] if v is not None]
                if len(values) > 1 and twin["image_variance"] is not None:
                    variance = float(np.var(values, ddof=1))
                    entry["control"] = {
                        "per_seed_differences": values,
                        "minimal_detectable_effect": minimal_detectable_effect(
                            variance, twin["image_variance"], seeds
                        ),
                    }
            out[metric] = entry
        if HEADLINE in out and "minimal_detectable_effect" in out[HEADLINE]:
            out["minimal_detectable_effect"] = out[HEADLINE]["minimal_detectable_effect"]
        out["rule"] = (
            "two-sided 5 % paired t test, 80 % power; per-seed residuals of every arm's difference with "
            "real pooled, plus the shared test images' term (bootstrap covariance across seeds)"
        )
        return out

    def versus_baselines(self, names: list[str], arms: list[Arm]) -> dict:
        """Arm(s) `names` (generator replicates of one recipe, pooled) against every baseline arm
        (no synthetic set; `control` aside), each paired as `compare` pairs them."""
        baselines = [a.name for a in arms if a.is_cheap_baseline]
        versus = {base: self.compare(names, base) for base in baselines}
        effect = [versus[b][HEADLINE]["difference"] for b in baselines]
        return {
            "arms": names,
            "baselines": baselines,
            "versus": versus,
            "every_interval_above_zero": bool(baselines)
            and all((low := versus[b][HEADLINE]["ci95"][0]) is not None and low > 0 for b in baselines),
            "smallest_difference": min((e for e in effect if e is not None), default=None),
        }

    def claim(self, declared: list[Arm], arms: list[Arm], crops: dict[str, int]) -> dict | None:
        """The declared arm against **every** baseline arm: met when every paired interval of
        the headline metric lies above 0 (an intersection-union test) and one baseline gets at
        least as many crops per step."""
        if not declared:
            return None
        names = [a.name for a in declared]
        measured = self.versus_baselines(names, arms)
        baselines = measured["baselines"]
        matched = [b for b in baselines if crops[b] >= crops[names[0]]]
        every, smallest = measured["every_interval_above_zero"], measured["smallest_difference"]
        return {
            "declared_arms": names,
            "generators": len(names),
            "conditional_on_one_generator": len(names) == 1,
            "baselines": baselines,
            "metric": HEADLINE,
            "versus": measured["versus"],
            "crops_per_step": {name: crops[name] for name in [*names, *baselines]},
            "crop_matched_baselines": matched,
            "every_interval_above_zero": every,
            "smallest_difference": smallest,
            "target_effect": TARGET_EFFECT,
            "met": bool(every and matched),
            "meets_target_effect": bool(
                every and matched and smallest is not None and smallest >= TARGET_EFFECT
            ),
            "rule": "declared before the run; beats every baseline: each paired 95 % interval of class-mean "
            "pixel AP above 0 (intersection-union test), at least one baseline with as many crops per step",
        }

    def beside_the_claim(self, declared: list[Arm], arms: list[Arm]) -> dict:
        """Every other arm with a synthetic set against every baseline, keyed by arm name, or by
        recipe when generator replicates are pooled (`recipe`: `real+harmonized_g0` and
        `real+harmonized_g1` -> `real+harmonized_g*`). Measurements, not claims: several recipes
        are shown, so the best of them is not a result (only the declared arm's comparison is)."""
        if not any(a.is_cheap_baseline for a in arms):
            return {}
        groups: dict[str, list[str]] = {}
        for arm in arms:
            if arm.sets and arm not in declared:
                groups.setdefault(recipe(arm) or arm.name, []).append(arm.name)
        return {
            (label if len(names) > 1 else names[0]): self.versus_baselines(names, arms)
            for label, names in groups.items()
        }


def recipe(arm: Arm) -> str | None:
    """The arm's name with its generator number starred, when every set it adds comes from the
    same generator N (set names ending in `_gN`, as `defectgen experiment` names them); else None.
    Arms with the same recipe are replicates of one recipe by different generators."""
    found = [GENERATOR.fullmatch(name) for name in arm.set_names]
    if not found or not all(found) or len({m.group(2) for m in found}) != 1:
        return None
    sets = [
        f"{m.group(1)}_g*{FILTERED if s.endswith(FILTERED) else ''}"
        for m, s in zip(found, arm.sets, strict=True)
    ]
    return f"{sets[0]}-only" if arm.base is None else "+".join([arm.base, *sets])


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER[metric]


def learning_curve(points: list[list[float]] | None) -> dict | None:
    """The real arm's validation curve and whether it is flat. `points`: [step, validation
    class-mean pixel AP, validation positive Dice], each point a run of that many steps on its
    own schedule (step 0: untrained). Flat: the last third of the steps gained under 10 % of the
    total gain (first to last point), in class-mean pixel AP."""
    if not points or len(points) < 3:
        return None if not points else {"points": points, "flat": None, "late_share": None}
    steps = [p[0] for p in points]
    values = [p[1] if p[1] is not None else 0.0 for p in points]
    before = max(v for s, v in zip(steps, values, strict=True) if s <= steps[-1] * 2 / 3)
    total = values[-1] - values[0]
    late = values[-1] - before
    share = late / total if total > 0 else None
    return {
        "columns": ["step", "validation class-mean pixel AP", "validation positive Dice (0.5)"],
        "points": points,
        "late_gain": late,
        "total_gain": total,
        "late_share": share,
        "flat": None if share is None else bool(share < 0.1),
        "rule": "flat when the last third of the steps gained under 10 % of the total gain",
    }
