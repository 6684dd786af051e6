"""Synthesis items: each a function of (seed, index, attempt): its background, its masks (drawn,
or real defects pasted for harmonising), its severities, and the judge's redraws."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from defectgen.errors import ConfigError, DataError
from defectgen.geometry import hole_of
from defectgen.painter import seam
from defectgen.paste import DefectPaster
from defectgen.severity import SeverityTable, drawn_map, measured_map, parse_range

SEVERITY_STREAM = 11  # seed-sequence word of an item's severity draws (the masks' stream is untouched)


def batches(todo, backgrounds, draw, classes, seed, batch_size, severity_of=None) -> Iterator[list[dict]]:
    """Items grouped into batches of one image size; each item fully determined by (seed, i)."""
    batch: list[dict] = []
    for index in todo:
        item = draw_item(index, 0, backgrounds, draw, classes, seed, severity_of)
        image = item["image"]
        if batch and (len(batch) == batch_size or batch[0]["image"].shape != image.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


BACKGROUND_TRIES = 10  # labelled backgrounds drawn for an item before there is declared no room


def draw_item(index: int, attempt: int, backgrounds, draw, classes, seed: int, severity_of=None) -> dict:
    """Item `index` (draw `attempt`): background and masks, a function of (seed, index, attempt);
    with `severity_of`, also its severity map (from a stream of its own)."""
    key = [seed, index] if attempt == 0 else [seed, index, attempt]
    rng = np.random.default_rng(key)
    for _ in range(BACKGROUND_TRIES):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        existing = background.load_masks() if background.load_masks else None
        image, masks, hole, info = draw(rng, background.load(), classes, background.key, existing)
        if existing is None or (masks & ~existing).any():
            break
    else:
        raise DataError(
            f"no room for a new defect away from the existing ones on {BACKGROUND_TRIES} labelled "
            "backgrounds in a row; use --background-source cleaned"
        )
    severity = {}
    if severity_of is not None:  # for the new defects only (a labelled background's stay as they are)
        new = masks if existing is None else masks & ~existing
        rng = np.random.default_rng([*key, SEVERITY_STREAM])
        severity_map, drawn = severity_of(rng, image, new, masks.any(axis=0))
        severity = {"severity": severity_map, "severities": drawn}
    return {
        **severity,  # float32 [1, H, W] each defect's severity, and [(class_id, severity), ...]
        "index": index,
        "attempt": attempt,
        "seed": seed,
        "background": background.key,
        "image": image,  # uint8 [H, W, C]
        "masks": masks,  # bool [K, H, W]: the label (with a labelled background's own defects)
        "hole": hole,  # float32 [1, H, W] to repaint, or None: the masks dilated by the hole radius
        "erased": background.load_erased() if background.load_erased else None,  # bool [H, W] or None
        "info": info,
    }


class Painter:
    """`paint` mode: masks from the mask source; the generator paints them whole. On a labelled
    background new defects keep `hole_radius` + 1 px away from the existing ones, so the hole
    around them never touches those."""

    def __init__(self, composer, hole_radius: int):
        self.composer, self.hole_radius = composer, hole_radius

    def check(self, classes) -> None:
        self.composer._allowed(classes)

    def __call__(self, rng, image, classes, key, existing=None):
        height, width = image.shape[:2]
        if existing is None:
            masks, info = self.composer.compose(rng, height, width, classes)
            return image, masks, None, info
        avoid = hole_of(existing, self.hole_radius + 1)[0] > 0
        new, info = self.composer.compose(rng, height, width, classes, avoid=avoid)
        return image, new | existing, hole_of(new, self.hole_radius), info


class Harmonizer:
    """`harmonize` mode: real defects pasted; the generator repaints only their seam."""

    TRIES = 10  # plans drawn before a background is declared too small for every training defect

    def __init__(self, paster: DefectPaster, band: int, rim: int):
        self.paster, self.band, self.rim = paster, band, rim

    def check(self, classes) -> None:
        self.paster.allowed(classes)

    def __call__(self, rng, image, classes, key, existing=None):
        for _ in range(self.TRIES):
            plan = self.paster.plan(rng, classes)
            pasted = self.paster.paste(rng, image, plan, existing=existing)
            new = pasted.masks if existing is None else pasted.masks & ~existing
            if new.any():
                hole = seam(new.any(axis=0), self.band, self.rim)
                if existing is not None:
                    hole &= ~existing.any(axis=0)  # a seam never repaints a defect already there
                info = {"defects": pasted.defects, "plan": plan}
                return pasted.image, pasted.masks, hole[None].astype(np.float32), info
        raise DataError(
            f"background {key} ({image.shape[0]}x{image.shape[1]}) is smaller than every training defect "
            f"drawn for it in {self.TRIES} tries; use larger backgrounds or --mode paint"
        )


def severity_source(G, checkpoint: Path, severity, mode: str):
    """(severity_of, range) where severity_of(rng, image, new masks, union of all defects) ->
    (map, [(class_id, severity)]) draws from the range for new defects in paint mode, measures
    the pasted real defects in harmonize mode (range None), and both are None for a generator
    trained without severity."""
    if not G.severity:
        if severity is not None:
            raise ConfigError(
                f"--severity needs a generator trained with severity; {checkpoint} was trained without it "
                "(train a new run: every preset has model.generator.severity=true)"
            )
        return None, None
    if mode == "harmonize":
        if severity is not None:
            raise ConfigError(
                "--severity does not apply to --mode harmonize: pasted real defects keep their own severity"
            )
        from defectgen.gan.checkpoint import load_checkpoint

        table = SeverityTable.from_json(load_checkpoint(checkpoint).get("severity_table", {}))
        return lambda rng, image, new, union: measured_map(table, image, new, union), None
    low, high = parse_range(severity) if isinstance(severity, str) else (severity or (0.0, 1.0))
    if severity is not None and not isinstance(severity, str):
        low, high = parse_range(f"{low}:{high}")
    return lambda rng, image, new, union: drawn_map(new, low, high, rng), (low, high)


def judged(batch, painted, judge, attempts: int, make_item, paint) -> tuple[list[dict], list]:
    """Score each painted item; redraw the rejected ones (up to `attempts` draws in all) and keep
    the first accepted draw, or else the draw whose weakest defect came closest."""
    kept_items, kept_painted = [], []
    for item, result in zip(batch, painted, strict=True):
        best = None
        for attempt in range(attempts):
            if attempt:
                item = make_item(item["index"], attempt)
                (result,) = paint([item])
            scores = judge.score(result[0], item["masks"])
            candidate = (judge.margin(scores), attempt, item, result, scores)
            if best is None or candidate[0] > best[0]:
                best = candidate
            if judge.accepts(scores):
                best = candidate
                break
        _, _, item, result, scores = best
        item = {
            **item,
            "label_score": {str(k): v for k, v in scores.items()},
            "label_accepted": judge.accepts(scores),
        }
        kept_items.append(item)
        kept_painted.append(result)
    return kept_items, kept_painted
