"""Mask sources: where synthetic defects go, and of which class.

Every source draws bool [K, H, W] masks (one channel per class, classes never overlap) from an
explicit `numpy.random.Generator`: the same seed gives the same masks. Kinds:

- `real`: real training components, varied and re-placed (`RealMaskBank`);
- `shapes`: procedural strokes / blobs / patches / pits fitted to them (`ProceduralShapes`);
- `folder:PATH`: masks a user drew (`UserMasks`);
- `learned:RUN`: shapes drawn by a StyleGAN generator run (`train --model stylegan`), placed as real ones
  are (`LearnedMasks`);
- `mix`: per defect, one of the above picked by weight (`MaskComposer`).

`build_mask_source` builds any of them as a `MaskComposer`, whose `compose` also says what it
placed (source, class, area per defect).
"""

from __future__ import annotations

from pathlib import Path

from defectgen.data.classes import ClassTable
from defectgen.errors import ConfigError
from defectgen.masks.bank import ComponentTable, PositionPrior, RealMaskBank, scan_components
from defectgen.masks.compose import (
    CountDistribution,
    MaskComposer,
    defect_count_histogram,
    place,
)
from defectgen.masks.learned import LearnedMasks
from defectgen.masks.shapes import FAMILIES, ProceduralShapes, choose_family
from defectgen.masks.user import UserMasks

__all__ = [
    "FAMILIES",
    "ComponentTable",
    "CountDistribution",
    "LearnedMasks",
    "MaskComposer",
    "PositionPrior",
    "ProceduralShapes",
    "RealMaskBank",
    "UserMasks",
    "build_mask_source",
    "choose_family",
    "defect_count_histogram",
    "place",
    "scan_components",
]

KINDS = ("real", "shapes", "folder:PATH", "learned:RUN", "mix")


def build_mask_source(
    kind: str,
    dataset,
    indices: list[int] | None,
    classes: ClassTable | None = None,
    user_folder: str | Path | None = None,
    *,
    weights: dict[str, float] | None = None,
    progress: bool = False,
    only: list[int] | None = None,
) -> MaskComposer:
    """A mask source of `kind` (see `KINDS`), fitted to `dataset`'s items `indices` (the
    training half: never the test half, or the test labels leak into the synthetic set).

    classes: the class table (default `dataset.classes`; needed when `dataset` is None,
        which only `folder:PATH` allows).
    user_folder: for `mix`, a folder of user masks to mix in as source "folder".
    weights: for `mix`, source name -> weight (default equal over real, shapes[, folder]).
    only: for `learned:RUN`, the class ids it will be asked for (the others are not tried).

    Counts per image follow the real training half for real / shapes / mix; a user folder
    alone gives one mask file per image.
    """
    if classes is None:
        if dataset is None:
            raise ConfigError("build_mask_source needs a dataset or a class table")
        classes = dataset.classes
    if dataset is not None and dataset.classes != classes:
        raise ConfigError(
            f"class table {list(classes.names)} is not the dataset's {list(dataset.classes.names)}"
        )
    if kind.startswith("folder:"):
        path = kind.partition(":")[2]
        if not path:
            raise ConfigError("mask kind folder:PATH needs a path, e.g. folder:my_masks")
        user = UserMasks(path, classes)
        return MaskComposer({"folder": user}, class_weights=user.class_frequency)
    if kind.startswith("learned:"):
        run = kind.partition(":")[2]
        if not run:
            raise ConfigError(
                "mask kind learned:RUN needs a StyleGAN run folder or checkpoint, e.g. learned:runs/stylegan"
            )
        if dataset is None or indices is None:
            raise ConfigError("mask kind learned:RUN places shapes as the real defects lie: give the dataset")
        table = scan_components(dataset, list(indices), progress=progress)
        learned = LearnedMasks.from_run(run, RealMaskBank(table), classes, only)
        return MaskComposer({"learned": learned}, count_distribution=table.counts)
    if kind not in ("real", "shapes", "mix"):
        raise ConfigError(f"unknown mask kind {kind!r}; use one of {', '.join(KINDS)}")
    if dataset is None or indices is None:
        raise ConfigError(
            f"mask kind {kind!r} learns from real masks: give the dataset and its training indices"
        )
    table = scan_components(dataset, list(indices), progress=progress)
    sources: dict = {}
    if kind in ("real", "mix"):
        sources["real"] = RealMaskBank(table)
    if kind in ("shapes", "mix"):
        sources["shapes"] = ProceduralShapes.from_table(table)
    if kind == "mix" and user_folder is not None:
        sources["folder"] = UserMasks(user_folder, classes)
    if kind != "mix" and (weights or user_folder):
        raise ConfigError("weights and user_folder apply to the mix kind only")
    return MaskComposer(sources, weights=weights, count_distribution=table.counts)
