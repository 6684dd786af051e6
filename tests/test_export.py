"""`defectgen export`: the generator, FFTs included, in ONNX; onnxruntime against PyTorch on
real images of several sizes, and the export's refusals."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DefectgenError
from defectgen.export import OnnxGenerator, export_onnx, verify
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_folder"

# with the presets' texture noise (tiny has none), its strength raised after training so that
# a wrong stride or pooling of the noise in the graph would move the painted pixels
TINY = dict(
    preset="tiny",
    model={"resolution": 32, "generator": {"texture_noise": True}},
    batch_size=2,
    sample_every=100,
    checkpoint_every=100,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    checkpoint = train(dataset, split, TrainConfig(steps=2, **TINY), work / "run", progress=False)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for weights in (state["G"], state["ema"]):
        for name in [n for n in weights if n.startswith("decoder_texture.")]:
            weights[name] = torch.full_like(weights[name], 0.5)
    torch.save(state, checkpoint)
    path = work / "g.onnx"
    metadata = export_onnx(checkpoint, path)
    return dataset, checkpoint, path, metadata


def test_the_graph_holds_dft_nodes_and_says_what_it_needs(exported):
    _, _, path, metadata = exported
    model = onnx.load(str(path))
    assert any(node.op_type == "DFT" for node in model.graph.node)  # the FFT itself, not a fallback
    assert [i.name for i in model.graph.input] == ["image", "hole", "labels", "z", "noise", "severity"]
    assert metadata["severity"] == "true"
    generator = OnnxGenerator(path)
    assert generator.classes == ["scratch", "pit"] and generator.size_multiple == int(
        metadata["size_multiple"]
    )


def test_onnxruntime_paints_what_pytorch_paints_on_real_images(exported, magnetic_tile_samples):
    dataset, checkpoint, path, _ = exported
    samples = [
        (dataset[i].image, dataset[i].masks) for i in range(len(dataset)) if dataset.items[i].class_ids
    ]
    samples += magnetic_tile_samples(dataset.channels, len(dataset.classes))
    image, masks = samples[0]  # and one of another size, not a multiple of 8, without ../shared too
    samples.append(
        (np.pad(image, ((0, 13), (0, 7), (0, 0)), mode="reflect"), np.pad(masks, ((0, 0), (0, 13), (0, 7))))
    )
    report = verify(checkpoint, path, samples)
    assert len({tuple(r["size"]) for r in report}) >= 2  # more than one input size
    for row in report:
        assert row["max_abs_difference"] <= 1, row
        assert row["same_region"] and row["outside_untouched"], row


@pytest.fixture
def magnetic_tile_samples(request):
    """Real magnetic tile images (sizes differ from the fixture's) with their real masks mapped
    onto the tiny run's classes; none when ../shared is absent."""

    def take(channels, classes):
        try:
            tile = open_dataset(str(request.getfixturevalue("magnetic_tile_dir")))
        except pytest.skip.Exception:
            return []
        picked = [i for i, item in enumerate(tile.items) if item.class_ids][:3]
        out = []
        for i in picked:
            sample = tile[i]
            masks = np.zeros((classes, *sample.masks.shape[1:]), bool)
            masks[0] = sample.masks.any(0)
            out.append((sample.image[:, :, :channels], masks))
        return out

    return take


def test_export_refusals(exported, tmp_path):
    _, checkpoint, _, _ = exported
    with pytest.raises(ConfigError, match=r"\.onnx file"):
        export_onnx(checkpoint, tmp_path / "model.bin")
    (tmp_path / "notes.onnx").write_text("my notes")
    with pytest.raises(ConfigError, match="not an ONNX model; refusing to overwrite"):
        export_onnx(checkpoint, tmp_path / "notes.onnx")
    with pytest.raises(DefectgenError, match="not a loadable ONNX model"):
        OnnxGenerator(tmp_path / "notes.onnx")


def test_a_model_that_fails_verification_is_never_written(exported, tmp_path, monkeypatch):
    import defectgen.export as export_module

    _, checkpoint, good, _ = exported
    out = tmp_path / "m.onnx"
    out.write_bytes(good.read_bytes())
    exports = []  # the real export is the fixture's; here only its staging file matters

    def export_again(checkpoint, path):
        exports.append(path)
        path.write_bytes(good.read_bytes())
        return dict(exported[3])

    monkeypatch.setattr(export_module, "export_onnx", export_again)
    monkeypatch.setattr(export_module, "verify", lambda *a, **k: [{"size": [8, 8], "max_abs_difference": 5,
                        "same_region": True, "outside_untouched": True}])  # fmt: skip
    with pytest.raises(DefectgenError, match="does not reproduce"):
        export_module.export_verified(checkpoint, out)
    assert out.read_bytes() == good.read_bytes()  # the earlier good model is still there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no unverified file left
    assert len(exports) == 1 and exports[0].parent == tmp_path and exports[0] != out  # staged beside
    (tmp_path / "stray.onnx").write_bytes(b"\x0a\x05hello")
    with pytest.raises(ConfigError, match="not an ONNX model"):
        export_module.export_verified(checkpoint, tmp_path / "stray.onnx")


def test_cli_export_checks_before_it_reports(exported, tmp_path, capsys, monkeypatch):
    """The verb verifies (onnxruntime against PyTorch, twice) before it says it wrote the model;
    the export itself is the fixture's (its graph is tested above), copied, not made again."""
    import defectgen.export as export_module

    _, checkpoint, good, metadata = exported

    def copy_of_the_fixture(checkpoint, path):
        path.write_bytes(good.read_bytes())
        return dict(metadata)

    monkeypatch.setattr(export_module, "export_onnx", copy_of_the_fixture)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    text = capsys.readouterr().out
    assert text.count("onnxruntime vs PyTorch") == 2 and "wrote" in text
