"""The evaluation instrument: metrics on hand-computed cases, seed-aware intervals, paired arms
that differ only in what they add, post-processing chosen on validation data only, no test-half
leak, and a small end-to-end evaluate + report run that repeats value for value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import folder_dataset
from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import Split, carve_validation, fit_split, make_split
from defectgen.errors import ConfigError, DataError
from defectgen.evaluate import (
    EvalConfig,
    evaluate,
    measure_quality,
    parse_arm,
    parse_synthetic,
    postprocess,
    schema,
)
from defectgen.evaluate.context import EvalContext, arm_sampler, synthetic_pool
from defectgen.evaluate.scores import CANDIDATES, PLAIN, ScoreSheet, pair_scores
from defectgen.evaluate.segmenter import probabilities
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.models.unet import build_segmenter, segmentation_loss
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig

TINY_GAN = {
    "preset": "tiny",
    "model": {"resolution": 32},
    "batch_size": 2,
    "sample_every": 100,
    "log_every": 1,
}


def _mask(shape, *boxes):
    mask = np.zeros(shape, bool)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


# --- metrics ---------------------------------------------------------------------------------


def test_pair_scores_hand_computed():
    empty = np.zeros((1, 4, 4), bool)
    one_pixel = empty.copy()
    one_pixel[0, 0, 0] = True
    assert pair_scores(empty, empty)[0].tolist() == [1.0]  # empty vs empty = 1
    assert pair_scores(one_pixel, empty)[0].tolist() == [0.0]  # one false-positive pixel = 0
    target = _mask((4, 4), (0, 2, 0, 2))[None]  # 4 pixels
    pred = _mask((4, 4), (0, 1, 0, 2))[None]  # 2 of them
    dice, iou = pair_scores(pred, target)
    assert dice[0] == pytest.approx(2 * 2 / (2 + 4)) and iou[0] == pytest.approx(2 / 4)


# --- post-processing ---------------------------------------------------------------------------


def test_post_processing_removes_small_noise_and_keeps_the_plain_candidate_on_ties():
    sheet = ScoreSheet(2)
    probs, targets = [], []
    for i in range(6):
        target = np.zeros((2, 32, 32), bool)
        target[0, 10:20, 10:20] = True
        prob = np.zeros((2, 32, 32), np.float32)
        prob[0][target[0]] = 0.9
        prob[0, 1 + i, 28:30] = 0.8  # a 2-pixel speck on every image
        sheet.add(prob, target)
        probs.append(prob)
        targets.append(target)
    chosen, table = postprocess.choose_pooled([sheet.arrays()], ("a", "b"))
    assert table["a"]["min_area"] > 2 and table["a"]["pooled_validation_dice"] == pytest.approx(1.0)
    assert table["a"]["plain_validation_dice"] < 1.0
    assert chosen[0] != PLAIN and CANDIDATES[chosen[0]][0] == 0.5  # ties keep the plain threshold
    assert chosen[1] == PLAIN  # no positives: the plain candidate
    assert np.array_equal(postprocess.apply(probs[0], chosen), targets[0])


# --- the segmenter -------------------------------------------------------------------------------


def test_a_one_pixel_target_is_predicted_on_that_pixel():
    """Padding to the encoder's multiple of 32 and cropping back must not shift predictions."""
    model = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.fill_(50.0)
        model.bias.fill_(0.0)
    for height, width, y, x in [(45, 70, 44, 69), (33, 64, 0, 5), (40, 96, 17, 3)]:
        image = np.zeros((height, width, 1), np.uint8)
        image[y, x] = 255
        prob = probabilities(model, image)
        assert prob.shape == (1, height, width)
        assert np.unravel_index(prob[0].argmax(), prob[0].shape) == (y, x)


def test_same_seed_same_initial_weights_whatever_ran_before():
    first = build_segmenter("resnet18", 1, 2, seed=3).state_dict()
    torch.rand(1000)  # the global stream moves on
    build_segmenter("resnet18", 1, 2, seed=7)
    again = build_segmenter("resnet18", 1, 2, seed=3).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = build_segmenter("resnet18", 1, 2, seed=4).state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_is_refused_before_any_run():
    dataset = open_dataset(str(Path(__file__).parent / "fixtures" / "tiny_folder"))
    with pytest.raises(ConfigError, match="CUDA is not available on this machine; use --device cpu"):
        EvalContext.create(dataset, make_split(dataset, 0.5, 0), EvalConfig(arms=["real"], device="cuda"))


def test_the_model_is_where_the_evaluation_runs_and_its_saved_weights_load_anywhere():
    from defectgen.evaluate.context import state_bytes

    dataset = open_dataset(str(Path(__file__).parent / "fixtures" / "tiny_folder"))
    ctx = EvalContext.create(dataset, make_split(dataset, 0.5, 0), EvalConfig(arms=["real"], device="cpu"))
    model = ctx.model(0)
    assert next(model.parameters()).device == ctx.device == torch.device("cpu")
    assert ctx.segmenter_record()["device"] == "cpu"
    fp32 = EvalContext.create(
        dataset, make_split(dataset, 0.5, 0), EvalConfig(arms=["real"], precision="fp32")
    )
    assert fp32.segmenter_record()["precision"] == "fp32"  # what `auto` became is recorded with each run
    assert ctx.segmenter_record()["precision"] == ("bf16" if ctx.use_bf16 else "fp32")
    state = torch.load(__import__("io").BytesIO(state_bytes(model)), map_location="cpu", weights_only=True)
    assert all(v.device.type == "cpu" for v in state.values())


