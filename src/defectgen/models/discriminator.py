"""Residual PatchGAN discriminator that sees the image together with its class label maps.

Why a PatchGAN (spatial logits) rather than StyleGAN2's scalar-output residual D: only the
hole of a composited fake is fake; the rest is the real background. With a logit per patch
the loss can use the hole, resized to the logit grid, as a spatial target (LaMa's
`mask_as_fake_target`, Suvorov et al. 2022): patches inside the hole are "fake", patches
outside are "real". A scalar D would have to call a whole image fake because of a few
painted pixels and would learn nothing about where. Patch logits also keep D fully
convolutional (any input size) and give many decisions per image, which matters when the
dataset is small.

From StyleGAN2 (Karras et al., CVPR 2020) we take the residual downsampling blocks with
leaky ReLU, no normalisation (batches are 4-8: BatchNorm would be noisy and couples samples,
which also breaks the per-sample R1 penalty), and the 1/sqrt(2) scaling of the residual sum.

How D sees the class label maps (`conditioning`), so that a defect that ignores its mask or
class is detectably fake:
  projection (default)  the trunk sees the image alone; each patch's class shares (label maps
                        area-pooled to the logit grid) are embedded and dotted with the patch's
                        last features, added to its logit (projection discriminator, Miyato &
                        Koyama, ICLR 2018; StyleGAN2-ADA conditions its D the same way).
  input                 labels concatenated to the image at the stem (pix2pix style).
  none                  labels not used (LaMa's D).
Why projection: the label maps say where the hole is. Fed in at the stem, D learns
"labelled = painted" before it learns what painted content looks like. Trained against a
Gaussian-blurred hole (RESULTS.md "Discriminator probe", `--fill blur`, 600 steps, the relativistic loss
of losses.py, R1 gamma 0.001), D told the real patch from its blurred twin in 88 % of pairs
with `input`, 96 % with `none` and 98 % with `projection`, with the largest median margin
(0.20 vs 0.14 and 0.10; `benchmarks/RESULTS.md`, "Discriminator probe").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from defectgen.models.ffc import init_conv

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2))  # He et al. 2015 gain for leaky ReLU


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    spectral_norm: bool,
    gain: float = LEAKY_GAIN,
    **kwargs,
) -> nn.Module:
    """A conv with He initialisation (PyTorch's default init shrinks each layer's output by
    about 1/sqrt(6), so D's deeper features would start ~100x smaller than its first), with
    spectral normalisation if asked."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
    init_conv(conv, gain=gain)
    return apply_spectral_norm(conv) if spectral_norm else conv


class ResidualDownBlock(nn.Module):
    """StyleGAN2-style residual block that halves H and W.

    main: 3x3 stride-2 conv (in->out) + lrelu, 3x3 conv (out->out) + lrelu;
    skip: 2x2 average pool + 1x1 conv (in->out, no bias); output (main + skip) / sqrt(2).
    StyleGAN2 runs its first conv at the input resolution (in->in) and strides in the second
    (in->out); we stride first. Where a block doubles its channels both orders take the same
    multiply-adds and ours holds half the activations; where the channels are capped (in == out)
    ours takes 2.5x fewer. Full-resolution features come from the stem.
    """

    def __init__(self, in_channels: int, out_channels: int, spectral_norm: bool = False):
        super().__init__()
        self.conv_down = _conv(in_channels, out_channels, 3, spectral_norm, stride=2, padding=1)
        self.conv = _conv(out_channels, out_channels, 3, spectral_norm, padding=1)
        self.skip = _conv(in_channels, out_channels, 1, spectral_norm, gain=1.0, bias=False)
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: Tensor) -> Tensor:
        # x [N, in, H, W]; for odd H or W the skip is resized to the main path's ceil(H/2)
        main = self.activation(self.conv_down(x))  # [N, out, H/2, W/2]
        main = self.activation(self.conv(main))
        skip = self.skip(F.avg_pool2d(x, 2))  # [N, out, H/2, W/2]
        if skip.shape[-2:] != main.shape[-2:]:  # odd sizes: stride-2 conv rounds up
            skip = F.interpolate(skip, size=main.shape[-2:], mode="nearest")
        return (main + skip) * (1 / math.sqrt(2))


CONDITIONING = ("projection", "input", "none")


