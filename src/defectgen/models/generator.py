"""The inpainting generator: a LaMa-style FFC ResNet with class input, noise and co-modulation.

Inputs (checked in `FFCGenerator.forward`):
  image  float [N, C, H, W] in [-1, 1]; the hole is erased inside forward,
  hole   float {0, 1} [N, 1, H, W], 1 = pixels to paint,
  labels float {0, 1} [N, K, H, W], one channel per class: the defect shape in its class,
  severity float [N, 1, H, W]: each defect's severity in [0, 1] on its pixels
         (`defectgen.severity`); read only by a generator built with `severity=True`, which
         takes the median 0.5 on every defect when it is not given.

Architecture (Suvorov et al., LaMa, WACV 2022, "big-lama"/"lama-fourier" generators):
reflect-padded 7x7 stem -> `n_downsample` stride-2 convolutions (width, 2w, 4w, 8w, capped at
8w) -> `n_blocks` FFC residual blocks -> `n_downsample` upsamplings (nearest-neighbour 2x + 3x3
convolution, folded into one transposed convolution; see `Upsample`) ->
reflect-padded 7x7 conv -> tanh. No normalisation layers (see models/ffc.py for why).
LaMa has neither a class input nor randomness; we add both:
  * the class label maps are input channels, so the generator knows what to paint where;
  * per-pixel noise maps are input channels (masked to the hole: known pixels need none);
  * a style code z enters through CoModGAN's co-modulation (Zhao et al., ICLR 2021): a mapping
    MLP of concat(mapped z, pooled encoder features) gives per-sample FiLM scale/shift for
    every FFC in the bottleneck, so the same mask can get many different defects;
  * optionally (`decoder_noise` > 0), OASIS's 3D noise (Schoenfeld et al., ICLR 2021): the first
    `decoder_noise` entries of z, spread over the image and stacked with the label maps and the
    hole, set a per-pixel scale and shift of every decoder stage inside the hole
    (`NoiseModulation`), so the draw reaches the full-resolution layers directly instead of
    only through the bottleneck;
  * optionally (`texture_noise`), StyleGAN's noise inputs (Karras et al., CVPR 2019): after every
    decoder stage, one fresh per-pixel N(0, 1) map, scaled by a learned strength per channel
    (zero at the start), is added inside the hole (`TextureNoise`). Everything else in the
    generator is a smooth function of its inputs, and the erased hole is constant, so without a
    per-pixel source the grain of a surface can only be learned as a fixed pattern per mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectgen.models.ffc import FFCResnetBlock, init_conv, split_channels
from defectgen.severity import DEFAULT_SEVERITY


def composite(raw: Tensor, image: Tensor, hole: Tensor) -> Tensor:
    """Generator output inside the hole, the original image outside: `hole*raw + (1-hole)*image`.

    With a {0, 1} hole the known pixels are copied bit-exactly (1*x + 0*y == x in floating
    point), so background preservation is a property of the composite, not something the
    generator must learn.
    """
    return hole * raw + (1 - hole) * image


class MappingNetwork(nn.Module):
    """CoModGAN co-modulation: style code z and the image's global features -> FiLM parameters.

    z is normalised to unit second moment (StyleGAN, Karras et al. 2019) and mapped by an MLP;
    the encoder's bottleneck features are average-pooled over H, W (CoModGAN flattens a fixed
    4x4 map; pooling keeps the generator fully convolutional, so it runs at any size) and
    projected; the two are joined by one more layer and one linear head per residual block
    emits that block's modulation. The heads start near zero (FiLM starts near identity) but
    not at zero, so every layer receives gradient from the first step.
    """

    def __init__(
        self,
        style_dim: int,
        feature_channels: int,
        modulation_sizes: list[int],
        n_layers: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_layers):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*layers)
        self.feature_projection = nn.Sequential(nn.Linear(feature_channels, style_dim), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(2 * style_dim, style_dim), nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList(nn.Linear(style_dim, size) for size in modulation_sizes)
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.1 / math.sqrt(style_dim))
            nn.init.zeros_(head.bias)

    def forward(self, z: Tensor, features: Tensor) -> list[Tensor]:
        # z [N, style_dim], features [N, C, h, w] (encoder bottleneck)
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        style = self.style_mlp(z)  # [N, style_dim]
        pooled = self.feature_projection(features.mean(dim=(2, 3)))  # [N, style_dim]
        joint = self.joint(torch.cat([style, pooled], dim=1))  # [N, style_dim]
        return [head(joint) for head in self.heads]  # [N, modulation_size] per block


class Downsample(nn.Module):
    """Stride-2 3x3 convolution with reflect padding + ReLU (halves H and W exactly)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, padding_mode="reflect")
        init_conv(self.conv)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.conv(x))  # [N, out, H/2, W/2]


