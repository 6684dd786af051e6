"""Did a finished training run collapse, and which of its checkpoints came before? Read from its
`metrics.jsonl` and `checkpoints/`.

A collapsed inpainter paints the same saturated fill in every hole: the L1 between painted and
real hole pixels jumps to several times what it was for most of the run and stays there (the
mission's generator g0 went from a median 0.26 to 1.08-1.32 in its last 45 steps, while healthy
runs end within 1.3x of their median: RESULTS.md, session 14).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

JUMP = 2.5  # the tail must sit this many times above the run's median
TAIL = 3  # logged records at the end of the run
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class Collapse:
    """A run that ended collapsed: the `median` of `key` over the run (its first fifth and last
    TAIL logs left out), the collapsed stretch's (step, value) pairs (`tail`), and
    `healthy_until`, the last step of the latest TAIL healthy logs in a row before it (0: none)."""

    key: str
    median: float
    tail: list[tuple[int, float]]
    healthy_until: int

    @property
    def onset(self) -> int:
        """The first logged step over the line after the run's last healthy stretch."""
        return self.tail[0][0]


def find_collapse(records: list[dict], key: str = "hole_l1") -> Collapse | None:
    """The run's collapse, or None: every one of the last TAIL logged values of `key` is over
    JUMP times the median of the values before them (the first fifth, the start-up, left out).
    The collapsed stretch reaches back to the latest TAIL values in a row under that line (a
    single dip under it inside the stretch does not end it). A run continued after an
    interruption is read as it now stands: logs of an earlier attempt past the step it resumed
    from are dropped. Runs with fewer than 4 x TAIL records are not judged."""
    values = _latest_history(records, key)
    if len(values) < 4 * TAIL:
        return None
    median = statistics.median(v for _, v in values[len(values) // 5 : -TAIL])
    line = JUMP * median
    if median <= 0 or min(v for _, v in values[-TAIL:]) <= line:
        return None
    healthy = [
        i for i in range(TAIL - 1, len(values)) if all(v <= line for _, v in values[i - TAIL + 1 : i + 1])
    ]
    last_healthy = healthy[-1] if healthy else -1
    start = next(i for i in range(last_healthy + 1, len(values)) if values[i][1] > line)
    healthy_until = values[last_healthy][0] if healthy else 0
    return Collapse(key, median, values[start:], healthy_until)


def _latest_history(records: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of `key` in log order, finite values only; a step at or before an earlier
    logged one (a resumed run logs again from its checkpoint) drops the earlier logs from it on."""
    values: list[tuple[int, float]] = []
    for record in records:
        step, value = record.get("step"), record.get(key)
        if isinstance(step, bool) or not isinstance(step, int) or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            continue
        try:
            value = float(value)
        except OverflowError:
            continue
        if not math.isfinite(value):
            continue
        while values and values[-1][0] >= step:
            values.pop()
        values.append((step, value))
    return values


def collapse_warning(records: list[dict], key: str = "hole_l1") -> str | None:
    """A sentence saying the run may have collapsed (`find_collapse`), or None."""
    collapse = find_collapse(records, key)
    if collapse is None:
        return None
    values = [v for _, v in collapse.tail]
    return (
        f"the hole's L1 ({key}) had a median of {collapse.median:.3f} over the run and was "
        f"{min(values):.3f}-{max(values):.3f} from step {collapse.onset} to {collapse.tail[-1][0]}: "
        "the generator may have collapsed (the same fill in every hole). Look at the last grid in samples/"
    )


def run_warning(run_dir: Path) -> str | None:
    """`collapse_warning` of the run in `run_dir`, naming the checkpoint to paint with instead
    (`healthy_checkpoint`); None when the run did not collapse (or logged nothing)."""
    metrics = Path(run_dir) / METRICS
    warning = collapse_warning(read_metrics(metrics)) if metrics.is_file() else None
    if warning is None:
        return None
    collapse = healthy_checkpoint(run_dir)[1]["collapse"]
    if collapse is None:
        return warning
    if collapse["healthy_checkpoint"]:
        chosen = collapse["healthy_checkpoint"]
        return f"{warning}; checkpoints/{chosen} was written before it: paint with that one"
    return f"{warning}; no checkpoint from before it is kept (write them more often: `checkpoint_every`)"


def healthy_checkpoint(run_dir: Path) -> tuple[Path, dict]:
    """The checkpoint of the `defectgen train` run in `run_dir` to paint with, and a record of the
    choice: `last.pt` when the run did not collapse; else the newest `step_*.pt` written at or
    before the collapse's last healthy log; else (none kept from before) `last.pt`, with
    `record["collapse"]["healthy_checkpoint"]` None.

    The choice reads only the run's own training log, never a validation or test image."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    metrics = run_dir / METRICS
    collapse = find_collapse(read_metrics(metrics)) if metrics.is_file() else None
    if collapse is None:
        return last, {"checkpoint": last.name, "collapse": None}
    earlier = [(step, path) for step, path in _step_checkpoints(run_dir) if step <= collapse.healthy_until]
    chosen = max(earlier)[1] if earlier else last
    record = {
        "checkpoint": chosen.name,
        "collapse": {
            "key": collapse.key,
            "median": round(collapse.median, 4),
            "onset_step": collapse.onset,
            "tail": [[step, round(value, 4)] for step, value in collapse.tail],
            "healthy_checkpoint": chosen.name if earlier else None,
        },
    }
    return chosen, record


def _step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of each `checkpoints/step_NNNNNNN.pt`."""
    found = []
    for path in (run_dir / "checkpoints").glob("step_*.pt"):
        match = re.fullmatch(r"step_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


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
