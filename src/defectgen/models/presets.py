"""Named model sizes: explicit generator / discriminator keyword arguments per preset.

`resolution` is the side of the square training crop. Every entry is plain data (no classes,
no strings naming classes), so a preset can be written into a run's config as it is.

Parameter counts measured with image_channels=1, num_classes=4 (`count_parameters`):

| preset | resolution | G width, blocks, style | G params   | D width, layers | D params  |
|--------|-----------:|------------------------|-----------:|-----------------|----------:|
| tiny   |         64 | 8, 2, 32               |    177,361 | 8, 3            |    75,889 |
| small  |        128 | 32, 9, 128             |  8,359,777 | 32, 3           | 1,206,721 |
| lama   |        256 | 60, 9, 128             | 27,178,549 | 64, 4           | 9,803,649 |
| big    |        256 | 60, 18, 128            | 50,427,709 | 64, 4           | 9,803,649 |

(D with the default class projection; `input` conditioning adds 4 * 9 * width - 4 * 8 * width.)

lama / big are sized like LaMa-Fourier (27 M) and Big-LaMa (51 M) (Suvorov et al. 2022).
Our generator carries parameters LaMa does not have (the co-modulation mapping network with
its per-block FiLM heads: 2.4 M in lama, 4.6 M in big) and a 4x4 instead of 3x3 kernel in
its upsampling layers, so width 60 rather than LaMa's 64 brings the totals to LaMa's sizes.

small / lama / big take no per-pixel noise input (noise_channels 0): in a 300-step pilot on
magnetic tile, input noise came straight through as grain inside the hole, which the
mode-seeking term rewarded. Diversity comes from the co-modulated style code instead; `tiny`
keeps one noise channel so the tests exercise that path.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "tiny": {  # tests: a G+D step on 2 images at 64 px in well under a second on CPU
        "resolution": 64,
        "generator": {
            "width": 8,
            "n_downsample": 3,
            "n_blocks": 2,
            "ratio_g": 0.75,
            "style_dim": 32,
            "noise_channels": 1,  # exercises the noise path in tests
        },
        "discriminator": {"width": 8, "n_layers": 3},
    },
    "small": {  # CPU work
        "resolution": 128,
        "generator": {
            "width": 32,
            "n_downsample": 3,
            "n_blocks": 9,
            "ratio_g": 0.75,
            "style_dim": 128,
            "noise_channels": 0,
        },
        "discriminator": {"width": 32, "n_layers": 3},
    },
    "lama": {  # LaMa-Fourier size
        "resolution": 256,
        "generator": {
            "width": 60,
            "n_downsample": 3,
            "n_blocks": 9,
            "ratio_g": 0.75,
            "style_dim": 128,
            "noise_channels": 0,
        },
        "discriminator": {"width": 64, "n_layers": 4},
    },
    "big": {  # Big-LaMa size
        "resolution": 256,
        "generator": {
            "width": 60,
            "n_downsample": 3,
            "n_blocks": 18,
            "ratio_g": 0.75,
            "style_dim": 128,
            "noise_channels": 0,
        },
        "discriminator": {"width": 64, "n_layers": 4},
    },
}