def test_loss_ignores_invalid_pixels():
    logits = torch.zeros(1, 2, 8, 8, requires_grad=True)
    masks = torch.zeros(1, 2, 8, 8)
    masks[:, 0, 2:4, 2:4] = 1
    valid = torch.ones(1, 1, 8, 8)
    valid[..., 5:, :] = 0  # a painted seam
    segmentation_loss(logits, masks, valid).backward()
    assert torch.all(logits.grad[..., 5:, :] == 0) and logits.grad[..., :5, :].abs().sum() > 0
    changed = logits.detach().clone()
    changed[..., 5:, :] = 30.0  # anything may be predicted in the ignored band
    assert segmentation_loss(changed, masks, valid) == pytest.approx(
        float(segmentation_loss(logits.detach(), masks, valid))
    )


# --- arms ------------------------------------------------------------------------------------------


def test_arm_grammar():
    assert parse_arm("oversample+tiles", ("tiles",)).sets == ("tiles",)
    assert parse_arm("tiles", ("tiles",)).name == "real+tiles"
    assert parse_arm("copypaste+tiles:filtered", ("tiles",)).set_names == ("tiles",)
    assert parse_arm("tiles-only", ("tiles",)).base is None
    for bad in ("magic", "real+nope", "control+tiles", "real+tiles+tiles", "nope-only"):
        with pytest.raises(ConfigError):
            parse_arm(bad, ("tiles",))
    assert parse_synthetic(["a=x", "y"]) == {"a": "x", "synthetic": "y"}
    for bad in (["real=x"], ["a=x", "a=y"], ["1a=x"], ["a="]):
        with pytest.raises(ConfigError):
            parse_synthetic(bad)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A small folder dataset (2 classes, 64x96 images), its split, a 2-step tiny GAN and a
    synthetic set of 8 items, both made on the fit part (as `experiment` does): enough for every
    arm to run in seconds."""
    work = tmp_path_factory.mktemp("bench")
    data = folder_dataset(work / "data", images=40, seed=1)
    dataset = open_dataset(str(data))
    split = make_split(dataset, test_fraction=0.5, seed=0)
    split.save(work / "split.json")
    fit = fit_split(split, dataset, EvalConfig().val_fraction)
    fit.save(work / "fit_split.json")
    checkpoint = train(dataset, fit, TrainConfig(steps=2, **TINY_GAN), work / "gan", progress=False)
    synthesize(
        checkpoint, dataset, fit, work / "synth", SynthConfig(n=8, seed=0, format="folder"), progress=False
    )
    return dataset, split, checkpoint, work


SMALL = dict(seeds=[0, 1], steps=3, crop_size=32, batch_size=4, quality_samples=6, diversity_masks=2)


def test_arms_at_one_seed_see_identical_real_crops_and_only_add(bench):
    dataset, split, _, work = bench
    config = EvalConfig(**SMALL)
    ctx = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    batches = {
        name: arm_sampler(ctx, parse_arm(name, ("tiles",)), seed=0).batch(2)
        for name in (
            "real",
            "oversample",
            "copypaste",
            "blendpaste",
            "real+tiles",
            "oversample+tiles",
            "control",
        )
    }
    real = batches["real"]
    assert len(real[0]) == 4
    for name in ("oversample", "copypaste", "blendpaste", "real+tiles"):
        images, masks, valid = batches[name]
        assert len(images) == 6  # 4 real + 2 added (share 0.5 of the batch)
        assert torch.equal(images[:4], real[0]) and torch.equal(masks[:4], real[1])
        assert all(masks[i].any() for i in range(4, 6))  # added crops are centred on defects
    assert torch.equal(batches["oversample+tiles"][0][:6], batches["oversample"][0])
    assert torch.equal(
        batches["oversample+tiles"][0][6:], batches["real+tiles"][0][4:]
    )  # same set, same crops
    assert not torch.equal(batches["control"][0], real[0])  # the noise-floor twin draws its own crops
    again = arm_sampler(ctx, parse_arm("real", ()), seed=0).batch(2)
    assert all(torch.equal(a, b) for a, b in zip(again, real, strict=True))  # a function of (seed, step)
    assert not torch.equal(arm_sampler(ctx, parse_arm("real", ()), seed=1).batch(2)[0], real[0])


def test_synthetic_crops_ignore_the_painted_seam(bench):
    dataset, split, _, work = bench
    ctx = EvalContext.create(dataset, split, EvalConfig(**SMALL), {"tiles": work / "synth"})
    pool = synthetic_pool(ctx, "tiles")
    seams = 0
    for index in range(len(pool)):
        _, masks, ignore, _ = pool.get(index)
        assert not (ignore & masks.any(axis=0)).any()  # a labelled pixel is never ignored
        seams += int(ignore.sum())
    assert seams > 0  # synth dilates its hole: there is a ring to ignore


def test_no_test_or_validation_item_reaches_training(bench):
    dataset, split, _, work = bench
    config = EvalConfig(**SMALL)
    ctx = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    fit_ids = {dataset.items[i].item_id for i in ctx.fit}
    held_out = set(split.test) | {dataset.items[i].item_id for i in ctx.validation}
    assert held_out and any(dataset.items[dataset.index_of(i)].class_ids for i in split.test)
    for name in ("real", "oversample", "copypaste", "blendpaste", "classic", "control", "oversample+tiles"):
        sampler = arm_sampler(ctx, parse_arm(name, ("tiles",)), seed=0)
        for step in range(30):
            sampler.batch(step)
        used = set()
        for pool in [sampler.real, *(e.pool for e in sampler.extras)]:
            used |= pool.used | pool.sources_used
        real_used = used & {item.item_id for item in dataset.items}
        assert real_used and real_used <= fit_ids, name
        assert not real_used & held_out, name


def test_validation_part_is_deterministic_and_inside_the_training_half(bench):
    dataset, split, _, _ = bench
    train = split.indices(dataset, "train")
    fit, validation = carve_validation(dataset, train, 0.3, seed=0)
    assert (fit, validation) == carve_validation(dataset, train, 0.3, seed=0)
    assert set(fit) | set(validation) == set(train) and not set(fit) & set(validation)
    assert any(dataset.items[i].class_ids for i in validation)


def _evaluate(bench, out: Path, **overrides) -> dict:
    dataset, split, checkpoint, work = bench
    arms = [
        "real",
        "control",
        "oversample",
        "copypaste",
        "classic",
        "real+tiles",
        "oversample+tiles:filtered",
    ]
    config = EvalConfig(**{**SMALL, "arms": arms, "declared_arms": ["real+tiles"], **overrides})
    return evaluate(
        dataset,
        split,
        out,
        config,
        synthetic={"tiles": work / "synth"},
        checkpoint=checkpoint,
        progress=False,
    )


def test_evaluate_end_to_end_repeats_value_for_value(bench, tmp_path):
    dataset, split, _, work = bench
    results = _evaluate(bench, tmp_path / "a")
    assert set(results) == set(schema.KEYS)  # the one schema the report reads
    arms = results["config"]["arms"]
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {(a, s) for a in arms for s in (0, 1)}
    fit_ids = {dataset.items[i].item_id for i in EvalContext.create(dataset, split, EvalConfig()).fit}
    for record in results["runs"]:
        assert set(record["real_items_trained_on"]) <= fit_ids
    assert set(results["post_processing"]) == set(dataset.classes.names)  # one for every arm
    # the paired differences are wired to the right runs: per seed, arm minus real of each metric
    # (pixel AP is threshold-free: it differs between arms even when none is good)
    headline = {a: [r["test"]["class_mean_pixel_ap"] for r in results["runs"] if r["arm"] == a] for a in arms}
    assert len({tuple(v) for v in headline.values()}) == len(arms)  # the arms really differ
    for arm in arms[1:]:
        for metric in ("class_mean_pixel_ap", "positive_dice_plain", "kaggle_dice", "fp_rate_defect_free"):
            per_seed = results["paired"][arm][metric]["per_seed"]
            for seed, value in zip((0, 1), per_seed, strict=True):
                own = next(r for r in results["runs"] if r["arm"] == arm and r["seed"] == seed)["test"]
                real = next(r for r in results["runs"] if r["arm"] == "real" and r["seed"] == seed)["test"]
                assert value == pytest.approx(own[metric] - real[metric]), (arm, metric)
        values = headline[arm]
        assert results["summary"][arm]["class_mean_pixel_ap"]["std"] == pytest.approx(np.std(values, ddof=1))
        assert results["summary"][arm]["class_mean_pixel_ap"]["mean"] == pytest.approx(np.mean(values))
    assert results["noise_floor"]["minimal_detectable_effect"] >= 0
    claim = results["claim"]
    assert claim["declared_arms"] == ["real+tiles"]
    assert claim["baselines"] == ["real", "oversample", "copypaste", "classic"]  # every one, control aside
    for base in claim["baselines"]:
        per_seed = claim["versus"][base]["class_mean_pixel_ap"]["per_seed"]
        expected = [a - b for a, b in zip(headline["real+tiles"], headline[base], strict=True)]
        assert per_seed == pytest.approx(expected)
    assert claim["crop_matched_baselines"] == ["oversample", "copypaste"]
    beside = results["beside_the_claim"]  # the other synthetic arm, measured as the declared one is
    assert list(beside) == ["oversample+tiles:filtered"]
    for base in claim["baselines"]:
        per_seed = beside["oversample+tiles:filtered"]["versus"][base]["class_mean_pixel_ap"]["per_seed"]
        expected = [a - b for a, b in zip(headline["oversample+tiles:filtered"], headline[base], strict=True)]
        assert per_seed == pytest.approx(expected)
    assert results["crops_per_step"] == {
        "real": 4,
        "control": 4,
        "oversample": 6,
        "copypaste": 6,
        "classic": 4,
        "real+tiles": 6,
        "oversample+tiles:filtered": 8,
    }
    curve = results["learning_curve"]
    assert [p[0] for p in curve["points"]] == [0, 1, 2, 3]
    real_s0 = next(r for r in results["runs"] if r["arm"] == "real" and r["seed"] == 0)
    assert curve["points"][-1][1] == real_s0["validation"]["class_mean_pixel_ap"]  # the full run itself
    assert results["label_filter"]["tiles:filtered"]["items"] == 8
    assert (
        results["quality"]["tiles"]["label_fidelity"]
        and results["quality"]["tiles"]["kid"]["value"] is not None
    )
    diversity = results["quality"]["tiles"]["diversity"]  # the set the checkpoint made: measured
    measured = [row for row in diversity["per_class"].values() if row["measured"]]
    assert measured and all(
        row["mean_pairwise_distance"] >= 0 and row["hole_pixel_change"] >= 0 for row in measured
    )
    assert diversity["worst_ratio"] == min(row["ratio"] for row in measured)
    # same command, new folder: identical numbers (the arms' wall-clock seconds aside)
    arms = ["real", "oversample+tiles:filtered"]
    again = _evaluate(bench, tmp_path / "b", arms=arms, declared_arms=[])
    assert _timeless(again["runs"]) == _timeless([r for r in results["runs"] if r["arm"] in arms])
    assert again["paired"]["oversample+tiles:filtered"] == results["paired"]["oversample+tiles:filtered"]
    # an interrupted run redone equals the uninterrupted one
    (tmp_path / "b" / "runs" / "real_s1.json").unlink()
    resumed = _evaluate(bench, tmp_path / "b", arms=arms, declared_arms=[])
    assert _timeless(resumed["runs"]) == _timeless(again["runs"])


def _timeless(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]


def test_cache_key_follows_the_synthetic_set(bench, tmp_path):
    dataset, split, checkpoint, work = bench
    out = tmp_path / "eval"
    config = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"]})
    evaluate(dataset, split, out, config, synthetic={"tiles": work / "synth"}, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    other = tmp_path / "synth2"
    synthesize(checkpoint, dataset, split, other, SynthConfig(n=8, seed=5, format="folder"), progress=False)
    evaluate(dataset, split, out, config, synthetic={"tiles": other}, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert after["real_s0.json"] == stamps["real_s0.json"]  # real does not use the set: reused
    assert after["real+tiles_s0.json"] != stamps["real+tiles_s0.json"]  # another set: trained again


def test_evaluate_bad_input(bench, tmp_path):
    _, _, _, work = bench
    data = str(work / "data")
    split_file = str(work / "split.json")
    base = ["evaluate", data, "--split", split_file, "--out", str(tmp_path / "e")]
    assert main([*base, "--arms", "real,magic"]) == 2
    assert main([*base, "--arms", "real+synthetic"]) == 2  # needs --synthetic
    assert main([*base, "--size", "100"]) == 2
    assert main([*base, "--seeds", "1"]) == 2  # no interval without seed variance
    assert main([*base, "--synthetic", str(tmp_path / "nope"), "--arms", "synthetic"]) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "results.json").write_text('{"mine": 1}')
    assert main([*base[:-1], str(tmp_path / "foreign")]) == 2  # not ours: never overwritten
    assert (tmp_path / "foreign" / "results.json").read_text() == '{"mine": 1}'


def test_an_empty_test_half_is_refused(bench, tmp_path):
    dataset, split, _, _ = bench
    data = json.loads((bench[3] / "split.json").read_text())
    data["train"] = sorted(data["train"] + data["test"])
    data["test"] = []
    (tmp_path / "split.json").write_text(json.dumps(data))

    config = EvalConfig(**{**SMALL, "arms": ["real"]})
    with pytest.raises(DataError, match="test half is empty"):
        evaluate(dataset, Split.load(tmp_path / "split.json"), tmp_path / "e", config, progress=False)


def test_measuring_quality_of_zero_samples_is_refused_before_any_work(bench, tmp_path):
    dataset, split, _, _ = bench
    config = EvalConfig(**{**SMALL, "arms": ["real"], "quality_samples": 0})
    with pytest.raises(ValueError, match="quality_samples is 0"):
        measure_quality(dataset, split, tmp_path / "nowhere", config, {})


def test_cli_end_to_end_and_report(bench, tmp_path):
    _, _, checkpoint, work = bench
    shutil.copytree(work / "synth", tmp_path / "synth")
    eval_dir = tmp_path / "eval"
    args = [
        "evaluate", str(work / "data"), "--split", str(work / "split.json"),
        "--synthetic", f"tiles={tmp_path / 'synth'}", "--checkpoint", str(checkpoint),
        "--out", str(eval_dir), "--seeds", "2", "--steps", "4",
        "--size", "32", "--batch-size", "4", "--arms", "real,control,copypaste,oversample+tiles",
    ]  # fmt: skip
    assert main(args) == 0
    results = json.loads((eval_dir / "results.json").read_text())
    assert [p[0] for p in results["learning_curve"]["points"]] == [0, 1, 2, 4]  # budgets, each its own run
    assert results["claim"]["declared_arms"] == ["oversample+tiles"]  # the one stacked arm
    first = (eval_dir / "runs" / "real_s0.json").stat().st_mtime_ns
    assert main(args) == 0  # resumable: finished runs are not trained again
    assert (eval_dir / "runs" / "real_s0.json").stat().st_mtime_ns == first
    assert main(["report", str(eval_dir)]) == 0
    html = (eval_dir / "report.html").read_text()
    for section in ("protocol", "results", "per-class", "curves", "quality", "grids", "reading"):
        assert f'id="{section}"' in html
    assert "data:image/png;base64," in html


class _PickyJudge:
    """Rejects every first draw and accepts every second one."""

    description = "picky test judge"
    thresholds = {1: 0.5, 2: 0.5}

    def __init__(self, trained_on=()):
        self.calls = 0
        self.trained_on = tuple(trained_on)  # the items its U-Net trained on (lineage)

    def score(self, image, masks):
        self.calls += 1
        value = 1.0 if self.calls % 2 == 0 else 0.0
        return {k + 1: value for k in range(len(masks)) if masks[k].any()}

    def accepts(self, scores):
        return all(v >= 0.5 for v in scores.values())

    def margin(self, scores):
        return min(v - 0.5 for v in scores.values()) if scores else 0.0


def test_synth_with_a_judge_records_scores_and_redraws_rejected_items(bench, tmp_path, monkeypatch):
    dataset, split, checkpoint, work = bench
    from defectgen.evaluate import judge as judge_module

    monkeypatch.setattr(
        judge_module.LabelJudge, "from_evaluation", classmethod(lambda cls, *a, **k: _PickyJudge())
    )
    summary = synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "judged",
        SynthConfig(n=4, seed=0, judge=work, attempts=2),
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "judged" / "manifest.jsonl").read_text().splitlines()]
    assert summary["accepted_by_judge"] == 4
    assert json.loads((tmp_path / "judged" / "synth.json").read_text())["lineage"]["judge"] == {"read": []}
    for record in records:
        assert record["attempt"] == 1 and record["label_accepted"] is True
        assert set(record["label_score"]) == {str(k) for k in record["classes"]}
    plain = [json.loads(line) for line in (work / "synth" / "manifest.jsonl").read_text().splitlines()]
    assert [r["defects"] for r in records] != [r["defects"] for r in plain[:4]]  # second draws differ
    # one draw only: a rejected item is kept, marked as not accepted
    synthesize(
        checkpoint,
        dataset,
        split,
        tmp_path / "once",
        SynthConfig(n=2, seed=0, judge=work, attempts=1),
        progress=False,
    )
    once = [json.loads(line) for line in (tmp_path / "once" / "manifest.jsonl").read_text().splitlines()]
    assert [r["label_accepted"] for r in once] == [False, True] and "attempt" not in once[0]
    with pytest.raises(ConfigError):
        synthesize(
            checkpoint, dataset, split, tmp_path / "x", SynthConfig(n=2, attempts=3), progress=False
        )  # needs a judge


def test_the_judge_of_an_evaluation_folder(bench, tmp_path):
    dataset, split, _, work = bench
    from defectgen.evaluate.judge import LabelJudge

    with pytest.raises(DataError, match="no real-arm U-Net"):
        LabelJudge.from_evaluation(tmp_path, dataset.classes, dataset.channels)
    evaluate(dataset, split, tmp_path / "e", EvalConfig(**{**SMALL, "arms": ["real"]}), progress=False)
    judge = LabelJudge.from_evaluation(tmp_path / "e", dataset.classes, dataset.channels)
    record = json.loads((tmp_path / "e" / "runs" / "real_s0.json").read_text())
    for class_id, threshold in judge.thresholds.items():
        real = record["validation"]["positive_dice"][dataset.classes.name(class_id)]
        assert threshold == (None if real is None or real < 0.2 else pytest.approx(0.5 * real))
    sample = dataset[next(i for i, item in enumerate(dataset.items) if item.class_ids)]
    scores = judge.score(sample.image, sample.masks)
    assert set(scores) == set(sample.class_ids) and all(0 <= v <= 1 for v in scores.values())


def test_synthetic_crops_follow_the_schedule(bench):
    dataset, split, _, work = bench
    config = EvalConfig(**{**SMALL, "synthetic_until": 0.5})
    ctx = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    ctx.steps = 10
    sampler = arm_sampler(ctx, parse_arm("real+tiles", ("tiles",)), seed=0)
    assert len(sampler.batch(4)[0]) == 6  # first half of training: 4 real + 2 synthetic
    assert len(sampler.batch(5)[0]) == 4  # second half: the real crops alone
    assert torch.equal(sampler.batch(5)[0], arm_sampler(ctx, parse_arm("real", ()), seed=0).batch(5)[0])


def test_torchrun_shares_the_runs_and_gives_the_single_process_results(bench, tmp_path):
    """Under torchrun with 2 CPU processes the (arm, seed) runs are shared out (unfiltered arms
    first, then the filtered ones, whose judge is among the first); the results are those of one
    process running the same command, value for value (wall-clock seconds aside)."""
    import os
    import subprocess
    import sys

    _, _, checkpoint, work = bench
    args = [
        "evaluate", str(work / "data"), "--split", str(work / "split.json"),
        "--synthetic", f"tiles={work / 'synth'}", "--out", None, "--seeds", "2", "--steps", "3",
        "--size", "32", "--batch-size", "4", "--arms", "real,real+tiles,oversample+tiles:filtered",
        "--precision", "fp32", "--quality-samples", "0", "--no-curve",  # the sharing, not the extras
    ]  # fmt: skip
    at = args.index(None)
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # float sums depend on the thread count
    single = [*args[:at], str(tmp_path / "single"), *args[at + 1 :]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the one-process reference runs here, at the workers' thread count
    try:
        assert main(single) == 0
    finally:
        torch.set_num_threads(threads)
    shared = [*args[:at], str(tmp_path / "shared"), *args[at + 1 :]]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    result = subprocess.run(
        [*launcher, "-m", "defectgen", *shared], capture_output=True, text=True, timeout=600, env=one_thread
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((tmp_path / "single" / "results.json").read_text())
    two = json.loads((tmp_path / "shared" / "results.json").read_text())
    assert _timeless(two["runs"]) == _timeless(one["runs"])
    assert two["paired"] == one["paired"] and two["label_filter"] == one["label_filter"]
    assert sorted(p.name for p in (tmp_path / "shared" / "runs").glob("*.json")) == sorted(
        p.name for p in (tmp_path / "single" / "runs").glob("*.json")
    )


def test_kid_is_the_same_when_measured_again():
    """KID's random subsets come from a fixed seed: remeasuring a set gives the same value, and
    the caller's global RNG is left as it was."""
    from defectgen.evaluate.quality import kid

    features = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    real, synthetic = torch.randn(30, 1, 4, 4), torch.randn(30, 1, 4, 4) + 0.5
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = kid(features, real, synthetic, subsets=5)
    assert torch.equal(torch.rand(1), before)  # global RNG untouched
    assert kid(features, real, synthetic, subsets=5) == first


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 10, 20, 21])
def test_the_segmenter_trains_any_number_of_steps(steps):
    """torch's OneCycleLR divides by zero when its warm-up ends on step 0 (e.g. 10 steps at 10 %)."""
    from defectgen.evaluate.segmenter import train_segmenter

    model = build_segmenter("resnet18", 1, 1, encoder_depth=3, decoder_channels=(16, 8, 4))

    def batch(step):
        return torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32)

    log = train_segmenter(model, batch, steps, progress=False, log_every=1)
    assert len(log["curve"]) == steps


