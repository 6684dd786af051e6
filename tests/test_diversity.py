"""The diversity measurement (#34): draws for one mask against real defects of the class, per
class, and how far the hole's pixels move when only the draw changes; checked on generators
whose answer is known (one that ignores its noise, one that paints pure noise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from defectgen.data.dataset import Item, Sample
from defectgen.evaluate import quality


class Deaf(nn.Module):
    """Paints the same grey whatever the draw: no diversity at all."""

    def forward(self, image, hole, labels, generator=None):
        return torch.full_like(image, 0.25)


class Noisy(nn.Module):
    """Paints independent uniform noise in [-1, 1] each draw: two draws differ by E|a - b| = 2/3,
    i.e. 1/3 in units of the [0, 1] grey range."""

    def forward(self, image, hole, labels, generator=None):
        return torch.rand(image.shape, generator=generator) * 2 - 1


class Pixels(nn.Module):
    """Features = the pixels themselves; with regions, the pixels of the region (others zeroed)."""

    def forward(self, images, regions=None):
        return (images if regions is None else images * regions).flatten(1).double()


class Identity(nn.Module):
    """A segmenter stub whose encoder's deepest map is the image average-pooled by `factor`."""

    def __init__(self, factor=1):
        super().__init__()
        self.factor = factor
        self.encoder = self._encode

    def _encode(self, images):
        return [torch.nn.functional.avg_pool2d(images, self.factor) if self.factor > 1 else images]


class Cycler(nn.Module):
    """Paints the n-th of `values` at its n-th call, whatever the draw: draws that differ exactly
    as the given defects do."""

    def __init__(self, values):
        super().__init__()
        self.values, self.calls = values, 0

    def forward(self, image, hole, labels, generator=None):
        value = self.values[self.calls % len(self.values)]
        self.calls += 1
        return torch.full_like(image, value)


def _window(size=16, hole_pixels=((4, 12), (4, 12))):
    hole = torch.zeros(1, 1, size, size)
    (top, bottom), (left, right) = hole_pixels
    hole[..., top:bottom, left:right] = 1
    return {"image": torch.zeros(1, 1, size, size), "hole": hole, "labels": hole.clone()}


def test_a_generator_that_ignores_its_draw_has_no_diversity():
    spread = quality.diversity(Deaf(), Pixels(), [_window(), _window()], 4, 0, False)
    assert spread == (0, 0, 0)


def test_pure_noise_moves_the_hole_by_a_third_and_nothing_outside_it():
    windows = [_window(size=64, hole_pixels=((0, 64), (0, 64)))]
    distance, _, moved = quality.diversity(Noisy(), Pixels(), windows, 4, 0, False)
    assert moved == pytest.approx(1 / 3, abs=0.01)
    assert distance > 0
    # a hole of a quarter of the window: the same change per hole pixel, none outside
    *_, quarter = quality.diversity(Noisy(), Pixels(), [_window(size=64)], 4, 0, False)
    assert quarter == pytest.approx(1 / 3, abs=0.02)


class _Items:
    """A dataset of two classes: images of given sizes, each with one 4 x 4 defect of a given
    class (0: none) at a given place."""

    def __init__(self, specs):
        self.items = [Item(f"i{n}", None, (cls,) if cls else ()) for n, (cls, *_rest) in enumerate(specs)]
        self.specs = specs

    def __len__(self):
        return len(self.specs)

    def __getitem__(self, index):
        cls, (height, width), (top, left) = self.specs[index]
        image = np.full((height, width, 1), 10 * (index + 1), dtype=np.uint8)
        masks = np.zeros((2, height, width), dtype=bool)
        if cls:
            masks[cls - 1, top : top + 4, left : left + 4] = True
        return Sample(f"i{index}", image, masks, self.items[index].class_ids, None)


def test_class_windows_centre_each_items_defect_of_the_class_and_pad_small_images():
    data = _Items(
        [(1, (64, 64), (40, 50)), (2, (64, 64), (0, 0)), (1, (20, 30), (2, 3)), (0, (64, 64), (0, 0))]
    )
    # window of item 0: centre (42, 52) -> top 26, left 32 (clipped to the image)
    windows = quality.class_windows(data, 1, 32, limit=10)
    assert len(windows) == 2  # the two items of class "a"
    first, small = windows
    assert first["image"].shape == (1, 1, 32, 32)
    ys, xs = np.nonzero(first["hole"][0, 0].numpy())
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (40 - 26, 43 - 26, 50 - 32, 53 - 32)
    assert first["labels"][0, 1].sum() == 0 and first["labels"][0, 0].sum() == 16
    assert small["image"].shape == (1, 1, 32, 32) and small["hole"].sum() == 16  # padded to 32 x 32
    assert len(quality.class_windows(data, 1, 32, limit=10, indices=[1, 2, 3])) == 1
    assert len(quality.class_windows(data, 1, 32, limit=1)) == 1
    assert quality.class_windows(data, 2, 32, limit=10, indices=[0]) == []


def test_the_window_centres_the_largest_defect_of_the_class():
    class TwoDefects(_Items):
        def __getitem__(self, index):
            sample = super().__getitem__(index)
            sample.masks[0, 50:60, 50:60] = True  # a larger defect of the class after the first
            return sample

    data = TwoDefects([(1, (64, 64), (0, 0))])
    (window,) = quality.class_windows(data, 1, 32, limit=1)
    ys, xs = np.nonzero(window["hole"][0, 0].numpy())
    assert (ys.max(), xs.max()) == (27, 27)  # window at 32, 32: the large square, not the small one


