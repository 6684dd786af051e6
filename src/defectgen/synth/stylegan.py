"""Synthesis from a StyleGAN checkpoint: each item is a crop the generator draws whole for a class,
labelled by its thresholded mask channel."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from defectgen.errors import ConfigError
from defectgen.geometry import hole_of
from defectgen.masks.learned import decoded
from defectgen.painter import item_seed
from defectgen.synth_config import SynthConfig

STYLEGAN_ATTEMPTS = 16  # draws of an item before an empty mask is accepted as what the StyleGAN gives


PAINTING_ONLY = (
    "mode",
    "mask_source",
    "backgrounds",
    "background_source",
    "tile",
    "severity",
    "judge",
    "attempts",
)


def check_stylegan_options(checkpoint, config: SynthConfig) -> None:
    """Refuse the settings that mean painting on a background: a StyleGAN generator draws whole crops."""
    default = SynthConfig()
    given = [
        "--" + name.replace("_", "-")
        for name in PAINTING_ONLY
        if getattr(config, name) != getattr(default, name)
    ]
    if given:
        raise ConfigError(
            f"{checkpoint} is a StyleGAN: it draws each crop and its mask whole, with no background, mask "
            f"source or painting; drop {', '.join(given)} (they are for an inpainter's checkpoint)"
        )


def stylegan_classes(dataset, train_indices, classes, checkpoint) -> list[int]:
    """The classes a StyleGAN generator's items are drawn from: those it trained on (recorded in its
    checkpoint; else the split's training half's), narrowed to `classes` when given."""
    from defectgen.gan.checkpoint import load_checkpoint

    recorded = load_checkpoint(checkpoint).get("trained_classes")
    learned = sorted(recorded or {k for i in train_indices for k in dataset.items[i].class_ids})
    if classes is None:
        return learned
    missing = [dataset.classes.name(k) for k in classes if k not in learned]
    if missing:
        raise ConfigError(
            f"--classes: the StyleGAN never saw {', '.join(missing)} (no such defect in the training half); "
            f"it can draw {', '.join(dataset.classes.name(k) for k in learned)}"
        )
    return classes


def stylegan_item(index: int, attempt: int, classes: list[int], seed: int) -> dict:
    """Item `index` (draw `attempt`) of a StyleGAN: its class, a function of (seed, index, attempt)."""
    rng = np.random.default_rng([seed, index] if attempt == 0 else [seed, index, attempt])
    return {
        "index": index,
        "attempt": attempt,
        "seed": seed,
        "class_id": int(classes[rng.integers(len(classes))]),
        "background": "stylegan",
        "erased": None,
    }


def stylegan_batches(todo, classes, seed, batch_size) -> Iterator[list[dict]]:
    for start in range(0, len(todo), batch_size):
        yield [stylegan_item(i, 0, classes, seed) for i in todo[start : start + batch_size]]


@torch.no_grad()
def decode(G, batch: list[dict], hole_radius: int, device, amp, only=None) -> tuple[list[dict], list]:
    """Draw each item's crop and label maps (one generator call per draw: noise from the item's
    own seed, so a draw does not depend on its batch); a draw without a defect of the item's
    class, or with a defect of a class outside `only` (`--classes`), is drawn again, up to
    `STYLEGAN_ATTEMPTS` draws (the last is kept). Returns the items with image, masks and
    record, and (uint8 image, bool painted region) per item."""
    items, painted = [], []
    for item in batch:
        for attempt in range(STYLEGAN_ATTEMPTS):
            if attempt:
                item = {**item, "attempt": attempt}
            generator = torch.Generator().manual_seed(item_seed(item))
            z = G.draw_style(1, generator, device=device)
            classes = torch.tensor([item["class_id"] - 1], device=device)
            with amp:
                output = G(z, classes, generator=generator).float()
            image, masks = decoded(output, G.image_channels)
            present = {k + 1 for k in np.flatnonzero(masks.any(axis=(1, 2)))}
            if item["class_id"] in present and (only is None or present <= set(only)):
                break  # the class it was drawn for is there, and no class outside `only`
        defects = [
            {"source": "stylegan", "class_id": k + 1, "area": int(mask.sum())}
            for k, mask in enumerate(masks)
            if mask.any()
        ]
        items.append({**item, "image": image, "masks": masks, "info": {"defects": defects}})
        painted.append((image, hole_of(masks, hole_radius)[0] > 0))
    return items, painted
