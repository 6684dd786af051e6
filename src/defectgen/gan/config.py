"""Training configuration: one dataclass, YAML files, and `--set key=value` overrides.

Models never see this object: `train.py` reads it and passes explicit arguments on. The
resolved config is written into every run folder (`config.yaml`) and every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from defectgen.errors import ConfigError
from defectgen.settings import (
    MAX_SEED,
    MAX_STEPS,
    build_config,
    check_precision,
    dump_yaml,
    read_config_file,
    setting,
)

INPAINTER_LR, STYLEGAN_LR = 2e-4, 2e-3
# Settings this version no longer has, each with the value whose behaviour it kept: a run's
# config that holds that value reads as without it; another value is refused (that run trained
# with something this version cannot do). Why each left: benchmarks/RESULTS.md.
RETIRED = {"contrast": 0.0}  # contrast matching: severity followed no better than without it
# settings only the inpainter's objective reads (the StyleGAN generator refuses changed values)
INPAINTER_ONLY = (
    "feature_matching",
    "reconstruction",
    "mode_seeking",
    "mode_seeking_bound",
    "guide",
    "guide_weight",
)


@dataclass
class TrainConfig:
    # --- model -------------------------------------------------------------------------------
    preset: str = setting(
        "small", "Model size: tiny, small, lama, big; stylegan-tiny, -small, -large (see --model)."
    )
    # models.ModelSpec settings written over the preset's (`--set model.generator.width=48`); a run
    # writes its spec here whole, which then is the model whatever the preset says (`model_spec`)
    model: dict = setting({}, "Model spec settings over the preset's: --set model.KEY=VALUE.", flag="")
    # --- optimisation --------------------------------------------------------------------------
    steps: int = setting(10_000, "G+D iterations (each: one D step and one G step).")
    batch_size: int = setting(
        4, "Crops per step and process (even: half are drawn twice, as diversity pairs)."
    )
    lr_g: float | None = setting(
        None, "Generator learning rate (default: the model's; inpainter 2e-4, StyleGAN 0.002)."
    )
    lr_d: float | None = setting(None, "Discriminator learning rate (default: as --lr-g).")
    betas: tuple[float, float] = setting((0.0, 0.99), "Adam betas, two numbers: 0,0.99 (StyleGAN2's).")
    # --- losses (weights) ----------------------------------------------------------------------
    adversarial: float = setting(1.0, "Weight of the adversarial loss.")
    feature_matching: float = setting(10.0, "Weight of D-feature matching (LaMa's 10).")
    reconstruction: float = setting(1.0, "Weight of L1 inside the hole (low, so it does not blur).")
    mode_seeking: float = setting(1.0, "Weight of the diversity term (Mao et al. 2019).")
    mode_seeking_bound: float = setting(
        0.1, "The diversity term is -min(ratio, bound); 0: unbounded 1/ratio (bought stripes)."
    )
    guide: str = setting("", "A real-arm U-Net of `evaluate` (EVAL/runs/real_s<seed>.pt) as a class guide.")
    guide_encoder: str = setting("resnet18", "The guide's segmentation_models_pytorch encoder.")
    guide_weight: float = setting(1.0, "Weight of the guide's segmentation loss (with --guide).")
    # Inpainter: 0.001, LaMa's (at 1 D could not tell a blurred hole, RESULTS.md "Discriminator
    # probe"). StyleGAN: StyleGAN2-ADA's heuristic 0.0002 * resolution**2 / batch_size.
    r1_gamma: float | None = setting(None, "R1 strength (default: the model's; inpainter 0.001).")
    r1_interval: int = setting(16, "Lazy regularisation: R1 every k D steps, scaled by k.")
    # --- small-data training -------------------------------------------------------------------
    ada_target: float = setting(0.6, "ADA's target sign rate r_t, in [0, 1].")
    ada_interval: int = setting(4, "Steps between ADA probability updates.")
    ada_speed_images: int = setting(
        20_000, "Images for ADA's p to move 0 -> 1 (ADA: 500k; CPU runs are short)."
    )
    ema_half_life_images: int = setting(2_000, "EMA half-life of G, in images seen (StyleGAN2: 10k).")
    ema_rampup: float = setting(0.05, "EMA half-life at most this share of the images seen so far.")
    # --- training pairs ------------------------------------------------------------------------
    max_dilation: int = setting(6, "Hole = defect mask dilated by a random radius in [0, max_dilation].")
    # --- run ---------------------------------------------------------------------------------
    seed: int = setting(0, "Seed of the initialisation, crops and noise.")
    precision: str = setting("auto", "auto (bf16 where supported) | bf16 | fp32.")
    channels_last: bool = setting(True, "NHWC models and batches (16 % faster bf16 step on CPU).")
    compile: bool = setting(
        False, "torch.compile the models (measured <= 1.17x after a 150 s first step on CPU)."
    )
    log_every: int = setting(10, "Steps between metrics.jsonl records.")
    sample_every: int = setting(500, "Steps between sample grids.")
    checkpoint_every: int = setting(500, "Steps between checkpoints.")
    keep_checkpoints: int = setting(3, "Step checkpoints kept (last.pt names the newest).")
    extra: dict = setting({}, "Free-form notes carried into the run folder: --set extra.KEY=VALUE.", flag="")

    @property
    def model_spec(self):
        """The `models.ModelSpec` this config builds: `model` itself when it is a whole spec (what
        a run writes: keys added to the spec since then read at the default that is what ran
        before them, never at today's preset value), else the preset's with `model` written over it."""
        from defectgen.models import ModelSpec, preset

        base = preset(self.preset)
        if _is_whole_spec(self.model):
            spec = ModelSpec.from_dict(self.model)
            if spec.kind != base.kind:
                base.merged({"kind": spec.kind})  # refused: a spec of the other model under this preset
            return spec
        return base.merged(self.model)

    def resolved(self) -> TrainConfig:
        """This config with its model spec written out whole: what a run stores, so editing a
        preset never changes an old run."""
        spec = self.model_spec
        rate = STYLEGAN_LR if spec.is_stylegan else INPAINTER_LR
        return dataclasses.replace(
            self,
            model=spec.to_dict(),
            r1_gamma=self.model_r1_gamma(spec),
            lr_g=rate if self.lr_g is None else self.lr_g,
            lr_d=rate if self.lr_d is None else self.lr_d,
        )

    def model_r1_gamma(self, spec=None) -> float:
        """r1_gamma, or the model's default when it is null (see the field's comment)."""
        if self.r1_gamma is not None:
            return self.r1_gamma
        spec = spec or self.model_spec
        return 0.0002 * spec.resolution**2 / self.batch_size if spec.is_stylegan else 0.001

    def validate(self) -> None:
        from defectgen.models import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"`preset`: unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        self.model_spec  # noqa: B018 - builds (and so checks) the spec
        if self.batch_size > 4096:
            raise ConfigError(f"`batch_size` must be at most 4096, got {self.batch_size}")
        if not 0 <= self.ada_target <= 1 or not 0 <= self.ema_rampup <= 1:
            raise ConfigError("`ada_target` and `ema_rampup` must be in [0, 1]")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"`steps` must be in 1..{MAX_STEPS:,}, got {self.steps}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"`seed` must be in 0..{MAX_SEED}, got {self.seed}")
        if not 0 <= self.betas[0] < 1 or not 0 <= self.betas[1] < 1:
            raise ConfigError(f"`betas` must be two numbers in [0, 1), got {list(self.betas)}")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ConfigError(
                f"`batch_size` must be an even number >= 2 (diversity pairs), got {self.batch_size}"
            )
        check_precision(self.precision)
        for name in (
            "r1_interval",
            "ada_interval",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "ada_speed_images",
            "ema_half_life_images",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ConfigError("`keep_checkpoints` must be >= 1")
        for name in ("r1_gamma", "lr_g", "lr_d"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.model_spec.is_stylegan:
            self._check_stylegan_settings()
        for name in (
            "adversarial",
            "feature_matching",
            "reconstruction",
            "mode_seeking",
            "mode_seeking_bound",
            "max_dilation",
            "guide_weight",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0, got {getattr(self, name)}")

    def _check_stylegan_settings(self) -> None:
        """The StyleGAN generator reads none of the inpainter's losses: refuse a changed one rather than
        record a setting that does nothing."""
        defaults = TrainConfig()
        changed = [name for name in INPAINTER_ONLY if getattr(self, name) != getattr(defaults, name)]
        if changed:
            raise ConfigError(
                f"{', '.join(f'`{name}`' for name in changed)}: inpainter settings; the StyleGAN "
                "(StyleGAN2) trains with the adversarial loss and R1 only. Drop them, or train an inpainter"
            )

    @property
    def crop_size(self) -> int:
        return self.model_spec.resolution

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict, written_by_a_run: bool = False) -> TrainConfig:
        """A config from a dict (a YAML file, a checkpoint). What a run wrote (`written_by_a_run`)
        must hold its whole model spec as this version writes it: a run of another version is
        refused with a message that says so, never converted."""
        if not written_by_a_run:
            return cls._from_dict(data)
        try:
            from defectgen.models import ModelSpec

            if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
                raise ConfigError("it holds no model spec")
            ModelSpec.from_dict(data["model"])  # whole, not filled in from a preset
            return cls._from_dict(data)
        except ConfigError as err:
            raise ConfigError(
                f"written by another defectgen version ({err}); train it again with this version, or "
                "use the version that trained it"
            ) from None

    @classmethod
    def _from_dict(cls, data: dict) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of settings, got {type(data).__name__}")
        return build_config(cls, given=data)

    @staticmethod
    def without_retired(data: dict) -> dict:
        """`data` without the RETIRED settings it holds at their kept value (`build_config` asks
        every source this: a run's config.yaml given as --config reads too); another value is
        refused."""
        return _without_retired(data)

    @classmethod
    def check_layers(cls, file: dict, later: dict) -> None:
        """Refuse a preset asked on top of a config file that sets `model` (a run's config.yaml
        holds its whole spec): the file's models would train under the new preset's name."""
        preset, written = later.get("preset"), file.get("preset", cls.preset)
        if file.get("model") and preset is not None and preset != written:
            raise ConfigError(
                f"`preset` {preset}: the config file holds a model spec (the models of preset {written}), "
                "which would override the preset; set model.KEY values instead, or drop the file's "
                "`model:` section"
            )

    def save(self, path: Path) -> None:
        """Write config.yaml (without anchors or aliases: `load` refuses them)."""
        Path(path).write_text(dump_yaml(self.to_dict()))

    @classmethod
    def load(cls, path: Path, written_by_a_run: bool = False) -> TrainConfig:
        """A YAML config file; `written_by_a_run` for a run folder's config.yaml (see
        `from_dict`)."""
        path = Path(path)
        data = read_config_file(path)
        try:
            return cls.from_dict(data, written_by_a_run)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


def _without_retired(data: dict) -> dict:
    """`data` without the RETIRED settings it holds at their kept value; one at another value is
    refused."""
    for name, kept in RETIRED.items():
        if name in data and data[name] != kept:
            raise ConfigError(
                f"`{name}` = {data[name]!r}: a setting this version no longer has (only {kept!r}, what "
                "it does now, is read); train again without it, or use the version that trained it"
            )
    return {key: value for key, value in data.items() if key not in RETIRED}


def _is_whole_spec(model) -> bool:
    """Does `model` hold a whole `ModelSpec` (every key without a default), as a run writes it?"""
    from defectgen.models import ModelSpec

    if not isinstance(model, dict) or not {"resolution", "generator", "discriminator"} <= set(model):
        return False
    try:
        ModelSpec.from_dict(model)
    except ConfigError:
        return False
    return True
