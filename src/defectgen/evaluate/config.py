"""`EvalConfig`: every setting of `defectgen evaluate`, with its default, in one place.

The CLI takes its option defaults from here, and so do the demo and the mission benchmark; a
value changed here changes all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from defectgen.config import MAX_SEED, MAX_STEPS
from defectgen.errors import ConfigError

MAX_SEEDS = 1000  # seeds per evaluation: each trains every arm once

DEFAULT_ARMS = ("real", "oversample", "copypaste", "blendpaste", "classic", "real+synthetic")

# Post-processing grid searched per arm, per class, on the validation part (Severstal practice:
# a probability threshold and a minimum connected-component area).
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREAS = (0, 16, 32, 64, 128, 256, 512)


@dataclass
class EvalConfig:
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    steps: int | None = None  # None: chosen on the real arm from the validation part
    max_steps: int = 1500  # step selection: train this long, validating every `eval_every`
    eval_every: int = 150
    tolerance: float = 0.02  # step selection: first step within this of the best validation Dice
    val_fraction: float = 0.2  # part of the training half held out for steps and post-processing
    crop_size: int = 128
    batch_size: int = 8  # real crops per batch, identical in every arm
    lr: float = 1e-3
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    extra_share: float = 0.5  # oversample / copy-paste crops added per batch, as a share of batch_size
    synthetic_share: float = 0.5  # synthetic crops added per batch (each named set), share of batch_size
    synthetic_until: float = 1.0  # synthetic crops only in this first fraction of the steps
    defect_crop_share: float = 0.5  # share of real crops centred on a defect (class-balanced)
    filter_floor: float = 0.2  # label filter: classes the judge finds below this Dice are not judged
    filter_ratio: float = 0.5  # label filter: keep a defect the judge finds with >= ratio x its real Dice
    precision: str = "auto"
    quality_samples: int = 200  # synthetic images for label fidelity; crops for KID (0: no quality)
    inception_weights: str | None = None
    diversity_masks: int = 16
    diversity_draws: int = 4

    def validate(self) -> None:
        if not self.arms:
            raise ConfigError("--arms must name at least one arm")
        if len(self.seeds) < 2:
            raise ConfigError(
                "--seeds must be at least 2: the interval of a paired difference needs seed variance"
            )
        if len(self.seeds) > MAX_SEEDS:
            raise ConfigError(f"--seeds must be at most {MAX_SEEDS} (each seed trains every arm once)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds repeats a seed: {self.seeds}")
        if any(not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ConfigError(f"seeds must be in 0..{MAX_SEED}, got {self.seeds}")
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"--steps must be in 1..{MAX_STEPS:,}, got {self.steps}")
        if not 1 <= self.max_steps <= MAX_STEPS or not 1 <= self.eval_every <= MAX_STEPS:
            raise ConfigError(f"--max-steps and --eval-every must be in 1..{MAX_STEPS:,}")
        if not 32 <= self.crop_size <= 4096 or self.crop_size % 32:
            raise ConfigError(f"--size must be a multiple of 32 (U-Net) in 32..4096, got {self.crop_size}")
        if not 2 <= self.batch_size <= 4096:
            raise ConfigError(f"--batch-size must be in 2..4096 (batch norm needs 2), got {self.batch_size}")
        for name in (
            "extra_share",
            "synthetic_share",
            "synthetic_until",
            "defect_crop_share",
            "val_fraction",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must be in (0, 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"--precision must be auto, bf16 or fp32, got {self.precision!r}")


def default(name: str):
    """The default of one EvalConfig field (for CLI option defaults)."""
    for item in fields(EvalConfig):
        if item.name == name:
            return item.default_factory() if callable(item.default_factory) else item.default
    raise KeyError(name)
