"""What an artifact was made from, and the refusal when that reaches the test half.

Every artifact that can carry real images into a segmenter's training — a generator checkpoint,
a synthetic set, a studio folder — records a *lineage*:

- `dataset_fingerprint`: the dataset's content fingerprint (`DefectDataset.fingerprint`);
- `split_digest`: which split of it (`Split.digest`);
- `read`: the ids of every item it could read (a split's training part: the generator's
  crops, the backgrounds, the mask bank's shapes, the pasted defects all come from there);
- for a synthetic set, `generator` and (learned masks) `mask_generator`: the checkpoints'
  own lineages.

A consumer checks a lineage against its own dataset and split (`check_lineage`): another
dataset, or any item read from its test half, is refused in one line that says what to do.
Evaluation also counts the items of its validation part a set read: such a set may be
measured, but not declared for the claim.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from defectgen.data.dataset import DefectDataset, Item
from defectgen.data.split import Split
from defectgen.errors import DataError


def lineage(split: Split, read: Iterable[str], **parents: dict | None) -> dict:
    """The lineage of an artifact made with `split` that read the items `read`; `parents` are
    the lineages of the artifacts it was made with (None entries are left out)."""
    record = {
        "dataset_fingerprint": split.fingerprint,
        "split_digest": split.digest(),
        "read": sorted(set(read)),
    }
    record.update({name: parent for name, parent in parents.items() if parent is not None})
    return record


def read_items(record: dict) -> set[str]:
    """Every item id a lineage (and the lineages it names) read."""
    read = record.get("read") or []
    if not isinstance(read, list):
        raise DataError(f"a lineage's `read` is {type(read).__name__}, not a list of item ids")
    items = {str(i) for i in read}
    for value in record.values():
        if isinstance(value, dict):
            items |= read_items(value)
    return items


def check_lineage(
    record: object, what: str, dataset: DefectDataset, split: Split, fix: str, needs: tuple[str, ...] = ()
) -> None:
    """Refuse the artifact `what` (a path and its kind, for the message) unless its lineage
    `record` is complete (with the parent lineages `needs` names), is for `dataset` and read
    nothing of `split`'s test half. `fix`: what to do."""
    if not isinstance(record, dict) or not {"dataset_fingerprint", "split_digest", "read"} <= set(record):
        raise DataError(f"{what} does not record what it was made from (an older defectgen wrote it): {fix}")
    missing = [name for name in needs if not isinstance(record.get(name), dict)]
    if missing:
        raise DataError(f"{what} does not record its {missing[0]}'s lineage: {fix}")
    fingerprints = _fingerprints(record)
    if fingerprints != {dataset.fingerprint()}:
        raise DataError(
            f"{what} was made from another dataset (or another version of its files) than "
            f"{dataset.spec}: {fix}"
        )
    leaked = sorted(read_items(record) & set(split.test))
    if leaked:
        raise DataError(
            f"{what} was made from {len(leaked)} image(s) of this split's test half (first: {leaked[0]}), "
            f"so the test images would reach training: {fix}"
        )


def _fingerprints(record: dict) -> set[str]:
    found = {str(record.get("dataset_fingerprint"))}
    for value in record.values():
        if isinstance(value, dict) and "dataset_fingerprint" in value:
            found |= _fingerprints(value)
    return found


class DatasetCopies:
    """Finds byte-identical copies of a dataset's image (or mask) files among outside files (a
    `--backgrounds` folder, a studio upload, a synthetic set, a mask folder): candidates by file
    size, confirmed by SHA-256, so a folder of thousands is checked in seconds. A re-encoded
    copy (other bytes, same pixels) is not found."""

    def __init__(self, dataset: DefectDataset, files: str = "image_path"):
        """`files`: which file of each item to look for ("image_path" or "mask_path")."""
        self.dataset, self.files = dataset, files
        self._by_size: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(dataset.items):
            path = getattr(item, files)
            if path is not None:
                try:
                    self._by_size[path.stat().st_size].append(index)
                except OSError:
                    continue
        self._digests: dict[int, str] = {}

    def find(self, data: bytes) -> list[int]:
        """Indices of the dataset items whose image file holds exactly `data`."""
        candidates = self._by_size.get(len(data), [])
        if not candidates:
            return []
        digest = hashlib.sha256(data).hexdigest()
        return [i for i in candidates if self._digest(i) == digest]

    def find_file(self, path: Path) -> list[int]:
        try:
            if Path(path).stat().st_size not in self._by_size:
                return []
            return self.find(Path(path).read_bytes())
        except OSError:
            return []  # unreadable: the image reader says so when it is used

    def _digest(self, index: int) -> str:
        if index not in self._digests:
            try:
                data = getattr(self.dataset.items[index], self.files).read_bytes()
            except OSError:
                data = b""
            self._digests[index] = hashlib.sha256(data).hexdigest()
        return self._digests[index]


def copies_in(files: list[Path], dataset: DefectDataset, kind: str = "image_path") -> dict[Path, list[Item]]:
    """Each of `files` -> the dataset items whose image (`kind` "image_path") or mask
    ("mask_path") it is a byte copy of; an empty mask (a defect-free item's) is no label."""
    copies = DatasetCopies(dataset, kind)
    found = {}
    for path in files:
        items = [dataset.items[i] for i in copies.find_file(path)]
        found[path] = [item for item in items if kind == "image_path" or item.class_ids]
    return found


def refuse_test_copies(files: list[Path], dataset: DefectDataset, split: Split, what: str, kind: str) -> None:
    """Refuse when any of `files` is a byte copy of a test-half item's image (`kind` "image_path")
    or mask (`kind` "mask_path"): the test item would reach training through it."""
    test = set(split.test)
    for path, items in copies_in(files, dataset, kind).items():
        leaked = [item.item_id for item in items if item.item_id in test]
        if leaked:
            noun = "image" if kind == "image_path" else "mask"
            raise DataError(
                f"{what}: {path.name} is a copy of the {noun} of {leaked[0]}, of this split's test half, "
                "so the test item would reach training: remove it"
            )
