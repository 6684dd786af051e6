"""`benchmarks/hole_texture.py`: the grain it measures inside a defect is the defect's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hole_texture.py"
    spec = importlib.util.spec_from_file_location("hole_texture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _item(inside_noise: float, rng) -> SimpleNamespace:
    """A 128 x 128 grey image: surface grey 128 with noise of std 10, a 64 x 64 defect of mean
    grey 96 with noise of std `inside_noise` (class 1 of 1)."""
    image = 128 + rng.normal(0, 10, (128, 128))
    masks = np.zeros((1, 128, 128), bool)
    masks[0, 32:96, 32:96] = True
    image[masks[0]] = 96 + rng.normal(0, inside_noise, int(masks.sum()))
    return SimpleNamespace(image=np.clip(image, 0, 255).astype(np.uint8)[..., None], masks=masks)


def test_a_flat_defect_has_no_grain_and_a_grainy_one_has_its_own():
    script = _script()
    rng = np.random.default_rng(0)
    dataset = [_item(0.0, rng), _item(20.0, rng)]
    (flat,), (grainy,) = (script.component_stats(dataset, [i])[1] for i in range(2))
    contrast, low_std, high_std, ring_high = grainy
    assert abs(contrast - 32 / 255) < 0.01  # mean 96 against the surface's 128
    assert abs(high_std - 20 / 255) < 0.2 * 20 / 255  # its own grain, not the surface's
    assert abs(ring_high - 10 / 255) < 0.3 * 10 / 255  # the surface's grain around it
    assert flat[2] < 0.3 * high_std  # flat inside: what is left is the edge's blur
