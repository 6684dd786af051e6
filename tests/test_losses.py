"""Loss functions on hand-computed values and known closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from defectgen.gan.losses import (
    d_adversarial,
    d_relativistic,
    feature_matching,
    g_adversarial,
    g_relativistic,
    hole_reconstruction,
    mode_seeking,
    r1_penalty,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_d_adversarial_hand_computed():
    real = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    fake = torch.tensor([1.0, -3.0]).view(1, 1, 1, 2)
    hole = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # left patch painted, right one real
    loss, logs = d_adversarial(real, fake, hole)
    expected_real = (softplus(-0.0) + softplus(-2.0)) / 2
    expected_fake = (softplus(1.0) + softplus(3.0)) / 2  # fake patch: sp(f); real patch: sp(-f)
    assert loss.item() == pytest.approx(expected_real + expected_fake, rel=1e-6)
    assert logs["d_real"] == pytest.approx(expected_real, rel=1e-6)
    assert logs["d_fake"] == pytest.approx(expected_fake, rel=1e-6)


def test_d_adversarial_resizes_the_hole_by_area():
    """One logit over a 2x2 input with one hole pixel: the fake target is 1/4."""
    real = torch.zeros(1, 1, 1, 1)
    fake = torch.full((1, 1, 1, 1), 0.5)
    hole = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    loss, _ = d_adversarial(real, fake, hole)
    expected = softplus(0.0) + 0.25 * softplus(0.5) + 0.75 * softplus(-0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_relativistic_losses_hand_computed():
    real = torch.tensor([1.0, 5.0]).view(1, 1, 1, 2)
    fake = torch.tensor([-1.0, 9.0]).view(1, 1, 1, 2)
    hole = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # only the left patch is painted
    loss_d, logs = d_relativistic(real, fake, hole)
    assert loss_d.item() == pytest.approx(softplus(-2.0), rel=1e-6)
    assert logs["d_accuracy_hole"] == 1.0 and logs["logits_gap_hole"] == pytest.approx(2.0)
    loss_g, _ = g_relativistic(real, fake, hole)
    assert loss_g.item() == pytest.approx(softplus(2.0), rel=1e-6)


def test_relativistic_losses_ignore_what_real_and_fake_share():
    """A per-patch offset added to both logits (what D can read from position and labels alone)
    changes neither loss: only the painted content can move them. The standard loss moves."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    hole = (torch.rand(2, 1, 8, 8, generator=gen) > 0.5).float()
    offset = 5 * torch.randn(2, 1, 4, 4, generator=gen)
    for loss in (d_relativistic, g_relativistic):
        before, _ = loss(real, fake, hole)
        after, _ = loss(real + offset, fake + offset, hole)
        assert after.item() == pytest.approx(before.item(), rel=1e-5)
    before, _ = d_adversarial(real, fake, hole)
    after, _ = d_adversarial(real + offset, fake + offset, hole)
    assert after.item() != pytest.approx(before.item(), rel=1e-3)


def test_g_relativistic_gradient_reaches_fakes_only():
    real = torch.zeros(1, 1, 2, 2, requires_grad=True)
    fake = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss, _ = g_relativistic(real, fake, torch.ones(1, 1, 2, 2))
    loss.backward()
    assert real.grad is None and fake.grad is not None and (fake.grad < 0).all()


def test_g_adversarial_is_a_mean_over_the_hole():
    fake = torch.tensor([2.0, -1.0, 7.0, 7.0]).view(1, 1, 2, 2)
    hole = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    loss, _ = g_adversarial(fake, hole)
    assert loss.item() == pytest.approx((softplus(-2.0) + softplus(1.0)) / 2, rel=1e-6)
    empty, _ = g_adversarial(fake, torch.zeros_like(hole))
    assert empty.item() == 0.0


