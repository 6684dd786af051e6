"""How good is the synthetic data itself: label fidelity, KID, diversity, and picture grids.

- Label fidelity: a segmenter trained on the real training half is applied to synthetic
  images and scored against their masks, next to the same segmenter on real test images. A
  synthetic defect the real-trained model cannot find where its label says is a bad label.
- KID (Binkowski et al. 2018) between real and synthetic defect crops, in the feature space of
  a domain encoder (the encoder of that real-trained U-Net, global-average-pooled) or of
  InceptionV3 when the user gives its weights file. ImageNet features cannot be downloaded here.
- Diversity: mean pairwise feature distance between several generator draws for one mask,
  next to the mean pairwise distance between real defects of the same class. The features are
  pooled over the defect (`EncoderFeatures(images, regions)`): the draws share their
  background, which the generator cannot change, so a distance over the whole window would
  count the real defects' different surroundings as diversity the draws lack. The whole-window
  figure is reported beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from defectgen.data.dataset import DefectDataset
from defectgen.data.patches import pad_to_crop
from defectgen.errors import DataError
from defectgen.evaluate.sampling import ArmSampler, Pool
from defectgen.evaluate.scores import PLAIN, ScoreSheet, dice_table, pair_scores, summarize
from defectgen.evaluate.segmenter import predict, probabilities
from defectgen.geometry import find_components
from defectgen.tensors import image_to_tensor
from defectgen.viz import contact_sheet, overlay


class EncoderFeatures(nn.Module):
    """U-Net encoder -> average-pooled deepest features [N, D] (the domain encoder): over the
    whole image, or with `regions` [N, 1, H, W] over each image's region, each cell of the
    feature map weighted by the share of it the region covers."""

    def __init__(self, segmenter: nn.Module):
        super().__init__()
        self.encoder = segmenter.encoder

    @torch.no_grad()
    def forward(self, images: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
        deepest = self.encoder(images.float())[-1]  # [N, D, h, w]
        if regions is None:
            return deepest.mean(dim=(2, 3)).double()
        weights = nn.functional.adaptive_avg_pool2d(regions.float(), deepest.shape[-2:])  # [N, 1, h, w]
        if (weights.sum(dim=(1, 2, 3)) <= 0).any():
            raise ValueError("every region must cover at least one pixel of its image")
        return ((deepest * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3))).double()


class InceptionFeatures(nn.Module):
    """InceptionV3 pool features from the user's torch-fidelity weights file (grayscale -> RGB)."""

    def __init__(self, weights: Path):
        super().__init__()
        weights = Path(weights)
        if not weights.is_file():
            raise DataError(f"{weights}: InceptionV3 weights file not found (--inception-weights)")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as err:
            raise DataError(
                "--inception-weights needs the torch-fidelity package: pip install torch-fidelity"
            ) from err
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        pixels = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        return self.net(pixels)[0].double()


def fidelity_per_class(synthetic: dict, real_test: dict, floor: float) -> dict[str, dict]:
    """Per class: the judge's positive Dice (plain 0.5 threshold) and pixel AP on synthetic
    images next to the same numbers on real test images, and their ratios. A class the judge
    finds below `floor` positive Dice on real test images is not judgeable: its synthetic score
    says nothing about the labels (ratios None)."""
    table = {}
    for name, real in (real_test.get("positive_dice") or {}).items():
        fake = (synthetic.get("positive_dice") or {}).get(name)
        real_ap = (real_test.get("pixel_ap") or {}).get(name)
        fake_ap = (synthetic.get("pixel_ap") or {}).get(name)
        judgeable = real is not None and real >= floor and real > 0
        table[name] = {
            "real_test": real,
            "synthetic": fake,
            "real_test_pixel_ap": real_ap,
            "synthetic_pixel_ap": fake_ap,
            "judgeable": judgeable,
            "ratio": fake / real if judgeable and fake is not None else None,
            "pixel_ap_ratio": fake_ap / real_ap if judgeable and fake_ap is not None and real_ap else None,
        }
    return table