def test_per_class_diversity_compares_draws_with_real_defects_of_the_class_in_the_fit_part(monkeypatch):
    """`set_quality._diversity`: per class, the generator's draws against real defects of that
    class in the fit part only; a class with fewer than two is reported, not measured."""
    from types import SimpleNamespace

    import defectgen.gan.checkpoint as checkpoint_module
    from defectgen.data.classes import ClassTable
    from defectgen.evaluate import set_quality

    real = _Items(
        [(1, (64, 64), (10, 10)), (1, (64, 64), (30, 30)), (1, (64, 64), (20, 40)), (2, (64, 64), (5, 5))]
    )
    real.classes = ClassTable(("a", "b"))
    synthetic = _Items([(1, (64, 64), (20, 20)), (2, (64, 64), (20, 20))])
    monkeypatch.setattr(checkpoint_module, "load_generator", lambda path: (Deaf(), None, None, None))
    config = SimpleNamespace(crop_size=32, quality_samples=10, diversity_masks=4, diversity_draws=3)
    ctx = SimpleNamespace(config=config, dataset=real, fit=[0, 1, 3], use_bf16=False)
    result = set_quality._diversity(ctx, "g.pt", synthetic, Pixels())
    a, b = result["per_class"]["a"], result["per_class"]["b"]
    assert a["measured"] and a["real_defects"] == 2  # item 2 holds class a but is not in the fit part
    fit_windows = quality.class_windows(real, 1, 32, 10, [0, 1])
    images, holes = torch.cat([w["image"] for w in fit_windows]), torch.cat([w["hole"] for w in fit_windows])
    expected = quality.pairwise_feature_distance(Pixels(), images, holes)  # over the defects only
    assert a["real_pairwise_distance"] == pytest.approx(expected) and expected > 0
    assert a["ratio"] == 0 and a["window_ratio"] == 0 and a["hole_pixel_change"] == 0  # a deaf generator
    assert result["worst_ratio"] == 0
    assert not b["measured"] and b["why"].startswith("1 real defect")


def test_encoder_features_pool_over_the_region_weighted_by_the_share_of_each_cell_it_covers():
    features = quality.EncoderFeatures(Identity(factor=4))
    image = torch.zeros(1, 1, 8, 8)
    image[..., :4, :4], image[..., :4, 4:] = 0.8, -0.4  # cells (0, 0) and (0, 1)
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4, :4] = 1  # all of cell (0, 0)
    region[..., :2, 4:6] = 1  # a quarter of cell (0, 1)
    pooled = features(image, region)
    assert pooled.item() == pytest.approx((0.8 * 1 + -0.4 * 0.25) / 1.25)
    assert features(image).item() == pytest.approx((0.8 - 0.4) / 4)  # the whole image
    with pytest.raises(ValueError, match="at least one pixel"):
        features(image, torch.zeros_like(region))


def test_draws_that_vary_as_the_real_defects_do_score_one_whatever_the_backgrounds():
    """Four real defects of values 0.1..0.7 on four different surfaces, and a generator whose four
    draws for one mask paint exactly those values: pooled over the defects the ratio is 1; over
    the whole window it is below 1, because the draws share one surface."""
    values = [0.1, 0.3, 0.5, 0.7]
    windows = []
    for value, surface in zip(values, [-0.9, -0.3, 0.2, 0.9], strict=True):
        window = _window()
        window["image"] = torch.where(window["hole"] > 0, torch.tensor(value), torch.tensor(surface))
        windows.append(window)
    features = quality.EncoderFeatures(Identity())
    images, holes = torch.cat([w["image"] for w in windows]), torch.cat([w["hole"] for w in windows])
    real_defect = quality.pairwise_feature_distance(features, images, holes)
    real_window = quality.pairwise_feature_distance(features, images)
    spread = quality.diversity(Cycler(values), features, windows[:1], 4, 0, False)
    assert spread.defect / real_defect == pytest.approx(1.0)
    assert spread.window / real_window < 0.5


class Drawer(nn.Module):
    """A StyleGAN-like generator: draw k paints a 4 x 4 defect of value 0.2 k, drawn as class 1 in
    its mask channels, on the same surface (-0.5) every time."""

    is_stylegan = True
    image_channels, resolution = 1, 16

    def draw_style(self, batch, generator):
        return torch.arange(batch, dtype=torch.float32)[:, None]

    def forward(self, z, classes, generator=None):
        out = torch.full((len(z), 3, 16, 16), -0.5)
        out[:, 0, 4:8, 4:8] = 0.2 * z[:, 0, None, None]
        out[:, 1:] = -10.0  # mask logits: probability ~0
        out[:, 1, 4:8, 4:8] = 10.0  # class 1 drawn on the square
        return out


def test_stylegan_draws_are_pooled_over_the_defects_they_draw():
    from types import SimpleNamespace

    from defectgen.evaluate import set_quality

    config = SimpleNamespace(crop_size=16, diversity_masks=2, diversity_draws=3)
    features = quality.EncoderFeatures(Identity())
    spread = set_quality._stylegan_draws(Drawer(), 1, features, config, False)
    # values 0, 0.2, 0.4: pairwise distances 0.2, 0.4, 0.2; over the crop, diluted by 16 / 256 pixels
    assert spread.defect == pytest.approx(0.8 / 3)
    assert spread.window == pytest.approx(0.8 / 3 * 16 / 256)
    assert spread.hole_pixel_change is None
