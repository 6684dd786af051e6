"""Named model specs: `tiny` for tests, `small` for CPU work, `lama` and `big` for a GPU.

Parameter counts with image_channels=1, num_classes=4 (`count_parameters`; D with the default
class projection):

| preset | resolution | G width, blocks, style | G params   | D width, layers | D params  |
|--------|-----------:|------------------------|-----------:|-----------------|----------:|
| tiny   |         64 | 8, 2, 32               |    158,937 | 8, 3            |    75,889 |
| small  |        128 | 32, 9, 128             |  8,060,289 | 32, 3           | 1,206,721 |
| lama   |        256 | 60, 9, 128             | 26,123,089 | 64, 4           | 9,803,649 |
| big    |        256 | 60, 18, 128            | 49,372,249 | 64, 4           | 9,803,649 |

lama / big are sized like LaMa-Fourier (27 M) and Big-LaMa (51 M) (Suvorov et al. 2022); the
co-modulation mapping network and its FiLM heads (2.4 M in lama, 4.6 M in big) are why their
width is 60 rather than LaMa's 64. Every preset decodes with nearest-neighbour 2x + a 3x3
convolution folded into one transposed convolution and, except `tiny` (which keeps one channel
so tests exercise the path), has no per-pixel input noise: diversity comes from the
co-modulated style code. Every preset takes a severity map (`defectgen.severity`), so `synth
--severity` can ask for faint or strong defects. Why these choices: `benchmarks/RESULTS.md`.

A run stores its resolved spec whole, so editing this table changes new runs only.
"""

from __future__ import annotations

from defectgen.models.spec import DiscriminatorSpec, GeneratorSpec, ModelSpec


def _generator(width: int, n_blocks: int, style_dim: int, noise_channels: int = 0) -> GeneratorSpec:
    return GeneratorSpec(
        width=width,
        n_downsample=3,
        n_blocks=n_blocks,
        ratio_g=0.75,
        style_dim=style_dim,
        noise_channels=noise_channels,
        upsampling="nearest",
        severity=True,
    )


def _discriminator(width: int, n_layers: int) -> DiscriminatorSpec:
    return DiscriminatorSpec(width=width, n_layers=n_layers, conditioning="projection", kind="patch")


PRESETS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(64, _generator(8, 2, 32, noise_channels=1), _discriminator(8, 3)),  # tests
    "small": ModelSpec(128, _generator(32, 9, 128), _discriminator(32, 3)),  # CPU work
    "lama": ModelSpec(256, _generator(60, 9, 128), _discriminator(64, 4)),  # LaMa-Fourier size
    "big": ModelSpec(256, _generator(60, 18, 128), _discriminator(64, 4)),  # Big-LaMa size
}
