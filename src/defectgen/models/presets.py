"""Named model sizes: explicit generator / discriminator keyword arguments per preset.

`resolution` is the side of the square training crop. Every entry is plain data (no classes,
no strings naming classes), so a preset can be written into a run's config as it is.

Parameter counts measured with image_channels=1, num_classes=4 (`count_parameters`):

| preset | resolution | G width, blocks, style | G params   | D width, layers | D params  |
|--------|-----------:|------------------------|-----------:|-----------------|----------:|
| tiny   |         64 | 8, 2, 32               |    158,545 | 8, 3            |    75,889 |
| small  |        128 | 32, 9, 128             |  8,058,721 | 32, 3           | 1,206,721 |
| lama   |        256 | 60, 9, 128             | 26,120,149 | 64, 4           | 9,803,649 |
| big    |        256 | 60, 18, 128            | 49,369,309 | 64, 4           | 9,803,649 |

(D with the default class projection; `input` conditioning adds 4 * 9 * width - 4 * 8 * width.)

lama / big are sized like LaMa-Fourier (27 M) and Big-LaMa (51 M) (Suvorov et al. 2022).
Our generator carries parameters LaMa does not have (the co-modulation mapping network with
its per-block FiLM heads: 2.4 M in lama, 4.6 M in big), so width 60 rather than LaMa's 64
brings the totals near LaMa's sizes.

Every preset decodes with nearest-neighbour 2x then a 3x3 convolution, folded into one
transposed convolution (`upsampling="nearest"`, see `generator.Upsample`). The first decoder,
4x4 stride-2 transposed convolutions, laid a regular 8 px grid (period 2**n_downsample) over
every large hole; bilinear resize then convolve (`"resize"`) removed it but made the step
slower (plain G+D forward/backward 0.39-0.45 s against 0.37-0.38 s on the 2-core CPU) and
filled large holes with smooth strokes. Nearest costs what the transposed decoder costs
(0.37-0.39 s), had no grid at 2,500 steps, and reached label fidelity 0.27 at 2,500 steps
(resize: 0.27) and 0.32 at 5,000; by 5,000 steps an 8 px ladder had come back in the largest
(Fray) hole (benchmarks/RESULTS.md, "Nearest-neighbour decoder"). StyleGAN decoder noise
(`decoder_noise=True`) gave large holes grain, but the real-trained U-Net no longer found
Uneven in them (label fidelity 0.01), so it stays off. `--set g_upsampling=transposed --set
g_decoder_noise=false` trains the first decoder, which is what checkpoints from before these
options hold (`config.with_legacy_models`).

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
            "upsampling": "nearest",
            "decoder_noise": False,
        },
        "discriminator": {"width": 8, "n_layers": 3, "stem_layers": 1},
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
            "upsampling": "nearest",
            "decoder_noise": False,
        },
        "discriminator": {"width": 32, "n_layers": 3, "stem_layers": 1},
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
            "upsampling": "nearest",
            "decoder_noise": False,
        },
        "discriminator": {"width": 64, "n_layers": 4, "stem_layers": 1},
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
            "upsampling": "nearest",
            "decoder_noise": False,
        },
        "discriminator": {"width": 64, "n_layers": 4, "stem_layers": 1},
    },
}
