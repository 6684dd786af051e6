"""Paired comparisons: intervals with the right coverage, the seed count and noise floor rules,
and the declared claim against every baseline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from defectgen.evaluate.arms import Arm
from defectgen.evaluate.comparison import Verdict, learning_curve
from defectgen.evaluate.scores import ScoreSheet
from defectgen.evaluate.statistics import (
    bootstrap_weights,
    compare,
    minimal_detectable_effect,
    pooled_noise,
    seeds_needed,
)


def _mean(run, weights):
    x = run["x"]
    return np.array([x.mean()]) if weights is None else (weights @ x) / weights.sum(axis=1)


def _coverage(reps, images, seeds, generators, seed_sd, image_tau, noise, rng) -> float:
    """Share of intervals holding 0 for arms whose population difference is 0."""
    weights = bootstrap_weights(images, 100)
    hits = 0
    for _ in range(reps):
        base_image = rng.normal(0, 1, images)
        image_effect = rng.normal(0, image_tau, images)  # per-image differences, mean 0 over images
        generator = rng.normal(0, seed_sd, generators) if generators > 1 else np.zeros(1)
        base = [
            {"x": base_image + rng.normal(0, seed_sd) + rng.normal(0, noise, images)} for _ in range(seeds)
        ]
        arm = [
            [
                {
                    "x": base_image
                    + image_effect
                    + generator[g]
                    + rng.normal(0, seed_sd)
                    + rng.normal(0, noise, images)
                }
                for _ in range(seeds)
            ]
            for g in range(generators)
        ]
        low, high = compare(arm, base, _mean, weights)["ci95"]
        hits += low <= 0 <= high
    return hits / reps


@pytest.mark.parametrize(
    "seeds, generators, seed_sd, image_tau",
    [(5, 1, 0.02, 0.0), (5, 1, 0.0, 0.5), (5, 2, 0.02, 0.2), (2, 2, 0.02, 0.2), (3, 2, 0.02, 0.2)],
    ids=["seed noise only", "image effects only", "two generators", "2 generators x 2 seeds", "2 x 3"],
)
def test_equal_arms_get_95_percent_coverage(seeds, generators, seed_sd, image_tau):
    coverage = _coverage(1000, 150, seeds, generators, seed_sd, image_tau, 0.3, np.random.default_rng(0))
    assert 0.93 <= coverage <= 0.97


def test_a_true_difference_is_found_and_located():
    rng = np.random.default_rng(1)
    base = [{"x": rng.normal(0, 0.3, 200)} for _ in range(6)]
    arm = [[{"x": b["x"] + 0.1 + rng.normal(0, 0.05, 200)} for b in base]]
    result = compare(arm, base, _mean, bootstrap_weights(200))
    assert result["difference"] == pytest.approx(0.1, abs=0.01)
    assert 0 < result["ci95"][0] < 0.1 < result["ci95"][1]
    assert result["conditional_on_one_generator"] is True


def test_one_generator_interval_is_the_seed_t_interval_without_image_effects():
    """Per-image noise that differs by seed is in the seed term already: counted once."""
    rng = np.random.default_rng(2)
    base = [{"x": rng.normal(0, 1, 100)} for _ in range(4)]
    arm = [[{"x": rng.normal(0, 1, 100)} for _ in range(4)]]
    result = compare(arm, base, _mean, bootstrap_weights(100))
    d = np.array(result["per_seed"])
    if result["image_variance"] == 0:
        half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
        assert result["ci95"][1] - result["difference"] == pytest.approx(half)
    assert result["chance_variance"] == pytest.approx(d.var(ddof=1) / 4)


def test_two_generators_count_the_generator_spread():
    """The same seeds, two generators that differ by a constant: the spread between
    generators widens the interval; one generator alone would not see it."""
    rng = np.random.default_rng(3)
    base = [{"x": rng.normal(0, 0.1, 50)} for _ in range(5)]
    noise = [rng.normal(0, 0.01, 50) for _ in range(5)]
    arm = [[{"x": b["x"] + shift + n} for b, n in zip(base, noise, strict=True)] for shift in (0.0, 0.2)]
    weights = bootstrap_weights(50)
    both = compare(arm, base, _mean, weights)
    alone = compare(arm[:1], base, _mean, weights)
    assert both["difference"] == pytest.approx(0.1, abs=0.01)
    assert both["per_generator"] == pytest.approx([0.0, 0.2], abs=0.01)
    assert (both["ci95"][1] - both["ci95"][0]) > 5 * (alone["ci95"][1] - alone["ci95"][0])
    assert both["conditional_on_one_generator"] is False


def test_two_recipes_are_paired_generator_by_generator_and_seed_by_seed():
    """Another recipe's replicates as the baseline: each cell is arm[g][s] - base[g][s] (not
    base[s] of one replicate), so a base generator that differs from its sibling moves only its
    own row, and the generator term sees both recipes' generators."""
    rng = np.random.default_rng(5)
    common = [rng.normal(0, 0.1, 40) for _ in range(3)]
    arm = [[{"x": c + 0.3 + 0.01 * g} for c in common] for g in range(2)]
    base = [[{"x": c + shift} for c in common] for shift in (0.0, 0.1)]
    result = compare(arm, base, _mean, bootstrap_weights(40))
    assert np.array(result["cells"]) == pytest.approx(np.array([[0.3] * 3, [0.21] * 3]))
    assert result["per_generator"] == pytest.approx([0.3, 0.21])
    assert result["difference"] == pytest.approx(0.255)
    with pytest.raises(ValueError, match="needs 2 of them, got 3"):
        compare(arm, [*base, base[0]], _mean, bootstrap_weights(40))


