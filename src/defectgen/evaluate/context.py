"""What every run of one evaluation shares (data, its parts, synthetic sets, settings), and one
(arm, seed) run: its batches, its training and the scores it keeps.

Parts (docs/ARCHITECTURE.md): the training half is cut into a *fit* part (segmenters train on
its crops) and a stratified *validation* part (the real arm's learning curve and the shared
post-processing); the test half only scores. Validation and test images are decoded once per
evaluation and kept in memory.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from defectgen import ui
from defectgen.data.dataset import DefectDataset
from defectgen.data.lineage import check_lineage, read_items, refuse_test_copies
from defectgen.data.split import Split, carve_validation
from defectgen.distributed import parse_device, resolve_bf16
from defectgen.errors import DataError
from defectgen.evaluate.arms import FILTERED, Arm
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.sampling import (
    CONTROL_STREAM,
    COPYPASTE_STREAM,
    OVERSAMPLE_STREAM,
    REAL_STREAM,
    ArmSampler,
    Extra,
    Pool,
    classic_augmentation,
    copypaste_pool,
    dataset_pool,
    set_stream,
)
from defectgen.evaluate.scores import ScoreSheet, summarize
from defectgen.evaluate.segmenter import probabilities_batch, train_segmenter
from defectgen.models.unet import build_segmenter
from defectgen.synthset import (
    is_synthset,
    open_synthetic,
    painted_region,
    read_manifest,
    read_params,
    set_sources,
)

COPYPASTE_IMAGES = 1000  # pasted images per seed (made lazily, when a crop first needs one)
SCORE_BATCH = 8  # images of one size predicted together


class EvalContext:
    """Data, parts, synthetic sets and settings of one evaluation."""

    @classmethod
    def create(
        cls,
        dataset: DefectDataset,
        split: Split,
        config: EvalConfig,
        synthetic: dict[str, Path] | None = None,
        progress: bool = False,
    ) -> EvalContext:
        """`synthetic`: set name -> `defectgen synth` folder."""
        synthetic_dirs = {name: Path(path) for name, path in (synthetic or {}).items()}
        sets = {name: open_synthetic(path, dataset) for name, path in synthetic_dirs.items()}
        train = split.indices(dataset, "train")
        fit, validation = carve_validation(dataset, train, config.val_fraction, seed=0)
        test = split.indices(dataset, "test")
        validation_ids = [dataset.items[i].item_id for i in validation]
        lineages = {
            name: set_lineage(path, name, sets[name], dataset, split, validation_ids)
            for name, path in synthetic_dirs.items()
        }
        context = cls(dataset, fit, validation, test, sets or {}, synthetic_dirs or {}, config, progress)
        context.lineages = lineages
        return context

    def __init__(self, dataset, fit, validation, test, sets, synthetic_dirs, config, progress):
        self.dataset, self.fit, self.validation, self.test = dataset, fit, validation, test
        self.sets, self.synthetic_dirs = sets, synthetic_dirs
        self.config, self.progress = config, progress
        self.place(parse_device(config.device))
        self.steps = config.steps
        self.lineages: dict[str, dict] = {}  # set name -> what it was made from (`set_lineage`)
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def place(self, device: torch.device) -> None:
        """Train and predict on `device` (under torchrun: the process's own GPU)."""
        self.device = device
        self.use_bf16 = resolve_bf16(self.config.precision, device)

    def model(self, seed: int):
        """The U-Net of `seed`, initialised on the CPU (the same weights on every device), on
        this evaluation's device."""
        config = self.config
        weights = Path(config.encoder_weights) if config.encoder_weights else None
        return build_segmenter(
            config.encoder,
            self.dataset.channels,
            len(self.dataset.classes),
            weights,
            seed=seed,
            encoder_depth=config.encoder_depth,
            decoder_channels=tuple(config.decoder_channels),
        ).to(self.device)

    def segmenter_record(self) -> dict:
        config = self.config
        return {
            "encoder": config.encoder,
            "encoder_depth": config.encoder_depth,
            "decoder_channels": list(config.decoder_channels),
            "channels": self.dataset.channels,
            "classes": len(self.dataset.classes),
            "device": str(self.device),
            "precision": "bf16" if self.use_bf16 else "fp32",  # what `auto` became on this machine
        }

    def decoded(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, masks) of a validation or test item, decoded once per evaluation."""
        if index not in self._decoded:
            sample = self.dataset[index]
            self._decoded[index] = (sample.image, sample.masks)
        return self._decoded[index]

    def score(self, model, indices: list[int], description: str = "scoring") -> dict:
        """Per-image score arrays (`ScoreSheet`) of `model` on `indices`, images of one size
        predicted in batches."""
        sheet = ScoreSheet(len(self.dataset.classes))
        order = sorted(range(len(indices)), key=lambda j: self.decoded(indices[j])[0].shape)
        rows: dict[int, tuple] = {}
        batches = [order[i : i + SCORE_BATCH] for i in range(0, len(order), SCORE_BATCH)]
        batches = [
            group
            for batch in batches
            for group in _by_shape(batch, lambda j: self.decoded(indices[j])[0].shape)
        ]
        model.eval()
        for batch in ui.track(batches, description=description, transient=True, disable=not self.progress):
            images = [self.decoded(indices[j])[0] for j in batch]
            for j, probability in zip(batch, probabilities_batch(model, images, self.use_bf16), strict=True):
                rows[j] = probability
        for j in range(len(indices)):  # in the order of `indices`: arrays pair across runs
            sheet.add(rows.pop(j), self.decoded(indices[j])[1])
        return sheet.arrays()


def _by_shape(batch: list[int], shape_of) -> list[list[int]]:
    groups: dict[tuple, list[int]] = {}
    for j in batch:
        groups.setdefault(tuple(shape_of(j)), []).append(j)
    return list(groups.values())


def set_lineage(
    path: Path, name: str, synthetic, dataset: DefectDataset, split: Split, validation_ids
) -> dict:
    """What the synthetic set `name` at `path` (opened: `synthetic`) was made from, for
    results.json. Refused: a folder that is not a synthesis folder, a set of another dataset, a
    set whose generator, mask source, backgrounds or pasted defects came from this split's test
    half (`check_lineage`), images its manifest does not list, byte copies of test images.
    Counted: the validation items and the split's unlabelled items it read, and whether a judge
    chose its items (each keeps it from the claim)."""
    what = f"--synthetic {name}={path}"
    if not is_synthset(path):
        raise DataError(
            f"{what}: not a `defectgen synth` folder (no synth.json and manifest.jsonl); "
            "give a folder written by `defectgen synth`"
        )
    record = read_params(path).get("lineage")
    fix = "synthesize it with this split (`defectgen synth --split`), from a generator trained with it"
    check_lineage(record, what, dataset, split, fix, needs=("generator",))
    listed = set(read_manifest(path))
    extra = [item.item_id for item in synthetic.items if Path(item.item_id).stem not in listed]
    if extra:
        raise DataError(
            f"{what} holds {len(extra)} image(s) its manifest does not list (first: {extra[0]}): remove "
            "them, or synthesize the set again"
        )
    images = [item.image_path for item in synthetic.items if item.image_path is not None]
    refuse_test_copies(images, dataset, split, what, "image_path")
    sources = set_sources(path)
    leaked = sorted(sources & set(split.test))
    if leaked:  # the manifest names them, whatever synth.json says
        raise DataError(
            f"{what} was made from {len(leaked)} test image(s) of this split ({leaked[0]}, …): {fix}"
        )
    read = read_items(record) | sources
    seen = sorted(read & set(validation_ids))
    unlabelled = sorted(read & set(split.train_unlabelled))
    return {
        "dataset_fingerprint": record["dataset_fingerprint"],
        "split_digest": record.get("split_digest"),
        "generator_split_digest": (record.get("generator") or {}).get("split_digest"),
        "items_read": len(read_items(record)),
        "validation_items_read": len(seen),
        **({"first_validation_item": seen[0]} if seen else {}),
        "unlabelled_items_read": len(unlabelled),  # labels this split holds back (label_fraction)
        **({"first_unlabelled_item": unlabelled[0]} if unlabelled else {}),
        # a judge keeps items by thresholds chosen on its own evaluation's validation part
        "judged": isinstance(record.get("judge"), dict),
    }


# --- one run -----------------------------------------------------------------------------------


def crops_per_step(arm: Arm, config: EvalConfig) -> int:
    """Crops one training step of `arm` sees: the real batch plus every added source's."""
    extra = max(1, int(round(config.batch_size * config.extra_share)))
    synthetic = max(1, int(round(config.batch_size * config.synthetic_share)))
    if arm.base is None:
        return config.batch_size
    added = extra if arm.base in ("oversample", "copypaste", "blendpaste") else 0
    return config.batch_size + added + synthetic * len(arm.sets)


def arm_sampler(ctx: EvalContext, arm: Arm, seed: int, filters: dict | None = None) -> ArmSampler:
    """The batches of `arm` at `seed` (public for tests: pairing is asserted on it)."""
    config, dataset = ctx.config, ctx.dataset
    filters = filters or {}
    batch = config.batch_size
    extra_count = max(1, int(round(batch * config.extra_share)))
    synthetic_count = max(1, int(round(batch * config.synthetic_share)))
    until = int(round(ctx.steps * config.synthetic_until)) if config.synthetic_until < 1 else None
    extras: list[Extra] = []
    if arm.base == "oversample":
        extras.append(
            Extra(dataset_pool(dataset, ctx.fit, defects_only=True), extra_count, OVERSAMPLE_STREAM)
        )
    elif arm.base in ("copypaste", "blendpaste"):  # one stream: the same placements, pasted or blended
        pool = copypaste_pool(dataset, ctx.fit, COPYPASTE_IMAGES, seed, blend=arm.base == "blendpaste")
        extras.append(Extra(pool, extra_count, COPYPASTE_STREAM))
    set_pools = {}
    for name in arm.sets:
        kept = filters[name]["kept_indices"] if name in filters else None
        set_pools[name] = synthetic_pool(ctx, name.removesuffix(FILTERED), kept)
        if arm.base is not None:
            extras.append(Extra(set_pools[name], synthetic_count, set_stream(name), until))
    real = set_pools[arm.sets[0]] if arm.base is None else dataset_pool(dataset, ctx.fit)
    return ArmSampler(
        real,
        config.crop_size,
        batch,
        config.defect_crop_share,
        seed,
        real_stream=CONTROL_STREAM if arm.base == "control" else REAL_STREAM,
        augment=classic_augmentation(seed) if arm.base == "classic" else None,
        extras=extras,
    )


def synthetic_pool(ctx: EvalContext, name: str, kept: list[int] | None = None) -> Pool:
    """A synthetic set's items; the pixels each painted outside its label are ignored."""
    synthetic, folder = ctx.sets[name], ctx.synthetic_dirs[name]
    manifest = read_manifest(folder)

    def ignore(index, sample):
        record = manifest.get(Path(synthetic.items[index].item_id).stem)
        if record is None:
            return None
        painted = painted_region(folder, record, sample.masks)
        return painted & ~sample.masks.any(axis=0)

    indices = list(range(len(synthetic))) if kept is None else kept
    return dataset_pool(synthetic, indices, ignore=ignore)


def train_and_score(ctx: EvalContext, arm: Arm, seed: int, filters: dict, steps: int | None = None):
    """Train `arm` at `seed` for `steps` (default: the evaluation's) on its own schedule;
    -> (record, validation arrays, test arrays or None, model). A run shorter than the
    evaluation's (a point of the learning curve) scores the validation part only."""
    config, dataset = ctx.config, ctx.dataset
    steps = ctx.steps if steps is None else steps
    sampler = arm_sampler(ctx, arm, seed, filters)
    model = ctx.model(seed)
    log = train_segmenter(
        model,
        sampler.batch,
        steps,
        lr=config.lr,
        use_bf16=ctx.use_bf16,
        description=f"{arm.name} seed {seed}, {steps} steps",
        progress=ctx.progress,
    )
    validation = ctx.score(model, ctx.validation, f"validating {arm.name} seed {seed}")
    test = ctx.score(model, ctx.test, f"testing {arm.name} seed {seed}") if steps == ctx.steps else None
    used: set[str] = set()
    for pool in [sampler.real, *(e.pool for e in sampler.extras)]:
        used |= pool.used | pool.sources_used
    record = {
        "arm": arm.name,
        "seed": seed,
        "steps": steps,
        "crops_per_step": crops_per_step(arm, config),
        "seconds": log["seconds"],
        "loss_curve": log["curve"],
        "validation": summarize(validation, dataset.classes.names),
        "real_items_trained_on": sorted(used & {item.item_id for item in dataset.items}),
        "segmenter": ctx.segmenter_record(),
    }
    if test is not None:
        record["test_plain"] = summarize(test, dataset.classes.names)
    return record, validation, test, model


def untrained_validation(ctx: EvalContext, seed: int) -> dict:
    """The validation summary of the U-Net at `seed` before any step (the curve's origin)."""
    return summarize(ctx.score(ctx.model(seed), ctx.validation), ctx.dataset.classes.names)


def state_bytes(model) -> bytes:
    """The model's weights as `torch.save` bytes, on the CPU (they load on any machine)."""
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()
