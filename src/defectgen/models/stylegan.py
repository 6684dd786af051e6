"""The StyleGAN generator: a class-conditional StyleGAN2 that draws a defect crop *and* its
mask from noise (`defectgen train --model stylegan`).

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2, CVPR 2020),
conditioned on a class as StyleGAN2-ADA (Karras et al., NeurIPS 2020) does it: the class is
embedded, both z and the embedding are normalised to unit second moment, and their
concatenation goes through the mapping MLP to w. The parts, at a CPU-friendly scale:

* mapping network: `mapping_layers` equalised-learning-rate linear layers (learning-rate
  multiplier 0.01, as StyleGAN2) from [z, class] to w;
* synthesis network: a learned 4x4 constant, then per resolution 8, 16, ..., `resolution` a
  bilinear 2x upsampling and two modulated, demodulated 3x3 convolutions, each followed by
  per-pixel noise (a learned strength per layer) and a bias + leaky ReLU; "skip" outputs: every
  resolution adds a modulated 1x1 projection to the upsampled output so far (config F's
  generator). Bilinear resampling stands in for StyleGAN2's FIR-filtered transposed conv;
* style mixing: in training, with probability `mixing` a second z of the same class drives
  the layers after a random crossover point (StyleGAN2's mixing regularisation);
* output: `image_channels + num_classes` channels: the image (linear, as StyleGAN2, in about
  [-1, 1]) and one mask channel per class, squashed to probabilities by `mask_probability`.
  The class condition is the class of the defect the crop is centred on; a crop may hold
  defects of other classes too, and draws them with their own labels, as the real crops do.
  The discriminator reads the image with its masks as label maps, binarised (`binarised`:
  real label maps are exactly 0 or 1), so a mask that does not fit its defect is detectably
  fake. The skip outputs are accumulated in fp32 under bf16 autocast.

Modulation is applied to the activations rather than to the weights (StyleGAN2's
`fused_modconv=False` form): input channels scaled by the style, one ordinary convolution shared
by the batch, output channels scaled by the demodulation factor. It is the same function as
the grouped-convolution form and runs as one dense convolution, which is faster on CPU.

Why our own code rather than a library: NVIDIA's stylegan2-ada-pytorch is not a package and
compiles CUDA extensions; the pip-installable ports draw from torch's global RNG and bundle
their own trainer and checkpoint format. Here the model is one module that takes explicit
`torch.Generator`s and lives in defectgen's run folders, checkpoints and training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)  # StyleGAN2's lrelu gain


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x scaled to unit mean square along dim 1 (StyleGAN's pixel norm of z)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class EqualLinear(nn.Module):
    """Linear layer with an equalised learning rate (Karras et al., ProGAN): weights stored
    ~N(0, 1) / lr_multiplier and scaled at run time by lr_multiplier / sqrt(fan_in)."""

    def __init__(
        self, in_features: int, out_features: int, bias_init: float = 0.0, lr_multiplier: float = 1.0
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)


class MappingNetwork(nn.Module):
    """(z [N, style_dim], classes [N] long, 0-based) -> w [N, style_dim]."""

    def __init__(self, style_dim: int, num_classes: int, n_layers: int, lr_multiplier: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.embed = EqualLinear(num_classes, style_dim)
        layers = [EqualLinear(2 * style_dim, style_dim, lr_multiplier=lr_multiplier)]
        layers += [
            EqualLinear(style_dim, style_dim, lr_multiplier=lr_multiplier) for _ in range(n_layers - 1)
        ]
        self.layers = nn.ModuleList(layers)

    def forward(self, z: Tensor, classes: Tensor) -> Tensor:
        onehot = F.one_hot(classes, self.num_classes).to(z.dtype)  # [N, K]
        x = torch.cat([normalize_2nd_moment(z), normalize_2nd_moment(self.embed(onehot))], dim=1)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE) * ACTIVATION_GAIN
        return x  # [N, style_dim]


class ModulatedConv(nn.Module):
    """k x k convolution whose input channels are scaled per sample by an affine map of w, with
    optional demodulation (each output channel rescaled to unit expected variance)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True
    ):
        super().__init__()
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x [N, in, H, W], w [N, style_dim]
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.weight_gain  # [out, in, k, k]
        x = x * styles.to(x.dtype)[:, :, None, None]
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)  # [N, out, H, W]
        if self.demodulate:
            # sum over (in, k, k) of (weight * style)^2, per sample and output channel
            energy = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()  # [N, out]
            x = x * torch.rsqrt(energy + 1e-8).to(x.dtype)[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (after a bilinear 2x upsampling when `up`) + noise + bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, up: bool = False):
        super().__init__()
        self.up = up
        self.conv = ModulatedConv(in_channels, out_channels, 3, style_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        x = x + self.bias.to(x.dtype)[None, :, None, None]
        return F.leaky_relu(x, LEAKY_SLOPE) * ACTIVATION_GAIN


class StyleGenerator(nn.Module):
    """Class-conditional StyleGAN2 generator of (image, mask) crops; see the module docstring.

    `forward(z, classes, generator)` -> [N, image_channels + num_classes, resolution,
    resolution]: the image channels, then one mask channel per class as a logit-like value
    (`mask_probability`).
    Channels at resolution r: min(max_width, width * resolution / r).
    """

    is_stylegan = True  # synthesis and training branch on this (the inpainter has no such attribute)

    def __init__(
        self,
        image_channels: int,
        num_classes: int,
        resolution: int,
        width: int,
        max_width: int,
        style_dim: int,
        mapping_layers: int,
        mixing: float,
    ):
        super().__init__()
        levels = int(math.log2(resolution))
        if 2**levels != resolution or resolution < 8:
            raise ValueError(f"the StyleGAN's resolution must be a power of two >= 8, got {resolution}")
        if min(image_channels, num_classes, width, max_width, style_dim, mapping_layers) < 1:
            raise ValueError(
                "image_channels, num_classes, width, max_width, style_dim, mapping_layers must be >= 1"
            )
        if not 0.0 <= mixing <= 1.0:
            raise ValueError(f"mixing must be a probability in [0, 1], got {mixing}")
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.resolution = resolution
        self.style_dim = style_dim
        self.mixing = mixing

        def channels(size: int) -> int:
            return min(max_width, width * resolution // size)

        self.mapping = MappingNetwork(style_dim, num_classes, mapping_layers)
        self.const = nn.Parameter(torch.randn(1, channels(4), 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(channels(4), channels(4), style_dim)])
        outputs = image_channels + num_classes
        self.to_output = nn.ModuleList([ModulatedConv(channels(4), outputs, 1, style_dim, demodulate=False)])
        self.sizes = [4]
        for level in range(3, levels + 1):
            size = 2**level
            self.layers.append(SynthesisLayer(channels(size // 2), channels(size), style_dim, up=True))
            self.layers.append(SynthesisLayer(channels(size), channels(size), style_dim))
            self.to_output.append(ModulatedConv(channels(size), outputs, 1, style_dim, demodulate=False))
            self.sizes.append(size)
        self.output_bias = nn.Parameter(torch.zeros(outputs))

    @property
    def num_ws(self) -> int:
        """How many w vectors one draw uses (one per synthesis layer; each output projection
        shares the w of the layer before it)."""
        return len(self.layers)

    def draw_style(
        self, batch: int, generator: torch.Generator, device: torch.device | str | None = None
    ) -> Tensor:
        """A style code z [batch, style_dim] ~ N(0, I) from `generator`."""
        z = torch.randn(batch, self.style_dim, generator=generator, device=generator.device)
        return z.to(device) if device is not None else z

    def styles(self, z: Tensor, classes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """ws [N, num_ws, style_dim]; in training mode with `mixing` > 0, samples drawn for mixing
        (from `generator`) take a second z's w after a random crossover layer."""
        w = self.mapping(z, classes)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if self.training and self.mixing > 0 and generator is not None:
            batch = len(z)
            z2 = self.draw_style(batch, generator, device=z.device).to(z.dtype)
            mixed = torch.rand(batch, generator=generator, device=generator.device) < self.mixing
            cut = torch.randint(1, self.num_ws, (batch,), generator=generator, device=generator.device)
            cut = torch.where(mixed, cut, torch.full_like(cut, self.num_ws)).to(z.device)
            later = torch.arange(self.num_ws, device=z.device)[None, :] >= cut[:, None]  # [N, num_ws]
            ws = torch.where(later[:, :, None], self.mapping(z2, classes)[:, None], ws)
        return ws

    def forward(
        self,
        z: Tensor,
        classes: Tensor,
        generator: torch.Generator | None = None,
        noise: bool = True,
    ) -> Tensor:
        """[N, image_channels + K, R, R] for style codes z [N, style_dim] and 0-based class
        indices [N]. Per-pixel noise (and, in training, style mixing) comes from `generator`;
        without one (or with noise=False) the noise inputs are zero."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must be [N, style_dim={self.style_dim}], got {tuple(z.shape)}")
        if classes.shape != (len(z),) or classes.dtype != torch.long:
            raise ValueError(f"classes must be a long tensor [N={len(z)}] of 0-based class indices")
        if len(classes) and not (0 <= int(classes.min()) and int(classes.max()) < self.num_classes):
            raise ValueError(f"class indices must be in 0..{self.num_classes - 1}")
        ws = self.styles(z, classes, generator)
        batch = len(z)
        x = self.const.expand(batch, -1, -1, -1)
        output = None
        level = 0
        for index, layer in enumerate(self.layers):
            size = self.sizes[(index + 1) // 2]
            field = None
            if noise and generator is not None:
                field = torch.randn(batch, 1, size, size, generator=generator, device=generator.device).to(
                    z.device
                )
            x = layer(x, ws[:, index], field)
            if index % 2 == 0:  # the last layer of a resolution: add its output projection
                projection = self.to_output[level](x, ws[:, index]).float()  # fp32 accumulator
                if output is not None:
                    output = F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=False)
                    projection = projection + output
                output = projection
                level += 1
        return output + self.output_bias.float()[None, :, None, None]


def mask_probability(output: Tensor, image_channels: int) -> Tensor:
    """The mask channels of a StyleGAN generator output as probabilities [N, K, H, W] in (0, 1)."""
    return (torch.tanh(output[:, image_channels:].float()) + 1) / 2


def binarised(probability: Tensor) -> Tensor:
    """Label maps {0, 1} [N, K, H, W] from mask probabilities: per pixel the most likely class
    if its probability exceeds 0.5, else none (classes never overlap, as in real labels). The
    gradient passes straight through to the probabilities (straight-through estimator), so the
    discriminator sees binary masks as it does on real crops and the generator still learns."""
    best = probability.argmax(dim=1, keepdim=True)  # [N, 1, H, W]
    top = probability.gather(1, best)
    hard = torch.zeros_like(probability).scatter_(1, best, (top > 0.5).to(probability.dtype))
    return hard + probability - probability.detach()