def folded_kernel(weight: Tensor) -> Tensor:
    """3x3 conv weight [out, in, 3, 3] -> the 4x4 stride-2 transposed-conv weight [in, out, 4, 4]
    that computes nearest-neighbour 2x resize followed by that convolution.

    Per axis, output pixel 2i takes rows i-1 and i of the input with taps (w[0], w[1] + w[2]),
    pixel 2i+1 rows i and i+1 with (w[0] + w[1], w[2]). A transposed convolution (stride 2,
    padding 1) gives pixel 2i taps k[3], k[1] and pixel 2i+1 taps k[2], k[0], so
    k = (w[2], w[1] + w[2], w[0] + w[1], w[0]): the weight summed over a 2x2 box, flipped.
    """
    padded = nn.functional.pad(weight, (1, 1, 1, 1))  # [out, in, 5, 5]
    rows = padded[..., :-1, :] + padded[..., 1:, :]  # [out, in, 4, 5]
    boxed = rows[..., :-1] + rows[..., 1:]  # [out, in, 4, 4]
    return boxed.flip(-2, -1).transpose(0, 1)  # [in, out, 4, 4]


class Upsample(nn.Module):
    """Doubles H and W exactly, then ReLU: nearest-neighbour 2x resize, then a zero-padded 3x3
    convolution, computed without ever building the resized tensor.

    Nearest-neighbour 2x is a transposed convolution with a 2x2 box of ones, so
    resize-then-convolve is one 4x4 stride-2 transposed convolution whose kernel is the 3x3
    weight convolved with that box (`folded_kernel`; test: `test_nearest_upsampling_is_folded`).
    Its four output phases share the 3x3 weight, so no per-phase (checkerboard) pattern can be
    learned, at the cost of a plain transposed convolution. Why not the alternatives
    (transposed, bilinear resize): benchmarks/RESULTS.md.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        init_conv(self.conv)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in, H, W] -> [N, out, 2H, 2W]."""
        x = nn.functional.conv_transpose2d(x, folded_kernel(self.conv.weight), self.conv.bias, 2, 1)
        return self.activation(x)  # [N, out, 2H, 2W]


