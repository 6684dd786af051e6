"""The StyleGAN generator (`train --model stylegan`): a class-conditional StyleGAN2 drawing crop and mask.

Model (shapes, explicit randomness, class conditioning, style mixing, gradients), spec and
presets, training (run folder, resume = uninterrupted, R1 default), synthesis from it (labels,
determinism, resume, refused options), the learned mask source, and the commands that need an
inpainter refusing it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURE
from defectgen import synth as synth_module
from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.gan.checkpoint import CheckpointError, load_checkpoint, load_generator
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.masks import build_mask_source
from defectgen.masks.learned import central_component
from defectgen.models import PRESETS, ModelSpec, preset
from defectgen.models.stylegan import StyleGenerator, binarised, mask_probability
from defectgen.settings import dump_yaml
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig

DECODER = dict(
    preset="stylegan-tiny",
    batch_size=2,
    precision="fp32",
    log_every=1,
    sample_every=100,
    checkpoint_every=100,
)


def _tiny(mixing: float = 0.9) -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(1, 3, 32, width=8, max_width=16, style_dim=16, mapping_layers=2, mixing=mixing)


def test_output_shape_and_explicit_randomness():
    G = _tiny().eval()
    for layer in G.layers:  # noise strengths start at 0 (StyleGAN2); as after some training
        layer.noise_strength.data.fill_(0.1)
    z = G.draw_style(3, torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 1, 2])
    a = G(z, classes, generator=torch.Generator().manual_seed(5))
    b = G(z, classes, generator=torch.Generator().manual_seed(5))
    c = G(z, classes, generator=torch.Generator().manual_seed(6))  # other noise
    assert a.shape == (3, 1 + 3, 32, 32)  # the image, then one mask channel per class
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(G(z, classes), G(z, classes))  # no generator: no noise, no global RNG
    probability = mask_probability(a, 1)
    assert probability.shape == (3, 3, 32, 32) and 0 <= probability.min() and probability.max() <= 1


def test_the_class_changes_the_draw():
    G = _tiny().eval()
    z = G.draw_style(1, torch.Generator().manual_seed(1)).repeat(3, 1)
    out = G(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_binarised_labels_are_binary_one_class_per_pixel_and_pass_gradients():
    probability = torch.tensor([[0.2, 0.7, 0.9], [0.6, 0.4, 0.95], [0.1, 0.3, 0.2]])[
        None, :, :, None
    ]  # [1, K=3, 3, 1]
    probability.requires_grad_(True)
    labels = binarised(probability)
    expected = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.float32)[None, :, :, None]
    assert torch.equal(labels.detach(), expected)  # argmax class above 0.5, else none
    (labels * torch.arange(3.0)[None, :, None, None]).sum().backward()
    assert torch.equal(probability.grad, torch.arange(3.0)[None, :, None, None].expand_as(probability))


def test_style_mixing_only_in_training_and_only_after_the_crossover():
    G = _tiny(mixing=1.0)
    z = G.draw_style(4, torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 1, 2, 0])
    G.eval()
    plain = G.styles(z, classes, torch.Generator().manual_seed(2))
    assert torch.equal(plain, plain[:, :1].expand_as(plain))  # one w for every layer
    G.train()
    mixed = G.styles(z, classes, torch.Generator().manual_seed(2))
    assert torch.equal(mixed[:, 0], plain[:, 0])  # the first layer always keeps the first w
    assert not torch.equal(mixed, plain)


def test_every_parameter_gets_a_gradient():
    G = _tiny().train()
    generator = torch.Generator().manual_seed(0)
    out = G(G.draw_style(2, generator), torch.tensor([0, 2]), generator=generator)
    out.square().mean().backward()
    missing = [name for name, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("bad", [dict(classes=[3]), dict(classes=[-1]), dict(z=torch.zeros(1, 5))])
def test_bad_inputs_are_refused(bad):
    G = _tiny().eval()
    z = bad.get("z", torch.zeros(1, 16))
    with pytest.raises(ValueError):
        G(z, torch.tensor(bad.get("classes", [0])))


def test_presets_and_spec_rules():
    for name in ("stylegan-tiny", "stylegan-small", "stylegan-large"):
        spec = PRESETS[name]
        assert spec.is_stylegan and spec.discriminator.conditioning == "input"
        G = spec.build_generator(1, 4)
        assert G.resolution == spec.resolution
        assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="--model"):
        PRESETS["small"].merged({"kind": "stylegan"})
    with pytest.raises(ConfigError, match="see the drawn mask"):
        PRESETS["stylegan-tiny"].merged({"discriminator": {"conditioning": "none"}})
    with pytest.raises(ConfigError, match="power of two"):
        PRESETS["stylegan-tiny"].merged({"resolution": 48})
    with pytest.raises(ConfigError, match="unknown key"):
        PRESETS["stylegan-tiny"].merged({"generator": {"n_blocks": 3}})
    old = PRESETS["small"].to_dict()
    del old["kind"]  # a run written before the StyleGAN generator existed
    assert ModelSpec.from_dict(old).kind == "inpainter"


def test_r1_default_and_guide_refused():
    assert TrainConfig(preset="stylegan-small", batch_size=4).resolved().r1_gamma == pytest.approx(
        0.0002 * 128**2 / 4
    )
    assert TrainConfig(preset="small").resolved().r1_gamma == 0.001
    assert TrainConfig(preset="stylegan-small", r1_gamma=2.0).resolved().r1_gamma == 2.0
    with pytest.raises(ConfigError, match="guide"):
        TrainConfig(preset="stylegan-tiny", guide="some.pt").validate()


@pytest.fixture(scope="module")
def stylegan_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("stylegan")
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    split.save(work / "split.json")
    checkpoint = train(dataset, split, TrainConfig(steps=4, **DECODER), work / "run", progress=False)
    return dataset, split, checkpoint, work


def test_training_writes_a_stylegan_run_and_resume_equals_uninterrupted(stylegan_run, tmp_path):
    dataset, split, checkpoint, work = stylegan_run
    state = load_checkpoint(checkpoint)
    assert state["config"]["model"]["kind"] == "stylegan" and state["step"] == 4
    assert state["trained_classes"] == [1, 2]  # the fixture's two classes, both in its training half
    assert (work / "run" / "samples" / "step_0000004.png").is_file()
    G, classes, channels, _ = load_generator(checkpoint, expect="stylegan")
    assert isinstance(G, StyleGenerator) and classes == dataset.classes
    with pytest.raises(CheckpointError, match="stylegan"):
        load_generator(checkpoint, expect="inpainter")
    train(dataset, split, TrainConfig(steps=2, **DECODER), tmp_path / "resumed", progress=False)
    train(dataset, split, TrainConfig(steps=4, **DECODER), tmp_path / "resumed", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("G", "D", "ema"):
        for name, tensor in state[key].items():
            assert torch.equal(tensor, resumed[key][name]), (key, name)


def test_cli_model_option_picks_the_stylegan_presets(tmp_path, capsys):
    base = ["train", str(FIXTURE), "--split", str(tmp_path / "split.json"), "--out", str(tmp_path / "run")]
    assert main(["split", str(FIXTURE), "--out", str(tmp_path / "split.json")]) == 0
    settings = ["--steps", "1", "--set", "batch_size=2", "--set", "precision=fp32"]
    assert main([*base, "--model", "stylegan", "--preset", "tiny", *settings]) == 0
    assert "preset: stylegan-tiny" in (tmp_path / "run" / "config.yaml").read_text()
    capsys.readouterr()
    assert main([*base, "--model", "inpainter", "--preset", "stylegan-tiny"]) == 2
    assert "stylegan preset" in capsys.readouterr().err
    assert main([*base, "--model", "painter"]) == 2
    assert "inpainter or stylegan" in capsys.readouterr().err
    # a file holding an inpainter's whole model spec stays an inpainter whatever the preset says
    inpainter = tmp_path / "inpainter.yaml"
    inpainter.write_text(dump_yaml({"preset": "tiny", "model": preset("tiny").to_dict()}))
    assert main([*base, "--model", "stylegan", "--config", str(inpainter)]) == 2
    assert "builds the stylegan" in capsys.readouterr().err
    # --resume without --model or --preset continues the run's own kind and size
    assert main([*base, "--resume", "--steps", "2", "--set", "batch_size=2", "--set", "precision=fp32"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def _manifest(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_synthesis_from_a_stylegan_labels_each_crop_with_its_drawn_mask(stylegan_run, tmp_path):
    dataset, split, checkpoint, _ = stylegan_run
    summary = synthesize(checkpoint, dataset, split, tmp_path / "a", SynthConfig(n=6, seed=2), progress=False)
    assert summary["items"] == 6 and summary["mask_source"] == "stylegan"
    synthetic = open_dataset(str(tmp_path / "a"))
    records = _manifest(tmp_path / "a")
    for index, record in enumerate(records):
        sample = synthetic[index]
        assert sample.image.shape[:2] == (32, 32)
        assert record["background"] == "stylegan"
        assert [d["class_id"] for d in record["defects"]] == record["classes"]
        for class_id in record["classes"]:  # every drawn class is labelled, classes never overlap
            assert sample.masks[class_id - 1].sum() == record["areas"][str(class_id)]
        assert sample.masks.sum(axis=0).max() <= 1
    again = synthesize(checkpoint, dataset, split, tmp_path / "b", SynthConfig(n=6, seed=2), progress=False)
    assert again["items"] == 6
    for name in ("manifest.jsonl", "images/synth_000003.png", "masks/synth_000003.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (tmp_path / "b" / "images" / "synth_000003.png").unlink()  # as after a kill: run again
    synthesize(checkpoint, dataset, split, tmp_path / "b", SynthConfig(n=6, seed=2), progress=False)
    assert (tmp_path / "a" / "images/synth_000003.png").read_bytes() == (
        tmp_path / "b" / "images/synth_000003.png"
    ).read_bytes()
    only = synthesize(
        checkpoint, dataset, split, tmp_path / "c", SynthConfig(n=4, seed=2, classes=[2]), progress=False
    )
    assert set(only["images_per_class"])
    for record in _manifest(tmp_path / "c"):  # drawn for class 2; no other class unless no draw managed
        assert record["classes"] == [2] or record.get("attempt") == synth_module.STYLEGAN_ATTEMPTS - 1
    severstal = synthesize(
        checkpoint, dataset, split, tmp_path / "d", SynthConfig(n=2, format="severstal"), progress=False
    )
    assert severstal["items"] == 2 and (tmp_path / "d" / "train.csv").is_file()


@pytest.mark.parametrize(
    "option",
    [
        dict(tile=64),
        dict(mask_source="shapes"),
        dict(mode="harmonize"),
        dict(background_source="cleaned"),
        dict(severity="0:0.5"),
    ],
)
def test_synthesis_options_for_painting_are_refused_for_a_stylegan(stylegan_run, tmp_path, option):
    dataset, split, checkpoint, _ = stylegan_run
    with pytest.raises(ConfigError, match="stylegan"):
        synthesize(checkpoint, dataset, split, tmp_path / "out", SynthConfig(n=2, **option), progress=False)
    assert not (tmp_path / "out").exists()


def test_learned_masks_come_from_the_stylegan_and_are_deterministic(stylegan_run, monkeypatch):
    dataset, split, checkpoint, work = stylegan_run
    train_indices = split.indices(dataset, "train")
    source = build_mask_source(f"learned:{work / 'run'}", dataset, train_indices)
    learned = source.sources["learned"]
    masks_a = source.draw(np.random.default_rng(4), 40, 60)
    masks_b = source.draw(np.random.default_rng(4), 40, 60)
    assert masks_a.shape == (len(dataset.classes), 40, 60) and np.array_equal(masks_a, masks_b)
    # every placed shape is the central component of a StyleGAN draw: replace the draw, see it placed
    square = np.zeros((len(dataset.classes), 32, 32), dtype=bool)
    square[:, 10:15, 12:20] = True
    monkeypatch.setattr("defectgen.masks.learned.decoded", lambda output, channels: (None, square))
    placed = learned.draw_defect(np.random.default_rng(0), 40, 60, learned.class_ids[0])
    rows, cols = np.nonzero(placed)
    assert placed.sum() == 40 and (np.ptp(rows) + 1, np.ptp(cols) + 1) == (5, 8)


def test_learned_masks_try_only_the_classes_asked_for(stylegan_run, monkeypatch):
    """A StyleGAN that draws no mask of one class fails when the source is built, unless that
    class is left out (`only`, synth's --classes): then the others are tried and drawn."""
    dataset, split, _, work = stylegan_run
    indices = split.indices(dataset, "train")
    ids = build_mask_source(f"learned:{work / 'run'}", dataset, indices).sources["learned"].class_ids
    assert len(ids) >= 2
    masks = np.zeros((len(dataset.classes), 32, 32), dtype=bool)
    masks[ids[-1] - 1, 10:15, 12:20] = True  # only the last class is ever drawn
    monkeypatch.setattr("defectgen.masks.learned.decoded", lambda output, channels: (None, masks))
    with pytest.raises(DataError, match=f"no mask of class {ids[0]} .*leave the class out"):
        build_mask_source(f"learned:{work / 'run'}", dataset, indices)
    source = build_mask_source(f"learned:{work / 'run'}", dataset, indices, only=[ids[-1]])
    assert source.sources["learned"].class_ids == (ids[-1],)
    # synth --classes passes the classes asked for on
    config = TrainConfig(steps=1, preset="tiny", model={"resolution": 32}, batch_size=2, precision="fp32")
    inpainter = train(dataset, split, config, work.parent / "only_inpainter", progress=False)
    learned = {"mask_source": f"learned:{work / 'run'}", "n": 2}
    with pytest.raises(DataError, match=f"no mask of class {ids[0]}"):
        synthesize(
            inpainter, dataset, split, work.parent / "only_all", SynthConfig(**learned), progress=False
        )
    out = work.parent / "only_last"
    synthesize(inpainter, dataset, split, out, SynthConfig(**learned, classes=[ids[-1]]), progress=False)
    drawn = [json.loads(line)["defects"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {defect["class_id"] for defects in drawn for defect in defects} == {ids[-1]}  # new defects


def test_central_component_keeps_the_component_nearest_the_centre():
    mask = np.zeros((21, 21), dtype=bool)
    mask[0:3, 0:3] = True  # a corner blob
    mask[9:12, 8:14] = True  # the central one
    shape, cut = central_component(mask)
    assert shape.shape == (3, 6) and not cut
    mask[9:12, 0:14] = True  # now it reaches the border
    assert central_component(mask)[1]


def test_learned_masks_need_a_stylegan_and_the_same_classes(stylegan_run, tmp_path):
    dataset, split, checkpoint, work = stylegan_run
    config = TrainConfig(steps=1, preset="tiny", model={"resolution": 32}, batch_size=2, precision="fp32")
    inpainter = train(dataset, split, config, tmp_path / "inpainter", progress=False)
    with pytest.raises(CheckpointError, match="needs a stylegan checkpoint"):
        build_mask_source(f"learned:{inpainter}", dataset, split.indices(dataset, "train"))
    with pytest.raises(ConfigError, match="learned:RUN needs"):
        build_mask_source("learned:", dataset, split.indices(dataset, "train"))
    with pytest.raises(CheckpointError, match="not found"):
        build_mask_source(f"learned:{tmp_path / 'nothing'}", dataset, split.indices(dataset, "train"))


def test_inpainter_only_commands_refuse_a_decoder(stylegan_run, tmp_path):
    _, _, checkpoint, work = stylegan_run
    from defectgen.export import export_onnx

    with pytest.raises(CheckpointError, match="needs an inpainter"):
        export_onnx(checkpoint, tmp_path / "model.onnx")
    with pytest.raises((CheckpointError, DataError), match="inpainter"):
        from defectgen.studio.session import StudioSession

        StudioSession(
            checkpoint, open_dataset(str(FIXTURE)), make_split(open_dataset(str(FIXTURE))), tmp_path
        )


def test_decoder_r1_is_taken_on_each_image_mean_patch_logit():
    """StyleGAN2's gamma is defined for one logit per image: the patch grid's mean, not its sum."""
    from defectgen.gan.augment import AdaptiveAugment
    from defectgen.gan.losses import r1_penalty
    from defectgen.gan.objective import StyleGANObjective

    torch.manual_seed(0)
    D = PRESETS["stylegan-tiny"].discriminator.build(1, 2)
    real, labels = torch.randn(2, 1, 32, 32), (torch.rand(2, 2, 32, 32) > 0.8).float()
    ada = AdaptiveAugment()  # p = 0: the inputs pass unchanged
    loss, _ = StyleGANObjective(r1_gamma=0.5, r1_interval=4).regularise(
        D, ada, real, labels, torch.Generator()
    )
    inputs = [real.clone().requires_grad_(True), labels.clone().requires_grad_(True)]
    logits, _ = D(*inputs)
    assert logits.shape[-1] > 1  # a grid of patches, so mean and sum differ
    expected, _ = r1_penalty(logits.mean(dim=(1, 2, 3)), inputs, 0.5)
    assert loss.item() == pytest.approx(4 * expected.item(), rel=1e-5)


def test_learned_shapes_prefer_a_draw_not_cut_by_the_crop_border(stylegan_run, monkeypatch):
    dataset, split, _, work = stylegan_run
    learned = build_mask_source(f"learned:{work / 'run'}", dataset, split.indices(dataset, "train")).sources[
        "learned"
    ]
    cut = np.zeros((len(dataset.classes), 32, 32), dtype=bool)
    cut[:, 10:20, 0:12] = True  # reaches the crop's left border
    whole = np.zeros_like(cut)
    whole[:, 10:13, 12:16] = True
    draws = iter([cut, whole])
    monkeypatch.setattr("defectgen.masks.learned.decoded", lambda output, channels: (None, next(draws)))
    assert learned.shape(np.random.default_rng(0), learned.class_ids[0]).shape == (3, 4)
    draws = iter([cut] * 16)  # only cut draws: the first is kept rather than failing
    assert learned.shape(np.random.default_rng(0), learned.class_ids[0]).shape == (10, 12)