def _edited_set(source: Path, target: Path, params=None, background=None) -> Path:
    """A copy of the set at `source` whose synth.json is changed by `params` (a dict -> dict
    function) and whose first manifest record names `background`."""
    shutil.copytree(source, target)
    if params is not None:
        (target / "synth.json").write_text(
            json.dumps(params(json.loads((target / "synth.json").read_text())))
        )
    if background is not None:
        lines = (target / "manifest.jsonl").read_text().splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "background": background})
        (target / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return target


def test_a_set_made_from_test_images_or_not_made_by_synth_is_refused(bench, tmp_path):
    """Lineage (#32): a set whose split, generator or manifest reaches this split's test half, a set
    of another dataset, a set without lineage and a folder that is not a set are refused; the
    untouched set is accepted."""
    from defectgen.data.lineage import lineage

    dataset, split, checkpoint, work = bench
    swapped = Split(**{**split.__dict__, "train": split.test, "test": split.train})
    with pytest.raises(DataError, match="test half"):  # synth refuses the generator for that split
        synthesize(
            checkpoint, dataset, swapped, tmp_path / "x", SynthConfig(n=4, format="folder"), progress=False
        )
    test_item = split.test[0]
    cases = {
        "split": (
            lambda p: {**p, "lineage": {**p["lineage"], **lineage(swapped, swapped.train)}},
            None,
            "test half",
        ),
        "generator": (
            lambda p: {**p, "lineage": {**p["lineage"], "generator": lineage(swapped, swapped.train)}},
            None,
            "test half",
        ),
        "manifest": (None, test_item, "test image"),
        "dataset": (
            lambda p: {**p, "lineage": {**p["lineage"], "dataset_fingerprint": "0" * 16}},
            None,
            "another dataset",
        ),
        "unrecorded": (lambda p: {k: v for k, v in p.items() if k != "lineage"}, None, "does not record"),
        "no generator": (
            lambda p: {**p, "lineage": {k: v for k, v in p["lineage"].items() if k != "generator"}},
            None,
            "does not record its generator",
        ),
        "read not a list": (lambda p: {**p, "lineage": {**p["lineage"], "read": 5}}, None, "not a list"),
    }  # fmt: skip
    config = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"], "declared_arms": []})
    for name, (params, background, message) in cases.items():
        leaky = _edited_set(work / "synth", tmp_path / name, params, background)
        with pytest.raises(DataError, match=message):
            EvalContext.create(dataset, split, config, {"tiles": leaky})
    with pytest.raises(DataError, match="not a `defectgen synth` folder"):
        EvalContext.create(dataset, split, config, {"tiles": work / "data"})
    test_image = dataset.items[dataset.index_of(split.test[0])].image_path
    extra = _edited_set(work / "synth", tmp_path / "extra")  # an image the manifest does not list
    shutil.copy(test_image, extra / "images" / "renamed.png")
    shutil.copy(extra / "masks" / "synth_000000.png", extra / "masks" / "renamed.png")
    with pytest.raises(DataError, match="does not list .first: renamed"):
        EvalContext.create(dataset, split, config, {"tiles": extra})
    swapped_in = _edited_set(
        work / "synth", tmp_path / "swapped_in"
    )  # a listed image replaced by a test image
    shutil.copy(test_image, swapped_in / "images" / "synth_000000.png")
    with pytest.raises(DataError, match=f"synth_000000.png is a copy of the image of {split.test[0]}"):
        EvalContext.create(dataset, split, config, {"tiles": swapped_in})
    ctx = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    assert ctx.lineages["tiles"]["validation_items_read"] == 0 and ctx.lineages["tiles"]["items_read"] > 0


def test_a_set_made_from_validation_items_is_measured_but_cannot_carry_the_claim(bench, tmp_path):
    from defectgen.data.lineage import lineage
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import declared_arms

    dataset, split, _, work = bench
    whole = _edited_set(
        work / "synth",
        tmp_path / "whole",
        lambda p: {**p, "lineage": {**lineage(split, split.train), "generator": p["lineage"]["generator"]}},
    )
    config = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"]})
    ctx = EvalContext.create(dataset, split, config, {"tiles": whole})
    assert ctx.lineages["tiles"]["validation_items_read"] == len(ctx.validation) > 0
    arms = parse_arms(config.arms, ("tiles",))
    assert declared_arms(config, arms, ctx.lineages) == []  # the implicit claim is dropped
    assert [a.name for a in declared_arms(config, arms, {"tiles": {"validation_items_read": 0}})] == [
        "real+tiles"
    ]
    explicit = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"], "declared_arms": ["real+tiles"]})
    with pytest.raises(DataError, match="validation or unlabelled items"):
        declared_arms(explicit, arms, ctx.lineages)


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"arms": "real,oversample"}, "arms"),
        ({"seeds": "0,1"}, "seeds"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"lr": "fast"}, "lr"),
        ({"steps": True}, "steps"),
        ({"decoder_channels": [64, 32.5, 16, 8]}, "decoder_channels"),
        ({"curve": "yes"}, "curve"),
    ],
)
def test_settings_of_the_wrong_type_are_refused_by_name(settings, field):
    with pytest.raises(ConfigError, match=field):
        EvalConfig(**settings).validate()
    config = EvalConfig(batch_size=8.0, seeds=(0, 1))
    config.validate()
    assert config.batch_size == 8 and isinstance(config.batch_size, int) and config.seeds == [0, 1]