class NoiseModulation(nn.Module):
    """OASIS-style 3D-noise modulation of one decoder stage, inside the hole.

    [labels, hole, noise] at the stage's size -> 3x3 conv -> ReLU -> per-pixel (scale, shift) for
    the stage's channels: x * (1 + hole * scale) + hole * shift. OASIS feeds the same stack to
    SPADE in every block; this generator has no normalisation, so the modulation acts on the
    features as they are (FiLM, like the bottleneck's co-modulation). The noise map is one
    vector spread over the image, so its share of the first convolution is one bias per
    sample (`noise`, a linear layer; exact away from the image border) and the convolution
    reads only the K + 1 maps. The output convolution starts small but not at zero, so the
    noise changes the output from the first step.
    """

    def __init__(self, num_classes: int, noise_dim: int, channels: int, factor: int, hidden: int = 32):
        super().__init__()
        self.factor = factor  # the stage works at 1/factor of the image's H and W
        self.shared = nn.Conv2d(num_classes + 1, hidden, 3, padding=1)
        init_conv(self.shared)
        self.noise = nn.Linear(noise_dim, hidden, bias=False)
        nn.init.normal_(self.noise.weight, std=math.sqrt(2.0 / noise_dim))
        self.out = nn.Conv2d(hidden, 2 * channels, 3, padding=1)
        nn.init.normal_(self.out.weight, std=0.1 / math.sqrt(hidden * 9))
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, labels: Tensor, hole: Tensor, noise: Tensor) -> Tensor:
        """x [N, C, H/f, W/f]; labels [N, K, H, W], hole [N, 1, H, W]; noise [N, noise_dim]."""
        if self.factor > 1:  # the share of each cell a map covers: a thin defect stays present
            labels, hole = F.avg_pool2d(labels, self.factor), F.avg_pool2d(hole, self.factor)
        bias = self.noise(noise.to(x.dtype))[:, :, None, None]  # [N, hidden, 1, 1]
        hidden = F.relu(self.shared(torch.cat([labels, hole], dim=1)) + bias)
        scale, shift = self.out(hidden).chunk(2, dim=1)  # [N, C, h, w] each
        return x * (1 + hole * scale) + hole * shift


