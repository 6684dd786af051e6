"""Continue bench_runs/mission's evaluate stage under torchrun, with the code that made it.

    git worktree add /work/exp_tree 8e6aec5   # plus its one-line fix: _generator resumes run.is_dir()
    cd /work/main && PYTHONPATH=/work/exp_tree/src .venv/bin/torchrun --standalone --nproc_per_node 2 \
        benchmarks/mission_continue_8e6aec5.py

Makes exactly the `evaluate` call `defectgen experiment` makes at 8e6aec5 (the session-10
mission folder's generators and sets carry no lineage, so `main` refuses them), with the runs
shared by two processes; the old tree's `defectgen experiment ... --out bench_runs/mission`
afterwards finds every run done and writes the report. Session 11's stopgap, not the product:
a new mission runs with `defectgen experiment` on `main`.
"""

import dataclasses
import json
import os
from pathlib import Path

from defectgen.data import open_dataset
from defectgen.data.split import Split
from defectgen.evaluate import evaluate
from defectgen.experiment import ExperimentConfig

out = Path("bench_runs/mission")
config = ExperimentConfig()
recorded = json.loads((out / "experiment.json").read_text())["config"]
assert recorded == dataclasses.asdict(config), (recorded, dataclasses.asdict(config))
dataset = open_dataset("../shared/data/magnetic_tile")
sets = {}
for g in range(config.generators):
    sets[f"painted_g{g}"] = out / f"painted_g{g}"
    sets[f"harmonized_g{g}"] = out / f"harmonized_g{g}"
split_file = out / "split.json"
evaluate(
    dataset,
    Split.load(split_file),
    out / "eval",
    config.eval_config(),
    synthetic=sets,
    split_file=split_file,
    progress=os.environ.get("RANK", "0") == "0",
)