def test_the_python_api_refuses_set_names_the_cli_refuses(bench, tmp_path):
    dataset, split, _, work = bench
    with pytest.raises(ConfigError, match="not a base arm name"):
        evaluate(dataset, split, tmp_path / "e", EvalConfig(**SMALL), synthetic={"real": work / "synth"})


def test_the_declared_arm_is_read_from_the_settings_never_from_scores():
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import declared_arms

    def declared(arms, names, sets=("tiles", "b")):
        config = EvalConfig(arms=arms, declared_arms=names)
        config.validate()
        return [a.name for a in declared_arms(config, parse_arms(arms, sets))]

    assert declared(["real", "tiles", "oversample+b"], ["tiles"]) == ["real+tiles"]
    assert declared(["real", "real+tiles"], []) == ["real+tiles"]  # the one stacked arm
    assert declared(["real", "real+tiles", "real+b"], []) == []  # two: nothing is picked
    assert declared(["real", "real+tiles", "real+b"], ["real+tiles", "real+b"]) == ["real+tiles", "real+b"]
    with pytest.raises(ConfigError, match="add no synthetic set"):
        declared(["real", "oversample"], ["oversample"])
    with pytest.raises(ConfigError, match="not one recipe"):
        declared(["real", "real+tiles", "oversample+b"], ["real+tiles", "oversample+b"])
    with pytest.raises(ConfigError, match="not among the arms"):
        declared(["real", "real+tiles"], ["real+b"])


