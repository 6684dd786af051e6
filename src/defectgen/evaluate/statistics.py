"""Paired comparisons of arms, with intervals that count each source of chance once.

A comparison of arm A with arm B is a table of paired differences d[g, s] = M(A_g,s) - M(B_s):
s is the segmenter seed (both arms start from the same weights and see the same real crops),
g the generator replicate of A's synthetic set (A trained with sets from generators of
different seeds; B, a baseline, has no generator). M is any metric of `scores.PAIRED_METRICS`,
computed on the same test images for every run.

Three sources of chance move d:

- the segmenter seed, and the generator: a crossed two-way random layout without replication
  (generators x seeds). The variance of the grand mean, sigma_G^2/G + sigma_S^2/S +
  sigma_e^2/(GS), is estimated without bias by (MS_G + MS_S - MS_E)/(GS) from the ANOVA mean
  squares; with one generator this is var_s(d)/S and the result says it is conditional on that
  generator;
- the test images: they are shared by every run, so an image effect common to all cells does
  not average out over seeds. It is measured by resampling images (the same bootstrap counts
  for every run, so pairing holds) and taking the *covariance* of the resampled differences of
  two cells that share neither seed nor generator: what they share is the image sample alone.
  The per-image noise of each seed is in the seed term already and is not counted again
  (taking the variance of seed-averaged differences instead would count it twice).

The interval is a t interval whose degrees of freedom come from Satterthwaite's rule over the
terms above, at least 1 (subtracting the pure-error term can push the rule's value below 1,
where the t quantile explodes: at 1/3 df it is 2,579, at 1 df 12.7). `tests/test_statistics.py`
checks by simulation that two equal arms get 93-97 % coverage.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

BOOTSTRAP = 200  # image resamples for the image term
BOOTSTRAP_SEED = 20260  # the same resamples every time: a rerun gives the same interval
POWER = 0.8


def bootstrap_weights(images: int, draws: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[draws, images] multinomial resampling counts (each row sums to `images`)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1.0 / images), size=draws).astype(np.float64)


def _variance_terms(cells: np.ndarray) -> tuple[list[tuple[float, float]], float]:
    """d [G, S] -> ([(coefficient x mean square, df)], variance of the grand mean without the
    image term), from the crossed two-way layout (one generator: the seed variance / S)."""
    generators, seeds = cells.shape
    if generators == 1:
        ms_s = float(np.var(cells[0], ddof=1))
        return [(ms_s / seeds, seeds - 1)], ms_s / seeds
    grand = cells.mean()
    row, column = cells.mean(axis=1), cells.mean(axis=0)
    ms_g = seeds * float(((row - grand) ** 2).sum()) / (generators - 1)
    ms_s = generators * float(((column - grand) ** 2).sum()) / (seeds - 1)
    residual = cells - row[:, None] - column[None, :] + grand
    ms_e = float((residual**2).sum()) / ((generators - 1) * (seeds - 1))
    n = generators * seeds
    terms = [(ms_g / n, generators - 1), (ms_s / n, seeds - 1), (-ms_e / n, (generators - 1) * (seeds - 1))]
    total = sum(value for value, _ in terms)
    floor = ms_e / n  # the variance of a mean cannot be below its pure-error part
    if total < floor:
        return [(floor, (generators - 1) * (seeds - 1))], floor
    return terms, total


def _image_term(replicates: np.ndarray) -> float:
    """Bootstrap differences [B, G, S] -> the variance the shared test images add to the grand
    mean: the mean covariance of two cells with different generator and different seed (with
    one generator: different seed), clamped at 0."""
    draws, generators, seeds = replicates.shape
    flat = replicates.reshape(draws, -1)
    covariance = np.cov(flat, rowvar=False, ddof=1)
    g_index, s_index = np.divmod(np.arange(generators * seeds), seeds)
    apart = (s_index[:, None] != s_index[None, :]) & (
        (g_index[:, None] != g_index[None, :]) if generators > 1 else True
    )
    return max(0.0, float(covariance[apart].mean())) if apart.any() else 0.0


def compare(
    arm_runs: list[list[dict]],
    base_runs: list[dict],
    metric: Callable[[dict, np.ndarray | None], np.ndarray],
    weights: np.ndarray,
) -> dict:
    """arm - baseline of one metric. `arm_runs[g][s]`: per-image arrays of generator g, seed s;
    `base_runs[s]`: the baseline's at seed s, or `base_runs[g][s]`: another recipe's generator
    replicates, paired with the arm's by index (independent generators on both sides, so the
    generator term then holds both recipes' generator variance); `metric(arrays, weights) ->
    [B]`; `weights`: bootstrap counts [B, N] (`bootstrap_weights`)."""
    nested = bool(base_runs) and isinstance(base_runs[0], list | tuple)
    base_grid = base_runs if nested else [base_runs]
    generators, seeds = len(arm_runs), len(base_grid[0])
    if seeds < 2 or any(len(runs) != seeds for runs in [*arm_runs, *base_grid]):
        raise ValueError("compare needs the same two or more seeds for every generator and the baseline")
    if nested and len(base_grid) != generators:
        raise ValueError(
            f"a baseline with generator replicates needs {generators} of them, got {len(base_grid)}"
        )
    base_full = np.array([[metric(run, None)[0] for run in runs] for runs in base_grid])  # [1 or G, S]
    base_boot = np.stack(
        [np.stack([metric(run, weights) for run in runs], axis=1) for runs in base_grid], axis=1
    )
    cells = np.array([[metric(run, None)[0] for run in runs] for runs in arm_runs]) - base_full
    boot = np.stack([np.stack([metric(run, weights) for run in runs], axis=1) for runs in arm_runs], axis=1)
    boot = boot - base_boot  # [B, G, S]
    finite = np.isfinite(boot).all(axis=(1, 2))
    if not np.isfinite(cells).all():
        return _undefined(cells, generators, seeds)
    terms, chance = _variance_terms(cells)
    images = _image_term(boot[finite]) if finite.sum() > 2 else 0.0
    variance = chance + images
    df = _satterthwaite([*terms, (images, max(weights.shape[1] - 1, 1))]) if variance > 0 else seeds - 1
    df = max(df, 1.0)  # Satterthwaite's df falls below 1 when the pure-error term is subtracted
    se = float(np.sqrt(variance))
    half = float(stats.t.ppf(0.975, df) * se)
    estimate = float(cells.mean())
    return {
        "difference": estimate,
        "ci95": [estimate - half, estimate + half],
        "per_seed": [float(v) for v in cells.mean(axis=0)],
        "per_generator": [float(v) for v in cells.mean(axis=1)],
        "cells": cells.tolist(),
        "se": se,
        "chance_variance": float(chance),
        "image_variance": float(images),
        "df": float(df),
        "generators": generators,
        "seeds": seeds,
        "conditional_on_one_generator": generators == 1,
    }


def _undefined(cells: np.ndarray, generators: int, seeds: int) -> dict:
    return {
        "difference": None,
        "ci95": [None, None],
        "per_seed": [None if not np.isfinite(v) else float(v) for v in cells.mean(axis=0)],
        "per_generator": [None if not np.isfinite(v) else float(v) for v in cells.mean(axis=1)],
        "cells": [[None if not np.isfinite(v) else float(v) for v in row] for row in cells],
        "se": None,
        "chance_variance": None,
        "image_variance": None,
        "df": None,
        "generators": generators,
        "seeds": seeds,
        "conditional_on_one_generator": generators == 1,
        "note": "the metric is undefined on this test set for some run (e.g. no defect-free image)",
    }


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    numerator = sum(value for value, _ in terms) ** 2
    denominator = sum(value**2 / df for value, df in terms if df > 0 and value != 0)
    return float(numerator / denominator) if denominator > 0 else float(terms[0][1])


def minimal_detectable_effect(seed_variance: float, image_variance: float, seeds: int) -> float:
    """Smallest true difference that a two-sided 5 % test finds with 80 % power at `seeds`
    seeds (one generator): seed_variance is the variance of one seed's paired difference;
    the image term does not shrink with seeds."""
    if seeds < 2:
        return float("inf")
    seed_part = seed_variance / seeds
    variance = seed_part + image_variance
    df = _satterthwaite([(seed_part, seeds - 1), (image_variance, 10_000)]) if variance > 0 else seeds - 1
    return float((stats.t.ppf(0.975, df) + stats.t.ppf(POWER, df)) * np.sqrt(variance))


def seeds_needed(seed_variance: float, image_variance: float, effect: float, limit: int = 200) -> int | None:
    """Fewest seeds whose minimal detectable effect is <= `effect` (None: not within `limit`;
    the image term alone may already exceed it)."""
    for seeds in range(2, limit + 1):
        if minimal_detectable_effect(seed_variance, image_variance, seeds) <= effect:
            return seeds
    return None


def pooled_noise(comparisons: list[dict]) -> tuple[float, float, int]:
    """(seed variance of one paired difference, image variance, residual df) pooled over the
    one-generator comparisons given: the per-seed residuals of every arm against the same
    baseline, and the mean of their image terms."""
    residual_sum, df, images = 0.0, 0, []
    for entry in comparisons:
        values = np.array([v for v in entry["per_seed"] if v is not None], dtype=np.float64)
        if entry.get("generators", 1) != 1 or len(values) < 2 or entry.get("image_variance") is None:
            continue
        residual_sum += float(((values - values.mean()) ** 2).sum())
        df += len(values) - 1
        images.append(entry["image_variance"])
    if not df:
        return float("nan"), float("nan"), 0
    return residual_sum / df, float(np.mean(images)), df
