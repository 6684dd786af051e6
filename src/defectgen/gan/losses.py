"""GAN losses for mask-conditioned inpainting, as pure functions returning (loss, logs).

Each function returns a scalar loss tensor (differentiable) and a dict of floats to log.
Weights (lambda_*) are the caller's business: the functions are unweighted, except R1 whose
gamma is part of its definition. Shapes: images [N, C, H, W], hole [N, 1, H, W] in {0, 1},
discriminator logits [N, 1, h, w] (one per patch, see models/discriminator.py).

Sources: non-saturating logistic loss (Goodfellow et al. 2014; StyleGAN2, Karras et al.
2020); paired relativistic loss (RpGAN, Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024);
R1 (Mescheder et al., ICML 2018); mask-as-fake target and feature matching (LaMa, Suvorov et
al. 2022; pix2pixHD, Wang et al. 2018); mode seeking (Mao et al., CVPR 2019).

Logged floats call `.item()`, which waits for the device; that is once per loss per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-8


def hole_at(hole: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """The hole resized to a logit grid by area averaging: the fraction of each patch's
    input cell that is hole (in [0, 1]), so a patch half-covered by the hole gets target 0.5.
    Adaptive average pooling is area interpolation for any size ratio."""
    hole = hole.float()
    if tuple(hole.shape[-2:]) == tuple(size):
        return hole
    return F.adaptive_avg_pool2d(hole, tuple(size))  # [N, 1, h, w]


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """sum(values * weight) / sum(weight) over broadcast shapes; 0 when the weight is all 0."""
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(_EPS)


def d_adversarial(real_logits: Tensor, fake_logits: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Discriminator non-saturating logistic loss with LaMa's mask-as-fake target.

    reals: softplus(-D(real)) (every patch real). Fakes are composites: only the hole was
    painted, so with m = hole resized to the logit grid (area), the per-patch loss is
    softplus(D(fake)) * m + softplus(-D(fake)) * (1 - m): patches in the hole are fake,
    patches of untouched background are real. Both terms are means over all patches.
    """
    real_logits = real_logits.float()
    fake_logits = fake_logits.float()
    target = hole_at(hole, fake_logits.shape[-2:])  # [N, 1, h, w]
    real_loss = F.softplus(-real_logits).mean()
    fake_loss = (F.softplus(fake_logits) * target + F.softplus(-fake_logits) * (1 - target)).mean()
    loss = real_loss + fake_loss
    logs = {
        "d_real": real_loss.item(),
        "d_fake": fake_loss.item(),
        "logits_real": real_logits.mean().item(),
        "logits_fake_hole": _masked_mean(fake_logits, target).item(),
    }
    return loss, logs


