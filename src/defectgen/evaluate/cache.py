"""The evaluation folder on disk: its ownership mark, the key of each cached run (everything that
changes it), keyed JSON records, and the versions a results file names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import defectgen
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.schema import RESULTS_FILE
from defectgen.fileio import claim_folder, parse_json, write_atomic


def claim_evaluation_folder(out_dir: Path) -> None:
    """Refuse to write into a folder that holds something other than a defectgen evaluation."""
    claim_folder(out_dir, "evaluation", legacy=_is_evaluation)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)


def _is_evaluation(folder: Path) -> bool:
    """An evaluation folder written before folders were marked: its results.json is ours."""
    try:
        fmt = parse_json((folder / RESULTS_FILE).read_text()).get("format", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(fmt).startswith("defectgen-eval/")


# Settings that do not change how one (arm, seed) is trained and scored: a run finished under
# another arm list, seed list or quality setting is reused (so arms can run in parallel
# processes into one folder, then one more call gathers them).
NOT_IN_RUN_KEY = (
    "device",  # where a run trains changes its floats, not what it is (each record says where)
    "arms",
    "seeds",
    "declared_arms",
    "curve",
    "quality_samples",
    "inception_weights",
    "diversity_masks",
    "diversity_draws",
)


def run_key(config: EvalConfig, context: dict, name: str, **extra) -> str:
    """16 hex digits of every setting that changes run `name` (plus `context` and `extra`)."""
    settings = {k: v for k, v in asdict(config).items() if k not in NOT_IN_RUN_KEY}
    data = json.dumps({**settings, **context, "name": name, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def digest(value) -> str:
    """16 hex digits of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, default=list).encode()).hexdigest()[:16]


def load_keyed(path: Path, key: str) -> dict | None:
    """The record saved at `path` under `key`; None when absent, unreadable or of another key."""
    if not path.exists():
        return None
    try:
        data = parse_json(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def save_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def versions() -> dict:
    import segmentation_models_pytorch as smp

    return {
        "defectgen": defectgen.__version__,
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "numpy": np.__version__,
    }
