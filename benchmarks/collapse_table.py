"""Did each generator run collapse? The table of RESULTS.md "Generator collapse: bf16 against fp32".

    .venv/bin/python benchmarks/collapse_table.py bench_runs/prec_g2_bf16 bench_runs/prec_g2_fp32 ...

Per run folder, from its `metrics.jsonl`: whether `gan.health.find_collapse` finds a collapse
(and its onset), the run's level of the value it reads (`gan.health.run_level`: the lowest
median of 12 logs in a row, first fifth and last three logs left out, at least
`gan.health.FLOOR`; hole L1 for an inpainter, the discriminator's loss for a StyleGAN run),
"end" (the smallest of the last three logs over that level: the check warns above 2.5),
"worst" (the largest such 3-log window anywhere past the first fifth), and the median seconds
per step. (Session 15's table divided by the run's median instead; the verdicts are the same.)
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from defectgen.gan.health import FLOOR, TAIL, collapse_key, find_collapse, read_metrics, run_level


def row(run: Path) -> dict:
    records = read_metrics(run / "metrics.jsonl")
    key = collapse_key(records)
    values = [r[key] for r in records if key in r]
    if len(values) < 4 * TAIL:
        return {"run": str(run), "key": key, "logs": len(values), "note": "too short to judge"}
    level = max(run_level(values), FLOOR.get(key, 0.0))
    windows = [min(values[i : i + TAIL]) for i in range(len(values) // 5, len(values) - TAIL + 1)]
    collapse = find_collapse(records)
    return {
        "run": str(run),
        "key": key,
        "collapsed_from": collapse.onset if collapse else None,
        "level": round(level, 3),
        "end": round(min(values[-TAIL:]) / level, 2),
        "worst": round(max(windows) / level, 2),
        "seconds_per_step": round(statistics.median(r["seconds_per_step"] for r in records), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, nargs="+")
    for run in parser.parse_args().runs:
        print(row(run))


if __name__ == "__main__":
    main()
