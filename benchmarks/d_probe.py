"""Can a discriminator recipe tell painted holes from real defects?

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/d_probe.py --checkpoint RUN/checkpoints/last.pt \
        --data ../shared/data/magnetic_tile --split SPLIT.json [--fill blur] [--steps 600] \
        [--variants loss=standard,gamma=1,cond=input loss=relativistic,gamma=0.001,cond=projection]

The fakes are the training crops with their hole repainted, either by the checkpoint's frozen
EMA generator (`--fill generator`) or by a Gaussian blur (sigma 3) of the real pixels
(`--fill blur`: a fill every useful D must reject; the checkpoint then only names the preset
and crop size). For each variant a fresh discriminator of that preset is trained for
`--steps` D steps on crops of the split's training half, with the loss (`standard`: LaMa's
mask-as-fake; `relativistic`: paired, in the hole) and lazy R1 (every 16 steps, strength
`gamma`) of `train.py`, no ADA, so the recipe alone is measured; `cond` is how D sees the
label maps: `input` (concatenated to the image), `projection` (only at the logits, see
models/discriminator.py) or `none` (not at all: D cannot tell where the hole is). Scores,
on crops of the test half, over every logit patch that is mostly hole (area share >= 0.5),
on the real crop and on its repainted twin: pairwise accuracy P(D(real patch) > D(fake
patch)) (0.5: D cannot tell) and the median of D(real) - D(fake). Prints one table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torchvision.transforms.functional import gaussian_blur

from defectgen.checkpoint import load_generator
from defectgen.data import open_dataset
from defectgen.data.patches import DefectCrops
from defectgen.data.split import Split
from defectgen.gan import losses
from defectgen.gan.augment import AdaptiveAugment
from defectgen.gan.config import TrainConfig
from defectgen.gan.objective import Objective
from defectgen.models import composite


def parse_variant(text: str) -> dict:
    values = dict(part.split("=") for part in text.split(","))
    loss = values.get("loss", "standard")
    if loss not in ("standard", "relativistic"):
        raise SystemExit(f"loss must be standard or relativistic, got {loss!r}")
    return {
        "loss": loss,
        "gamma": float(values.get("gamma", 1.0)),
        "cond": values.get("cond", "projection"),
    }


@torch.no_grad()
def make_pool(G, crops: DefectCrops, batches: int, seed: int, fill: str, description: str) -> list[dict]:
    pool = []
    rng = torch.Generator().manual_seed(seed)
    for step in track(range(batches), description=description, transient=True):
        batch = crops.batch(step, rank=seed, size=4, pairs=False)
        if fill == "blur":
            raw = gaussian_blur(batch["image"], kernel_size=9, sigma=3.0)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                raw = G(batch["image"], batch["hole"], batch["labels"], generator=rng).float()
        batch["fake"] = composite(raw, batch["image"], batch["hole"])
        pool.append(batch)
    return pool


def paired_logits(D, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits for the real crops and their repainted twins, in one call."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = D(torch.cat([batch["image"], batch["fake"]]), torch.cat([batch["labels"]] * 2))
    real_logits, fake_logits = logits.float().chunk(2)
    return real_logits, fake_logits


def train_d(spec, channels: int, classes: int, pool: list[dict], steps: int, variant: dict):
    """D alone, with train.py's D phases (`objective.Objective`) and optimiser settings
    (TrainConfig defaults, lazy R1 scaling); no augmentation (ADA at p = 0)."""
    torch.manual_seed(0)
    D = dataclasses.replace(spec.discriminator, conditioning=variant["cond"]).build(channels, classes)
    defaults = TrainConfig()
    objective = Objective(
        adversarial_loss=variant["loss"], r1_gamma=variant["gamma"], r1_interval=defaults.r1_interval
    )
    ada = AdaptiveAugment()  # p = 0: the crops as they are
    rng = torch.Generator().manual_seed(0)
    ratio = objective.r1_interval / (objective.r1_interval + 1)
    betas = tuple(b**ratio for b in defaults.betas)
    opt = torch.optim.Adam(D.parameters(), lr=defaults.lr_d * ratio, betas=betas)
    for step in track(range(steps), description=f"D {variant}", transient=True):
        batch = pool[step % len(pool)]
        real, hole, labels = batch["image"], batch["hole"], batch["labels"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = objective.discriminator(D, ada, real, batch["fake"], labels, hole, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if objective.due(step):
            loss_r1, _ = objective.regularise(D, ada, real, labels, hole, rng)
            loss_r1.backward()
        opt.step()
    return D.eval()


@torch.no_grad()
def score(D, pool: list[dict]) -> tuple[float, float]:
    """(pairwise accuracy, median gap) over patches that are mostly hole."""
    gaps = []
    for batch in pool:
        real_logits, fake_logits = paired_logits(D, batch)
        inside = losses.hole_at(batch["hole"], real_logits.shape[-2:]) >= 0.5
        gaps.append((real_logits - fake_logits)[inside])
    gap = torch.cat(gaps)
    return (gap > 0).float().mean().item(), gap.median().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--fill", choices=["generator", "blur"], default="generator")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--pool", type=int, default=100, help="training batches of 4 crops")
    parser.add_argument("--test", type=int, default=40, help="test batches of 4 crops")
    old_and_new = ["loss=standard,gamma=1,cond=input", "loss=relativistic,gamma=0.001,cond=projection"]
    parser.add_argument("--variants", nargs="+", default=old_and_new)
    args = parser.parse_args()

    G, classes, channels, config = load_generator(args.checkpoint)
    dataset = open_dataset(args.data)
    split = Split.load(args.split)
    size = config.crop_size
    train_crops = DefectCrops(dataset, split.indices(dataset, "train"), size, config.max_dilation, seed=1)
    test_crops = DefectCrops(dataset, split.indices(dataset, "test"), size, config.max_dilation, seed=2)
    train_pool = make_pool(G, train_crops, args.pool, 1, args.fill, "training crops")
    test_pool = make_pool(G, test_crops, args.test, 2, args.fill, "test crops")

    title = f"D probe: {args.fill} fill, {args.steps} D steps, preset {config.preset} at {size} px"
    table = Table(title=title)
    for column in ("variant", "accuracy train", "accuracy test", "median gap test", "seconds"):
        table.add_column(column)
    for text in args.variants:
        variant = parse_variant(text)
        start = time.perf_counter()
        D = train_d(config.model_spec, channels, len(classes), train_pool, args.steps, variant)
        accuracy_train, _ = score(D, train_pool[: args.test])
        accuracy_test, gap = score(D, test_pool)
        seconds = time.perf_counter() - start
        table.add_row(text, f"{accuracy_train:.3f}", f"{accuracy_test:.3f}", f"{gap:+.3f}", f"{seconds:.0f}")
        Console().print(
            f"{text}: accuracy train {accuracy_train:.3f}, test {accuracy_test:.3f}, gap {gap:+.3f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