def g_adversarial(fake_logits: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Generator non-saturating loss softplus(-D(fake)), averaged over the hole.

    Weighted by the hole resized to the logit grid and normalised by its area: the generator
    only changes pixels inside the hole, so patches without hole carry (almost) no signal
    for it, and dividing by the hole area rather than the image area makes the loss's scale
    independent of defect size, the same normalisation as `hole_reconstruction`, so the ratio
    of the two weights means the same for a scratch and a large patch. An empty hole gives 0.
    """
    fake_logits = fake_logits.float()
    weight = hole_at(hole, fake_logits.shape[-2:])  # [N, 1, h, w]
    loss = _masked_mean(F.softplus(-fake_logits), weight)
    return loss, {"g_adversarial": loss.item()}


def d_relativistic(real_logits: Tensor, fake_logits: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Discriminator paired relativistic loss inside the hole: softplus(-(D(real) - D(fake))).

    RpGAN (Jolicoeur-Martineau, ICLR 2019; with R1 as in R3GAN, Huang et al. 2024), paired
    per patch: the fake is the real crop with its hole repainted, so real patch p and fake
    patch p share position, background and label maps, and D is scored on which of the two is
    the real one. Anything D computes from position or labels alone cancels in the
    difference; only the painted content counts. (With the standard loss and the label maps as
    input, D learns "label here = fake" quickly and the content slowly: RESULTS.md "Discriminator probe".)
    Patches are weighted by their hole share; background patches carry no decision.
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    weight = hole_at(hole, fake_logits.shape[-2:])  # [N, 1, h, w]
    gap = real_logits - fake_logits
    loss = _masked_mean(F.softplus(-gap), weight)
    logs = {
        "d_relativistic": loss.item(),
        "logits_gap_hole": _masked_mean(gap, weight).item(),
        "d_accuracy_hole": _masked_mean((gap > 0).float(), weight).item(),
    }
    return loss, logs


def g_relativistic(real_logits: Tensor, fake_logits: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Generator side of `d_relativistic`: softplus(D(real) - D(fake)) averaged over the hole,
    the reals detached (they do not depend on G). An empty hole gives 0."""
    real_logits, fake_logits = real_logits.detach().float(), fake_logits.float()
    weight = hole_at(hole, fake_logits.shape[-2:])
    loss = _masked_mean(F.softplus(real_logits - fake_logits), weight)
    return loss, {"g_adversarial": loss.item()}


def r1_penalty(
    real_logits: Tensor, real_inputs: Tensor | Sequence[Tensor], gamma: float
) -> tuple[Tensor, dict[str, float]]:
    """R1 gradient penalty on reals: gamma / 2 * E_x[ ||grad_x sum(D(x))||^2 ].

    Mescheder et al. (ICML 2018), as used by StyleGAN2. `real_inputs` are the tensors D was
    called on (the image, optionally also the label maps), with requires_grad=True set by the
    caller before the D call. For patch logits the gradient is that of the sum of all patch
    logits of a sample. The squared norm is summed over C, H, W and averaged over the batch.
    create_graph=True so the penalty itself can be back-propagated.

    Lazy regularisation (StyleGAN2, sec. 3.1) is the caller's job: compute this every k
    D steps and multiply the loss by k, so the penalty's average strength stays gamma.
    """
    inputs = [real_inputs] if isinstance(real_inputs, Tensor) else list(real_inputs)
    gradients = torch.autograd.grad(outputs=real_logits.float().sum(), inputs=inputs, create_graph=True)
    squared_norm = sum(g.float().square().flatten(1).sum(dim=1) for g in gradients)  # [N]
    penalty = squared_norm.mean()
    loss = 0.5 * gamma * penalty
    return loss, {"r1_penalty": penalty.item()}


def feature_matching(
    fake_features: Sequence[Tensor], real_features: Sequence[Tensor]
) -> tuple[Tensor, dict[str, float]]:
    """Mean over D layers of the L1 distance between fake and real features (reals detached).

    pix2pixHD / LaMa feature matching: a dense, stable signal for G that does not rely on D's
    final decision. Fakes and reals must be D features of the same images' composites and
    originals (same masks), so the features correspond position by position.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            f"need the same non-zero number of fake and real feature maps, got "
            f"{len(fake_features)} and {len(real_features)}"
        )
    per_layer = [
        F.l1_loss(fake.float(), real.detach().float())
        for fake, real in zip(fake_features, real_features, strict=True)
    ]
    loss = torch.stack(per_layer).mean()
    return loss, {"feature_matching": loss.item()}


def hole_reconstruction(output: Tensor, target: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """L1 between output and target inside the hole, per hole pixel and channel.

    We have the real defect as target (LaMa does not), but the defect is one sample of many
    possible ones: a per-pixel L1 pulls the output toward the mean of them, which is a blur,
    so its weight is kept low. Pixels outside the hole do not count; an empty hole gives 0.
    """
    output, target, hole = output.float(), target.float(), hole.float()
    loss = _masked_mean((output - target).abs(), hole)  # [N, C, h, w] weighted by the hole share
    return loss, {"hole_l1": loss.item()}


def mode_seeking(
    out_a: Tensor,
    out_b: Tensor,
    z_a: Tensor,
    z_b: Tensor,
    hole: Tensor,
    eps: float = 1e-5,
    pool: int = 1,
    bound: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Diversity term for two outputs of the same inputs under different random codes.

    ratio = mean |out_a - out_b| inside the hole / mean |z_a - z_b|.
    bound == 0: mode seeking (Mao et al., CVPR 2019), loss 1 / (ratio + eps) — unbounded: it
    keeps rewarding any difference, grain and stripes included.
    bound > 0: DSGAN's bounded form (Yang et al., ICLR 2019), loss -min(ratio, bound): it pushes
    outputs apart until they differ by `bound` per unit of code distance, then stops.

    Only the hole counts (outside it the composite is fixed); an empty hole gives 0. With
    `pool` > 1 the outputs are first average-pooled, so only differences in shape and shading
    count, not pixel noise.
    """
    if pool > 1:  # compare structure, not pixel noise: a generator can buy "diversity" with grain
        out_a, out_b = F.avg_pool2d(out_a.float(), pool), F.avg_pool2d(out_b.float(), pool)
        hole = F.avg_pool2d(hole.float(), pool)
    output_distance = _masked_mean((out_a.float() - out_b.float()).abs(), hole.float())
    code_distance = (z_a.float() - z_b.float()).abs().mean()
    ratio = output_distance / code_distance.clamp_min(_EPS)
    has_hole = hole.sum() > 0
    loss = -ratio.clamp(max=bound) if bound > 0 else 1.0 / (ratio + eps)
    loss = torch.where(has_hole, loss, torch.zeros_like(ratio))
    return loss, {"mode_seeking": loss.item(), "mode_seeking_ratio": ratio.item()}


# --- the segmenting discriminator (OASIS, Schönfeld et al., ICLR 2021) ------------------------------

FAKE, BACKGROUND = 0, 1  # channels of a segmenting D's logits; class k is channel k + 1


def semantic_target(labels: Tensor) -> Tensor:
    """long [N, H, W]: BACKGROUND where no class is set, else 1 + the (first) class's id."""
    labels = labels.float()
    present = labels.amax(dim=1) > 0.5  # [N, H, W]
    return torch.where(
        present, labels.argmax(dim=1) + 2, torch.full_like(present, BACKGROUND, dtype=torch.long)
    )


def _balanced_weights(target: Tensor, num_channels: int, where: Tensor) -> Tensor:
    """OASIS class balancing: each class present among the pixels `where` weighs in inversely to
    its pixel count, so a small defect counts as much as the surface around it. [N, H, W]."""
    counts = torch.bincount(target[where], minlength=num_channels).float()
    present = (counts > 0).sum().clamp_min(1)
    per_class = counts.sum() / (present * counts.clamp_min(1))
    return per_class[target] * where


def realness(logits: Tensor) -> Tensor:
    """[N, 1, H, W]: how real a segmenting D finds each pixel, log-odds of any real class
    against FAKE (the signal ADA and R1 read)."""
    logits = logits.float()
    return torch.logsumexp(logits[:, BACKGROUND:], dim=1, keepdim=True) - logits[:, FAKE : FAKE + 1]


def d_segmenting(
    real_logits: Tensor, fake_logits: Tensor, labels: Tensor, hole: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Segmenting D: class-balanced cross-entropy of every real pixel against its label, plus
    cross-entropy of every painted pixel of the composite (the hole) against FAKE. The
    composite's other pixels are the real image's and are not counted twice."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    target = semantic_target(labels)
    everywhere = torch.ones_like(target, dtype=torch.bool)
    weights = _balanced_weights(target, real_logits.shape[1], everywhere)
    real_loss = (F.cross_entropy(real_logits, target, reduction="none") * weights).mean()
    inside = hole[:, 0].float()
    fake_ce = F.cross_entropy(fake_logits, torch.full_like(target, FAKE), reduction="none")
    fake_loss = _masked_mean(fake_ce, inside)
    loss = real_loss + fake_loss
    with torch.no_grad():
        read = real_logits.argmax(dim=1)
        accuracy = _masked_mean((read == target).float(), inside).item()
    return loss, {"d_real": real_loss.item(), "d_fake": fake_loss.item(), "d_accuracy_hole": accuracy}


def g_segmenting(fake_logits: Tensor, labels: Tensor, hole: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Generator side of `d_segmenting`: the painted pixels must read as their label (class k in
    mask k, surface around it), class-balanced over the hole; 0 for an empty hole."""
    fake_logits = fake_logits.float()
    target = semantic_target(labels)
    inside = hole[:, 0] > 0.5
    if not inside.any():
        return fake_logits.sum() * 0, {"g_adversarial": 0.0}
    weights = _balanced_weights(target, fake_logits.shape[1], inside)
    ce = F.cross_entropy(fake_logits, target, reduction="none")
    loss = (ce * weights).sum() / inside.sum()
    return loss, {"g_adversarial": loss.item()}
