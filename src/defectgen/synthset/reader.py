"""Reading a synthetic set: its parameters, its manifest, what each item painted, which real
items it was made from, and the set as a dataset with the real classes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from defectgen.data import SeverstalDataset, open_dataset
from defectgen.data.dataset import DefectDataset
from defectgen.data.rle import decode
from defectgen.errors import DataError
from defectgen.fileio import parse_json, read_text
from defectgen.geometry import hole_of

PARAMS_FILE = "synth.json"
MANIFEST = "manifest.jsonl"


def is_synthset(path: Path) -> bool:
    """Does `path` hold a synthetic set's parameters and manifest?"""
    return (Path(path) / MANIFEST).is_file() and (Path(path) / PARAMS_FILE).is_file()


def read_params(path: Path) -> dict:
    """A synthetic set's synth.json ({} when absent, unreadable or not a mapping)."""
    try:
        params = parse_json((Path(path) / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return params if isinstance(params, dict) else {}


def read_records(path: Path) -> dict[int, dict]:
    """The manifest's records keyed by item index; {} without a manifest. A line cut by a kill
    is skipped (that item is made again)."""
    manifest = Path(path) / MANIFEST
    records: dict[int, dict] = {}
    if not manifest.exists():
        return records
    for line in read_text(manifest, "manifest").splitlines():
        try:
            record = parse_json(line)
            records[int(record["index"])] = record
        except (ValueError, KeyError, TypeError):  # cut by a kill, or not a record
            continue
    return records


def read_manifest(path: Path) -> dict[str, dict]:
    """The manifest's records keyed by image file stem ("synth_000003")."""
    return {Path(record["image"]).stem: record for record in read_records(Path(path)).values()}


def painted_region(path: Path, record: dict, masks: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pixels synthesis painted for `record` (a manifest record; `masks` is the
    item's labels, bool [K, H, W]). Read from the record's `painted` field; a record without it
    gets the hole recomputed from synth.json's `hole_dilation`, as synthesis built it."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"painted_region expects masks [K, H, W], got shape {masks.shape}")
    shape = masks.shape[1:]
    if "painted" in record:
        return decode(record["painted"], shape)
    params_path = Path(path) / PARAMS_FILE
    try:
        radius = int(parse_json(params_path.read_text())["hole_dilation"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{params_path}: cannot read hole_dilation ({err}); is {path} a `defectgen synth` folder?"
        ) from err
    return hole_of(masks, radius)[0] > 0


def set_sources(path: Path) -> set[str]:
    """The real items a synthetic set names as its sources: the backgrounds it was painted on
    and the real defects it pasted (harmonize)."""
    sources: set[str] = set()
    for record in read_records(path).values():
        sources.add(str(record.get("background")).removeprefix("train:"))  # the studio's keys
        for defect in record.get("defects") or []:
            if isinstance(defect, dict) and isinstance(defect.get("source"), str):
                sources.add(defect["source"])
    return sources


def set_fingerprint(path: Path) -> str:
    """16 hex digits that change whenever the set's parameters or manifest do."""
    digest = hashlib.sha256()
    for name in (PARAMS_FILE, MANIFEST):
        file = Path(path) / name
        digest.update(file.read_bytes() if file.is_file() else b"-")
    return digest.hexdigest()[:16]


def open_synthetic(path: Path, dataset: DefectDataset) -> DefectDataset:
    """A synthetic set (either format) as a dataset with `dataset`'s classes."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: synthetic folder not found; create it with `defectgen synth`")
    if (path / "train.csv").is_file():
        synthetic = SeverstalDataset(path / "train.csv", path / "images", classes=dataset.classes)
    else:
        synthetic = open_dataset(f"folder:{path}")
    if synthetic.classes != dataset.classes or synthetic.channels != dataset.channels:
        raise DataError(
            f"{path} has classes {list(synthetic.classes.names)} ({synthetic.channels} channel(s)), but "
            f"{dataset.spec} has {list(dataset.classes.names)} ({dataset.channels}); "
            "synthesize for this dataset"
        )
    if not len(synthetic):
        raise DataError(f"{path}: the synthetic set is empty; run `defectgen synth` into it")
    return synthetic