class TextureNoise(nn.Module):
    """StyleGAN's noise input at one decoder stage: x + hole * strength * noise, with `noise` one
    per-pixel N(0, 1) map at the stage's size shared by its channels and `strength` a learned
    scale per channel (zero at the start, as in StyleGAN). The stage's hole is the share of each
    cell the hole covers, so the grain fades out at the hole's edge."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor  # the stage works at 1/factor of the image's H and W
        self.strength = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, hole: Tensor, noise: Tensor) -> Tensor:
        """x [N, C, H/f, W/f]; hole [N, 1, H, W]; noise [N, 1, H, W] ~ N(0, 1), read every f-th
        pixel (still independent N(0, 1) at the stage's size)."""
        if self.factor > 1:
            hole = F.avg_pool2d(hole, self.factor)
            noise = noise[:, :, :: self.factor, :: self.factor]
        return x + hole * self.strength.to(x.dtype)[None, :, None, None] * noise.to(x.dtype)


class FFCGenerator(nn.Module):
    """Mask- and class-conditioned inpainting generator (see the module docstring).

    `forward` returns the raw output in [-1, 1] for every pixel; use `composite` to keep the
    known pixels. Randomness: pass `z` [N, style_dim] and `noise` [N, noise_maps, H, W]
    explicitly, or a `torch.Generator` to draw whichever is missing; there is no fallback to
    global RNG state.
    """

    def __init__(
        self,
        image_channels: int,
        num_classes: int,
        width: int = 32,
        n_downsample: int = 3,
        n_blocks: int = 9,
        ratio_g: float = 0.75,
        style_dim: int = 128,
        noise_channels: int = 1,
        severity: bool = False,
        decoder_noise: int = 0,
        texture_noise: bool = False,
    ):
        super().__init__()
        if image_channels < 1 or num_classes < 1:
            raise ValueError(
                f"image_channels and num_classes must be >= 1, got {image_channels} and {num_classes}"
            )
        if width < 1 or n_downsample < 0 or n_blocks < 1 or style_dim < 1 or noise_channels < 0:
            raise ValueError(
                "need width >= 1, n_downsample >= 0, n_blocks >= 1, style_dim >= 1, "
                f"noise_channels >= 0; got width={width}, n_downsample={n_downsample}, "
                f"n_blocks={n_blocks}, style_dim={style_dim}, noise_channels={noise_channels}"
            )
        if not 0 <= decoder_noise <= style_dim:
            raise ValueError(
                f"decoder_noise takes the first entries of z, so it must be in 0..style_dim={style_dim}, "
                f"got {decoder_noise}"
            )
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.n_downsample = n_downsample
        self.style_dim = style_dim
        self.noise_channels = noise_channels
        self.severity = severity
        self.decoder_noise = decoder_noise
        self.texture_noise = texture_noise

        max_channels = 8 * width
        channels = [min(width * 2**i, max_channels) for i in range(n_downsample + 1)]
        bottleneck = channels[-1]
        local_channels, global_channels = split_channels(bottleneck, ratio_g)
        if local_channels < 1 or global_channels < 2:
            raise ValueError(
                f"ratio_g={ratio_g} with {bottleneck} bottleneck channels leaves "
                f"{local_channels} local and {global_channels} global channels; "
                "need at least 1 local and 2 global (choose 0 < ratio_g < 1 or a larger width)"
            )
        self.local_channels = local_channels

        # masked image, hole, class maps, severity map, noise -> width
        in_channels = image_channels + 1 + num_classes + int(severity) + noise_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, padding=3, padding_mode="reflect"),
            nn.ReLU(inplace=True),
        )
        init_conv(self.stem[0])
        self.encoder = nn.ModuleList(Downsample(channels[i], channels[i + 1]) for i in range(n_downsample))
        # 1/sqrt(n_blocks): the variance added by all residual branches together stays O(1)
        residual_scale = 1.0 / math.sqrt(n_blocks)
        self.blocks = nn.ModuleList(
            FFCResnetBlock(bottleneck, ratio_g, residual_scale) for _ in range(n_blocks)
        )
        self.mapping = MappingNetwork(style_dim, bottleneck, [block.modulation_size for block in self.blocks])
        self.decoder = nn.ModuleList(
            Upsample(channels[i + 1], channels[i]) for i in reversed(range(n_downsample))
        )
        self.decoder_modulation = (
            nn.ModuleList(
                NoiseModulation(num_classes, decoder_noise, channels[i], factor=2**i)
                for i in reversed(range(n_downsample))
            )
            if decoder_noise > 0
            else None
        )
        self.decoder_texture = (
            nn.ModuleList(TextureNoise(channels[i], factor=2**i) for i in reversed(range(n_downsample)))
            if texture_noise
            else None
        )
        self.head = nn.Conv2d(width, image_channels, 7, padding=3, padding_mode="reflect")
        init_conv(self.head, gain=1.0)

    @property
    def noise_maps(self) -> int:
        """Noise maps per image: the per-pixel input noise, then the texture noise's one map."""
        return self.noise_channels + int(self.texture_noise)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (each downsampling halves them exactly)."""
        return 2**self.n_downsample

    def _check_inputs(
        self,
        image: Tensor,
        hole: Tensor,
        labels: Tensor,
        z: Tensor | None,
        noise: Tensor | None,
        severity: Tensor | None = None,
    ) -> None:
        if image.ndim != 4 or image.shape[1] != self.image_channels:
            raise ValueError(
                f"image must be [N, {self.image_channels}, H, W] (image_channels="
                f"{self.image_channels}), got shape {tuple(image.shape)}"
            )
        batch, _, height, width = image.shape
        if tuple(hole.shape) != (batch, 1, height, width):
            raise ValueError(
                f"hole must be [N, 1, H, W] = {(batch, 1, height, width)} like the image, "
                f"got {tuple(hole.shape)}"
            )
        if tuple(labels.shape) != (batch, self.num_classes, height, width):
            raise ValueError(
                f"labels must be [N, K, H, W] = {(batch, self.num_classes, height, width)} "
                f"(one channel per class, num_classes={self.num_classes}), "
                f"got {tuple(labels.shape)}"
            )
        multiple = self.size_multiple
        if height % multiple or width % multiple or min(height, width) < 2 * multiple:
            raise ValueError(
                f"image height and width must be multiples of {multiple} "
                f"(2**n_downsample, n_downsample={self.n_downsample}) and at least "
                f"{2 * multiple}, got {height}x{width}; crop or reflect-pad the image, "
                f"e.g. to {max(2 * multiple, math.ceil(height / multiple) * multiple)}x"
                f"{max(2 * multiple, math.ceil(width / multiple) * multiple)}"
            )
        if severity is not None and tuple(severity.shape) != (batch, 1, height, width):
            raise ValueError(
                f"severity must be [N, 1, H, W] = {(batch, 1, height, width)} like the hole, "
                f"got {tuple(severity.shape)}"
            )
        if z is not None and tuple(z.shape) != (batch, self.style_dim):
            raise ValueError(f"z must be [N, style_dim] = {(batch, self.style_dim)}, got {tuple(z.shape)}")
        expected_noise = (batch, self.noise_maps, height, width)
        if noise is not None and tuple(noise.shape) != expected_noise:
            raise ValueError(
                f"noise must be [N, noise_maps, H, W] = {expected_noise} (noise_channels + 1 with "
                f"texture_noise), got {tuple(noise.shape)}"
            )

    def draw_style(
        self, batch: int, generator: torch.Generator, device: torch.device | str | None = None
    ) -> Tensor:
        """A style code z [batch, style_dim] ~ N(0, I) from `generator`."""
        z = torch.randn(batch, self.style_dim, generator=generator, device=generator.device)
        return z.to(device) if device is not None else z

    def draw_noise(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Noise maps [batch, noise_maps, height, width] ~ N(0, I) from `generator`."""
        shape = (batch, self.noise_maps, height, width)
        noise = torch.randn(shape, generator=generator, device=generator.device)
        return noise.to(device) if device is not None else noise

    def forward(
        self,
        image: Tensor,
        hole: Tensor,
        labels: Tensor,
        z: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        severity: Tensor | None = None,
    ) -> Tensor:
        """Raw output [N, C, H, W] in [-1, 1]; see the class docstring for the inputs."""
        self._check_inputs(image, hole, labels, z, noise, severity)
        batch, _, height, width = image.shape
        need_noise = noise is None and self.noise_maps > 0
        if (z is None or need_noise) and generator is None:
            raise ValueError(
                "pass z and noise explicitly, or a torch.Generator to draw them from "
                "(randomness is explicit: no global RNG)"
            )
        # z first, then noise: a fixed draw order makes a seed reproducible.
        if z is None:
            z = self.draw_style(batch, generator, device=image.device)
        if need_noise:
            noise = self.draw_noise(batch, height, width, generator, device=image.device)

        hole = hole.to(image.dtype)
        labels = labels.to(image.dtype)
        masked = image * (1 - hole)  # [N, C, H, W], the hole erased
        inputs = [masked, hole, labels]
        if self.severity:  # each defect's severity on its pixels; unless given, the median
            if severity is None:
                severity = DEFAULT_SEVERITY * labels.amax(dim=1, keepdim=True)
            inputs.append(severity.to(image.dtype))
        if self.noise_channels > 0:
            inputs.append(noise[:, : self.noise_channels].to(image.dtype) * hole)  # only where we paint
        x = self.stem(torch.cat(inputs, dim=1))  # [N, w, H, W]
        for down in self.encoder:
            x = down(x)  # [N, 8w, H/2**n, W/2**n] at the end

        modulations = self.mapping(z.to(x.dtype), x)  # per block [N, 4 * 8w]
        x_local, x_global = x[:, : self.local_channels], x[:, self.local_channels :]
        for block, modulation in zip(self.blocks, modulations, strict=True):
            x_local, x_global = block(x_local, x_global, modulation)
        x = torch.cat([x_local, x_global], dim=1)  # [N, 8w, h, w]

        noise3d = z[:, : self.decoder_noise]  # OASIS 3D noise: z's first entries, ~ N(0, I)
        for stage, up in enumerate(self.decoder):
            x = up(x)  # [N, w, H, W] at the end
            if self.decoder_modulation is not None:
                x = self.decoder_modulation[stage](x, labels, hole, noise3d)
            if self.decoder_texture is not None:  # the last noise map: the grain
                x = self.decoder_texture[stage](x, hole, noise[:, -1:])
        return torch.tanh(self.head(x))  # [N, C, H, W]
