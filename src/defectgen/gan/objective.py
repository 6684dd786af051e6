"""The losses of one training iteration as one object with three phases.

    objective = Objective.from_config(config)
    loss_d, logs = objective.discriminator(D, ada, real, fake.detach(), labels, hole, rng)
    loss_r1, logs = objective.regularise(D, ada, real, labels, hole, rng)     # every r1_interval steps
    loss_g, logs = objective.generator(D, ada, real, raw, fake, labels, hole, z, rng)

Each phase returns (scalar loss, floats to log) and leaves stepping the optimisers to the
caller. The adversarial terms look at the hole only: a relativistic loss asks D which of
real crop i and its repainted twin is real, patch by patch. A segmenting discriminator
(`D.segmenting`, OASIS) replaces it with per-pixel cross-entropy: real pixels towards their
label, painted ones towards "fake", and for G, painted pixels towards their label
(`losses.d_segmenting`). D sees both images under the same augmentation draw (`augment_pair`),
so patch p of one lies where patch p of the other does. The weighted sum of the generator
terms (adversarial, D-feature matching, L1 in the hole, bounded mode seeking and, with a
guide (`guide.py`), a frozen real-trained U-Net's segmentation loss in the hole) is the
generator's loss. The unweighted terms are pure functions in `losses.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from defectgen.gan import losses


@dataclass(frozen=True)
class Objective:
    adversarial: float = 1.0
    feature_matching: float = 10.0
    reconstruction: float = 1.0
    mode_seeking: float = 1.0
    mode_seeking_bound: float = 0.1
    r1_gamma: float = 0.001
    r1_interval: int = 16
    guide_weight: float = 1.0
    guide: nn.Module | None = field(default=None, compare=False)  # frozen U-Net (guide.py) or None

    @classmethod
    def from_config(cls, config, guide: nn.Module | None = None) -> Objective:
        """The objective a `TrainConfig` asks for (`guide`: the loaded U-Net of `config.guide`)."""
        names = [name for name in cls.__dataclass_fields__ if name != "guide"]
        return cls(**{name: getattr(config, name) for name in names}, guide=guide)

    def discriminator(
        self, D, ada, real: Tensor, fake: Tensor, labels: Tensor, hole: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        """D's loss on real crops and their (detached) composites; feeds ADA its overfitting
        signal (r_t: the sign of D(real) - D(fake) on patches mostly in the hole)."""
        real_aug, fake_aug, labels_aug, hole_aug = augment_pair(ada, real, fake, labels, hole, rng)
        logits, _ = D(torch.cat([real_aug, fake_aug.to(real_aug.dtype)]), torch.cat([labels_aug] * 2))
        real_logits, fake_logits = logits.float().chunk(2)
        if _segmenting(D):
            loss, logs = losses.d_segmenting(real_logits, fake_logits, labels_aug, hole_aug)
            ada.accumulate(losses.realness(real_logits).detach()[hole_aug >= 0.5])
        else:
            loss, logs = losses.d_relativistic(real_logits, fake_logits, hole_aug)
            inside = losses.hole_at(hole_aug, real_logits.shape[-2:]) >= 0.5
            ada.accumulate((real_logits - fake_logits).detach()[inside])
        return loss, logs

    def due(self, step: int) -> bool:
        """Whether `regularise` runs at `step` (lazy regularisation, StyleGAN2)."""
        return self.r1_gamma > 0 and step % self.r1_interval == 0

    def regularise(
        self, D, ada, real: Tensor, labels: Tensor, hole: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        """Lazy R1 on augmented reals (StyleGAN2-ADA applies it after augmentation), in fp32,
        already multiplied by `r1_interval` so it weighs as every-step R1 would."""
        real_aug, labels_aug, _ = ada(real, labels, hole, rng)
        real_aug = real_aug.detach().requires_grad_(True)
        logits, _ = D(real_aug, labels_aug)
        if _segmenting(D):
            # One realness per pixel; summed as it is, R1 would weigh 4**n_layers times the
            # gradients a patch D's logits carry (one per 2**n x 2**n patch), ~4000x the penalty
            # at n = 3, and r1_gamma would mean something else. Per patch-sized block instead.
            logits = losses.realness(logits) / 4**D.n_layers
        loss, logs = losses.r1_penalty(logits, real_aug, self.r1_gamma)
        return loss * self.r1_interval, logs

    def generator(
        self,
        D,
        ada,
        real: Tensor,
        raw: Tensor,
        fake: Tensor,
        labels: Tensor,
        hole: Tensor,
        z: Tensor,
        rng: torch.Generator,
    ) -> tuple[Tensor, dict[str, float]]:
        """G's weighted loss through a frozen D. `raw` is G's output, `fake` its composite;
        the batch's two halves are pairs of one crop with two style codes `z` (mode seeking)."""
        logs: dict[str, float] = {}
        fake_aug, real_aug, labels_aug, hole_aug = augment_pair(ada, fake, real, labels, hole, rng)
        logits, features = D(torch.cat([fake_aug, real_aug.to(fake_aug.dtype)]), torch.cat([labels_aug] * 2))
        fake_logits, real_logits = logits.float().chunk(2)
        if _segmenting(D):
            loss_adv, adv_logs = losses.g_segmenting(fake_logits, labels_aug, hole_aug)
        else:
            loss_adv, adv_logs = losses.g_relativistic(real_logits, fake_logits, hole_aug)
        terms = [self.adversarial * loss_adv]
        logs.update(adv_logs)
        if self.feature_matching > 0:
            halves = [f.float().chunk(2) for f in features]
            loss_fm, fm_logs = losses.feature_matching(
                [fake_f for fake_f, _ in halves], [real_f.detach() for _, real_f in halves]
            )
            terms.append(self.feature_matching * loss_fm)
            logs.update(fm_logs)
        loss_rec, rec_logs = losses.hole_reconstruction(raw.float(), real, hole)
        terms.append(self.reconstruction * loss_rec)
        logs.update(rec_logs)
        if self.mode_seeking > 0:
            half = len(fake) // 2
            loss_ms, ms_logs = losses.mode_seeking(
                fake[:half].float(),
                fake[half:].float(),
                z[:half],
                z[half:],
                hole[:half],
                pool=4,
                bound=self.mode_seeking_bound,
            )
            terms.append(self.mode_seeking * loss_ms)
            logs.update(ms_logs)
        if self.guide is not None:
            from defectgen.gan.guide import guide_loss

            loss_guide, guide_logs = guide_loss(self.guide, fake, labels, hole)
            terms.append(self.guide_weight * loss_guide)
            logs.update(guide_logs)
        return sum(terms), logs


