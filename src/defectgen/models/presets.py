"""Named model specs: `tiny` for tests, `small` for CPU work, `lama` and `big` for a GPU.

Parameter counts with image_channels=1, num_classes=4 (`count_parameters`; D with the default
class projection):

| preset | resolution | G width, blocks, style | G params   | D width, layers | D params  |
|--------|-----------:|------------------------|-----------:|-----------------|----------:|
| tiny   |         64 | 8, 2, 32               |    158,937 | 8, 3            |    75,889 |
| small  |        128 | 32, 9, 128             |  8,060,513 | 32, 3           | 1,206,721 |
| lama   |        256 | 60, 9, 128             | 26,123,509 | 64, 4           | 9,803,649 |
| big    |        256 | 60, 18, 128            | 49,372,669 | 64, 4           | 9,803,649 |
| stylegan-tiny  |   32 | 8-32, mapping 2, 32    |     49,140 | 8, 3 (input)    |    75,921 |
| stylegan-small |  128 | 16-256, mapping 4, 128 |  2,738,144 | 32, 4 (input)   | 2,452,545 |
| stylegan-large |  256 | 32-512, mapping 8, 512 | 19,620,530 | 64, 5 (input)   | 14,785,665 |

lama / big are sized like LaMa-Fourier (27 M) and Big-LaMa (51 M) (Suvorov et al. 2022); the
co-modulation mapping network and its FiLM heads (2.4 M in lama, 4.6 M in big) are why their
width is 60 rather than LaMa's 64. Every preset decodes with nearest-neighbour 2x + a 3x3
convolution folded into one transposed convolution and, except `tiny` (which keeps one channel
so tests exercise the path), has no per-pixel input noise: diversity comes from the
co-modulated style code, and grain from StyleGAN's per-pixel noise added after every decoder
stage inside the hole (`texture_noise`; not in `tiny`). Every preset takes a severity map
(`defectgen.severity`), so `synth --severity` can ask for faint or strong defects. Why these
choices: `benchmarks/RESULTS.md`.

The StyleGAN generator (`--model stylegan`, a class-conditional StyleGAN2 drawing crop and mask from noise,
`models/stylegan.py`) has its own presets, named `stylegan-<size>`: `stylegan-tiny` for tests,
`stylegan-small` for CPU work (sized so that its training iteration at 128 px is no slower than
`small`'s, `benchmarks/train_step.py`), `stylegan-large` for a GPU (StyleGAN2-ADA's 256 px
widths). Its discriminator is the same residual patch D, fed the image with the drawn mask in
its class's label map (conditioning `input`) and deep enough that its patches see most of the
crop.

A run stores its resolved spec whole, so editing this table changes new runs only.
"""

from __future__ import annotations

from defectgen.errors import ConfigError
from defectgen.models.spec import DiscriminatorSpec, GeneratorSpec, ModelSpec, StyleGANSpec


def _generator(
    width: int, n_blocks: int, style_dim: int, noise_channels: int = 0, texture_noise: bool = True
) -> GeneratorSpec:
    # texture_noise: painted defects got their grain back and trained better U-Nets, on the
    # validation part and the test half alike (benchmarks/RESULTS.md, session 16)
    return GeneratorSpec(
        width=width,
        n_downsample=3,
        n_blocks=n_blocks,
        ratio_g=0.75,
        style_dim=style_dim,
        noise_channels=noise_channels,
        severity=True,
        texture_noise=texture_noise,
    )


def _discriminator(width: int, n_layers: int, conditioning: str = "projection") -> DiscriminatorSpec:
    return DiscriminatorSpec(width=width, n_layers=n_layers, conditioning=conditioning, kind="patch")


def _stylegan(
    resolution: int, width: int, max_width: int, style_dim: int, mapping_layers: int, d: tuple
) -> ModelSpec:
    generator = StyleGANSpec(
        width=width, max_width=max_width, style_dim=style_dim, mapping_layers=mapping_layers, mixing=0.9
    )
    return ModelSpec(resolution, generator, _discriminator(*d, conditioning="input"), kind="stylegan")


PRESETS: dict[str, ModelSpec] = {
    # tests (no texture noise: the shapes and draws the tests pin)
    "tiny": ModelSpec(64, _generator(8, 2, 32, noise_channels=1, texture_noise=False), _discriminator(8, 3)),
    "small": ModelSpec(128, _generator(32, 9, 128), _discriminator(32, 3)),  # CPU work
    "lama": ModelSpec(256, _generator(60, 9, 128), _discriminator(64, 4)),  # LaMa-Fourier size
    "big": ModelSpec(256, _generator(60, 18, 128), _discriminator(64, 4)),  # Big-LaMa size
    "stylegan-tiny": _stylegan(32, 8, 32, 32, 2, (8, 3)),  # tests
    "stylegan-small": _stylegan(128, 16, 256, 128, 4, (32, 4)),  # CPU work
    "stylegan-large": _stylegan(256, 32, 512, 512, 8, (64, 5)),  # GPU (StyleGAN2-ADA's 256 px widths)
}
STYLEGAN_PREFIX = "stylegan-"


def preset_for(model: str, preset: str) -> str:
    """The preset name `--model MODEL --preset PRESET` means: a StyleGAN generator takes `stylegan-PRESET`."""
    if model == "stylegan" and not preset.startswith(STYLEGAN_PREFIX):
        return STYLEGAN_PREFIX + preset
    return preset


def preset(name: str) -> ModelSpec:
    """The model spec named `name`, or a `ConfigError` listing the names."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
