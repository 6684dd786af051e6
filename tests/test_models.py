"""Generator, discriminator, FFC layers and presets, on the tiny preset and tiny tensors."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch

from defectgen.errors import ConfigError
from defectgen.models import (
    PRESETS,
    FFCGenerator,
    ModelSpec,
    PatchDiscriminator,
    composite,
    count_parameters,
    preset,
)
from defectgen.models.ffc import FFC, FourierUnit
from defectgen.models.generator import Upsample

CHANNELS = 1
CLASSES = 4


@pytest.fixture
def G() -> FFCGenerator:
    torch.manual_seed(0)  # parameter initialisation only
    return PRESETS["tiny"].generator.build(CHANNELS, CLASSES)


@pytest.fixture
def D() -> PatchDiscriminator:
    torch.manual_seed(0)
    return PRESETS["tiny"].discriminator.build(CHANNELS, CLASSES)


def make_batch(batch: int, height: int, width: int, seed: int = 0, channels: int = CHANNELS):
    """image in [-1, 1], a rectangular hole, the hole as class-2 label map."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, height, width, generator=generator) * 2 - 1
    hole = torch.zeros(batch, 1, height, width)
    hole[:, :, height // 4 : height // 2, width // 4 : width // 2 + 3] = 1
    labels = torch.zeros(batch, CLASSES, height, width)
    labels[:, 2:3] = hole
    return image, hole, labels


@pytest.mark.parametrize("size", [(64, 64), (64, 128), (32, 200)])
def test_generator_output_shape_and_range(G, size):
    image, hole, labels = make_batch(2, *size)
    raw = G(image, hole, labels, generator=torch.Generator().manual_seed(1))
    assert raw.shape == (2, CHANNELS, *size)
    assert torch.isfinite(raw).all()
    assert raw.abs().max() <= 1


@pytest.mark.parametrize("size", [(36, 64), (64, 100), (8, 64)])
def test_generator_rejects_sizes_it_cannot_halve(G, size):
    image, hole, labels = make_batch(1, *size)
    with pytest.raises(ValueError, match="multiples of 8"):
        G(image, hole, labels, generator=torch.Generator().manual_seed(1))


def test_generator_checks_input_shapes(G):
    image, hole, labels = make_batch(1, 64, 64)
    rng = torch.Generator().manual_seed(1)
    with pytest.raises(ValueError, match=r"image must be \[N, 1, H, W\]"):
        G(image.repeat(1, 3, 1, 1), hole, labels, generator=rng)
    with pytest.raises(ValueError, match="hole must be"):
        G(image, hole.repeat(1, 2, 1, 1), labels, generator=rng)
    with pytest.raises(ValueError, match="num_classes=4"):
        G(image, hole, labels[:, :3], generator=rng)
    with pytest.raises(ValueError, match="z must be"):
        G(image, hole, labels, z=torch.zeros(1, 5), generator=rng)
    with pytest.raises(ValueError, match="noise must be"):
        G(image, hole, labels, noise=torch.zeros(1, 1, 32, 32), generator=rng)


def test_generator_needs_explicit_randomness(G):
    image, hole, labels = make_batch(1, 64, 64)
    with pytest.raises(ValueError, match="torch.Generator"):
        G(image, hole, labels)
    z = torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(G(image, hole, labels, z=z, noise=noise)).all()


def test_generator_ignores_pixels_inside_the_hole(G):
    """The hole is erased inside forward: what was under it cannot leak into the output."""
    image, hole, labels = make_batch(1, 64, 64)
    other = torch.where(hole.bool(), -image, image)
    first = G(image, hole, labels, generator=torch.Generator().manual_seed(4))
    second = G(other, hole, labels, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second)


def test_gradients_reach_every_generator_parameter(G):
    image, hole, labels = make_batch(2, 64, 64)
    raw = G(image, hole, labels, generator=torch.Generator().manual_seed(1))
    raw.square().mean().backward()
    missing = [name for name, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_gradients_reach_every_discriminator_parameter(D):
    image, _, labels = make_batch(2, 64, 64)
    logits, features = D(image, labels)
    loss = logits.mean() + sum(feature.mean() for feature in features)
    loss.backward()
    missing = [name for name, p in D.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_composite_keeps_known_pixels_bit_exact(G):
    image, hole, labels = make_batch(2, 64, 128)
    raw = G(image, hole, labels, generator=torch.Generator().manual_seed(1))
    out = composite(raw, image, hole)
    known = (hole == 0).expand_as(image)
    assert torch.equal(out[known], image[known])
    assert torch.equal(out[~known], raw[~known])
    assert not torch.equal(out[~known], image[~known])


def test_same_seed_same_output_other_seed_other_output(G):
    image, hole, labels = make_batch(2, 64, 64)
    a = G(image, hole, labels, generator=torch.Generator().manual_seed(7))
    b = G(image, hole, labels, generator=torch.Generator().manual_seed(7))
    c = G(image, hole, labels, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    inside = hole.bool().expand_as(a)
    assert (a - c)[inside].abs().mean() > 1e-4


def test_both_style_code_and_noise_maps_change_the_output(G):
    image, hole, labels = make_batch(1, 64, 64)
    rng = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(2, 1, G.style_dim, generator=rng)
    n1, n2 = torch.randn(2, 1, 1, 64, 64, generator=rng)
    base = G(image, hole, labels, z=z1, noise=n1)
    other_noise = G(image, hole, labels, z=z1, noise=n2)
    other_style = G(image, hole, labels, z=z2, noise=n1)
    inside = hole.bool()
    assert (base - other_noise)[inside].abs().mean() > 1e-5
    assert (base - other_style)[inside].abs().mean() > 1e-5


def test_bf16_autocast_forward_is_finite(G, D):
    image, hole, labels = make_batch(2, 64, 64)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        raw = G(image, hole, labels, generator=torch.Generator().manual_seed(1))
        logits, _ = D(composite(raw, image, hole), labels)
    assert torch.isfinite(raw.float()).all()
    assert torch.isfinite(logits.float()).all()


def test_fourier_unit_runs_fft_in_fp32_under_autocast():
    unit = FourierUnit(4, 4)
    x = torch.randn(2, 4, 8, 8).to(torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = unit(x)
    assert y.dtype == torch.bfloat16
    reference = unit(x.float())
    assert torch.allclose(y.float(), reference, atol=0.05, rtol=0.05)


def test_ffc_global_path_sees_the_whole_image():
    """One FFC layer: a pixel change in a corner reaches the opposite corner (global
    receptive field), which a 3x3 convolution alone could not do."""
    torch.manual_seed(0)
    layer = FFC(8, 8, ratio_g_in=0.5, ratio_g_out=0.5)
    x = torch.randn(1, 8, 16, 16)
    y = torch.cat(layer(x[:, :4], x[:, 4:]), dim=1)
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0
    y2 = torch.cat(layer(x2[:, :4], x2[:, 4:]), dim=1)
    difference = (y2 - y).abs()
    assert difference[:, :4, 8:, 8:].max() == 0  # local output: 3x3 receptive field
    assert difference[:, 4:, 8:, 8:].max() > 1e-6  # global output: everywhere


def test_discriminator_shapes_and_features(D):
    image, _, labels = make_batch(3, 64, 128)
    logits, features = D(image, labels)
    assert logits.shape == (3, 1, 8, 16)
    assert len(features) == 3
    assert [f.shape[-2:] for f in features] == [(32, 64), (16, 32), (8, 16)]
    assert all(torch.isfinite(f).all() for f in features)


def test_discriminator_sees_the_labels(D):
    image, _, labels = make_batch(1, 64, 64)
    logits, _ = D(image, labels)
    moved, _ = D(image, torch.roll(labels, shifts=16, dims=-1))
    assert not torch.allclose(logits, moved)


@pytest.mark.parametrize("conditioning", ["projection", "input"])
def test_discriminator_conditioning_uses_the_labels(conditioning):
    D = PatchDiscriminator(CHANNELS, CLASSES, width=8, n_layers=2, conditioning=conditioning)
    image, _, labels = make_batch(2, 32, 32)
    logits, _ = D(image, labels)
    assert logits.shape == (2, 1, 8, 8)
    other, _ = D(image, torch.roll(labels, shifts=1, dims=1))  # same shapes, other classes
    assert not torch.allclose(logits, other)


def test_projection_discriminator_reads_labels_only_at_the_logits():
    """The features D computes (and feature matching compares) depend on the image alone."""
    D = PatchDiscriminator(CHANNELS, CLASSES, width=8, n_layers=2, conditioning="projection")
    image, _, labels = make_batch(1, 32, 32)
    _, features = D(image, labels)
    _, features_other = D(image, torch.zeros_like(labels))
    assert all(torch.equal(a, b) for a, b in zip(features, features_other, strict=True))


def test_unconditional_discriminator_ignores_the_labels():
    D = PatchDiscriminator(CHANNELS, CLASSES, width=8, n_layers=2, conditioning="none")
    image, _, labels = make_batch(1, 32, 32)
    assert torch.equal(D(image, labels)[0], D(image, torch.zeros_like(labels))[0])
    with pytest.raises(ValueError, match="conditioning must be one of"):
        PatchDiscriminator(CHANNELS, CLASSES, conditioning="late")


def test_discriminator_checks_input_shapes(D):
    image, _, labels = make_batch(1, 64, 64)
    with pytest.raises(ValueError, match="num_classes=4"):
        D(image, labels[:, :2])
    with pytest.raises(ValueError, match="image_channels=1"):
        D(image.repeat(1, 3, 1, 1), labels)


def test_spectral_norm_option_builds_and_runs():
    D = PatchDiscriminator(CHANNELS, CLASSES, width=8, n_layers=2, spectral_norm=True)
    image, _, labels = make_batch(1, 32, 32)
    logits, _ = D(image, labels)
    assert logits.shape == (1, 1, 8, 8)


def test_tiny_preset_step_is_fast(G, D):
    """A full G+D forward/backward on 2 images at 64 px stays well under a second, on ONE
    thread: a single thread is immune to the stalls a second, busy core causes in OpenMP
    barriers, so the check means the same on a shared CI machine."""
    image, hole, labels = make_batch(2, PRESETS["tiny"].resolution, 64)
    rng = torch.Generator().manual_seed(1)

    def step():
        raw = G(image, hole, labels, generator=rng)
        fake = composite(raw, image, hole)
        logits, features = D(fake, labels)
        (logits.mean() + sum(f.mean() for f in features)).backward()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        step()  # warm-up (oneDNN primitive creation)
        durations = []
        for _ in range(3):
            start = time.perf_counter()
            step()
            durations.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(durations) < 0.5, f"tiny G+D step took {min(durations):.3f} s on one thread"


def test_presets_have_the_documented_sizes():
    """Counts from the table in models/presets.py (meta device: no memory, no init time)."""
    expected = {
        "tiny": (158_937, 75_889),
        "small": (8_060_513, 1_206_721),
        "lama": (26_123_509, 9_803_649),
        "big": (49_372_669, 9_803_649),
        "stylegan-tiny": (49_140, 75_921),
        "stylegan-small": (2_738_144, 2_452_545),
        "stylegan-large": (19_620_530, 14_785_665),
    }
    assert set(expected) == set(PRESETS)
    with torch.device("meta"):
        for name, (g_count, d_count) in expected.items():
            assert count_parameters(PRESETS[name].build_generator(CHANNELS, CLASSES)) == g_count, name
            assert count_parameters(PRESETS[name].discriminator.build(CHANNELS, CLASSES)) == d_count, name


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="tiny, small, lama, big"):
        preset("huge")


def test_count_parameters_trainable_only(D):
    total = count_parameters(D)
    D.stem[0].weight.requires_grad_(False)
    assert count_parameters(D, trainable_only=True) == total - D.stem[0].weight.numel()


def test_nearest_upsampling_is_folded():
    """The upsampling is one transposed convolution that computes nearest-neighbour 2x and then
    the 3x3 convolution exactly (borders and odd sizes included), and gradients reach its
    weight; a constant input gives a constant output away from the zero-padded border (no
    phase pattern, the source of a checkerboard grid)."""
    torch.manual_seed(0)
    layer = Upsample(5, 3).double()
    torch.nn.init.normal_(layer.conv.bias)
    for height, width in ((4, 4), (5, 7)):
        x = torch.randn(2, 5, height, width, dtype=torch.float64)
        resized = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        expected = torch.relu(layer.conv(resized))
        out = layer(x)
        assert out.shape == (2, 3, 2 * height, 2 * width)
        assert torch.allclose(out, expected, atol=1e-12)
    out.sum().backward()
    assert layer.conv.weight.grad.abs().sum() > 0 and layer.conv.bias.grad.abs().sum() > 0
    inner = layer(torch.ones(1, 5, 8, 8, dtype=torch.float64))[:, :, 1:-1, 1:-1]
    assert torch.allclose(inner, inner[:, :, :1, :1].expand_as(inner), atol=1e-12)


def test_a_spec_with_other_values_builds_another_generator():
    G = replace(PRESETS["tiny"].generator, ratio_g=0.5).build(CHANNELS, CLASSES)
    assert G.blocks[0].global_channels == G.blocks[0].local_channels
    assert G.noise_maps == G.noise_channels == PRESETS["tiny"].generator.noise_channels
    preset = PRESETS["tiny"].generator.build(CHANNELS, CLASSES)
    assert preset.blocks[0].global_channels > preset.blocks[0].local_channels


@pytest.mark.parametrize(
    "change",
    [
        lambda config: config.pop("model"),  # before model specs
        lambda config: config["model"]["generator"].pop("severity"),  # before the severity input
        lambda config: config["model"]["generator"].update(upsampling="transposed"),  # a removed option
        lambda config: config.update(adversarial_loss="standard"),  # a removed loss
    ],
)
def test_a_run_of_another_version_is_refused_not_converted(change):
    from defectgen.gan.config import TrainConfig

    config = TrainConfig(preset="tiny").resolved().to_dict()
    assert TrainConfig.from_dict(config, written_by_a_run=True).model_spec == preset("tiny")
    change(config)
    with pytest.raises(ConfigError, match="written by another defectgen version"):
        TrainConfig.from_dict(config, written_by_a_run=True)


@pytest.mark.parametrize("name", sorted(n for n, spec in PRESETS.items() if not spec.is_stylegan))
def test_a_spec_round_trips_and_builds_what_it_says(name):  # the decoders': test_decoder.py
    spec = preset(name)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with torch.device("meta"):
        G = spec.generator.build(CHANNELS, CLASSES)
    assert len(G.decoder) == spec.generator.n_downsample and len(G.blocks) == spec.generator.n_blocks


@pytest.mark.parametrize(
    "change, message",
    [
        ({"generator": {"width": "wide"}}, "model.generator.width: expected an integer"),
        ({"generator": {"n_blocks": -1}}, r"n_blocks must be in 0\.\."),
        ({"generator": {"ratio_g": 0.0}}, r"ratio_g must be in \(0, 1\)"),
        ({"discriminator": {"conditioning": "late"}}, "conditioning must be projection, input or none"),
        ({"discriminator": {"n_layers": 100}}, r"n_layers must be in 1\.\.12"),
        ({"resolution": 100}, "multiple of 8"),
        ({"resolution": True}, "expected an integer"),
        ({"colour": 3}, "unknown key 'colour'"),
    ],
)
def test_a_bad_spec_value_is_refused_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        preset("tiny").merged(change)


def test_a_spec_missing_a_setting_is_refused():
    data = preset("tiny").to_dict()
    del data["generator"]["style_dim"]
    with pytest.raises(ConfigError, match="model.generator.style_dim is missing"):
        ModelSpec.from_dict(data)


def _decoder_noise_generator(decoder_noise: int) -> FFCGenerator:
    torch.manual_seed(0)
    G = replace(PRESETS["tiny"].generator, noise_channels=0, decoder_noise=decoder_noise).build(
        CHANNELS, CLASSES
    )
    for head in G.mapping.heads:  # co-modulation off: z can reach the output only as 3D noise
        torch.nn.init.zeros_(head.weight)
    return G.eval()


def test_decoder_noise_is_the_only_path_of_z_once_co_modulation_is_off():
    image, hole, labels = make_batch(1, 64, 64)
    rng = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(2, 1, PRESETS["tiny"].generator.style_dim, generator=rng)
    deaf = _decoder_noise_generator(0)
    assert torch.equal(deaf(image, hole, labels, z=z1), deaf(image, hole, labels, z=z2))
    G = _decoder_noise_generator(4)
    a, b = G(image, hole, labels, z=z1), G(image, hole, labels, z=z2)
    assert (a - b)[hole.bool()].abs().mean() > 1e-4
    # Only z's first 4 entries are the noise: changing the others changes nothing.
    z3 = torch.cat([z1[:, :4], z2[:, 4:]], dim=1)
    assert torch.equal(a, G(image, hole, labels, z=z3))


def test_decoder_noise_acts_in_the_hole_and_its_neighbourhood_only():
    image, hole, labels = make_batch(1, 64, 64)  # hole rows 16..31, columns 16..34
    rng = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(2, 1, PRESETS["tiny"].generator.style_dim, generator=rng)
    G = _decoder_noise_generator(4)
    change = (G(image, hole, labels, z=z1) - G(image, hole, labels, z=z2)).abs()[0, 0]
    # tiny decodes at 1/4, 1/2 and full size. The noise moves the 1/4-stage cells the hole touches
    # (rows 16..31, columns 16..35); the 3x3 convolutions at 1/2 and full size spread that by 2 + 1
    # pixels and the head's 7x7 by 3, so nothing more than 6 (here: 8) pixels beyond it may move.
    far = torch.ones_like(change, dtype=torch.bool)
    far[16 - 8 : 32 + 8, 16 - 8 : 35 + 8] = False
    assert change[far].max() == 0
    assert change[16:32, 16:35].mean() > 1e-4


def _texture_noise_generator(strength: float) -> FFCGenerator:
    torch.manual_seed(0)
    G = replace(PRESETS["tiny"].generator, noise_channels=1, texture_noise=True).build(CHANNELS, CLASSES)
    for stage in G.decoder_texture:
        torch.nn.init.constant_(stage.strength, strength)
    return G.eval()


def test_texture_noise_is_the_last_noise_map_and_moves_only_the_hole_and_its_neighbourhood():
    image, hole, labels = make_batch(1, 64, 64)  # hole rows 16..31, columns 16..34
    G = _texture_noise_generator(0.5)
    assert G.noise_maps == 2  # the input noise map, then the texture map
    rng = torch.Generator().manual_seed(5)
    z = torch.randn(1, G.style_dim, generator=rng)
    noise = torch.randn(1, 2, 64, 64, generator=rng)
    other = noise.clone()
    other[:, 1] = torch.randn(64, 64, generator=rng)  # only the texture map changes
    change = (G(image, hole, labels, z=z, noise=noise) - G(image, hole, labels, z=z, noise=other)).abs()[0, 0]
    # As for the decoder noise: the 1/4-stage cells the hole touches, spread by the later 3x3
    # convolutions (2 + 1 px) and the head's 7x7 (3 px).
    far = torch.ones_like(change, dtype=torch.bool)
    far[16 - 8 : 32 + 8, 16 - 8 : 35 + 8] = False
    assert change[far].max() == 0
    assert change[16:32, 16:35].mean() > 1e-3
    # The grain is per pixel: a new texture map moves neighbouring pixels independently, so the
    # change is rough (its row-to-row differences are of the order of the change itself).
    inside = (G(image, hole, labels, z=z, noise=noise) - G(image, hole, labels, z=z, noise=other))[
        0, 0, 18:30, 18:33
    ]
    assert inside.diff(dim=0).abs().mean() > 0.3 * inside.abs().mean()


def test_texture_noise_starts_silent_and_its_strength_learns():
    image, hole, labels = make_batch(2, 64, 64)
    G = _texture_noise_generator(0.0)  # StyleGAN's start
    rng = torch.Generator().manual_seed(6)
    z = torch.randn(2, G.style_dim, generator=rng)
    noise = torch.randn(2, 2, 64, 64, generator=rng)
    other = torch.cat([noise[:, :1], torch.randn(2, 1, 64, 64, generator=rng)], dim=1)
    assert torch.equal(G(image, hole, labels, z=z, noise=noise), G(image, hole, labels, z=z, noise=other))
    G(image, hole, labels, z=z, noise=noise).square().mean().backward()
    assert all(stage.strength.grad.abs().sum() > 0 for stage in G.decoder_texture)


def test_a_run_of_a_preset_written_before_texture_noise_builds_what_it_trained():
    """`small` now has texture noise; a run of `small` written before it (its whole spec without
    the key) must build the generator it trained, not today's preset's, or its checkpoint would
    not load (missing `decoder_texture` weights) and a resumed run would record a spec it never had."""
    from defectgen.gan.config import TrainConfig

    old = preset("small").to_dict()
    del old["generator"]["texture_noise"]
    config = TrainConfig.from_dict({"preset": "small", "model": old}, written_by_a_run=True)
    assert config.model_spec.generator.texture_noise is False
    assert config.resolved().model["generator"]["texture_noise"] is False
    with torch.device("meta"):
        assert config.model_spec.build_generator(CHANNELS, CLASSES).decoder_texture is None
    assert TrainConfig(model={"resolution": 96}).model_spec.generator.texture_noise is True  # partial


def test_a_spec_written_before_decoder_noise_and_texture_noise_reads_as_without_them():
    data = preset("tiny").to_dict()
    del data["generator"]["decoder_noise"]
    spec = ModelSpec.from_dict(data)
    del data["generator"]["texture_noise"]
    spec = ModelSpec.from_dict(data)
    assert spec == preset("tiny") and spec.generator.decoder_noise == 0
    assert spec.generator.texture_noise is False
    with torch.device("meta"):
        G = spec.generator.build(CHANNELS, CLASSES)
    assert G.decoder_modulation is None and G.decoder_texture is None  # the old keys, nothing added
    with pytest.raises(ConfigError, match=r"decoder_noise must be in 0\.\.32"):
        preset("tiny").merged({"generator": {"decoder_noise": 33}})
