"""Adaptive discriminator augmentation (ADA; Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020).

Defect sets are small, and a discriminator that memorises them stops teaching the generator.
ADA augments *everything D sees*, reals and fakes alike, with a probability p that is tuned
on line: the overfitting heuristic r_t = E[sign(D(real))] rises towards 1 as D grows sure of
the training reals, so p goes up while r_t > target and down otherwise. Because fakes are
augmented the same way, and the transforms are non-leaking at p < 0.8, G learns the
un-augmented distribution.

Here the image travels with its class label maps and its hole: every geometric transform is
applied identically to all three (so D still sees a defect exactly where its label is, and
the mask-as-fake target still covers the painted pixels), with nearest sampling for the maps
so they stay in {0, 1}. Colour transforms touch the image only. The warp is one bilinear
resample of the image per batch (kornia `warp_affine`), differentiable w.r.t. the image,
since for fakes the augmentation sits between G and D.

Transforms (ADA's "bgc" pipeline minus the non-integer rotation/anisotropy, with y-flip
added because surface defects have no up or down), each applied per sample with probability
p, with ADA's strengths:
  xflip, yflip      mirror (each drawn as a fair coin when the transform is on, as in ADA)
  rotate90          k * 90 degrees, k uniform in {0, 1, 2, 3}; {0, 2} for non-square images
  translate         integer shift, uniform up to 1/8 of the size; reflect fill
  scale             isotropic, 2**N(0, 0.2^2)
  brightness        + N(0, 0.2^2)   (images in [-1, 1])
  contrast          * 2**N(0, 0.5^2), about the image's own mean
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from kornia.geometry.transform import warp_affine
from torch import Tensor

TRANSFORMS = ("xflip", "yflip", "rotate90", "translate", "scale", "brightness", "contrast")
GEOMETRIC = ("xflip", "yflip", "rotate90", "translate", "scale")

TRANSLATE_MAX = 0.125  # fraction of the image size (ADA xint_max)
SCALE_STD = 0.2  # log2 scale (ADA scale_std)
BRIGHTNESS_STD = 0.2  # ADA brightness_std
CONTRAST_STD = 0.5  # log2 contrast (ADA contrast_std)


class AdaptiveAugment:
    """ADA for (image, label maps, hole) triples, with an explicit torch.Generator.

    Per D step the training loop calls:
        image, labels, hole = ada(image, labels, hole, generator)   # reals, and again fakes
        ada.accumulate(real_logits)                                 # D(augmented reals)
        ada.all_reduce()           # with several processes, on the steps where update acts
        logs = ada.update(batch_size)     # every step; acts every `interval` calls
    and saves `state_dict()` in checkpoints.

    Args:
        target: the r_t that p is steered to (ADA: 0.6).
        interval: update p every this many `update` calls (ADA: 4).
        speed_images: images of training for p to move from 0 to 1 (ADA: 500k).
        p: initial probability.
        max_p: ceiling for p; ADA's transforms start to leak into G above ~0.8.
        transforms: which of `TRANSFORMS` to use (all by default).
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        speed_images: int = 500_000,
        p: float = 0.0,
        max_p: float = 0.8,
        transforms: tuple[str, ...] = TRANSFORMS,
    ):
        unknown = sorted(set(transforms) - set(TRANSFORMS))
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; choose from {list(TRANSFORMS)}")
        if interval < 1 or speed_images < 1 or not 0.0 <= max_p <= 1.0:
            raise ValueError(
                f"need interval >= 1, speed_images >= 1, 0 <= max_p <= 1; got "
                f"{interval}, {speed_images}, {max_p}"
            )
        self.target = target
        self.interval = interval
        self.speed_images = speed_images
        self.max_p = max_p
        self.p = min(max(p, 0.0), max_p)
        self.transforms = tuple(transforms)
        self._steps = 0
        self._sign_sum: Tensor | float = 0.0
        self._count = 0

    # ---- the adaptive heuristic -------------------------------------------------------

    def accumulate(self, real_logits: Tensor) -> None:
        """Add D's logits on (augmented) reals to the running mean of sign(D(real)).

        Every patch logit counts. Kept as a device tensor: no synchronisation until `update`.
        """
        self._sign_sum = self._sign_sum + real_logits.detach().float().sign().sum()
        self._count += real_logits.numel()

    def all_reduce(self) -> None:
        """Sum the accumulated sign statistics over all processes (torch.distributed), so that
        every process computes the same global r_t and moves p identically.

        A collective: call it on every process, on the steps where `update` acts (every
        `interval`-th call), before `update`. A no-op without an initialised process group.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        if isinstance(self._sign_sum, Tensor):
            device = self._sign_sum.device
        elif dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        else:
            device = torch.device("cpu")
        stats = torch.tensor([float(self._sign_sum), float(self._count)], dtype=torch.float64, device=device)
        dist.all_reduce(stats)  # sum over processes
        self._sign_sum = stats[0]
        self._count = int(stats[1].item())

    def update(self, batch_size: int) -> dict[str, float]:
        """Count one step; every `interval` steps move p by
        sign(r_t - target) * batch_size * interval / speed_images and clamp it to [0, max_p].

        `batch_size` is the number of images per step over all processes. Returns
        {"ada_p", "ada_rt"} when p was updated, {} otherwise (or with nothing accumulated).
        """
        self._steps += 1
        if self._steps % self.interval != 0 or self._count == 0:
            return {}
        rt = float(self._sign_sum) / self._count
        step = batch_size * self.interval / self.speed_images
        if rt > self.target:  # D is too sure of the reals: augment more
            self.p += step
        elif rt < self.target:
            self.p -= step
        self.p = min(max(self.p, 0.0), self.max_p)
        self._sign_sum, self._count = 0.0, 0
        return {"ada_p": self.p, "ada_rt": rt}

    def state_dict(self) -> dict[str, float | int]:
        """Plain numbers only (loadable with torch.load(weights_only=True))."""
        return {
            "p": self.p,
            "steps": self._steps,
            "sign_sum": float(self._sign_sum),
            "count": self._count,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.p = float(state["p"])
        self._steps = int(state["steps"])
        self._sign_sum = float(state["sign_sum"])
        self._count = int(state["count"])

    # ---- the augmentation -------------------------------------------------------------

    def __call__(
        self, image: Tensor, labels: Tensor, hole: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Augment a batch; image [N, C, H, W], labels [N, K, H, W], hole [N, 1, H, W].

        With p == 0 the inputs are returned as they are (same objects). Samples that draw no
        geometric transform keep their exact pixels.
        """
        if image.ndim != 4 or labels.ndim != 4 or hole.ndim != 4:
            raise ValueError(
                "image, labels, hole must be [N, C, H, W], [N, K, H, W], [N, 1, H, W]; got "
                f"{tuple(image.shape)}, {tuple(labels.shape)}, {tuple(hole.shape)}"
            )
        if (
            labels.shape[0] != image.shape[0]
            or hole.shape[0] != image.shape[0]
            or not (image.shape[2:] == labels.shape[2:] == hole.shape[2:])
        ):
            raise ValueError(
                "image, labels and hole must share N, H and W; got "
                f"{tuple(image.shape)}, {tuple(labels.shape)}, {tuple(hole.shape)}"
            )
        if self.p <= 0:
            return image, labels, hole
        batch, _, height, width = image.shape
        draws = _Draws(batch, self.p, generator)  # fixed draw order: reproducible per seed

        matrix, moved = self._geometry(draws, height, width)  # [N, 3, 3], [N] bool
        if moved.any():
            image, labels, hole = self._warp(image, labels, hole, matrix, moved)
        image = self._colour(image, draws)
        return image, labels, hole

    def _geometry(self, draws: _Draws, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Per-sample pixel-coordinate matrices source -> destination, and which move."""
        batch = draws.batch
        dtype = torch.float64
        identity = torch.eye(3, dtype=dtype).repeat(batch, 1, 1)  # [N, 3, 3]
        matrix = identity.clone()
        on = {name: draws.apply(name in self.transforms) for name in GEOMETRIC}  # [N] bool

        # Each transform draws its values unconditionally (fixed generator consumption).
        flip_x = torch.where(on["xflip"], draws.coin(), False)
        flip_y = torch.where(on["yflip"], draws.coin(), False)
        quarter_turns = draws.integers(4) if height == width else 2 * draws.integers(2)
        quarter_turns = torch.where(on["rotate90"], quarter_turns, 0)
        shift = torch.round(draws.uniform_pm(2) * TRANSLATE_MAX * torch.tensor([width, height]))
        shift = torch.where(on["translate"][:, None], shift, 0.0).to(dtype)  # [N, 2] (x, y)
        scale = torch.exp2(draws.normal() * SCALE_STD).to(dtype)
        scale = torch.where(on["scale"], scale, 1.0)

        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=dtype)
        to_origin = identity.clone()
        to_origin[:, :2, 2] = -centre
        back = identity.clone()
        back[:, :2, 2] = centre + shift

        linear = identity.clone()  # flips, then the rotation, then the scale
        linear[:, 0, 0] = torch.where(flip_x, -1.0, 1.0).to(dtype)
        linear[:, 1, 1] = torch.where(flip_y, -1.0, 1.0).to(dtype)
        angle = quarter_turns.to(dtype) * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()  # exact 0, +-1
        rotation = identity.clone()
        rotation[:, 0, 0], rotation[:, 0, 1] = cos, -sin
        rotation[:, 1, 0], rotation[:, 1, 1] = sin, cos
        rotation[:, :2, :2] *= scale[:, None, None]
        matrix = back @ rotation @ linear @ to_origin

        moved = flip_x | flip_y | (quarter_turns != 0) | (shift != 0).any(dim=1) | (scale != 1)
        return matrix, moved

    @staticmethod
    def _warp(
        image: Tensor, labels: Tensor, hole: Tensor, matrix: Tensor, moved: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One resample with the same matrix for image (bilinear) and maps (nearest)."""
        device = image.device
        height, width = image.shape[-2:]
        affine = matrix[:, :2, :].to(device=device, dtype=torch.float32)  # [N, 2, 3]
        keep = ~moved.to(device)[:, None, None, None]  # [N, 1, 1, 1]
        # fp32 and outside autocast: grid_sample needs matching dtypes, and a bf16 sampling
        # grid would misplace pixels by up to ~1/128 of the image.
        with torch.autocast(device_type=device.type, enabled=False):
            warped_image = warp_affine(
                image.float(),
                affine,
                (height, width),
                mode="bilinear",
                padding_mode="reflection",
                align_corners=True,
            ).to(image.dtype)
            maps = torch.cat([labels, hole], dim=1).float()  # [N, K+1, H, W]
            warped_maps = warp_affine(
                maps,
                affine,
                (height, width),
                mode="nearest",
                padding_mode="reflection",
                align_corners=True,
            )
        warped_labels = warped_maps[:, : labels.shape[1]].to(labels.dtype)
        warped_hole = warped_maps[:, labels.shape[1] :].to(hole.dtype)
        return (
            torch.where(keep, image, warped_image),
            torch.where(keep, labels, warped_labels),
            torch.where(keep, hole, warped_hole),
        )

    def _colour(self, image: Tensor, draws: _Draws) -> Tensor:
        """Brightness, then contrast about the per-image mean; image only."""
        batch = draws.batch
        shape = (batch, 1, 1, 1)
        brightness = draws.normal() * BRIGHTNESS_STD
        brightness = torch.where(draws.apply("brightness" in self.transforms), brightness, 0.0)
        contrast = torch.exp2(draws.normal() * CONTRAST_STD)
        contrast = torch.where(draws.apply("contrast" in self.transforms), contrast, 1.0)
        if not ((brightness != 0).any() or (contrast != 1).any()):
            return image
        brightness = brightness.to(image.device, image.dtype).view(shape)
        contrast = contrast.to(image.device, image.dtype).view(shape)
        image = image + brightness
        mean = image.mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
        return (image - mean) * contrast + mean


class _Draws:
    """Random draws for one batch from an explicit generator, returned on the CPU."""

    def __init__(self, batch: int, p: float, generator: torch.Generator):
        self.batch = batch
        self.p = p
        self.generator = generator

    def _rand(self, *shape: int) -> Tensor:
        values = torch.rand(shape, generator=self.generator, device=self.generator.device)
        return values.cpu()

    def apply(self, enabled: bool) -> Tensor:
        """[N] bool: which samples get a transform (probability p; never when disabled).
        Always draws, so enabling a transform does not shift the other transforms' draws."""
        chosen = self._rand(self.batch) < self.p
        return chosen & enabled

    def coin(self) -> Tensor:
        return self._rand(self.batch) < 0.5  # [N] bool

    def integers(self, high: int) -> Tensor:
        return torch.floor(self._rand(self.batch) * high).long().clamp_max(high - 1)  # [N]

    def uniform_pm(self, *shape: int) -> Tensor:
        return self._rand(self.batch, *shape) * 2 - 1  # [N, ...] in [-1, 1)

    def normal(self) -> Tensor:
        values = torch.randn(self.batch, generator=self.generator, device=self.generator.device)
        return values.cpu()