def test_an_arm_the_data_cannot_feed_stops_the_evaluation_before_the_first_run(bench, tmp_path, monkeypatch):
    """#32 item 16: every arm draws its first batch before any run trains; the one that cannot
    is named, and no run file is written."""
    import defectgen.evaluate.context as context_module

    dataset, split, _, _ = bench

    def no_room(*args, **kwargs):
        raise ValueError("no room to paste a defect")

    monkeypatch.setattr(context_module, "copypaste_pool", no_room)
    config = EvalConfig(**{**SMALL, "arms": ["real", "oversample", "copypaste"]})
    with pytest.raises(DataError, match="arm copypaste cannot run on this data: no room to paste"):
        evaluate(dataset, split, tmp_path / "e", config, progress=False)
    assert not list((tmp_path / "e").glob("runs/*.json"))


def test_a_set_that_read_labels_the_split_holds_back_cannot_carry_the_claim(bench):
    """A generator trained at a higher label fraction read labels this split withholds
    (`train_unlabelled`): measured, counted, never the claim's set."""
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import declared_arms

    dataset, split, _, work = bench
    fit = Split.load(work / "fit_split.json")
    held_back = next(i for i in fit.train if dataset.items[dataset.index_of(i)].class_ids)
    low = Split(**{**split.__dict__, "train": tuple(i for i in split.train if i != held_back),
                   "train_unlabelled": (held_back,)})  # fmt: skip
    config = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"]})
    ctx = EvalContext.create(dataset, low, config, {"tiles": work / "synth"})
    assert ctx.lineages["tiles"]["unlabelled_items_read"] == 1
    assert ctx.lineages["tiles"]["first_unlabelled_item"] == held_back
    assert declared_arms(config, parse_arms(config.arms, ("tiles",)), ctx.lineages) == []


