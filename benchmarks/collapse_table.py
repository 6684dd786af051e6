"""Did each generator run collapse? The table of RESULTS.md "Generator collapse: bf16 against fp32".

    .venv/bin/python benchmarks/collapse_table.py bench_runs/prec_g2_bf16 bench_runs/prec_g2_fp32 ...

Per run folder, from its `metrics.jsonl`: whether `gan.health.find_collapse` finds a collapse
(and its onset), the run's median hole L1 (first fifth and last three logs left out, as the
check takes it), "end" (the smallest of the last three logs over that median: the check warns
above 2.5), "worst" (the largest such 3-log window anywhere past the first fifth), D's hole
accuracy at the last log, and the median seconds per step.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from defectgen.gan.health import TAIL, find_collapse, read_metrics


def row(run: Path) -> dict:
    records = read_metrics(run / "metrics.jsonl")
    values = [r["hole_l1"] for r in records if "hole_l1" in r]
    median = statistics.median(values[len(values) // 5 : -TAIL])
    windows = [min(values[i : i + TAIL]) for i in range(len(values) // 5, len(values) - TAIL + 1)]
    collapse = find_collapse(records)
    return {
        "run": str(run),
        "collapsed_from": collapse.onset if collapse else None,
        "median": round(median, 3),
        "end": round(min(values[-TAIL:]) / median, 2),
        "worst": round(max(windows) / median, 2),
        "d_accuracy_hole": round(records[-1]["d_accuracy_hole"], 2),
        "seconds_per_step": round(statistics.median(r["seconds_per_step"] for r in records), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, nargs="+")
    for run in parser.parse_args().runs:
        print(row(run))


if __name__ == "__main__":
    main()
