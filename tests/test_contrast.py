"""Contrast matching (#34): the painted defect must stand out from its ring of surface as much as
the real one does, one number per defect, so any painting of that contrast is right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectgen.errors import ConfigError
from defectgen.gan import losses
from defectgen.gan.config import TrainConfig
from defectgen.geometry import dilate
from defectgen.severity import RING_PX
from defectgen.severity import contrast as measured_contrast


def _crop(inside: float, around: float, size=24) -> tuple[torch.Tensor, torch.Tensor]:
    """A [1, 1, size, size] image in [-1, 1]: grey `inside` (0..1) on an 8 x 8 square, `around`
    elsewhere; and the square as the defect mask."""
    defect = torch.zeros(1, 1, size, size)
    defect[..., 8:16, 8:16] = 1
    grey = defect * inside + (1 - defect) * around
    return grey * 2 - 1, defect


def test_the_contrast_is_severity_s_contrast():
    """On a noisy image and an irregular defect, the loss measures what `severity.contrast`
    measures (the same disc ring), so the severity table's scale is the scale it matches."""
    rng = np.random.default_rng(0)
    defect = torch.zeros(1, 1, 32, 32)
    defect[..., 10:20, 8:14] = 1
    defect[..., 14:17, 14:24] = 1
    image = (torch.from_numpy(rng.uniform(-1, 1, (1, 1, 32, 32))).float() + defect).clamp(-1, 1)
    mask = defect[0, 0].numpy().astype(bool)
    ring = losses.ring_of(defect, RING_PX)
    assert np.array_equal(ring[0, 0].numpy().astype(bool), dilate(mask, RING_PX).astype(bool) & ~mask)
    expected = measured_contrast((image[0, 0].numpy() + 1) / 2, mask)
    assert losses.defect_contrast(image, defect, ring).item() == pytest.approx(expected, abs=1e-5)
    plain, square = _crop(0.8, 0.3)
    assert losses.defect_contrast(plain, square, losses.ring_of(square, 4)).item() == pytest.approx(
        0.5, abs=1e-6
    )


def test_any_painting_of_the_real_contrast_costs_nothing_and_another_contrast_costs_the_gap():
    real, defect = _crop(0.8, 0.3)
    checker = torch.zeros_like(defect)
    checker[..., 8:16:2, 8:16] = 0.1
    checker[..., 9:16:2, 8:16] = -0.1
    other_painting = real + checker * defect * 2  # mean inside unchanged, pixels different
    loss, logs = losses.contrast_matching(other_painting, real, defect, 4, 4)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and logs["contrast_l1"] == pytest.approx(0.0, abs=1e-6)
    fainter, _ = _crop(0.5, 0.3)  # contrast 0.2 against the real 0.5
    fainter.requires_grad_(True)
    loss, _ = losses.contrast_matching(fainter, real, defect, 4, 4)
    assert loss.item() == pytest.approx(0.3, abs=1e-6)
    loss.backward()
    assert fainter.grad[..., 8:16, 8:16].abs().sum() > 0  # it pulls on the defect's pixels


def test_crops_without_a_measurable_ring_do_not_count():
    real, defect = _crop(0.8, 0.3)
    whole = torch.ones_like(defect)  # a defect over the whole crop has no ring
    loss, _ = losses.contrast_matching(real * 0, real, whole, 4, 4)
    assert loss.item() == 0
    both = torch.cat([defect, whole])
    fakes, reals = torch.cat([_crop(0.5, 0.3)[0], real]), torch.cat([real, real])
    loss, _ = losses.contrast_matching(fakes, reals, both, 4, 4)
    assert loss.item() == pytest.approx(0.3, abs=1e-6)  # the measurable crop only


def test_contrast_needs_a_generator_told_the_severity():
    with pytest.raises(ConfigError, match="model.generator.severity"):
        TrainConfig(contrast=1.0, model={"generator": {"severity": False}}).validate()
    TrainConfig(contrast=1.0).validate()  # the presets' generators take a severity map
    with pytest.raises(ConfigError, match="`contrast`"):
        TrainConfig(preset="stylegan-small", contrast=1.0).validate()
