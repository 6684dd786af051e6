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
D sees concat(image, labels), so a defect that ignores its mask or class is detectably fake.
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
    StyleGAN2 runs its first conv at the input resolution; we stride first, which costs a
    quarter as much at the top of D and keeps a CPU training step affordable.
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


class PatchDiscriminator(nn.Module):
    """Residual PatchGAN: concat(image, labels) -> (logits [N, 1, h, w], features).

    stem 3x3 conv (C+K -> width) + lrelu, then `n_layers` ResidualDownBlocks doubling the
    channels (capped at 8 * width), then a 1x1 conv to one logit per patch.
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
    ):
        super().__init__()
        if image_channels < 1 or num_classes < 1 or width < 1 or n_layers < 1:
            raise ValueError(
                "need image_channels, num_classes, width, n_layers >= 1; got "
                f"{image_channels}, {num_classes}, {width}, {n_layers}"
            )
        self.image_channels = image_channels
        self.num_classes = num_classes
        max_channels = 8 * width
        channels = [min(width * 2**i, max_channels) for i in range(n_layers + 1)]
        self.stem = nn.Sequential(
            _conv(image_channels + num_classes, width, 3, spectral_norm, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.blocks = nn.ModuleList(
            ResidualDownBlock(channels[i], channels[i + 1], spectral_norm) for i in range(n_layers)
        )
        # A 1x1 conv reads the logits off the last block: a 3x3 conv at the top costs as
        # much as a whole residual block (measured 15 % of D's step) for a little more RF.
        self.to_logits = _conv(channels[-1], 1, 1, spectral_norm, gain=1.0)

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
        x = self.stem(torch.cat([image, labels.to(image.dtype)], dim=1))  # [N, w, H, W]
        features: list[Tensor] = []
        for block in self.blocks:
            x = block(x)  # [N, c_i, H/2**i, W/2**i]
            features.append(x)
        return self.to_logits(x), features  # [N, 1, h, w], list
