"""results.json: the one file an evaluation writes (`evaluate/run.py`) and the report reads
(`report/load.py`). Its format name and file name, the keys every results file holds, the
parts that may be null (a measurement that was not made), and the rest of its top level."""

from __future__ import annotations

FORMAT = "defectgen-eval/3"
RESULTS_FILE = "results.json"
REQUIRED_KEYS = ("format", "classes", "config", "runs", "summary")
OPTIONAL_OBJECTS = (
    "split",
    "synthetic",
    "arm_descriptions",
    "crops_per_step",
    "learning_curve",
    "post_processing",
    "paired",
    "noise_floor",
    "claim",
    "beside_the_claim",
    "label_filter",
    "quality",
    "figures",
    "versions",
)
OTHER_KEYS = ("created", "dataset")
KEYS = (*REQUIRED_KEYS, *OPTIONAL_OBJECTS, *OTHER_KEYS)
