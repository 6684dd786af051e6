"""What the report reads from results.json and how it writes numbers: accessors and formatting
shared by every section."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

from defectgen.evaluate.arms import BASES

HEADLINE = "class_mean_pixel_ap"


# Every metric arms are compared on: (label, higher is better).
PAIRED_METRICS = {
    HEADLINE: ("class-mean pixel AP", True),
    "class_mean_f1_max": ("class-mean F1-max", True),
    "positive_dice_plain": ("positive Dice (0.5)", True),
    "kaggle_dice": ("class-mean (Kaggle) Dice, post-processed", True),
    "fp_rate_defect_free": ("FP rate on defect-free images, post-processed", False),
}


NOISE_METRICS = (HEADLINE, "positive_dice_plain")


NOT_FLAT = (
    "The real arm's validation curve (class-mean pixel AP) was still rising in the last third of its "
    "steps: the training budget did not reach a flat curve, so longer training could change every "
    "number in this report."
)


# Last resort only: results.json records each arm's description in "arm_descriptions".
BASE_DESCRIPTIONS = BASES  # the arm registry's own words (results written before a description existed)


MISSING = "—"


def _run_crops(results: dict, arm: str) -> object:
    """An arm's crops per step from its runs, when the top-level record lacks it."""
    values = {
        run["crops_per_step"]
        for run in _runs_of(results, arm)
        if isinstance(run.get("crops_per_step"), int) and not isinstance(run.get("crops_per_step"), bool)
    }
    return values.pop() if len(values) == 1 else None


def _arms(results: dict) -> list[str]:
    """The arms as the evaluation named them (arm_descriptions, summary, runs), then any configured
    arm not among them ('tiles' is the arm 'real+tiles')."""
    arms: list[str] = []
    for arm in [
        *_object(results.get("arm_descriptions")),
        *results["summary"],
        *(run.get("arm") for run in results["runs"]),
    ]:
        if arm is not None and str(arm) not in arms:
            arms.append(str(arm))
    configured = results["config"].get("arms")
    for arm in configured if isinstance(configured, list) else []:
        if str(arm) not in arms and f"real+{arm}" not in arms:
            arms.append(str(arm))
    return arms


def _names(values: object) -> list[str]:
    return [str(v) for v in values] if isinstance(values, list) else []


def _class_names(results: dict) -> list[str]:
    return [str(c["name"]) for c in results["classes"]]


def _runs_of(results: dict, arm: str) -> list[dict]:
    return [run for run in results["runs"] if str(run.get("arm")) == arm]


def _summary_of(results: dict, arm: str) -> dict:
    return _object(results["summary"].get(arm))


def _arm_description(results: dict, arm: str) -> str:
    recorded = _object(results.get("arm_descriptions")).get(arm)
    if recorded:
        return str(recorded)
    if arm.endswith("-only"):
        return f"synthetic crops of set '{arm.removesuffix('-only')}' only (last-resort description)"
    base, *sets = arm.split("+")
    if base in BASE_DESCRIPTIONS:
        added = "".join(f" + extra crops from synthetic set '{s}'" for s in sets)
        return f"{BASE_DESCRIPTIONS[base]}{added} (description not recorded)"
    return "(no description recorded)"


def _points(points: object, numbers: int = 2) -> list[tuple[float, ...]]:
    """[[step, value, ...], ...] -> tuples of at least two values whose first `numbers` are finite
    numbers; malformed points are dropped and a non-numeric later value becomes NaN (not drawn)."""
    if not isinstance(points, list):
        return []
    return [
        tuple(_float_or_nan(v) for v in p)
        for p in points
        if isinstance(p, list | tuple) and len(p) >= 2 and all(_is_number(v) for v in p[:numbers])
    ]


def _interval(entry: dict) -> tuple[object, object]:
    ci = entry.get("ci95")
    if isinstance(ci, list) and len(ci) >= 2:
        return ci[0], ci[1]
    return None, None


def _per_seed_text(values: object) -> str:
    if not isinstance(values, list) or not values:
        return MISSING
    return ", ".join(_number(v, signed=True) for v in values)


def _list_text(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else MISSING


def _object(value: object) -> dict:
    """A JSON object, or {} for null / anything else (the section then says 'not measured')."""
    return value if isinstance(value, dict) else {}


def _sorted(values: Iterable) -> list:
    """Sorted for display; mixed types (a hand-edited file) sort by their text."""
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float_or_nan(value: object) -> float:
    return float(value) if _is_number(value) else math.nan


def _number(value: object, digits: int = 3, signed: bool = False) -> str:
    if not _is_number(value):
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _percent(value: object) -> str:
    return f"{100 * value:.0f} %" if _is_number(value) else "an unrecorded share"


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def _mean_and_std(stat: object) -> tuple[float, float]:
    if not isinstance(stat, dict):
        return math.nan, 0.0
    std = stat.get("std")
    return _float_or_nan(stat.get("mean")), max(0.0, float(std)) if _is_number(std) else 0.0


def _mean_std(stat: object, seeds: int) -> str:
    """{"mean", "std"} -> '0.412 ± 0.031'; the ± part only when there is a spread to show."""
    if not isinstance(stat, dict):
        return _number(stat)
    mean, std = stat.get("mean"), stat.get("std")
    if not _is_number(mean):
        return MISSING
    if seeds > 1 and _is_number(std):
        return f"{mean:.3f} ± {std:.3f}"
    return f"{mean:.3f}"


def _na(text: str) -> str:
    """A visible 'not measured / not available' note (text is escaped here)."""
    return f'<p class="na">{_esc(text)}</p>'


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _plain(value: object) -> str:
    """A string for a matplotlib label: '$' would otherwise start mathtext."""
    return str(value).replace("$", r"\$")