def test_r1_equals_closed_form_for_a_linear_discriminator():
    """D(x) = <w, x> per sample has grad_x D = w, so R1 = gamma/2 * ||w||^2, and its
    gradient w.r.t. w (through create_graph) is gamma * w."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 2, 3, 3, generator=generator, requires_grad=True)
    x = torch.randn(4, 2, 3, 3, generator=generator, requires_grad=True)
    logits = (x * weight).sum(dim=(1, 2, 3)).view(4, 1, 1, 1)
    gamma = 10.0
    loss, logs = r1_penalty(logits, x, gamma)
    expected = gamma / 2 * weight.detach().square().sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["r1_penalty"] == pytest.approx(weight.detach().square().sum().item(), rel=1e-5)
    loss.backward()
    assert torch.allclose(weight.grad, gamma * weight.detach(), rtol=1e-5)


def test_r1_sums_patch_logits_and_multiple_inputs():
    """Patch logits: gradient of their sum. Two inputs: squared norms add up."""
    x = torch.ones(2, 1, 4, 4, requires_grad=True)
    y = torch.ones(2, 1, 4, 4, requires_grad=True)
    logits = torch.nn.functional.avg_pool2d(3 * x + 2 * y, 2)  # [2, 1, 2, 2]
    loss, _ = r1_penalty(logits, (x, y), gamma=2.0)
    # each pixel feeds one patch with weight 1/4: grad_x = 3/4, grad_y = 2/4 per pixel
    expected = 16 * (0.75**2 + 0.5**2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_feature_matching_is_mean_l1_with_detached_reals():
    fake = [torch.zeros(1, 2, 2, 2, requires_grad=True), torch.zeros(1, 1, 1, 1, requires_grad=True)]
    real = [torch.ones(1, 2, 2, 2, requires_grad=True), torch.full((1, 1, 1, 1), 3.0, requires_grad=True)]
    loss, _ = feature_matching(fake, real)
    assert loss.item() == pytest.approx((1.0 + 3.0) / 2)
    loss.backward()
    assert fake[0].grad is not None
    assert real[0].grad is None and real[1].grad is None
    with pytest.raises(ValueError, match="same non-zero number"):
        feature_matching(fake, real[:1])


def test_hole_reconstruction_ignores_everything_outside_the_hole():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=generator)
    hole = torch.zeros(2, 1, 8, 8)
    hole[:, :, 2:4, 2:6] = 1
    output = target + (1 - hole) * torch.randn(2, 3, 8, 8, generator=generator)
    loss, _ = hole_reconstruction(output, target, hole)
    assert loss.item() == 0.0
    shifted = output + 0.5 * hole
    loss, _ = hole_reconstruction(shifted, target, hole)
    assert loss.item() == pytest.approx(0.5, rel=1e-6)  # per hole pixel and channel
    empty, _ = hole_reconstruction(shifted, target, torch.zeros_like(hole))
    assert empty.item() == 0.0


def test_bounded_mode_seeking_stops_pushing_at_the_bound():
    hole = torch.ones(1, 1, 4, 4)
    z_a, z_b = torch.zeros(1, 8), torch.ones(1, 8)  # code distance 1
    base = torch.zeros(1, 1, 4, 4)
    below = (base + 0.05).requires_grad_()
    loss, logs = mode_seeking(base, below, z_a, z_b, hole, bound=0.1)
    assert loss.item() == pytest.approx(-0.05) and logs["mode_seeking_ratio"] == pytest.approx(0.05)
    loss.backward()
    assert below.grad.sum() < 0  # gradient descent raises `below`: the outputs move apart
    above = (base + 0.3).requires_grad_()
    loss, _ = mode_seeking(base, above, z_a, z_b, hole, bound=0.1)
    assert loss.item() == pytest.approx(-0.1)
    loss.backward()
    assert above.grad.abs().sum() == 0  # past the bound: no push at all (no stripes bought)


def test_mode_seeking_decreases_as_outputs_differ_more():
    hole = torch.zeros(1, 1, 4, 4)
    hole[..., :2, :] = 1
    base = torch.zeros(1, 1, 4, 4)
    z_a, z_b = torch.zeros(1, 8), torch.ones(1, 8)
    close, logs = mode_seeking(base, base + 0.1 * hole, z_a, z_b, hole)
    far, _ = mode_seeking(base, base + 0.5 * hole, z_a, z_b, hole)
    assert far < close
    assert logs["mode_seeking_ratio"] == pytest.approx(0.1, rel=1e-5)
    assert close.item() == pytest.approx(1 / (0.1 + 1e-5), rel=1e-5)
    outside_only, _ = mode_seeking(base, base + 0.5 * (1 - hole), z_a, z_b, hole)
    assert outside_only > close  # differences outside the hole do not count
    empty, _ = mode_seeking(base, base + 1, z_a, z_b, torch.zeros_like(hole))
    assert empty.item() == 0.0


def test_mode_seeking_gradient_pushes_outputs_apart():
    hole = torch.ones(1, 1, 2, 2)
    out_a = torch.zeros(1, 1, 2, 2, requires_grad=True)
    out_b = torch.full((1, 1, 2, 2), 0.2)
    loss, _ = mode_seeking(out_a, out_b, torch.zeros(1, 4), torch.ones(1, 4), hole)
    loss.backward()
    assert (out_a.grad > 0).all()  # gradient descent moves out_a away from out_b (down)
