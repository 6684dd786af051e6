"""SynthConfig: every setting of `defectgen synth`, the one definition the Python API
(`synth.synthesize`) takes and the CLI's options are made from (`cli_config.config_options`).
Inputs that are not settings (the checkpoint, the dataset, the split, the output folder) are
arguments of `synthesize`."""

from __future__ import annotations

from dataclasses import dataclass

from defectgen.errors import ConfigError
from defectgen.settings import MAX_SEED, check_precision, setting

FORMATS = ("severstal", "folder")
MODES = ("paint", "harmonize")
BACKGROUND_SOURCES = ("auto", "free", "labelled", "cleaned")
MAX_IMAGES = 10_000_000  # per call: a bound on what a typo can ask for (10^12 would not fit a list)
MAX_BAND, MAX_RIM = 64, 16  # px


def _class_ids(text: str) -> list[int]:
    try:
        return [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--classes takes comma-separated class ids, e.g. 1,3; got {text!r}") from None


@dataclass
class SynthConfig:
    n: int | None = setting(
        None,
        "Number of synthetic images (under torchrun write -n: torchrun reads --n as its own option).",
        flag="--n -n",
    )
    classes: list[int] | None = setting(None, "Only these class ids, e.g. 1,3.", parse=_class_ids)
    mask_source: str = setting(
        "real", "real | shapes | folder:PATH | learned:RUN (shapes a stylegan run draws) | mix."
    )
    format: str = setting("folder", "severstal (JPEG + train.csv) or folder (PNG + index masks).")
    seed: int = setting(0, "Same seed, same files.")
    backgrounds: str | None = setting(None, "Folder of defect-free images to paint on.")
    background_source: str = setting(
        "auto",
        "What to paint on: free (defect-free training images) | labelled (defect images, new defects away "
        "from the old) | cleaned (defect images, their defects erased first) | auto (free when the training "
        "half has at least 8 defect-free images, else labelled).",
    )
    severity: str | None = setting(
        None,
        "LOW:HIGH (or one value): each new defect's severity is drawn from this range of quantiles of the "
        "real defects' contrast within their class (0 faintest, 1 strongest); unset: 0:1, the real spread.",
    )
    batch_size: int = setting(4, "Images per generator call.")
    tile: int | None = setting(
        None, "Paint a window of this size around each defect instead of the whole image."
    )
    device: str = setting("cpu", "cpu, cuda, cuda:1.")
    precision: str = setting("auto", "auto | bf16 | fp32.")
    judge: str | None = setting(
        None, "Evaluation folder whose real-arm U-Net scores each item (scores go into manifest.jsonl)."
    )
    attempts: int = setting(1, "With judge: draws per item until one is recognised (the best is kept).")
    mode: str = setting(
        "paint",
        "paint: new defects in drawn masks | harmonize: real training defects pasted, only their seam "
        "repainted.",
    )
    band: int | None = setting(
        None, "harmonize: px repainted outside each pasted defect (unset: the generator's hole dilation)."
    )
    rim: int = setting(1, "harmonize: px repainted inside its edge (0: none).")

    def validate(self) -> None:
        if self.n is None:
            raise ConfigError("`n`: give the number of images to synthesize")
        if not 1 <= self.n <= MAX_IMAGES:
            raise ConfigError(f"`n` must be a number of images in 1..{MAX_IMAGES:,}, got {self.n}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"`seed` must be in 0..{MAX_SEED}, got {self.seed}")
        if self.format not in FORMATS:
            raise ConfigError(f"`format` must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"`batch_size` must be in 1..1024, got {self.batch_size}")
        if self.tile is not None and not (8 <= self.tile <= 4096 and self.tile % 8 == 0):
            raise ConfigError(f"`tile` must be a multiple of 8 in 8..4096, got {self.tile}")
        if not 1 <= self.attempts <= 100 or (self.attempts > 1 and self.judge is None):
            raise ConfigError(f"`attempts` must be in 1..100 and needs `judge` above 1, got {self.attempts}")
        if self.background_source not in BACKGROUND_SOURCES:
            raise ConfigError(
                f"`background_source` must be one of {', '.join(BACKGROUND_SOURCES)}, "
                f"got {self.background_source!r}"
            )
        check_precision(self.precision, "`precision`")
        self._check_mode()

    def _check_mode(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "paint":
            if self.band is not None or self.rim != 1:
                raise ConfigError("`band` and `rim` belong to `mode` harmonize")
            return
        if self.mask_source != "real":
            raise ConfigError(
                "`mode` harmonize pastes real training defects: their masks are the labels, so it takes no "
                f"`mask_source` (got {self.mask_source!r})"
            )
        if self.band is not None and not 1 <= self.band <= MAX_BAND:
            raise ConfigError(f"`band` must be in 1..{MAX_BAND} px, got {self.band}")
        if not 0 <= self.rim <= MAX_RIM:
            raise ConfigError(f"`rim` must be in 0..{MAX_RIM} px, got {self.rim}")
