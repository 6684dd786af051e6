"""Fast Fourier Convolution (FFC) layers.

Reference: Chi, Jiang & Mu, "Fast Fourier Convolution" (NeurIPS 2020), as used for
inpainting by Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier
Convolutions" (LaMa, WACV 2022). An FFC splits its channels into a *local* part, handled by
ordinary 3x3 convolutions, and a *global* part, handled by a 1x1 convolution in the 2-D
Fourier domain. A point-wise update of one frequency changes every pixel, so the receptive
field covers the whole image from the first block: what a large hole needs, and what lets a
model trained on 128-px crops run on 256x1600 strips.

Normalisation: none, on purpose. LaMa uses BatchNorm, but our batches are 4-8 and LaMa's
tracker reports BN degrading below a batch of about 20. Per-image norms (GroupNorm,
InstanceNorm) are batch-independent but take statistics over H and W, which change between
training crops and full strips and with the fraction of the image that is hole: the very
size-dependence FFC is meant to avoid. So features are not normalised at all; scale is kept
in check by fan-in initialisation (`init_conv`) and by scaled residual branches in
`FFCResnetBlock` (residual scaling as in EDSR, Lim et al. 2017; depth-scaled as in Fixup,
Zhang et al. 2019). The generator adds per-sample FiLM modulation on top (see generator.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_conv(
    conv: nn.Conv2d | nn.ConvTranspose2d, fan_in: int | None = None, gain: float = math.sqrt(2.0)
) -> None:
    """He-normal initialisation with an explicit fan-in (He et al., ICCV 2015).

    Without normalisation layers the initial scale of every layer matters. `fan_in` can be
    given where the default (in_channels * k * k) is not what one output sums over: the
    FFC's local->global conv is added to the spectral path, a transposed conv sees only a
    quarter of its taps per output. `gain` sqrt(2) suits a following ReLU.
    """
    if fan_in is None:
        fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, mean=0.0, std=gain / math.sqrt(fan_in))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def split_channels(channels: int, ratio_g: float) -> tuple[int, int]:
    """(local, global) channel counts for `channels` with a fraction `ratio_g` global."""
    if not 0.0 <= ratio_g <= 1.0:
        raise ValueError(f"ratio_g must be in [0, 1], got {ratio_g}")
    global_channels = int(channels * ratio_g)
    return channels - global_channels, global_channels


class FourierUnit(nn.Module):
    """Point-wise (1x1) convolution in the 2-D Fourier domain, then back.

    x -> rfft2 over (H, W), norm="ortho" (energy-preserving, so the scale of the spectrum
    does not depend on image size) -> real and imaginary parts stacked as channels -> 1x1
    conv + ReLU -> complex -> irfft2 back to the input's (H, W).

    Precision: the FFTs and the assembly of the complex spectrum run in fp32 even inside
    bf16 autocast (autocast disabled, inputs cast with `.float()`): CPU FFTs refuse bf16
    and `torch.complex` refuses bf16 halves, which is where LaMa's FourierUnit crashes under
    CPU bf16 autocast. The 1x1 convolution between them runs in the autocast dtype like any
    other layer (measured: 6-10 % faster for the small preset's G step than keeping it in
    fp32). The result is cast back to the input dtype.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        # real and imaginary parts are separate channels: 2*in -> 2*out
        self.conv = nn.Conv2d(2 * in_channels, 2 * out_channels, kernel_size=1)
        init_conv(self.conv)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        input_dtype = x.dtype
        height, width = x.shape[-2:]
        device_type = x.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            spectrum = torch.fft.rfft2(x.float(), norm="ortho")  # [N, C, H, W//2+1] complex
            stacked = torch.cat([spectrum.real, spectrum.imag], dim=1)  # [N, 2C, H, W//2+1]
        # The point-wise convolution may run in reduced precision like any other layer ...
        stacked = self.activation(self.conv(stacked))  # [N, 2C', H, W//2+1]
        with torch.autocast(device_type=device_type, enabled=False):
            # ... but the halves go back to fp32 before torch.complex and the inverse FFT.
            real, imag = stacked.float().chunk(2, dim=1)  # [N, C', H, W//2+1] each
            spectrum = torch.complex(real.contiguous(), imag.contiguous())
            output = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho")  # [N, C', H, W]
        return output.to(input_dtype)


