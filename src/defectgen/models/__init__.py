"""Models: the FFC inpainting generator, the patch discriminator, and the spec that builds both.

spec = preset("small")                      # or a run's config.model_spec
G = spec.generator.build(image_channels=1, num_classes=4)
D = spec.discriminator.build(image_channels=1, num_classes=4)
raw = G(image, hole, labels, generator=torch_generator)   # [N, C, H, W] in [-1, 1]
fake = composite(raw, image, hole)                        # known pixels kept exactly
logits, features = D(fake, labels)
"""

from __future__ import annotations

from torch import nn

from defectgen.models.discriminator import PatchDiscriminator
from defectgen.models.generator import FFCGenerator, composite
from defectgen.models.presets import PRESETS, preset
from defectgen.models.spec import DiscriminatorSpec, GeneratorSpec, ModelSpec

__all__ = [
    "DiscriminatorSpec",
    "FFCGenerator",
    "GeneratorSpec",
    "ModelSpec",
    "PatchDiscriminator",
    "PRESETS",
    "composite",
    "preset",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in `module`; only those with requires_grad if asked."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