def _segmenting(D) -> bool:
    """A segmenting (OASIS) discriminator: per-pixel classes instead of real/fake patch logits."""
    return getattr(D, "segmenting", False)


def augment_pair(
    ada, first: Tensor, second: Tensor, labels: Tensor, hole: Tensor, generator: torch.Generator
):
    """Augment two images of the same crop (a real and its composite) with the same draw:
    `generator` is rewound between the calls, so patch p of one lies where patch p of the
    other does. Returns (first_aug, second_aug, labels_aug, hole_aug)."""
    state = generator.get_state()
    first_aug, labels_aug, hole_aug = ada(first, labels, hole, generator)
    generator.set_state(state)
    second_aug, _, _ = ada(second, labels, hole, generator)
    return first_aug, second_aug, labels_aug, hole_aug


@dataclass(frozen=True)
class StyleGANObjective:
    """The StyleGAN generator's losses (`--model stylegan`), with the inpainter's phases: StyleGAN2's
    non-saturating logistic loss over every patch of whole crops (nothing is composited: the
    StyleGAN generator draws all of it), lazy R1 on the real image *and* its label maps (D reads both), and
    ADA fed the sign of D(real). Real and fake crops are unrelated draws, so each is augmented
    with its own transform; the labels follow their image. R1 is taken on each image's mean
    patch logit, the image logit StyleGAN2's gamma is defined for (on the sum of a P-patch
    grid's logits it would weigh up to P**2 times more).

    `real_labels` / `fake_labels` are [N, K, H, W] label maps (the StyleGAN generator's binarised,
    `models.stylegan.binarised`)."""

    r1_gamma: float
    adversarial: float = 1.0
    r1_interval: int = 16

    @classmethod
    def from_config(cls, config) -> StyleGANObjective:
        return cls(
            r1_gamma=config.model_r1_gamma(), adversarial=config.adversarial, r1_interval=config.r1_interval
        )

    def discriminator(
        self,
        D,
        ada,
        real: Tensor,
        real_labels: Tensor,
        fake: Tensor,
        fake_labels: Tensor,
        rng: torch.Generator,
    ) -> tuple[Tensor, dict[str, float]]:
        real_aug, real_labels_aug, _ = ada(real, real_labels, _whole(real), rng)
        fake_aug, fake_labels_aug, _ = ada(fake, fake_labels, _whole(fake), rng)
        logits, _ = D(
            torch.cat([real_aug, fake_aug.to(real_aug.dtype)]),
            torch.cat([real_labels_aug, fake_labels_aug.to(real_labels_aug.dtype)]),
        )
        real_logits, fake_logits = logits.float().chunk(2)
        loss, logs = losses.d_adversarial(real_logits, fake_logits, _whole(fake_logits))
        ada.accumulate(real_logits.detach())
        return loss, logs

    def due(self, step: int) -> bool:
        """Whether `regularise` runs at `step` (lazy regularisation, StyleGAN2)."""
        return self.r1_gamma > 0 and step % self.r1_interval == 0

    def regularise(
        self, D, ada, real: Tensor, real_labels: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        """Lazy R1 on augmented reals, over image and label maps, scaled by `r1_interval`."""
        real_aug, labels_aug, _ = ada(real, real_labels, _whole(real), rng)
        real_aug = real_aug.detach().float().requires_grad_(True)
        labels_aug = labels_aug.detach().float().requires_grad_(True)
        logits, _ = D(real_aug, labels_aug)
        image_logits = logits.float().mean(dim=(1, 2, 3))  # [N]
        loss, logs = losses.r1_penalty(image_logits, [real_aug, labels_aug], self.r1_gamma)
        return loss * self.r1_interval, logs

    def generator(
        self, D, ada, fake: Tensor, fake_labels: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        fake_aug, labels_aug, _ = ada(fake, fake_labels, _whole(fake), rng)
        logits, _ = D(fake_aug, labels_aug)
        loss, logs = losses.g_adversarial(logits.float(), _whole(logits))
        return self.adversarial * loss, logs


def _whole(x: Tensor) -> Tensor:
    """A hole covering all of x: [N, 1, H, W] ones (the StyleGAN generator draws every pixel)."""
    return torch.ones(len(x), 1, *x.shape[-2:], dtype=torch.float32, device=x.device)