def test_a_judge_that_trained_on_test_images_is_refused(bench, tmp_path, monkeypatch):
    """The items a judged set keeps are chosen by the judge's U-Net: one trained on this split's
    test half is refused before anything is written."""
    from defectgen.evaluate import judge as judge_module

    dataset, split, checkpoint, work = bench
    picky = _PickyJudge(trained_on=[split.test[0]])
    monkeypatch.setattr(judge_module.LabelJudge, "from_evaluation", classmethod(lambda cls, *a, **k: picky))
    with pytest.raises(
        DataError, match=f"trained on 1 image.s. of this split's test half .first: {split.test[0]}"
    ):
        synthesize(
            checkpoint,
            dataset,
            split,
            tmp_path / "j",
            SynthConfig(n=2, judge=work, attempts=2),
            progress=False,
        )
    assert not (tmp_path / "j").exists()


def test_a_judged_set_cannot_carry_the_claim(bench, tmp_path):
    """A judge keeps items by thresholds chosen on its evaluation's validation part: such a set is
    measured, never the claim's."""
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import declared_arms

    dataset, split, _, work = bench
    judged = _edited_set(
        work / "synth",
        tmp_path / "judged",
        lambda p: {**p, "lineage": {**p["lineage"], "judge": {"read": []}}},
    )
    config = EvalConfig(**{**SMALL, "arms": ["real", "real+tiles"]})
    ctx = EvalContext.create(dataset, split, config, {"tiles": judged})
    assert ctx.lineages["tiles"]["judged"] and not ctx.lineages["tiles"]["validation_items_read"]
    assert declared_arms(config, parse_arms(config.arms, ("tiles",)), ctx.lineages) == []
    plain = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    assert not plain.lineages["tiles"]["judged"]


