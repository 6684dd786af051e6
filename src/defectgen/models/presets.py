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

Every preset decodes with resize-then-convolve upsampling (`upsampling="resize"`). The first
decoder, 4x4 stride-2 transposed convolutions, laid a regular 8 px grid (period
2**n_downsample) over every large hole; with resize it is gone, and label fidelity was
0.26-0.27 against 0.22-0.26 (benchmarks/RESULTS.md, "Where the 8-px grid comes from"). Resize
alone fills large holes with smooth strokes; StyleGAN decoder noise
(`decoder_noise=True`) gave them grain, but the real-trained U-Net no longer found Uneven in
them (label fidelity 0.01) and KID rose to 137, so it stays off. `--set
g_upsampling=transposed --set g_decoder_noise=false` trains the first decoder, which is what
checkpoints from before these options hold (`config.with_legacy_generator`).

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
            "upsampling": "resize",
            "decoder_noise": False,
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
            "upsampling": "resize",
            "decoder_noise": False,
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
            "upsampling": "resize",
            "decoder_noise": False,
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
            "upsampling": "resize",
            "decoder_noise": False,
        },
        "discriminator": {"width": 64, "n_layers": 4},
    },
}
