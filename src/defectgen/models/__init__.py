"""Models: the FFC inpainting generator, the patch discriminator, and named presets.

G = build_generator("small", image_channels=1, num_classes=4)
D = build_discriminator("small", image_channels=1, num_classes=4)
raw = G(image, hole, labels, generator=torch_generator)   # [N, C, H, W] in [-1, 1]
fake = composite(raw, image, hole)                        # known pixels kept exactly
logits, features = D(fake, labels)
"""

from __future__ import annotations

from torch import nn

from defectgen.errors import ConfigError
from defectgen.models.discriminator import PatchDiscriminator
from defectgen.models.generator import FFCGenerator, composite
from defectgen.models.presets import PRESETS

__all__ = [
    "FFCGenerator",
    "PatchDiscriminator",
    "PRESETS",
    "build_generator",
    "build_discriminator",
    "composite",
    "count_parameters",
]


def _preset(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_generator(
    preset: str,
    image_channels: int,
    num_classes: int,
    *,
    upsampling: str | None = None,
    ratio_g: float | None = None,
    decoder_noise: bool | None = None,
) -> FFCGenerator:
    """The generator of a named preset (see `PRESETS`); a keyword that is not None overrides it."""
    overrides = {"upsampling": upsampling, "ratio_g": ratio_g, "decoder_noise": decoder_noise}
    kwargs = {**_preset(preset)["generator"], **{k: v for k, v in overrides.items() if v is not None}}
    return FFCGenerator(image_channels, num_classes, **kwargs)


def build_discriminator(
    preset: str,
    image_channels: int,
    num_classes: int,
    conditioning: str = "projection",
    *,
    stem_layers: int | None = None,
) -> PatchDiscriminator:
    """The discriminator of a named preset (see `PRESETS`); `stem_layers`, if not None,
    overrides the preset's."""
    kwargs = {**_preset(preset)["discriminator"], "conditioning": conditioning}
    if stem_layers is not None:
        kwargs["stem_layers"] = stem_layers
    return PatchDiscriminator(image_channels, num_classes, **kwargs)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in `module`; only those with requires_grad if asked."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