def label_fidelity(model, synthetic: DefectDataset, limit: int, use_bf16: bool) -> tuple[dict, list[dict]]:
    """Real-trained segmenter on synthetic images -> (summary, per-image list sorted worst first).
    The summary holds the same numbers as a run's test summary (`scores.summarize`)."""
    sheet = ScoreSheet(len(synthetic.classes))
    indices = list(range(min(limit, len(synthetic))))
    for index in indices:
        sample = synthetic[index]
        sheet.add(probabilities(model, sample.image, use_bf16), sample.masks)
    arrays = sheet.arrays()
    dice, positive = dice_table(arrays, PLAIN), arrays["target"] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_image = np.where(positive, dice, 0.0).sum(axis=1) / positive.sum(axis=1)
    ranked = sorted(
        (
            {"index": i, "item": synthetic.items[i].item_id, "dice": float(d)}
            for i, d in zip(indices, per_image, strict=True)
            if not np.isnan(d)
        ),
        key=lambda r: r["dice"],
    )
    return summarize(arrays, synthetic.classes.names), ranked


def label_scores(model, synthetic: DefectDataset, use_bf16: bool) -> list[dict[int, float]]:
    """Per synthetic item, {class id: Dice of the real-trained segmenter's prediction against
    that class's label} (0.5 threshold), for the label-consistency filter."""
    scores = []
    for index in range(len(synthetic)):
        sample = synthetic[index]
        prediction = predict(model, sample.image, use_bf16=use_bf16)
        dice, _ = pair_scores(prediction, sample.masks)
        scores.append({k + 1: float(dice[k]) for k in range(len(dice)) if sample.masks[k].any()})
    return scores


def defect_crops(pool: Pool, count: int, size: int, seed: int) -> torch.Tensor:
    """`count` crops centred on defects of `pool` -> float [N, C, S, S] in [-1, 1]."""
    sampler = ArmSampler(pool, size, count, defect_crop_share=1.0, seed=seed)
    images, _, _ = sampler.batch(0)
    return images


KID_SUBSET_SEED = 0  # the same subsets every time: a remeasured set gets the same KID


def kid(features: nn.Module, real: torch.Tensor, synthetic: torch.Tensor, subsets: int = 50) -> dict:
    subset_size = int(min(len(real), len(synthetic), 100))
    if subset_size < 2:
        return {"value": None, "std": None, "reason": "too few crops"}
    # sync_on_compute off: this process holds every crop (under torchrun only rank 0 gets here)
    from torchmetrics.image.kid import KernelInceptionDistance  # 5 s to import: only when measured

    metric = KernelInceptionDistance(
        feature=features, subsets=subsets, subset_size=subset_size, sync_on_compute=False
    )
    metric.update(real, real=True)
    metric.update(synthetic, real=False)
    with torch.random.fork_rng():  # torchmetrics draws the subsets from the global RNG: seed it here
        torch.manual_seed(KID_SUBSET_SEED)
        mean, std = metric.compute()
    return {
        "value": float(mean),
        "std": float(std),
        "subsets": subsets,
        "subset_size": subset_size,
        "real_crops": len(real),
        "synthetic_crops": len(synthetic),
    }


class Spread(NamedTuple):
    """How far generator draws for one mask lie apart (`diversity`), averaged over windows."""

    defect: float  # mean pairwise feature distance, features pooled over the window's defects
    window: float  # the same, pooled over the whole window
    hole_pixel_change: float | None  # mean |difference| between draws in the hole, [0, 1] grey units


@torch.no_grad()
def diversity(G, features: nn.Module, windows: list[dict], draws: int, seed: int, use_bf16: bool) -> Spread:
    """How far `draws` generator outputs for the same window ({'image' [1,C,S,S], 'hole'
    [1,1,S,S], 'labels' [1,K,S,S]}) lie apart, averaged over windows. Only the draw (style code
    and noise) changes between outputs. `features(images, regions)` pools over `regions`, the
    window's hole (every defect in it), or over the whole image without them."""
    from defectgen.models import composite

    defect, whole, changes = [], [], []
    for number, window in enumerate(windows):
        generator = torch.Generator().manual_seed(seed * 100_003 + number)
        outputs = []
        for _ in range(draws):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                raw = G(window["image"], window["hole"], window["labels"], generator=generator).float()
            outputs.append(composite(raw, window["image"], window["hole"]))
        stacked = torch.cat(outputs)  # [draws, C, S, S]
        defect.append(float(torch.pdist(features(stacked, window["hole"].expand(draws, -1, -1, -1))).mean()))
        whole.append(float(torch.pdist(features(stacked)).mean()))
        inside = window["hole"][0, 0] >= 0.5
        pixels = stacked[:, :, inside].flatten(1) / 2  # [draws, C * hole pixels], [-1, 1] -> units of 1
        changes.append(
            float(torch.cdist(pixels, pixels, p=1).sum() / (draws * (draws - 1) * pixels.shape[1]))
        )
    if not defect:
        return Spread(float("nan"), float("nan"), float("nan"))
    return Spread(float(np.mean(defect)), float(np.mean(whole)), float(np.mean(changes)))