def test_minimal_detectable_effect_and_seed_count():
    assert minimal_detectable_effect(0.05**2, 0.0, 5) == pytest.approx(
        (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * 0.05 / np.sqrt(5)
    )
    assert minimal_detectable_effect(0.05**2, 0.0, 10) < minimal_detectable_effect(0.05**2, 0.0, 5)
    needed = seeds_needed(0.05**2, 0.0, 0.05)
    assert (
        minimal_detectable_effect(0.05**2, 0.0, needed)
        <= 0.05
        < minimal_detectable_effect(0.05**2, 0.0, needed - 1)
    )
    # the seed term shrinks with seeds, the image term does not
    assert seeds_needed(0.05**2, 0.01**2, 0.05) > needed
    assert seeds_needed(0.01, 0.03**2, 0.05) is None  # the image term alone exceeds the effect


def test_pooled_noise_pools_every_arms_residuals():
    entries = [
        {"per_seed": [0.1, 0.2, 0.3], "image_variance": 0.001, "generators": 1},
        {"per_seed": [0.0, 0.0, 0.6], "image_variance": 0.003, "generators": 1},
    ]
    seed_var, image_var, df = pooled_noise(entries)
    assert df == 4
    assert seed_var == pytest.approx((0.02 + 0.24) / 4)
    assert image_var == pytest.approx(0.002)


# --- the claim --------------------------------------------------------------------------------


def _run(rng, quality: float, images: int = 30) -> dict:
    """Score arrays of a model whose probability maps separate defects by `quality`."""
    sheet = ScoreSheet(1)
    for i in range(images):
        target = np.zeros((1, 16, 16), dtype=bool)
        if i % 2:
            target[0, 4:10, 4:10] = True
        probability = np.clip(quality * target + rng.uniform(0, 0.6, (1, 16, 16)), 0, 1).astype(np.float32)
        sheet.add(probability, target)
    return sheet.arrays()


def _verdict(qualities: dict[str, float], seeds=(0, 1, 2, 3)) -> Verdict:
    arrays, validation = {}, {}
    for arm, quality in qualities.items():
        for seed in seeds:
            rng = np.random.default_rng([seed, 99])  # the same noise per seed: paired
            arrays[(arm, seed)] = _run(rng, quality + 0.01 * seed)
            validation[(arm, seed)] = _run(np.random.default_rng([seed, 7]), quality)
    return Verdict(arrays, validation, list(seeds), ("crack",))


ARMS = [
    Arm("real", "real"),
    Arm("oversample", "oversample"),
    Arm("real+gan", "real", ("gan",)),
    Arm("real+other", "real", ("other",)),
]
CROPS = {"real": 8, "oversample": 12, "real+gan": 12, "real+other": 12}


def test_the_claim_is_about_the_declared_arm_not_the_best_on_test():
    verdict = _verdict({"real": 0.2, "oversample": 0.25, "real+gan": 0.35, "real+other": 0.6})
    claim = verdict.claim([ARMS[2]], ARMS, CROPS)
    assert claim["declared_arms"] == ["real+gan"]  # real+other scores higher but was not declared
    assert claim["baselines"] == ["real", "oversample"]
    assert claim["met"] is True
    assert claim["crop_matched_baselines"] == ["oversample"]


def test_the_claim_needs_every_baseline_beaten():
    verdict = _verdict({"real": 0.2, "oversample": 0.45, "real+gan": 0.35, "real+other": 0.1})
    claim = verdict.claim([ARMS[2]], ARMS, CROPS)
    assert claim["versus"]["real"]["class_mean_pixel_ap"]["ci95"][0] > 0  # beats real ...
    assert claim["versus"]["oversample"]["class_mean_pixel_ap"]["difference"] < 0  # ... not oversample
    assert claim["met"] is False and claim["every_interval_above_zero"] is False


def test_the_claim_needs_a_crop_matched_baseline():
    verdict = _verdict({"real": 0.2, "oversample": 0.25, "real+gan": 0.45, "real+other": 0.1})
    claim = verdict.claim([ARMS[2]], ARMS, {**CROPS, "real+gan": 16})
    assert claim["every_interval_above_zero"] is True
    assert claim["crop_matched_baselines"] == [] and claim["met"] is False


def test_other_synthetic_arms_are_measured_against_every_baseline_with_generators_pooled():
    """real+harm_g0 and real+harm_g1 are one recipe from two generators: pooled as the claim pools
    its generators; real+other stands alone; the declared arm and the baselines are not listed."""
    arms = [
        *ARMS[:2],
        Arm("real+gan_g0", "real", ("gan_g0",)),
        Arm("real+harm_g0", "real", ("harm_g0",)),
        Arm("real+harm_g1", "real", ("harm_g1",)),
        Arm("real+other", "real", ("other",)),
    ]
    verdict = _verdict(
        {
            "real": 0.2,
            "oversample": 0.3,
            "real+gan_g0": 0.3,
            "real+harm_g0": 0.5,
            "real+harm_g1": 0.1,
            "real+other": 0.6,
        }  # fmt: skip
    )
    beside = verdict.beside_the_claim([arms[2]], arms)
    assert list(beside) == ["real+harm_g*", "real+other"]
    harm = beside["real+harm_g*"]
    assert harm["arms"] == ["real+harm_g0", "real+harm_g1"] and harm["baselines"] == ["real", "oversample"]
    for base in ("real", "oversample"):
        assert harm["versus"][base] == verdict.compare(["real+harm_g0", "real+harm_g1"], base)
    assert beside["real+other"]["every_interval_above_zero"] is True
    assert harm["every_interval_above_zero"] is False  # generator g1 is worse than real: pooled, no win
    assert verdict.beside_the_claim([arms[2]], [a for a in arms if not a.is_cheap_baseline]) == {}
    alone = verdict.beside_the_claim([arms[3]], arms)  # one harmonised arm left: under its own name
    assert "real+harm_g1" in alone and alone["real+harm_g1"]["arms"] == ["real+harm_g1"]


def test_a_recipe_pools_only_arms_whose_sets_all_come_from_one_generator():
    from defectgen.evaluate.arms import parse_arm
    from defectgen.evaluate.comparison import recipe

    names = ("painted_g0", "painted_g1", "harm_g0", "harm_g1", "tiles", "x_g")
    assert recipe(parse_arm("real+painted_g1", names)) == "real+painted_g*"
    assert recipe(parse_arm("oversample+painted_g0:filtered", names)) == "oversample+painted_g*:filtered"
    assert recipe(parse_arm("painted_g0-only", names)) == "painted_g*-only"
    assert recipe(parse_arm("real+painted_g0+harm_g0", names)) == "real+painted_g*+harm_g*"
    assert recipe(parse_arm("real+painted_g0+harm_g1", names)) is None  # two generators in one arm
    assert recipe(parse_arm("real+painted_g0+tiles", names)) is None
    assert recipe(parse_arm("real+x_g", names)) is None and recipe(parse_arm("real", names)) is None


def test_no_declared_arm_no_claim():
    assert _verdict({"real": 0.2, "real+gan": 0.4}).claim([], ARMS[:1], CROPS) is None


def test_learning_curve_flatness():
    values = [0.1, 0.3, 0.45, 0.49, 0.495, 0.5]
    flat = learning_curve([[250 * (i + 1), v, 0] for i, v in enumerate(values)])
    # the last third (after step 1000) gained 0.01 of the total 0.4
    assert flat["flat"] is True and flat["late_share"] == pytest.approx(0.01 / 0.4)
    rising = learning_curve([[100, 0.1, 0], [200, 0.2, 0], [300, 0.3, 0]])
    assert rising["flat"] is False


def test_the_interval_takes_at_least_one_degree_of_freedom():
    """Two generators x two seeds whose generator, seed and residual mean squares are equal
    (0.04 each): the variance of the mean is (0.04 + 0.04 - 0.04) / 4 = 0.01 and Satterthwaite's
    rule gives 1/3 df, a t quantile of 2,579 (an interval wider than any metric's range). The
    interval takes 1 df: half-width t(1) x 0.1 = 1.2706."""
    g, s, e = [0.1, -0.1], [0.1, -0.1], [[0.1, -0.1], [-0.1, 0.1]]
    base = [{"x": np.zeros(20)} for _ in range(2)]
    arm = [[{"x": np.full(20, g[i] + s[j] + e[i][j])} for j in range(2)] for i in range(2)]
    result = compare(arm, base, _mean, bootstrap_weights(20))
    assert result["image_variance"] == pytest.approx(0, abs=1e-20) and result["se"] == pytest.approx(0.1)
    assert result["df"] == 1.0
    assert result["ci95"] == pytest.approx([-stats.t.ppf(0.975, 1) * 0.1, stats.t.ppf(0.975, 1) * 0.1])
