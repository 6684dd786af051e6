"""Did a finished training run collapse, and which of its checkpoints came before? Read from its
`metrics.jsonl` and `checkpoints/`.

A collapsed inpainter paints the same saturated fill in every hole: the L1 between painted and
real hole pixels jumps to several times what it was for most of the run and stays there (the
mission's generator g0 went from a median 0.26 to 1.08-1.32 in its last 45 steps, while healthy
runs end within 1.3x of their median: RESULTS.md, session 14). A StyleGAN run logs no hole L1;
when its adversarial game diverges, the discriminator's loss leaves its O(1) level for good (a
decoder run of the session-17 mission went from about 1.1 to 10^6 at step 340 and was still at
865 at step 600), so its `loss_d` is read the same way.

The level a value is compared with is the run's best stretch (the lowest median of WINDOW logs
in a row after the start-up), not its median: a divergence that fills most of the run would
otherwise be its median.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

JUMP = 2.5  # the tail must sit this many times above the run's level
TAIL = 3  # logged records at the end of the run
WINDOW = 4 * TAIL  # logs in a row whose median is one stretch's level
METRICS = "metrics.jsonl"
KEYS = ("hole_l1", "loss_d")  # the inpainter's hole L1; else (a StyleGAN run) the discriminator's loss
# The lowest level a key is judged from: a StyleGAN discriminator that wins for a while (its
# logistic loss well under 1) and then settles near the loss of one that cannot tell real from
# fake (2 ln 2) has not diverged.
FLOOR = {"loss_d": 2 * math.log(2)}
WHAT = {
    "hole_l1": ("the hole's L1", "the generator may have collapsed (the same fill in every hole)"),
    "loss_d": ("the discriminator's loss", "the adversarial game may have diverged"),
}


@dataclass(frozen=True)
class Collapse:
    """A run that ended collapsed: the run's `level` of `key` (the lowest median of WINDOW logs
    in a row, the first fifth and the last TAIL logs left out; at least FLOOR), the collapsed stretch's (step,
    value) pairs (`tail`), and `healthy_until`, the last step of the latest TAIL healthy logs in
    a row before it (0: none)."""

    key: str
    level: float
    tail: list[tuple[int, float]]
    healthy_until: int

    @property
    def onset(self) -> int:
        """The first logged step over the line after the run's last healthy stretch."""
        return self.tail[0][0]


def collapse_key(records: list[dict]) -> str:
    """The logged value a collapse shows in: the hole L1 where the run logs one (an inpainter),
    else the discriminator's loss."""
    return next((key for key in KEYS if any(key in record for record in records)), KEYS[-1])


def run_level(values: list[float]) -> float:
    """The level of a run's logged values (at least 4 x TAIL of them): the lowest median of
    WINDOW logs in a row, the first fifth (start-up) and the last TAIL logs left out."""
    body = values[len(values) // 5 : -TAIL]
    window = min(WINDOW, len(body))
    return min(statistics.median(body[i : i + window]) for i in range(len(body) - window + 1))


def find_collapse(records: list[dict], key: str | None = None) -> Collapse | None:
    """The run's collapse, or None: every one of the last TAIL logged values of `key` (default:
    `collapse_key`) is over JUMP times the run's level (see `Collapse`). The collapsed stretch
    reaches back to the latest TAIL values in a row under that line (a single dip under it
    inside the stretch does not end it). A run continued after an interruption is read as it
    now stands: logs of an earlier attempt past the step it resumed from are dropped. Runs with
    fewer than 4 x TAIL records are not judged."""
    key = key or collapse_key(records)
    values = _latest_history(records, key)
    if len(values) < 4 * TAIL:
        return None
    level = max(run_level([v for _, v in values]), FLOOR.get(key, 0.0))
    line = JUMP * level
    if level <= 0 or min(v for _, v in values[-TAIL:]) <= line:
        return None
    healthy = [
        i for i in range(TAIL - 1, len(values)) if all(v <= line for _, v in values[i - TAIL + 1 : i + 1])
    ]
    last_healthy = healthy[-1] if healthy else -1
    start = next(i for i in range(last_healthy + 1, len(values)) if values[i][1] > line)
    healthy_until = values[last_healthy][0] if healthy else 0
    return Collapse(key, level, values[start:], healthy_until)


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


def collapse_warning(records: list[dict], key: str | None = None) -> str | None:
    """A sentence saying the run may have collapsed (`find_collapse`), or None."""
    collapse = find_collapse(records, key)
    if collapse is None:
        return None
    values = [v for _, v in collapse.tail]
    name, meaning = WHAT.get(collapse.key, (collapse.key, "the run may have collapsed"))
    return (
        f"{name} ({collapse.key}) held {collapse.level:.3f} over the run's best stretch and was "
        f"{min(values):.3f}-{max(values):.3f} from step {collapse.onset} to {collapse.tail[-1][0]}: "
        f"{meaning}. Look at the last grid in samples/"
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
            "level": round(collapse.level, 4),
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
