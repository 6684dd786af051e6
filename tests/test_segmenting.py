"""The segmenting (OASIS) discriminator: shapes, the per-pixel losses, and a run that trains and
synthesises with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import FIXTURE
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError
from defectgen.gan import losses
from defectgen.gan.checkpoint import load_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.models import preset
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig

SEGMENTING = {"kind": "segmenting", "conditioning": "none"}


def _labels() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(2, 3, 32, 32)
    labels[0, 1, 8:16, 8:16] = 1  # class 2
    labels[1, 0, 20:24, 4:30] = 1  # class 1
    hole = F.max_pool2d(labels.amax(1, keepdim=True), 5, 1, 2)
    return labels, hole


def test_it_reads_a_class_or_fake_per_pixel_at_any_size():
    D = preset("tiny").merged({"discriminator": SEGMENTING}).discriminator.build(1, 3)
    logits, features = D(torch.randn(2, 1, 40, 56))
    assert logits.shape == (2, 3 + 2, 40, 56) and len(features) == 3
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        D(torch.randn(2, 3, 40, 56))


def test_a_patch_conditioning_with_the_segmenting_kind_is_refused():
    with pytest.raises(ConfigError, match="conditioning=none"):
        preset("tiny").merged({"discriminator": {"kind": "segmenting"}})
    with pytest.raises(ConfigError, match="kind"):
        preset("tiny").merged({"discriminator": {"kind": "oasis"}})


def test_the_target_is_background_or_one_plus_the_class():
    labels, _ = _labels()
    target = losses.semantic_target(labels)
    assert target[0, 10, 10] == 3 and target[1, 21, 10] == 2 and target[0, 0, 0] == losses.BACKGROUND


def test_d_loss_is_low_for_a_d_that_segments_and_flags_the_hole():
    labels, hole = _labels()
    target = losses.semantic_target(labels)
    right = F.one_hot(target, 5).permute(0, 3, 1, 2).float() * 20
    fake_right = torch.where(
        hole > 0, F.one_hot(torch.zeros_like(target), 5).permute(0, 3, 1, 2) * 20.0, right
    )
    good, logs = losses.d_segmenting(right, fake_right, labels, hole)
    fooled, _ = losses.d_segmenting(right, right, labels, hole)  # reads the fake as real
    assert good.item() < 1e-3 < fooled.item() and logs["d_accuracy_hole"] == 1.0
    # the generator wins exactly where the discriminator is fooled
    g_fooled, _ = losses.g_segmenting(right, labels, hole)
    g_caught, _ = losses.g_segmenting(fake_right, labels, hole)
    assert g_fooled.item() < 1e-3 < g_caught.item()
    # a wrong class in the mask is a loss for G, though it is "real"
    swapped = right.clone()
    swapped[:, [2, 3]] = swapped[:, [3, 2]]
    assert losses.g_segmenting(swapped, labels, hole)[0].item() > 1.0
    empty, _ = losses.g_segmenting(right, labels, torch.zeros_like(hole))
    assert empty.item() == 0.0


def test_small_defects_weigh_as_much_as_the_surface():
    """Class balancing: every class present carries the same total weight, whatever its area,
    and the weights average 1 over the pixels counted."""
    labels, hole = _labels()
    target = losses.semantic_target(labels)
    weights = losses._balanced_weights(target, 5, torch.ones_like(target, dtype=torch.bool))
    totals = [weights[target == c].sum().item() for c in (losses.BACKGROUND, 2, 3)]
    assert totals == pytest.approx([totals[0]] * 3) and weights.mean().item() == pytest.approx(1.0)
    inside = hole[:, 0] > 0
    weights = losses._balanced_weights(target, 5, inside)
    assert (weights[~inside] == 0).all() and weights[inside].mean().item() == pytest.approx(1.0)


def test_a_run_trains_and_synthesises_with_it(tmp_path):
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    config = TrainConfig(
        preset="tiny",
        model={"resolution": 32, "discriminator": SEGMENTING},
        steps=2,
        batch_size=2,
        precision="fp32",
        log_every=1,
        r1_interval=1,  # R1 on the realness map runs too
        sample_every=100,
        checkpoint_every=100,
    )
    checkpoint = train(dataset, split, config, tmp_path / "run", progress=False)
    state = load_checkpoint(checkpoint)
    assert state["config"]["model"]["discriminator"]["kind"] == "segmenting"
    assert any(k.startswith("up.") for k in state["D"])
    summary = synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "out",
        SynthConfig(n=2, background_source="free"),
        progress=False,
    )
    assert summary["items"] == 2


def test_r1_weighs_the_same_for_both_kinds_of_discriminator():
    """R1 on the per-pixel realness is taken per patch-sized block: at initialisation the penalty
    is of the patch discriminator's order, not 4**n_layers**2 times it."""
    from defectgen.gan.augment import AdaptiveAugment
    from defectgen.gan.objective import Objective

    torch.manual_seed(0)
    spec = preset("small")
    labels, hole = _labels()
    labels, hole = F.interpolate(labels, size=64), F.interpolate(hole, size=64)
    real = torch.rand(2, 1, 64, 64) * 2 - 1
    penalties = {}
    for name, part in (("patch", {}), ("segmenting", SEGMENTING)):
        D = spec.merged({"discriminator": part}).discriminator.build(1, 3)
        objective = Objective(r1_interval=1, r1_gamma=1.0)
        _, logs = objective.regularise(
            D, AdaptiveAugment(), real, labels, hole, torch.Generator().manual_seed(0)
        )
        penalties[name] = logs["r1_penalty"]
    assert 0.1 < penalties["segmenting"] / penalties["patch"] < 10, penalties
