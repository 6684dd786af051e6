"""`EvalConfig`: every setting of `defectgen evaluate`, with its default, in one place.

The CLI takes its option defaults from here, and so do the demo and the mission benchmark; a
value changed here changes all of them.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, fields

from defectgen.data.split import VAL_FRACTION
from defectgen.errors import ConfigError
from defectgen.evaluate.arms import BASES
from defectgen.settings import MAX_SEED, MAX_STEPS, check_precision, coerce, setting

MAX_SEEDS = 1000  # seeds per evaluation: each trains every arm once
STEPS = 2000  # the CPU default budget (benchmarks/segmenter_curve.json)

DEFAULT_ARMS = ("real", "control", "oversample", "copypaste", "blendpaste", "classic", "real+synthetic")


def _seed_count(count: int) -> list[int]:
    """`--seeds N`: seeds 0..N-1 (bounded before the list is made)."""
    if not 2 <= count <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be in 2..{MAX_SEEDS} (each seed trains every arm once), got {count}")
    return list(range(count))


@dataclass
class EvalConfig:
    arms: list[str] = setting(
        list(DEFAULT_ARMS),
        f"Comma-separated arms: bases {', '.join(BASES)}; BASE+NAME adds synthetic set NAME; NAME:filtered "
        "keeps what the label filter accepts; NAME-only. Unset: every base, plus real+NAME for each "
        "--synthetic NAME=DIR.",
    )
    seeds: list[int] = setting(
        [0, 1, 2, 3, 4], "Segmenter seeds per arm: --seeds N runs seeds 0..N-1 (at least 2).",
        parse=_seed_count, cli_type=int,
    )  # fmt: skip
    # The claim's arm(s), declared before the run: one arm, or the same recipe with sets from
    # generators of different seeds (their interval then covers generator variance). Empty: the
    # one stacked arm of `arms` if there is exactly one, else no claim.
    declared_arms: list[str] = setting(
        [], "The claim's arm(s), declared before the run (comma-separated; several: one recipe over "
        "generators of different seeds).", flag="--declare",
    )  # fmt: skip
    steps: int = setting(STEPS, "Segmenter steps of every run (the CPU default: RESULTS.md).")
    curve: bool = setting(
        True, "Also train the real arm's first seed for 1/3 and 2/3 of the steps: the learning curve of the "
        "runs' own schedule, and whether the budget is flat.",
    )  # fmt: skip
    val_fraction: float = setting(
        VAL_FRACTION, "Part of the training half held out for the curve and post-processing."
    )
    crop_size: int = setting(96, "Training crop size (multiple of 32).", flag="--size")
    batch_size: int = setting(8, "Real crops per batch, identical in every arm.")
    lr: float = setting(1e-3, "Segmenter learning rate.")
    # The U-Net. The CPU default is a light one (4 resnet18 stages, narrow decoder); the full
    # resnet18 U-Net (encoder_depth 5, decoder_channels 256,128,64,32,16) is the setting for a
    # GPU (`device`) or a machine with many cores.
    encoder: str = setting("resnet18", "Any segmentation_models_pytorch encoder.")
    encoder_depth: int = setting(4, "Encoder stages the U-Net uses (full U-Net: 5).")
    decoder_channels: list[int] = setting(
        [64, 32, 16, 8],
        "Comma-separated U-Net decoder widths, one per encoder stage (full U-Net: 256,128,64,32,16).",
    )
    encoder_weights: str | None = setting(
        None, "Local file of pretrained encoder weights (nothing is downloaded)."
    )
    extra_share: float = setting(
        0.5, "Oversample / copy-paste crops added per batch, as a share of batch size."
    )
    synthetic_share: float = setting(
        0.5, "Crops added per batch from each synthetic set, as a share of batch size."
    )
    synthetic_until: float = setting(1.0, "Add synthetic crops only in this first fraction of the steps.")
    defect_crop_share: float = setting(0.5, "Share of real crops centred on a defect (class-balanced).")
    filter_floor: float = setting(
        0.2, "Label filter: classes the judge finds below this Dice are not judged."
    )
    filter_ratio: float = setting(
        0.5, "Label filter: keep a defect the judge finds with >= ratio x its real Dice."
    )
    precision: str = setting("auto", "auto | bf16 | fp32.")
    device: str = setting(
        "cpu", "cpu, cuda or cuda:N: where the U-Nets train and predict (under torchrun, cuda is each "
        "process's own GPU).",
    )  # fmt: skip
    quality_samples: int = setting(200, "Synthetic images for label fidelity; crops for KID (0: no quality).")
    inception_weights: str | None = setting(
        None, "torch-fidelity InceptionV3 weights for KID (default: a domain encoder)."
    )
    diversity_masks: int = setting(16, "Masks the diversity measurement paints.")
    diversity_draws: int = setting(4, "Draws per mask for the diversity measurement.")

    def validate(self) -> None:
        self._check_types()
        if not self.arms:
            raise ConfigError("`arms` must name at least one arm")
        if len(self.seeds) < 2:
            raise ConfigError(
                "`seeds` must be at least 2: the interval of a paired difference needs seed variance"
            )
        if len(self.seeds) > MAX_SEEDS:
            raise ConfigError(f"`seeds` must be at most {MAX_SEEDS} (each seed trains every arm once)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"`seeds` repeats a seed: {self.seeds}")
        if any(not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ConfigError(f"`seeds` must be in 0..{MAX_SEED}, got {self.seeds}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"`steps` must be an integer in 1..{MAX_STEPS:,}, got {self.steps!r}")
        if not 1 <= self.encoder_depth <= 5:
            raise ConfigError(f"`encoder_depth` must be in 1..5, got {self.encoder_depth}")
        if len(self.decoder_channels) != self.encoder_depth or any(
            not isinstance(c, int) or c < 1 for c in self.decoder_channels
        ):
            raise ConfigError(
                f"`decoder_channels` must be {self.encoder_depth} positive integers (one per encoder stage), "
                f"got {self.decoder_channels}"
            )
        if len(set(self.declared_arms)) != len(self.declared_arms):
            raise ConfigError(f"`declared_arms` repeats an arm: {self.declared_arms}")
        missing = [a for a in self.declared_arms if a not in self.arms and f"real+{a}" not in self.arms]
        if missing:
            raise ConfigError(f"declared arm(s) {missing} are not among the arms {self.arms}: add them")
        if not 32 <= self.crop_size <= 4096 or self.crop_size % 32:
            raise ConfigError(
                f"`crop_size` must be a multiple of 32 (U-Net) in 32..4096, got {self.crop_size}"
            )
        if not 2 <= self.batch_size <= 4096:
            raise ConfigError(f"`batch_size` must be in 2..4096 (batch norm needs 2), got {self.batch_size}")
        for name in (
            "extra_share",
            "synthetic_share",
            "synthetic_until",
            "defect_crop_share",
            "val_fraction",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"`{name}` must be in [0, 1], got {value}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("`val_fraction` must be in (0, 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"`lr` must be > 0, got {self.lr}")
        check_precision(self.precision, "`precision`")
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"`device` must be cpu, cuda or cuda:N, got {self.device!r}")

    def _check_types(self) -> None:
        """Every field of the type it is declared with (a Python caller can pass anything): a list
        field takes a list of that item type, a number field a number, and so on; integral floats
        (2.0) become ints. One ConfigError naming the field otherwise."""
        hints = typing.get_type_hints(EvalConfig)
        for item in fields(self):
            value, hint = getattr(self, item.name), hints[item.name]
            if typing.get_origin(hint) is list:
                (kind,) = typing.get_args(hint)
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, kind) and not isinstance(v, bool) for v in value
                ):
                    example = "['real', 'oversample']" if kind is str else "[0, 1, 2]"
                    raise ConfigError(
                        f"{item.name} must be a list of {kind.__name__} values like {example}, got {value!r}"
                    )
                setattr(self, item.name, list(value))
            else:
                setattr(self, item.name, coerce(item.name, value, hint))


def default(name: str):
    """The default of one EvalConfig field (for CLI option defaults)."""
    for item in fields(EvalConfig):
        if item.name == name:
            return item.default_factory() if callable(item.default_factory) else item.default
    raise KeyError(name)
