"""The guide: a frozen real-trained U-Net whose segmentation loss in the hole trains the
generator; its digest travels to synthesis, and evaluation refuses to judge a set with it."""

from __future__ import annotations

import json

import pytest
import torch

from defectgen.errors import ConfigError, DataError
from defectgen.evaluate import EvalConfig, evaluate
from defectgen.fileio import file_digest
from defectgen.gan.config import TrainConfig
from defectgen.gan.guide import guide_loss, load_guide
from defectgen.gan.train import train
from defectgen.models.unet import build_segmenter
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig
from test_evaluate import SMALL, TINY_GAN, bench  # noqa: F401 - the shared small benchmark fixture


def test_the_guide_loss_reads_the_hole_only_and_trains_the_painted_pixels():
    torch.manual_seed(0)
    guide = build_segmenter("resnet18", 1, 2).eval().requires_grad_(False)
    fake = torch.rand(2, 1, 40, 40, requires_grad=True)  # 40: padded to the U-Net's 64
    labels = torch.zeros(2, 2, 40, 40)
    labels[:, 0, 10:20, 10:20] = 1
    hole = torch.zeros(2, 1, 40, 40)
    hole[:, :, 8:22, 8:22] = 1
    loss, logs = guide_loss(guide, fake, labels, hole)
    assert loss.ndim == 0 and logs["guide"] == pytest.approx(loss.item())
    loss.backward()
    assert fake.grad.abs().sum() > 0
    other = labels.clone()
    other[:, 1, 30:35, 30:35] = 1  # a label outside the hole changes nothing
    assert guide_loss(guide, fake, other, hole)[0].item() == pytest.approx(loss.item())
    assert guide_loss(guide, fake, labels, torch.ones_like(hole))[0].item() != pytest.approx(loss.item())


def test_a_guided_run_records_its_guide_and_evaluation_will_not_judge_with_it(bench, tmp_path):  # noqa: F811
    dataset, split, _, work = bench
    first = tmp_path / "first"  # an evaluation whose real arm becomes the guide
    evaluate(
        dataset, split, first, EvalConfig(**{**SMALL, "arms": ["real"], "quality_samples": 0}), progress=False
    )
    guide = first / "runs" / "real_s0.pt"
    config = TrainConfig(steps=2, guide=str(guide), **TINY_GAN)
    checkpoint = train(dataset, split, config, tmp_path / "gan", progress=False)
    state = torch.load(checkpoint, weights_only=True)
    assert state["config"]["extra"]["guide_sha256"] == file_digest(guide)
    metrics = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert all("guide" in record for record in metrics)
    synthesize(checkpoint, dataset, split, tmp_path / "synth", SynthConfig(n=4, seed=0), progress=False)
    params = json.loads((tmp_path / "synth" / "synth.json").read_text())
    assert params["guide_sha256"] == file_digest(guide)
    # the same seeds and settings: the judge (real arm, seed 0) is the guide itself
    judged = evaluate(
        dataset, split, first, EvalConfig(**{**SMALL, "arms": ["real", "real+guided"]}),
        synthetic={"guided": tmp_path / "synth"}, checkpoint=checkpoint, progress=False,
    )  # fmt: skip
    assert "not_independent" in judged["quality"]["guided"]["label_fidelity"]
    # another seed first: another judge, so fidelity is measured, per class
    config = EvalConfig(**{**SMALL, "seeds": [1, 2], "arms": ["real", "real+guided"]})
    other = evaluate(
        dataset, split, tmp_path / "other", config, synthetic={"guided": tmp_path / "synth"},
        checkpoint=checkpoint, progress=False,
    )  # fmt: skip
    fidelity = other["quality"]["guided"]["label_fidelity"]
    assert set(fidelity["per_class"]) == set(dataset.classes.names)
    for row in fidelity["per_class"].values():
        if row["judgeable"]:
            assert row["ratio"] == pytest.approx(row["synthetic"] / row["real_test"])
        else:
            assert row["ratio"] is None
    # a config reused from the guided run, without the guide, must not claim its digest
    reused = TrainConfig(steps=1, extra={"guide_sha256": file_digest(guide)}, **TINY_GAN)
    plain = torch.load(train(dataset, split, reused, tmp_path / "plain", progress=False), weights_only=True)
    assert "guide_sha256" not in plain["config"]["extra"]


def test_a_changed_or_wrong_guide_is_refused(bench, tmp_path):  # noqa: F811
    dataset, split, _, _ = bench
    with pytest.raises(DataError, match="guide not found"):
        train(
            dataset, split, TrainConfig(steps=1, guide=str(tmp_path / "none.pt"), **TINY_GAN), tmp_path / "a"
        )
    wrong = tmp_path / "wrong.pt"
    torch.save(build_segmenter("resnet18", 1, 5).state_dict(), wrong)  # five classes, not two
    with pytest.raises(DataError, match="not a U-Net state dict"):
        load_guide(wrong, "resnet18", 1, 2)
    good = tmp_path / "good.pt"
    torch.save(build_segmenter("resnet18", 1, 2).state_dict(), good)
    train(dataset, split, TrainConfig(steps=1, guide=str(good), **TINY_GAN), tmp_path / "run", progress=False)
    torch.save(build_segmenter("resnet18", 1, 2, seed=3).state_dict(), good)  # the file changes
    with pytest.raises(ConfigError, match="changed since this run started"):
        train(
            dataset, split, TrainConfig(steps=2, guide=str(good), **TINY_GAN), tmp_path / "run", resume=True
        )
