"""Adaptive discriminator augmentation: shared geometry, colour on the image only, the p
controller and its checkpoint state."""

from __future__ import annotations

import io

import pytest
import torch

from defectgen.gan.augment import GEOMETRIC, AdaptiveAugment


def make_batch(batch: int = 6, height: int = 32, width: int = 32, seed: int = 0):
    """Image values away from 0 so (image > 0) is robust; labels/hole derived from it."""
    generator = torch.Generator().manual_seed(seed)
    magnitude = 0.25 + 0.75 * torch.rand(batch, 1, height, width, generator=generator)
    sign = torch.where(torch.rand(batch, 1, height, width, generator=generator) < 0.3, 1.0, -1.0)
    image = magnitude * sign
    labels = torch.cat([(image > 0).float(), (image > 0.6).float()], dim=1)  # [N, 2, H, W]
    hole = (image > 0.5).float()
    return image, labels, hole


def test_p_zero_returns_inputs_unchanged():
    image, labels, hole = make_batch()
    ada = AdaptiveAugment(p=0.0)
    out = ada(image, labels, hole, torch.Generator().manual_seed(0))
    assert out[0] is image and out[1] is labels and out[2] is hole


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_geometry_is_identical_for_image_labels_and_hole(seed, size):
    image, labels, hole = make_batch(8, *size, seed=seed)
    ada = AdaptiveAugment(p=1.0, max_p=1.0, transforms=("xflip", "yflip", "rotate90", "translate"))
    out_image, out_labels, out_hole = ada(image, labels, hole, torch.Generator().manual_seed(seed))
    assert not torch.equal(out_image, image)  # something happened
    assert torch.equal(out_labels[:, :1], (out_image > 0).float())
    assert torch.equal(out_labels[:, 1:], (out_image > 0.6).float())
    assert torch.equal(out_hole, (out_image > 0.5).float())


def test_integer_transforms_move_pixels_exactly():
    image, labels, hole = make_batch(16)
    ada = AdaptiveAugment(p=1.0, max_p=1.0, transforms=("xflip",))
    out_image, _, _ = ada(image, labels, hole, torch.Generator().manual_seed(3))
    flipped = torch.flip(image, dims=[-1])
    per_sample = [
        torch.allclose(o, i, atol=1e-5) or torch.allclose(o, f, atol=1e-5)
        for o, i, f in zip(out_image, image, flipped, strict=True)
    ]
    assert all(per_sample)
    assert any(torch.allclose(o, f, atol=1e-5) for o, f in zip(out_image, flipped, strict=True))


def test_scaling_keeps_maps_binary():
    image, labels, hole = make_batch()
    ada = AdaptiveAugment(p=1.0, max_p=1.0, transforms=GEOMETRIC)
    _, out_labels, out_hole = ada(image, labels, hole, torch.Generator().manual_seed(0))
    assert set(out_labels.unique().tolist()) <= {0.0, 1.0}
    assert set(out_hole.unique().tolist()) <= {0.0, 1.0}


def test_colour_changes_the_image_only():
    image, labels, hole = make_batch()
    ada = AdaptiveAugment(p=1.0, max_p=1.0, transforms=("brightness", "contrast"))
    out_image, out_labels, out_hole = ada(image, labels, hole, torch.Generator().manual_seed(0))
    assert not torch.allclose(out_image, image)
    assert torch.equal(out_labels, labels) and torch.equal(out_hole, hole)


def test_augmentation_is_differentiable_and_reproducible():
    image, labels, hole = make_batch()
    image = image.clone().requires_grad_(True)
    ada = AdaptiveAugment(p=0.7, max_p=1.0)
    out_a, _, _ = ada(image, labels, hole, torch.Generator().manual_seed(5))
    out_b, _, _ = ada(image, labels, hole, torch.Generator().manual_seed(5))
    out_c, _, _ = ada(image, labels, hole, torch.Generator().manual_seed(6))
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, out_c)
    (out_a * torch.linspace(-1, 1, out_a.numel()).view_as(out_a)).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0


def test_bf16_images_are_warped():
    image, labels, hole = make_batch()
    ada = AdaptiveAugment(p=1.0, max_p=1.0)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out, _, _ = ada(image.to(torch.bfloat16), labels, hole, torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_p_rises_when_reals_look_real_and_falls_otherwise():
    ada = AdaptiveAugment(target=0.6, interval=4, speed_images=1000, p=0.0)
    for step in range(1, 5):
        ada.accumulate(torch.full((8, 1, 4, 4), 3.0))
        logs = ada.update(batch_size=8)
        assert (logs == {}) == (step < 4)  # p moves every `interval` calls only
    assert logs["ada_rt"] == 1.0
    assert ada.p == pytest.approx(8 * 4 / 1000)
    for _ in range(8):
        ada.accumulate(-torch.ones(8, 1, 4, 4))
        ada.update(batch_size=8)
    assert ada.p == 0.0  # fell, clamped at 0


def test_p_is_clamped_at_max_p():
    ada = AdaptiveAugment(interval=1, speed_images=10, p=0.7, max_p=0.8)
    ada.accumulate(torch.ones(4, 1, 2, 2))
    ada.update(batch_size=4)
    assert ada.p == 0.8


def test_state_dict_round_trips_through_a_weights_only_checkpoint():
    ada = AdaptiveAugment(interval=3, p=0.25)
    ada.accumulate(torch.ones(2, 1, 2, 2))
    ada.update(2)
    buffer = io.BytesIO()
    torch.save(ada.state_dict(), buffer)
    buffer.seek(0)
    restored = AdaptiveAugment(interval=3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == ada.state_dict()
    # the restored controller finishes the interval the saved one had started
    for controller in (ada, restored):
        controller.accumulate(torch.ones(2, 1, 2, 2))
        controller.update(2)
        controller.update(2)
    assert restored.p == ada.p > 0.25


def test_rejects_unknown_transforms_and_mismatched_shapes():
    with pytest.raises(ValueError, match="unknown transforms"):
        AdaptiveAugment(transforms=("cutout",))
    image, labels, hole = make_batch()
    with pytest.raises(ValueError, match="share N, H and W"):
        AdaptiveAugment(p=0.5)(image, labels[:, :, :16], hole, torch.Generator())


def test_all_reduce_is_a_no_op_alone_and_sums_in_a_process_group(tmp_path):
    import torch.distributed as dist

    ada = AdaptiveAugment(interval=1, speed_images=100)
    ada.accumulate(torch.ones(2, 1, 2, 2))
    ada.all_reduce()  # no process group: nothing happens
    assert ada.state_dict()["count"] == 8
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ada.all_reduce()
        logs = ada.update(batch_size=2)
    finally:
        dist.destroy_process_group()
    assert logs["ada_rt"] == 1.0 and ada.p == pytest.approx(0.02)
