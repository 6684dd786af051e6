"""The noise-floor section: the smallest effect the recorded seeds can see, and the seeds an
effect of the target size needs."""

from __future__ import annotations

from defectgen.report.html import _table
from defectgen.report.values import (
    MISSING,
    NOISE_METRICS,
    PAIRED_METRICS,
    _count,
    _esc,
    _is_number,
    _list_text,
    _na,
    _number,
    _object,
    _per_seed_text,
)


def _noise_floor_section(results: dict) -> str:
    head = '<section id="noise-floor"><h2>Noise floor: the smallest effect this evaluation can see</h2>'
    floor = results.get("noise_floor")
    if not isinstance(floor, dict):
        return (
            head
            + _na(
                "Noise floor: not measured (it needs a real arm and at least one other arm compared with it; "
                "add `control`, real's twin, for a pure-noise estimate)."
            )
            + "</section>"
        )
    seeds = floor.get("seeds")
    target = floor.get("target_effect")
    target_key = _effect_key(target)
    rows, sentences = [], []
    for metric in [*NOISE_METRICS, *(k for k in floor if k not in NOISE_METRICS and k in PAIRED_METRICS)]:
        if metric not in floor:
            continue
        entry = _object(floor.get(metric))
        label = PAIRED_METRICS.get(metric, (metric, True))[0]
        needed = _object(entry.get("seeds_needed_for"))
        effects = [target_key, *(k for k in needed if k != target_key)] if target_key else list(needed)
        control = _object(entry.get("control"))
        pooled = entry.get("arms_pooled")
        values = [
            label,
            f"{_list_text(pooled)} (df {_count(entry.get('residual_df'))})",
            _number(entry.get("seed_sd")),
            _number(entry.get("image_se")),
            _number(entry.get("minimal_detectable_effect")),
            "; ".join(f"{effect}: {_seeds_needed_text(needed.get(effect))}" for effect in effects) or MISSING,
            _per_seed_text(control.get("per_seed_differences")),
            _number(control.get("minimal_detectable_effect")),
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>")
        sentences.append(_noise_sentence(label, entry, seeds, target, target_key))
    table = _table(
        [
            "Metric",
            "Arms pooled (residual df)",
            "Seed sd",
            "Test-image se",
            f"Smallest detectable effect ({_count(seeds)} seeds)",
            "Seeds needed for an effect of",
            "Control − real, per seed",
            "Smallest detectable effect from control alone",
        ],
        rows,
        "Seed sd: of one seed's paired difference, from the per-seed residuals of every arm's difference "
        "with real, pooled; test-image se: the shared test images' term, which more seeds do not shrink. "
        f"{MISSING}: not measurable.",
    )
    return (
        head + "<p>How large must a true difference be before these seeds and test images can see it? "
        "Every arm's paired difference with real varies from seed to seed around its own mean; pooled "
        "over arms, that spread is the training noise. The test images add a term of their own, shared by "
        "every run. The control arm, real's twin (same initial weights and settings, real crops from an "
        "independent stream), differs from real by noise alone and gives a second estimate.</p>"
        f"{table}<p>{' '.join(sentences)}</p>"
        f'<p class="meta">Rule: {_esc(floor.get("rule") or "not recorded")}.</p></section>'
    )


def _effect_key(target: object) -> str | None:
    return str(target) if _is_number(target) else None


def _seeds_needed_text(count: object) -> str:
    if isinstance(count, int) and not isinstance(count, bool):
        return f"{count} seeds"
    return "out of reach"


def _noise_sentence(label: str, entry: dict, seeds: object, target: object, target_key: str | None) -> str:
    mde = entry.get("minimal_detectable_effect")
    if not _is_number(mde):
        return _esc(
            f"In {label} the smallest detectable effect is not measurable here (no residual spread to pool)."
        )
    text = (
        f"With these {_count(seeds)} seeds the smallest true difference in {label} that the evaluation "
        f"detects (two-sided 5 % test, 80 % power) is <strong>{_esc(_number(mde))}</strong>"
    )
    if target_key is not None:
        needed = _object(entry.get("seeds_needed_for")).get(target_key)
        if mde <= target:
            text += f"; the target effect {_esc(_number(target, 2))} is within reach."
        elif isinstance(needed, int) and not isinstance(needed, bool):
            text += f"; the target effect {_esc(_number(target, 2))} would need {needed} seeds."
        else:
            text += (
                f"; the target effect {_esc(_number(target, 2))} is out of reach of any seed count "
                "searched (the test images' term alone is too large)."
            )
    else:
        text += "."
    return text