class SpectralTransform(nn.Module):
    """The global->global path of an FFC: 1x1 reduce, Fourier unit, 1x1 expand.

    As in FFC/LaMa, channels are halved before the Fourier unit (it is the costly part), and
    the Fourier unit's output is added to its input (a residual in the reduced space) before
    the expanding 1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        hidden = max(out_channels // 2, 1)
        self.reduce = nn.Conv2d(in_channels, hidden, kernel_size=1)
        init_conv(self.reduce)
        self.activation = nn.ReLU(inplace=True)
        self.fourier = FourierUnit(hidden, hidden)
        self.expand = nn.Conv2d(hidden, out_channels, kernel_size=1)
        init_conv(self.expand, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.activation(self.reduce(x))  # [N, hidden, H, W]
        return self.expand(hidden + self.fourier(hidden))  # [N, out, H, W]


class FFC(nn.Module):
    """Fast Fourier Convolution over a (local, global) pair of tensors.

    Four paths (Chi et al. 2020, fig. 1):
      local  -> local : k x k conv          global -> local : k x k conv
      local  -> global: k x k conv          global -> global: SpectralTransform
    out_local = l->l + g->l;  out_global = l->g + g->g.

    The two paths into the local output are computed as ONE convolution over
    concat(local, global) (`to_local`): a sum of convolutions over disjoint input channels is
    a convolution over their concatenation, with the l->l and g->l kernels as the two halves
    of its weight along the input axis. Same function and parameter count, one kernel launch
    and one padding instead of two (this block runs 18-36 times per generator call).
    Spatial convolutions use reflect padding, like LaMa, so borders look like continued
    texture rather than dark frames; the input is padded once and shared by both k x k
    convolutions. Stride 1 only: the generator resamples outside the FFC blocks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ratio_g_in: float,
        ratio_g_out: float,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.in_local, self.in_global = split_channels(in_channels, ratio_g_in)
        self.out_local, self.out_global = split_channels(out_channels, ratio_g_out)
        self.padding = kernel_size // 2
        # l->l and g->l together: weight [out_local, in_local + in_global, k, k]
        self.to_local = nn.Conv2d(in_channels, self.out_local, kernel_size) if self.out_local > 0 else None
        self.local_to_global = (
            nn.Conv2d(self.in_local, self.out_global, kernel_size)
            if self.in_local > 0 and self.out_global > 0
            else None
        )
        self.global_to_global = (
            SpectralTransform(self.in_global, self.out_global)
            if self.in_global > 0 and self.out_global > 0
            else None
        )
        if self.to_local is not None:
            init_conv(self.to_local)
        if self.local_to_global is not None:
            init_conv(self.local_to_global, fan_in=in_channels * kernel_size * kernel_size)
            if self.global_to_global is not None:
                # Two roughly equal-variance terms are summed: halve each one's variance.
                self.local_to_global.weight.data.mul_(math.sqrt(0.5))
                self.global_to_global.expand.weight.data.mul_(math.sqrt(0.5))

    def forward(self, x_local: Tensor, x_global: Tensor) -> tuple[Tensor, Tensor]:
        # x_local [N, in_local, H, W], x_global [N, in_global, H, W] (either may have 0 channels)
        batch, _, height, width = x_local.shape
        pad = (self.padding,) * 4
        padded = F.pad(torch.cat([x_local, x_global], dim=1), pad, mode="reflect")
        # padded [N, in_local + in_global, H + 2p, W + 2p]
        if self.to_local is not None:
            out_local = self.to_local(padded)  # [N, out_local, H, W]
        else:
            out_local = x_local.new_zeros(batch, 0, height, width)
        out_global = x_local.new_zeros(batch, 0, height, width)
        if self.local_to_global is not None:
            out_global = self.local_to_global(padded[:, : self.in_local])
        if self.global_to_global is not None:
            term = self.global_to_global(x_global)
            out_global = term if self.local_to_global is None else out_global + term
        return out_local, out_global  # [N, out_local, H, W], [N, out_global, H, W]


class FFCResnetBlock(nn.Module):
    """Residual block of two FFCs with per-sample FiLM modulation (co-modulation).

    x + residual_scale * FFC2(act(FiLM1(FFC1(x)))) with FiLM2 applied to FFC2's output,
    on both the local and the global part. `modulation` is [N, 4 * channels]: scale and shift
    for each of the two FFCs (channel order: local then global), produced by the generator's
    mapping network from the style code and the encoder's global features (CoModGAN,
    Zhao et al., ICLR 2021). The scale is applied as (1 + scale), so a zero modulation is the
    identity.

    `residual_scale` < 1 keeps the activations of a deep, normalisation-free stack bounded
    (see the module docstring); the generator uses 1/sqrt(n_blocks).
    """

    def __init__(self, channels: int, ratio_g: float, residual_scale: float = 1.0):
        super().__init__()
        self.channels = channels
        self.local_channels, self.global_channels = split_channels(channels, ratio_g)
        self.residual_scale = residual_scale
        self.first = FFC(channels, channels, ratio_g, ratio_g)
        self.second = FFC(channels, channels, ratio_g, ratio_g)
        self.activation = nn.ReLU(inplace=False)

    @property
    def modulation_size(self) -> int:
        """Length of the per-sample modulation vector this block expects."""
        return 4 * self.channels

    def _film(self, x_local: Tensor, x_global: Tensor, scale: Tensor, shift: Tensor):
        # scale, shift [N, C]; split into the local and global parts
        scale = scale[:, :, None, None]  # [N, C, 1, 1]
        shift = shift[:, :, None, None]
        cl = self.local_channels
        x_local = x_local * (1 + scale[:, :cl]) + shift[:, :cl]
        x_global = x_global * (1 + scale[:, cl:]) + shift[:, cl:]
        return x_local, x_global

    def forward(self, x_local: Tensor, x_global: Tensor, modulation: Tensor) -> tuple[Tensor, Tensor]:
        # x_local [N, Cl, H, W], x_global [N, Cg, H, W], modulation [N, 4C]
        scale1, shift1, scale2, shift2 = modulation.chunk(4, dim=1)  # [N, C] each
        y_local, y_global = self.first(x_local, x_global)
        y_local, y_global = self._film(y_local, y_global, scale1, shift1)
        y_local, y_global = self.activation(y_local), self.activation(y_global)
        y_local, y_global = self.second(y_local, y_global)
        y_local, y_global = self._film(y_local, y_global, scale2, shift2)
        return (
            x_local + self.residual_scale * y_local,
            x_global + self.residual_scale * y_global,
        )
