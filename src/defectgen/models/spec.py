"""The model spec: every argument that builds the generator and the discriminator, in one value.

A preset (`presets.PRESETS`) is a `ModelSpec`; a run resolves its spec once (the preset, with
any `--set model.generator.width=48`-style overrides on top) and writes it whole into
`config.yaml` and every checkpoint, and only the spec builds the models. Editing a preset
therefore never changes an old run. Checkpoints written before the spec existed go through
`config.upgrade_config`, the one conversion of old config dicts.

    spec = ModelSpec.from_preset("small").merged({"generator": {"width": 48}})
    G = spec.build_generator(image_channels=1, num_classes=4)
    D = spec.discriminator.build(image_channels=1, num_classes=4)

Two kinds of model (`ModelSpec.kind`): the `inpainter` (default; `GeneratorSpec`, the FFC
generator that paints inside a given mask) and the `stylegan` (`StyleGANSpec`, a class-conditional
StyleGAN2 that draws a crop and its mask from noise; `models/stylegan.py`). Both are judged by
the same patch discriminator, which the StyleGAN generator feeds its mask as the class's label map.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from defectgen.errors import ConfigError
from defectgen.models.discriminator import CONDITIONING, PatchDiscriminator, SegmentingDiscriminator
from defectgen.models.generator import FFCGenerator
from defectgen.models.stylegan import StyleGenerator
from defectgen.settings import coerce

MAX_WIDTH, MAX_BLOCKS, MAX_LAYERS = 4096, 256, 12  # far beyond any sensible model; bound a typo
DISCRIMINATOR_KINDS = ("patch", "segmenting")
MODEL_KINDS = ("inpainter", "stylegan")


@dataclass(frozen=True)
class GeneratorSpec:
    """Arguments of `FFCGenerator` besides the data's channels and classes."""

    width: int  # channels after the stem; doubled by each downsampling
    n_downsample: int  # stride-2 stages; the size step is 2**n_downsample
    n_blocks: int  # FFC residual blocks at the bottleneck
    ratio_g: float  # share of global (Fourier) channels, in (0, 1)
    style_dim: int  # co-modulation style code size
    noise_channels: int  # per-pixel noise maps at the input (0: none)
    severity: bool  # a severity map input (defectgen.severity): synth --severity controls intensity
    decoder_noise: int = 0  # OASIS 3D noise: z's first entries modulate every decoder stage (0: off)
    texture_noise: bool = False  # StyleGAN's per-pixel noise added at every decoder stage, in the hole

    def build(self, image_channels: int, num_classes: int) -> FFCGenerator:
        return FFCGenerator(image_channels, num_classes, **dataclasses.asdict(self))

    def check(self) -> None:
        _in_range("generator.width", self.width, 1, MAX_WIDTH)
        _in_range("generator.n_downsample", self.n_downsample, 1, 8)
        _in_range("generator.n_blocks", self.n_blocks, 0, MAX_BLOCKS)
        _in_range("generator.style_dim", self.style_dim, 1, MAX_WIDTH)
        _in_range("generator.noise_channels", self.noise_channels, 0, 64)
        _in_range("generator.decoder_noise", self.decoder_noise, 0, self.style_dim)
        if not 0.0 < self.ratio_g < 1.0:
            raise ConfigError(f"model.generator.ratio_g must be in (0, 1), got {self.ratio_g}")


@dataclass(frozen=True)
class StyleGANSpec:
    """Arguments of the StyleGAN generator (`StyleGenerator`) besides the data's channels and classes and
    the resolution (the model's)."""

    width: int  # channels at the output resolution; doubled per halving up to max_width
    max_width: int  # channel cap (the low resolutions)
    style_dim: int  # z and w size
    mapping_layers: int  # layers of the mapping MLP
    mixing: float  # style-mixing probability in training

    def build(self, image_channels: int, num_classes: int, resolution: int) -> StyleGenerator:
        return StyleGenerator(image_channels, num_classes, resolution, **dataclasses.asdict(self))

    def check(self) -> None:
        _in_range("generator.width", self.width, 1, MAX_WIDTH)
        _in_range("generator.max_width", self.max_width, 1, MAX_WIDTH)
        _in_range("generator.style_dim", self.style_dim, 1, MAX_WIDTH)
        _in_range("generator.mapping_layers", self.mapping_layers, 1, 16)
        if not 0.0 <= self.mixing <= 1.0:
            raise ConfigError(f"model.generator.mixing must be in [0, 1], got {self.mixing}")


@dataclass(frozen=True)
class DiscriminatorSpec:
    """Arguments of the discriminator besides the data's channels and classes."""

    width: int  # channels of the first layer; doubled per layer up to 8x
    n_layers: int  # stride-2 layers
    conditioning: str  # how a patch D sees the label maps: projection | input | none
    kind: str  # patch (real/fake per patch) | segmenting (OASIS: a class or "fake" per pixel)

    def build(self, image_channels: int, num_classes: int) -> PatchDiscriminator | SegmentingDiscriminator:
        if self.kind == "segmenting":
            return SegmentingDiscriminator(image_channels, num_classes, self.width, self.n_layers)
        return PatchDiscriminator(
            image_channels, num_classes, self.width, self.n_layers, conditioning=self.conditioning
        )

    def check(self) -> None:
        _in_range("discriminator.width", self.width, 1, MAX_WIDTH)
        _in_range("discriminator.n_layers", self.n_layers, 1, MAX_LAYERS)
        _one_of("discriminator.conditioning", self.conditioning, CONDITIONING)
        _one_of("discriminator.kind", self.kind, DISCRIMINATOR_KINDS)
        if self.kind == "segmenting" and self.conditioning != "none":
            raise ConfigError(
                "model.discriminator.kind=segmenting reads the labels as its target, not as an input: "
                "also set model.discriminator.conditioning=none"
            )


