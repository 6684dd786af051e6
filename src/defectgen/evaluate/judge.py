"""The label-consistency judge: does a segmenter trained on real data only find each synthetic
defect where its label says?

The judge is the `real` arm's U-Net of an evaluation (first seed): trained on the fit part of
the training half, never on synthetic data, never part of the generator's training. A defect of
class k is *recognised* when the judge's Dice on it (0.5 threshold) reaches `ratio` times the
judge's own positive Dice on real validation defects of class k. Classes the judge finds below
`floor` on real validation images cannot be judged: their defects always pass (filtering on a
judge that cannot see the class would only add noise). An item passes when all its defects do.

Used by `defectgen evaluate` (arms `BASE+NAME:filtered`) and `defectgen synth --judge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defectgen.data.classes import ClassTable
from defectgen.errors import DataError
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.scores import pair_scores
from defectgen.evaluate.segmenter import predict
from defectgen.fileio import parse_json
from defectgen.models.unet import build_segmenter


def class_thresholds(
    validation_dice: dict[str, float | None], classes: ClassTable, floor: float, ratio: float
) -> dict[int, float | None]:
    """Per class id: the Dice a synthetic defect needs, or None (class not judgeable)."""
    thresholds = {}
    for class_id in classes.ids:
        real = validation_dice.get(classes.name(class_id))
        thresholds[class_id] = ratio * real if real is not None and real >= floor else None
    return thresholds


def accepts(scores: dict[int, float], thresholds: dict[int, float | None]) -> bool:
    """Does every defect of an item (scores: class id -> Dice) pass its class's threshold?"""
    return all(thresholds.get(int(k)) is None or v >= thresholds[int(k)] for k, v in scores.items())


@dataclass
class LabelJudge:
    model: torch.nn.Module
    thresholds: dict[int, float | None]
    description: str
    use_bf16: bool = False
    trained_on: tuple[str, ...] = ()  # the real items its U-Net trained on (lineage)

    @classmethod
    def from_evaluation(
        cls, eval_dir: Path, classes: ClassTable, channels: int, use_bf16: bool = False
    ) -> LabelJudge:
        """The judge of an evaluation folder: its `real` run with the lowest seed."""
        eval_dir = Path(eval_dir)
        candidates = sorted(
            eval_dir.glob("runs/real_s*.json"), key=lambda p: int(p.stem.removeprefix("real_s") or 0)
        )
        candidates = [p for p in candidates if p.with_suffix(".pt").is_file()]
        if not candidates:
            raise DataError(
                f"{eval_dir}: no real-arm U-Net (runs/real_s*.pt); "
                "run `defectgen evaluate` with the real arm first"
            )
        record_path = candidates[0]
        try:
            record = parse_json(record_path.read_text())
            results = eval_dir / "results.json"
            settings = parse_json(results.read_text())["config"] if results.is_file() else {}
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{record_path}: unreadable evaluation record ({err})") from err
        encoder = record.get("segmenter", {}).get("encoder") or settings.get("encoder")
        if not encoder:
            raise DataError(f"{record_path}: the record does not say which encoder the U-Net used")
        defaults = EvalConfig()
        segmenter = record.get("segmenter", {})
        depth = segmenter.get("encoder_depth", settings.get("encoder_depth", 5))
        decoder = segmenter.get("decoder_channels", settings.get("decoder_channels", [256, 128, 64, 32, 16]))
        try:
            model = build_segmenter(
                encoder, channels, len(classes), encoder_depth=int(depth), decoder_channels=tuple(decoder)
            )
        except (TypeError, ValueError) as err:
            raise DataError(f"{record_path}: the record's U-Net settings are unusable ({err})") from err
        try:
            state = torch.load(record_path.with_suffix(".pt"), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any failure means an unusable file
            raise DataError(
                f"{record_path.with_suffix('.pt')}: not this dataset's real-arm U-Net "
                f"({str(err).splitlines()[0]})"
            ) from err
        model.eval()
        thresholds = class_thresholds(
            record["validation"]["positive_dice"],
            classes,
            settings.get("filter_floor", defaults.filter_floor),
            settings.get("filter_ratio", defaults.filter_ratio),
        )
        trained_on = record.get("real_items_trained_on")
        if not isinstance(trained_on, list):
            raise DataError(f"{record_path}: the record does not say which images the U-Net trained on")
        description = f"{record_path.parent.parent} real arm, seed {record['seed']}"
        return cls(model, thresholds, description, use_bf16, tuple(str(i) for i in trained_on))

    def score(self, image: np.ndarray, masks: np.ndarray) -> dict[int, float]:
        """uint8 [H, W, C] and bool [K, H, W] -> {class id: Dice of the judge on that class}."""
        dice, _ = pair_scores(predict(self.model, image, use_bf16=self.use_bf16), masks)
        return {k + 1: float(dice[k]) for k in range(len(dice)) if masks[k].any()}

    def accepts(self, scores: dict[int, float]) -> bool:
        return accepts(scores, self.thresholds)

    def margin(self, scores: dict[int, float]) -> float:
        """How far the item's weakest judged defect is above (>0) or below its threshold."""
        gaps = [v - self.thresholds[k] for k, v in scores.items() if self.thresholds.get(k) is not None]
        return min(gaps) if gaps else 0.0
