"""Did a finished training run collapse? A check read from its `metrics.jsonl`.

A collapsed inpainter paints the same saturated fill in every hole: the L1 between painted and
real hole pixels jumps to several times what it was for most of the run and stays there (the
mission's generator g0 went from a median 0.26 to 1.08-1.32 in its last 45 steps, while healthy
runs end within 1.3x of their median: RESULTS.md, session 14).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

JUMP = 2.5  # the tail must sit this many times above the run's median
TAIL = 3  # logged records at the end of the run


def collapse_warning(records: list[dict], key: str = "hole_l1") -> str | None:
    """A sentence saying the run may have collapsed, or None: every one of the last TAIL logged
    values of `key` is over JUMP times the median of the records before them (the first fifth,
    the start-up, left out). Runs with fewer than 4 x TAIL records are not judged."""
    values = [
        (int(r["step"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    if len(values) < 4 * TAIL:
        return None
    before = [v for _, v in values[len(values) // 5 : -TAIL]]
    median = statistics.median(before)
    tail = values[-TAIL:]
    if median <= 0 or min(v for _, v in tail) <= JUMP * median:
        return None
    first, last = tail[0][0], tail[-1][0]
    return (
        f"the hole's L1 ({key}) was {median:.3f} (median) for most of the run and "
        f"{min(v for _, v in tail):.3f}-{max(v for _, v in tail):.3f} at steps {first}-{last}: the "
        "generator may have collapsed (the same fill in every hole). Look at the last grid in "
        "samples/; an earlier checkpoint in checkpoints/ may be healthier."
    )


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (lines that do not parse are skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records