class PatchDiscriminator(nn.Module):
    """Residual PatchGAN: (image, labels) -> (logits [N, 1, h, w], features).

    stem: one 3x3 conv at the input resolution (C -> width, or C+K -> width with conditioning
    "input") + lrelu, then `n_layers` ResidualDownBlocks doubling
    the channels (capped at 8 * width), then a 1x1 conv to one logit per patch, plus the class
    projection term with conditioning "projection".
    h, w = ceil(H / 2**n_layers), ceil(W / 2**n_layers).

    `features` is the list of the `n_layers` residual-block outputs (coarsening; the last one
    is what the logits are read from), for feature matching.
    """

    def __init__(
        self,
        image_channels: int,
        num_classes: int,
        width: int = 64,
        n_layers: int = 3,
        spectral_norm: bool = False,
        conditioning: str = "projection",
    ):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r}")
        if min(image_channels, num_classes, width, n_layers) < 1:
            raise ValueError(
                "need image_channels, num_classes, width, n_layers >= 1; got "
                f"{image_channels}, {num_classes}, {width}, {n_layers}"
            )
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.conditioning = conditioning
        max_channels = 8 * width
        channels = [min(width * 2**i, max_channels) for i in range(n_layers + 1)]
        stem_inputs = image_channels + (num_classes if conditioning == "input" else 0)
        self.stem = nn.Sequential(
            _conv(stem_inputs, width, 3, spectral_norm, padding=1), nn.LeakyReLU(LEAKY_SLOPE)
        )
        self.blocks = nn.ModuleList(
            ResidualDownBlock(channels[i], channels[i + 1], spectral_norm) for i in range(n_layers)
        )
        # A 1x1 conv reads the logits off the last block: a 3x3 conv at the top costs as
        # much as a whole residual block (measured 15 % of D's step) for a little more RF.
        self.to_logits = _conv(channels[-1], 1, 1, spectral_norm, gain=1.0)
        if conditioning == "projection":
            # one embedding vector per class, compared with the patch's features
            self.class_embedding = _conv(num_classes, channels[-1], 1, spectral_norm, gain=1.0, bias=False)

    def forward(self, image: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
        expected = f"[N, {self.image_channels}, H, W] and [N, {self.num_classes}, H, W]"
        if (
            image.ndim != 4
            or labels.ndim != 4
            or image.shape[1] != self.image_channels
            or labels.shape[1] != self.num_classes
            or image.shape[0] != labels.shape[0]
            or image.shape[2:] != labels.shape[2:]
        ):
            raise ValueError(
                f"image and labels must be {expected} (image_channels={self.image_channels}, "
                f"num_classes={self.num_classes}), got {tuple(image.shape)} and "
                f"{tuple(labels.shape)}"
            )
        labels = labels.to(image.dtype)
        x = torch.cat([image, labels], dim=1) if self.conditioning == "input" else image
        x = self.stem(x)  # [N, w, H, W]
        features: list[Tensor] = []
        for block in self.blocks:
            x = block(x)  # [N, c_i, H/2**i, W/2**i]
            features.append(x)
        logits = self.to_logits(x)  # [N, 1, h, w]
        if self.conditioning == "projection":
            # class share of each patch (area), embedded, dotted with the patch's features
            share = F.adaptive_avg_pool2d(labels, x.shape[-2:])  # [N, K, h, w]
            logits = logits + (self.class_embedding(share) * x).sum(dim=1, keepdim=True) / math.sqrt(
                x.shape[1]
            )
        return logits, features  # [N, 1, h, w], list


class SegmentingDiscriminator(nn.Module):
    """OASIS-style discriminator (Schönfeld et al., ICLR 2021) that segments:
    image -> (logits [N, K + 2, H, W], features).

    Per pixel it reads one of K + 2 classes: channel FAKE (0) "painted by the generator",
    BACKGROUND (1) real surface, and 2..K+1 the defect classes 1..K. Real pixels are trained
    towards their label and painted ones towards FAKE; the generator is rewarded when the
    pixels it painted in the mask of class k read as class k (losses.d_segmenting /
    g_segmenting). So the adversarial question is exactly the product's: is this a defect of
    the asked class, where it was asked for? The label maps are the target, not an input
    (`labels` is accepted for the common interface and not used).

    A U-Net: the PatchDiscriminator's stem and `n_layers` ResidualDownBlocks, then per scale
    a nearest 2x upsampling, the encoder feature of that scale concatenated, a 3x3 conv and
    lrelu, and a 1x1 conv to the K + 2 logits at full resolution. `features` are the encoder
    blocks' outputs, for feature matching.
    """

    segmenting = True

    def __init__(self, image_channels: int, num_classes: int, width: int = 64, n_layers: int = 3):
        super().__init__()
        if min(image_channels, num_classes, width, n_layers) < 1:
            raise ValueError(
                "need image_channels, num_classes, width, n_layers >= 1; got "
                f"{image_channels}, {num_classes}, {width}, {n_layers}"
            )
        self.image_channels, self.num_classes, self.n_layers = image_channels, num_classes, n_layers
        channels = [min(width * 2**i, 8 * width) for i in range(n_layers + 1)]
        self.stem = nn.Sequential(
            _conv(image_channels, width, 3, False, padding=1), nn.LeakyReLU(LEAKY_SLOPE)
        )
        self.blocks = nn.ModuleList(ResidualDownBlock(channels[i], channels[i + 1]) for i in range(n_layers))
        self.up = nn.ModuleList(
            nn.Sequential(
                _conv(channels[i + 1] + channels[i], channels[i], 3, False, padding=1),
                nn.LeakyReLU(LEAKY_SLOPE),
            )
            for i in reversed(range(n_layers))
        )
        self.to_logits = _conv(width, num_classes + 2, 1, False, gain=1.0)

    def forward(self, image: Tensor, labels: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        if image.ndim != 4 or image.shape[1] != self.image_channels:
            raise ValueError(f"image must be [N, {self.image_channels}, H, W], got {tuple(image.shape)}")
        x = self.stem(image)  # [N, w, H, W]
        skips, features = [x], []
        for block in self.blocks:
            x = block(x)  # [N, c_i, H/2**i, W/2**i]
            features.append(x)
            skips.append(x)
        skips.pop()  # the deepest is x itself
        for up in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = up(torch.cat([x, skip], dim=1))
        return self.to_logits(x), features  # [N, K + 2, H, W], list