def test_share_out_gives_the_longest_work_first_to_the_least_loaded_process():
    """Round robin would give rank 0 both long runs of [12, 8, 12, 8] (24 against 16); longest
    first to the least loaded gives 20 and 20. Ties go to the lowest rank, and each share keeps
    the given order."""
    from defectgen.evaluate.run import share_out

    assert share_out([(12, "a"), (8, "b"), (12, "c"), (8, "d")], 2) == [["a", "b"], ["c", "d"]]
    assert share_out([(1, "x"), (1, "y"), (1, "z")], 2) == [["x", "z"], ["y"]]
    assert share_out([(5, "only")], 3) == [["only"], [], []]
    tasks = [(cost, i) for i, cost in enumerate([9, 3, 7, 7, 2, 2, 4, 8])]
    shares = share_out(tasks, 3)
    assert sorted(t for share in shares for t in share) == list(range(8))  # every task once
    loads = [sum(tasks[t][0] for t in share) for share in shares]
    assert loads == [14, 14, 14]  # 9+3+2, 8+4+2, 7+7


def test_share_runs_gives_the_curve_runs_to_the_processes(bench, tmp_path, monkeypatch):
    """Under torchrun the learning curve's shorter runs are shared out with the runs, not left to
    rank 0 after them: the ranks' shares are disjoint and together hold every (arm, seed) and
    both curve budgets."""
    from defectgen import distributed
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.run import Evaluation

    dataset, split, _, work = bench
    config = EvalConfig(**{**SMALL, "steps": 9, "arms": ["real", "oversample", "real+tiles"]})
    ctx = EvalContext.create(dataset, split, config, {"tiles": work / "synth"})
    arms = parse_arms(config.arms, ("tiles",))
    evaluation = Evaluation(ctx, arms, [], tmp_path / "eval", split, None, None)
    monkeypatch.setattr(distributed, "settle", lambda group, error: None)
    shares = []
    for rank in (0, 1):
        done: list = []
        monkeypatch.setattr(
            evaluation, "run", lambda arm, seed, filters, done=done: done.append((arm.name, seed))
        )
        monkeypatch.setattr(evaluation, "curve_point", lambda steps, done=done: done.append(("curve", steps)))
        evaluation.share_runs(distributed.Context(rank=rank, world_size=2, device=torch.device("cpu")))
        shares.append(done)
    assert not set(shares[0]) & set(shares[1])
    runs = {(arm, seed) for arm in ("real", "oversample", "real+tiles") for seed in (0, 1)}
    assert set(shares[0]) | set(shares[1]) == runs | {("curve", 3), ("curve", 6)}
    assert all(shares)  # both processes work
