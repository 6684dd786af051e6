"""Deterministic, stratified train/test splits, written to disk.

The split file is what every later command takes (`--split split.json`), so the generator
and the segmenters never see the test half. Stratification is by the set of classes present
in an item (a Severstal image with classes 1 and 2 is stratum "1+2"; defect-free images are
stratum "free"); strata too small to split fall back to their rarest class, so rare classes
land on both sides. Within a stratum items are shuffled with an explicit seeded
`numpy.random.Generator`; how many go to test is decided with a running remainder across
strata, so the total test share is as close to `test_fraction` as integers allow.

With `layout=True` the split is the layout's own (MVTec AD's train/ and test/ folders) instead of
a draw; `label_fraction` still applies to its training part.

`label_fraction` keeps that fraction of the training half's *defect* images (stratified the
same way, at least one per class) for low-data experiments; the rest are listed as
`train_unlabelled` and used by nothing that needs labels. Defect-free training images are
always kept.

A split must not leak: `Split` refuses (`DataError`) an empty training part, an id listed twice
within a part, and an id in two parts (train / test / train_unlabelled), when it is built and
again in `check`, so every command stops on such a file before doing any work.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectgen.data.classes import ClassTable
from defectgen.data.dataset import DefectDataset, Item
from defectgen.errors import ConfigError, DataError
from defectgen.fileio import check_replaceable, parse_json, starts_with, write_atomic
from defectgen.settings import MAX_SEED, setting

FORMAT = "defectgen-split/1"
VAL_FRACTION = 0.2  # the evaluation's validation share of the training half (EvalConfig.val_fraction)


@dataclass
class SplitConfig:
    """The settings of a split: what `split` takes as options and `make_split` as arguments."""

    test_fraction: float = setting(0.5, "Share of items in the test half.")
    seed: int = setting(0, "Random seed: same seed, same split.")
    label_fraction: float = setting(1.0, "Keep this share of the training half's defect images.")
    layout: bool = setting(
        False, "Keep the layout's own train/test parts (MVTec AD) instead of a stratified draw.",
        flag="--layout-split",
    )  # fmt: skip
    val_fraction: float = setting(
        VAL_FRACTION, "With --fit-out: the validation share, as `evaluate --set val_fraction=`."
    )

    def validate(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(
                f"`test_fraction` must be between 0 and 1 (exclusive), got {self.test_fraction}"
            )
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"`label_fraction` must be in (0, 1], got {self.label_fraction}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"`seed` must be in 0..{MAX_SEED}, got {self.seed}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"`val_fraction` must be between 0 and 1, got {self.val_fraction}")


@dataclass(frozen=True)
class Split:
    dataset_spec: str
    dataset_kind: str
    fingerprint: str
    classes: ClassTable
    seed: int
    test_fraction: float
    label_fraction: float
    train: tuple[str, ...]  # labelled training items (defect images at label_fraction + all free)
    test: tuple[str, ...]
    train_unlabelled: tuple[str, ...] = ()  # training-half defect images left out by label_fraction
    layout: bool = False  # the dataset layout's own train/test parts, not a stratified draw

    def __post_init__(self):
        self.check_parts()

    def check_parts(self) -> None:
        """Refuse parts that leak or make no sense: an empty training part, an id repeated
        within a part, an id in two parts. One-line `DataError` naming the problem, how many
        ids and the first one."""
        remedy = "make a new split with `defectgen split`"
        parts = {"train": self.train, "test": self.test, "train_unlabelled": self.train_unlabelled}
        for name, ids in parts.items():
            bad = [i for i in ids if not isinstance(i, str)]
            if bad:
                raise DataError(
                    f"split part {name} holds {len(bad)} id(s) that are not strings (first: {bad[0]!r}); "
                    f"{remedy}"
                )
        if not self.train:
            raise DataError(f"split has an empty train part: there is nothing to train on; {remedy}")
        for name, ids in parts.items():
            repeated = _repeated(ids)
            if repeated:
                raise DataError(
                    f"split lists {len(repeated)} id(s) more than once in its {name} part (first: "
                    f"{repeated[0]}); {remedy}"
                )
        for first, second, why in (
            ("train", "test", "test images would leak into training"),
            ("train_unlabelled", "test", "test images would leak into training"),
            ("train", "train_unlabelled", "an item cannot be both labelled and unlabelled"),
        ):
            other = set(parts[second])
            shared = [i for i in parts[first] if i in other]
            if shared:
                raise DataError(
                    f"split's {first} and {second} parts share {len(shared)} id(s) (first: {shared[0]}): "
                    f"{why}; {remedy}"
                )

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "dataset": {
                "spec": self.dataset_spec,
                "kind": self.dataset_kind,
                "fingerprint": self.fingerprint,
            },
            "classes": self.classes.to_json(),
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "label_fraction": self.label_fraction,
            "train": list(self.train),
            "test": list(self.test),
            "train_unlabelled": list(self.train_unlabelled),
            "layout": self.layout,
        }

    def save(self, path: Path) -> None:
        """Write the split file; an existing file is replaced only when it is a split file."""
        check_replaceable(path, "split file", lambda p: starts_with(p, f'"format": "{FORMAT}"'.encode(), 200))
        write_atomic(Path(path), json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Split:
        path = Path(path)
        try:
            data = parse_json(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: split file not found; create it with `defectgen split`") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable split file ({err})") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{path}: not a defectgen split file (format {FORMAT})")
        try:
            return cls(
                dataset_spec=data["dataset"]["spec"],
                dataset_kind=data["dataset"]["kind"],
                fingerprint=data["dataset"]["fingerprint"],
                classes=ClassTable.from_json(data["classes"]),
                seed=int(data["seed"]),
                test_fraction=float(data["test_fraction"]),
                label_fraction=float(data["label_fraction"]),
                train=_id_list(data, "train"),
                test=_id_list(data, "test"),
                train_unlabelled=_id_list(data, "train_unlabelled", optional=True),
                layout=_flag(data, "layout"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path}: split file is missing or has a bad field ({err})") from err
        except DataError as err:  # a leaking or empty part (check_parts), or a bad class table
            raise DataError(f"{path}: {err}") from None

    def check(self, dataset: DefectDataset) -> None:
        """Refuse a split that leaks (`check_parts`) or was made for another dataset."""
        self.check_parts()
        if dataset.classes != self.classes or dataset.kind != self.dataset_kind:
            raise DataError(
                f"split was made for {self.dataset_spec} ({self.dataset_kind}, classes "
                f"{list(self.classes.names)}), not {dataset.spec} ({dataset.kind}, classes "
                f"{list(dataset.classes.names)}); make a split for this dataset with `defectgen split`"
            )
        known = {item.item_id for item in dataset.items}
        missing = [i for i in (*self.train, *self.test, *self.train_unlabelled) if i not in known]
        if missing:
            raise DataError(
                f"split names {len(missing)} items that {dataset.spec} does not have (first: "
                f"{missing[0]}); it was made for another dataset or another version of it"
            )
        if self.fingerprint != dataset.fingerprint():
            raise DataError(
                f"split was made for a dataset with other content than {dataset.spec} (files added, "
                "removed, resized or changed since): make a new split with `defectgen split`, and "
                "train and synthesize again with it"
            )

    def digest(self) -> str:
        """16 hex digits naming this split: its dataset's fingerprint and its parts."""
        parts = [self.fingerprint, sorted(self.train), sorted(self.test), sorted(self.train_unlabelled)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def indices(self, dataset: DefectDataset, part: str) -> list[int]:
        """Dataset indices of `part` ('train', 'test' or 'train_unlabelled')."""
        if part not in ("train", "test", "train_unlabelled"):
            raise ValueError(f"unknown split part {part!r}")
        self.check(dataset)
        return [dataset.index_of(i) for i in getattr(self, part)]


def make_split(
    dataset: DefectDataset,
    test_fraction: float = 0.5,
    seed: int = 0,
    label_fraction: float = 1.0,
    layout: bool = False,
) -> Split:
    """A split of `dataset` with the settings of `SplitConfig` (validated there)."""
    SplitConfig(test_fraction, seed, label_fraction, layout).validate()
    if len(dataset) < 2:
        raise DataError(f"{dataset.spec}: {len(dataset)} item(s) cannot be split in two")
    if layout:
        train, test = _layout_parts(dataset)
        test_fraction = len(test) / (len(train) + len(test))
    else:
        train, test = _stratified_draw(dataset, test_fraction, np.random.default_rng(seed))

    by_id = {item.item_id: item for item in dataset.items}
    unlabelled: list[str] = []
    if label_fraction < 1.0:
        defect_items = [by_id[i] for i in train if by_id[i].class_ids]
        keep: set[str] = set()
        label_rng = np.random.default_rng([seed, 1])  # independent of the test draw
        for _key, ids in sorted(stratify(defect_items).items()):
            ids = list(ids)
            label_rng.shuffle(ids)
            keep.update(ids[: max(1, round(len(ids) * label_fraction))])
        unlabelled = [i for i in train if by_id[i].class_ids and i not in keep]
        train = [i for i in train if i not in set(unlabelled)]
    return Split(
        dataset_spec=dataset.spec,
        dataset_kind=dataset.kind,
        fingerprint=dataset.fingerprint(),
        classes=dataset.classes,
        seed=seed,
        test_fraction=test_fraction,
        label_fraction=label_fraction,
        train=tuple(sorted(train)),
        test=tuple(sorted(test)),
        train_unlabelled=tuple(sorted(unlabelled)),
        layout=layout,
    )


def _stratified_draw(dataset: DefectDataset, test_fraction: float, rng) -> tuple[list[str], list[str]]:
    """(train ids, test ids): each stratum shuffled and cut at the running test share."""
    strata = stratify(dataset.items)
    test: list[str] = []
    train: list[str] = []
    remainder = 0.0
    for key in sorted(strata):
        ids = list(strata[key])
        rng.shuffle(ids)
        exact = len(ids) * test_fraction + remainder
        n_test = int(math.floor(exact + 0.5))
        n_test = min(max(n_test, 1 if len(ids) > 1 else n_test), len(ids) - (1 if len(ids) > 1 else 0))
        remainder = exact - n_test
        test += ids[:n_test]
        train += ids[n_test:]
    if not train:  # only single-item strata and a large test_fraction: keep one item to train on
        train.append(test.pop())
    return train, test


def _layout_parts(dataset: DefectDataset) -> tuple[list[str], list[str]]:
    """(train ids, test ids) as the dataset's layout has them."""
    parts = {item.part for item in dataset.items}
    if None in parts or not parts <= {"train", "test"}:
        raise ConfigError(
            f"--layout-split: {dataset.spec} ({dataset.kind}) has no train/test parts of its own "
            "(MVTec AD has); leave the option out for a stratified split"
        )
    train = [item.item_id for item in dataset.items if item.part == "train"]
    test = [item.item_id for item in dataset.items if item.part == "test"]
    if not test:
        raise DataError(f"{dataset.spec}: the layout's test part is empty; leave --layout-split out")
    return train, test


def _flag(data: dict, key: str) -> bool:
    """An optional true/false field of a split file (absent: false)."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _id_list(data: dict, key: str, optional: bool = False) -> tuple[str, ...]:
    """A split file's part: a JSON list of id strings."""
    ids = data.get(key, []) if optional else data[key]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{key} must be a list of item id strings")
    return tuple(ids)


def _repeated(ids: tuple[str, ...]) -> list[str]:
    """Ids listed more than once, each once, in the order of their second listing."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for i in ids:
        if i in seen:
            repeated[i] = None
        seen.add(i)
    return list(repeated)


def stratify(items: list[Item]) -> dict[str, list[str]]:
    """Stratum key -> item ids. Keys: '+'-joined class ids, or 'free'. Combinations with a
    single item are merged into the stratum of their rarest class ('rare:k')."""
    combos = Counter(item.class_ids for item in items)
    class_counts = Counter(c for item in items for c in item.class_ids)
    strata: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if not item.class_ids:
            key = "free"
        elif combos[item.class_ids] >= 2:
            key = "+".join(map(str, item.class_ids))
        else:
            rarest = min(item.class_ids, key=lambda c: (class_counts[c], c))
            key = f"rare:{rarest}"
        strata[key].append(item.item_id)
    return strata


def split_report(split: Split, dataset: DefectDataset) -> dict:
    """Per-class image counts on each side, for the CLI summary and tests."""
    by_id = {item.item_id: item for item in dataset.items}

    def counts(ids):
        per_class = Counter(c for i in ids for c in by_id[i].class_ids)
        return {
            "items": len(ids),
            "defect_free": sum(1 for i in ids if not by_id[i].class_ids),
            **{f"class {split.classes.name(c)}": per_class.get(c, 0) for c in split.classes.ids},
        }

    report = {"train": counts(split.train), "test": counts(split.test)}
    if split.train_unlabelled:
        report["train_unlabelled"] = counts(split.train_unlabelled)
    return report


def carve_validation(
    dataset: DefectDataset, indices: list[int], fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Deterministic, stratified (fit, validation) parts of the training half's `indices`.

    The evaluation trains segmenters on the fit part and reads the validation part for its
    learning curve and post-processing; the experiment trains its generators and pastes its
    defects from the fit part only (`fit_split`)."""
    by_id = {dataset.items[i].item_id: i for i in indices}
    rng = np.random.default_rng([seed, 77])
    validation: list[int] = []
    for _key, ids in sorted(stratify([dataset.items[i] for i in indices]).items()):
        ids = list(ids)
        rng.shuffle(ids)
        take = max(1, int(round(len(ids) * fraction))) if len(ids) > 1 else 0
        validation += [by_id[i] for i in ids[:take]]
    chosen = set(validation)
    return [i for i in indices if i not in chosen], sorted(validation)


def fit_split(split: Split, dataset: DefectDataset, val_fraction: float) -> Split:
    """The split the generator stage uses: its training part is the *fit* part of `split`'s
    training half (as `carve_validation` cuts it), and everything else (validation part, test
    half) is its test part, so `train`, `synth` and pasted defects never see a validation or
    test image."""
    train = split.indices(dataset, "train")
    fit, _ = carve_validation(dataset, train, val_fraction)
    fit_ids = {dataset.items[i].item_id for i in fit}
    return Split(
        dataset_spec=split.dataset_spec,
        dataset_kind=split.dataset_kind,
        fingerprint=split.fingerprint,
        classes=split.classes,
        seed=split.seed,
        test_fraction=split.test_fraction,
        label_fraction=split.label_fraction,
        train=tuple(i for i in split.train if i in fit_ids),
        test=tuple([*split.test, *(i for i in split.train if i not in fit_ids)]),
        train_unlabelled=split.train_unlabelled,
        layout=split.layout,
    )


def check_parts(dataset: DefectDataset, fit: list[int], validation: list[int], test: list[int]) -> None:
    """Refuse parts an evaluation cannot use: an empty test half or one without defects, and a
    fit or validation part without defects (`evaluate`; `experiment` asks before its generators train)."""
    items = dataset.items
    if not test:
        raise DataError(
            "the split's test half is empty: nothing to score; make a split with --test-fraction > 0"
        )
    if not any(items[i].class_ids for i in test):
        raise DataError(
            "the split's test half has no defect images: nothing to score; make a split with a larger "
            "--test-fraction"
        )
    if not any(items[i].class_ids for i in validation) or not any(items[i].class_ids for i in fit):
        raise DataError(
            "the training half is too small to hold out a validation part with defects; "
            "use a larger --label-fraction or a larger training half"
        )