def class_windows(
    dataset: DefectDataset, class_id: int, size: int, limit: int, indices: list[int] | None = None
) -> list[dict]:
    """Up to `limit` windows of `size` px, one per item, around the largest `class_id` component
    of the items (of `indices`, default all) that hold the class, evenly spaced through them;
    padded as training crops are where the image is smaller (`pad_to_crop`): {'image'
    [1,C,S,S] in [-1, 1], 'hole' [1,1,S,S] (every defect in the window), 'labels' [1,K,S,S]}."""
    pool = range(len(dataset)) if indices is None else indices
    holding = [i for i in pool if class_id in dataset.items[i].class_ids]
    chosen = (
        [holding[int(j)] for j in np.linspace(0, len(holding) - 1, min(limit, len(holding)))]
        if holding
        else []
    )
    windows = []
    for index in dict.fromkeys(chosen):
        sample = dataset[index]
        components = find_components(sample.masks[class_id - 1], min_area=1)
        if not components:
            continue
        (rows, cols), _ = max(components, key=lambda c: int(c[1].sum()))
        image, masks = pad_to_crop(sample.image, sample.masks, size)
        top = int(np.clip((rows.start + rows.stop) // 2 - size // 2, 0, image.shape[0] - size))
        left = int(np.clip((cols.start + cols.stop) // 2 - size // 2, 0, image.shape[1] - size))
        window = (slice(top, top + size), slice(left, left + size))
        inside = masks[:, window[0], window[1]]
        windows.append(
            {
                "image": image_to_tensor(np.ascontiguousarray(image[window]))[None],
                "hole": torch.from_numpy(inside.any(axis=0)[None, None].astype(np.float32)),
                "labels": torch.from_numpy(inside[None].astype(np.float32)),
            }
        )
    return windows


def pairwise_feature_distance(
    features: nn.Module, crops: torch.Tensor, regions: torch.Tensor | None = None
) -> float:
    """Mean pairwise distance of the crops' features (pooled over `regions` when given)."""
    feats = features(crops) if regions is None else features(crops, regions)
    return float(torch.pdist(feats).mean()) if len(feats) > 1 else float("nan")


def crops_sheet(rows: list[tuple[str, torch.Tensor]], path: Path, per_row: int = 8) -> Path:
    """Rows of crops ([N, C, S, S] in [-1, 1]) captioned by row name -> PNG."""
    tiles, captions = [], []
    for name, crops in rows:
        for crop in crops[:per_row]:
            pixels = (
                crop.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            )
            tiles.append(np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels)
            captions.append(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, captions, columns=per_row, tile_width=128).save(path)
    return path


def overlay_sheet(samples: list[tuple[str, np.ndarray, np.ndarray]], path: Path, columns: int = 4) -> Path:
    """[(caption, uint8 image [H, W, C], bool masks [K, H, W])] -> PNG with masks overlaid."""
    tiles = [overlay(image, masks) for _, image, masks in samples]
    wide = tiles[0].shape[1] > 4 * tiles[0].shape[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(
        tiles, [c for c, _, _ in samples], columns=2 if wide else columns, tile_width=640 if wide else 256
    ).save(path)
    return path


def failures_sheet(model, synthetic: DefectDataset, worst: list[dict], path: Path, use_bf16: bool) -> Path:
    """Worst label-fidelity samples: image | label overlay | real-trained prediction overlay."""
    tiles, captions = [], []
    for record in worst:
        sample = synthetic[record["index"]]
        prediction = predict(model, sample.image, use_bf16=use_bf16)
        image = np.repeat(sample.image, 3, axis=2) if sample.image.shape[2] == 1 else sample.image
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        tiles.append(
            np.concatenate(
                [image, gap, overlay(sample.image, sample.masks), gap, overlay(sample.image, prediction)],
                axis=1,
            )
        )
        captions.append(f"{record['item']} dice {record['dice']:.2f} (image | label | prediction)")
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, captions, columns=1 if tiles[0].shape[1] > 1200 else 2, tile_width=720).save(path)
    return path