@dataclass(frozen=True)
class ModelSpec:
    """Both models of a run, and the square crop side they train at."""

    resolution: int  # training crop side in px (a multiple of 8); an inpainter runs at any size
    generator: GeneratorSpec | StyleGANSpec  # StyleGANSpec when kind == "stylegan"
    discriminator: DiscriminatorSpec
    kind: str = "inpainter"  # inpainter | stylegan (runs written before the StyleGAN generator: inpainter)

    @property
    def is_stylegan(self) -> bool:
        return self.kind == "stylegan"

    def build_generator(self, image_channels: int, num_classes: int) -> FFCGenerator | StyleGenerator:
        """The generator this spec describes, for data of `image_channels` and `num_classes`."""
        if self.is_stylegan:
            return self.generator.build(image_channels, num_classes, self.resolution)
        return self.generator.build(image_channels, num_classes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """A whole spec from a dict (config.yaml, a checkpoint); every key required (except one
        added later with a default, which is what ran before it existed), types checked, values
        in range."""
        if not isinstance(data, dict):
            raise ConfigError(f"model: expected a mapping, got {data!r}")
        kind = data.get("kind", "inpainter")
        if kind not in MODEL_KINDS:
            raise ConfigError(f"model.kind must be inpainter or stylegan, got {kind!r}")
        spec = cls(
            resolution=_field(cls, "resolution", data),
            generator=_part(StyleGANSpec if kind == "stylegan" else GeneratorSpec, "generator", data),
            discriminator=_part(DiscriminatorSpec, "discriminator", data),
            kind=kind,
        )
        spec.check()
        return spec

    def merged(self, overrides: dict) -> ModelSpec:
        """This spec with `overrides` (a possibly partial nested dict) written over it."""
        if not isinstance(overrides, dict):
            raise ConfigError(f"model: expected a mapping, got {overrides!r}")
        data = self.to_dict()
        if overrides.get("kind", self.kind) != self.kind:
            raise ConfigError(
                f"model.kind: this preset builds the {self.kind}; choose the model with --model "
                "inpainter | stylegan (or a preset of that kind) instead of overriding model.kind"
            )
        for key, value in overrides.items():
            if key in ("generator", "discriminator") and isinstance(value, dict):
                unknown = sorted(set(value) - set(data[key]))
                if unknown:
                    raise ConfigError(
                        f"model.{key}: unknown key(s) {', '.join(unknown)} (known: {', '.join(data[key])})"
                    )
                data[key] = {**data[key], **value}
            elif key in data:
                data[key] = value
            else:
                raise ConfigError(f"model: unknown key {key!r} (known: {', '.join(data)})")
        return ModelSpec.from_dict(data)

    def check(self) -> None:
        _in_range("resolution", self.resolution, 8, 4096)
        if self.resolution % 8:
            raise ConfigError(f"model.resolution must be a multiple of 8, got {self.resolution}")
        self.generator.check()
        self.discriminator.check()
        if self.is_stylegan:
            if self.resolution & (self.resolution - 1):
                raise ConfigError(
                    f"model.resolution must be a power of two for the StyleGAN, got {self.resolution}"
                )
            if self.discriminator.kind != "patch" or self.discriminator.conditioning == "none":
                raise ConfigError(
                    "the StyleGAN's discriminator must see the drawn mask: model.discriminator.kind=patch "
                    "with conditioning input or projection"
                )
            return
        step = 2**self.generator.n_downsample  # each downsampling halves the crop exactly
        if self.resolution % step or self.resolution < 2 * step:
            raise ConfigError(
                f"model.resolution {self.resolution} must be a multiple of {step} and at least {2 * step} "
                f"for model.generator.n_downsample={self.generator.n_downsample}"
            )


def _part(kind: type, name: str, data: dict):
    part = data.get(name)
    if not isinstance(part, dict):
        raise ConfigError(f"model.{name}: expected a mapping of its settings, got {part!r}")
    known = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(part) - set(known))
    if unknown:
        raise ConfigError(f"model.{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return kind(**{key: _field(kind, key, part, f"{name}.") for key in known})


def _field(kind: type, key: str, data: dict, prefix: str = ""):
    if key not in data:
        default = kind.__dataclass_fields__[key].default
        if default is not dataclasses.MISSING:  # added later; its default is the behaviour before it
            return default
        raise ConfigError(f"model.{prefix}{key} is missing")
    return coerce(f"model.{prefix}{key}", data[key], typing.get_type_hints(kind)[key])


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"model.{name} must be in {low}..{high}, got {value}")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"model.{name} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")
