"""The painter: a trained inpainter applied to images, as `synth`, the studio and export use it.

`paint_batch` paints a batch of items (image, masks, optional hole and severity map) with
noise drawn from each item's seed (`item_seed`), so a draw is a function of (seed, index)
whatever the batch; `paint_one` is one such draw. The generator runs on whole images padded
to its size step (`run_generator`), or, in tiled mode, in windows around each hole region
(`_run_windows`), for images too large for memory. `seam` is harmonisation's repaint region.
The hole rule itself (which pixels around a defect are repainted) is `geometry.hole_of`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from defectgen.geometry import dilate, disc, hole_of, label
from defectgen.models import composite
from defectgen.tensors import image_to_tensor, tensor_to_image


def seam(label: np.ndarray, band: int, rim: int) -> np.ndarray:
    """bool [H, W]: what harmonisation repaints around bool label [H, W]: `band` px outside it
    and `rim` px inside it (elliptic structuring elements; the image border counts as inside,
    so a defect cut by the border is not given a rim along it)."""
    label = label.astype(np.uint8)
    outer = dilate(label, band)
    inner = cv2.erode(label, disc(rim), borderType=cv2.BORDER_REPLICATE) if rim else label
    return (outer > 0) & ~(inner > 0)


@torch.no_grad()
def paint_batch(
    G, batch: list[dict], hole_radius: int, tile: int | None, device, amp
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Paint each item's defects; returns (uint8 [H, W, C] image, bool [H, W] region composited)."""
    images = torch.stack([image_to_tensor(item["image"]) for item in batch]).to(device)  # [N, C, H, W]
    # one bool -> float pass over [N, K, H, W] (not one per item plus a stack: half the memory traffic)
    labels = torch.from_numpy(np.stack([item["masks"] for item in batch])).to(device).float()
    holes = [
        hole_of(item["masks"], hole_radius) if item.get("hole") is None else item["hole"] for item in batch
    ]  # float32 {0, 1} [1, H, W]
    hole = torch.stack([torch.from_numpy(h) for h in holes]).to(device)
    severity = None
    if all(item.get("severity") is not None for item in batch):
        severity = torch.stack([torch.from_numpy(item["severity"]) for item in batch]).to(device)
    if tile is None:
        generators = [torch.Generator().manual_seed(item_seed(item)) for item in batch]
        painted = run_generator(G, images, hole, labels, generators, device, amp, severity)
        regions = [h[0] > 0 for h in holes]
    else:
        painted, regions = _run_windows(G, batch, images, hole, labels, severity, tile, device, amp)
    return [(tensor_to_image(image), region) for image, region in zip(painted, regions, strict=True)]


def paint_one(
    G,
    image: np.ndarray,
    masks: np.ndarray,
    seed: int,
    hole_radius: int,
    device,
    amp,
    hole=None,
    severity=None,
):
    """One draw: paint bool `masks` [K, H, W] into uint8 `image` [H, W, C] with the noise of
    `seed` (as `synth` paints item 0 of that seed), every defect at `severity` (in [0, 1]; None:
    the generator's default). Returns (uint8 image, bool [H, W] region composited: `hole` when
    given, else the masks dilated by `hole_radius`)."""
    explicit = None if hole is None else np.asarray(hole, dtype=np.float32)[None]
    item = {"image": image, "masks": masks, "hole": explicit, "seed": seed, "index": 0, "attempt": 0}
    if severity is not None:  # on the defects that are painted (a given hole may leave old ones out)
        painted = masks.any(axis=0) if hole is None else masks.any(axis=0) & (np.asarray(hole) > 0)
        item["severity"] = float(severity) * painted[None].astype(np.float32)
    ((painted, region),) = paint_batch(G, [item], hole_radius, None, device, amp)
    return painted, region


def run_generator(G, images, hole, labels, generators, device, amp, severity=None) -> torch.Tensor:
    """G on whole images, padded (reflect) to a multiple of its size step and cropped back
    (`severity`: the severity map [N, 1, H, W], or None for the generator's default)."""
    height, width = images.shape[2:]
    step = G.size_multiple
    pad = (0, (-width) % step, 0, (-height) % step)
    padded = [
        F.pad(t, pad, mode="reflect" if t is images else "constant").contiguous(
            memory_format=torch.channels_last
        )
        for t in (images, hole, labels, *([] if severity is None else [severity]))
    ]
    z = torch.cat([G.draw_style(1, g) for g in generators]).to(device)
    noise = (
        torch.cat([G.draw_noise(1, padded[0].shape[2], padded[0].shape[3], g) for g in generators]).to(device)
        if G.noise_maps > 0
        else None
    )
    with amp:
        raw = G(*padded[:3], z=z, noise=noise, severity=padded[3] if len(padded) > 3 else None).float()
    raw = raw[:, :, :height, :width]
    return composite(raw, images, hole)


WINDOW_BATCH = 8  # windows of one shape painted per generator call


def _run_windows(G, batch, images, hole, labels, severity, tile, device, amp) -> tuple[torch.Tensor, list]:
    """Tiled mode: each hole region of each item is painted in a window of at least tile x tile
    around it (`_windows`); a window paints every region that lies wholly inside it. The windows
    of the whole batch are grouped by shape and painted `WINDOW_BATCH` per generator call. Each
    window composites its own regions only, from the unpainted image, so windows are
    independent of one another and of the grouping; window w of item i draws its noise from
    (item seed, w). Returns the images and, per item, the bool [H, W] union of its regions
    (the whole hole: every region lies inside its own window)."""
    result = images.clone()
    height, width = images.shape[2:]
    jobs, regions = [], []
    for i, item in enumerate(batch):
        windows = _windows(hole[i, 0].cpu().numpy(), tile)
        regions.append(np.zeros((height, width), dtype=bool))
        for number, (window, region) in enumerate(windows):
            jobs.append((i, window, region, _window_seed(item, number)))
            regions[i][window] |= region
    by_shape: dict[tuple[int, int], list] = {}
    for job in jobs:
        window = job[1]
        by_shape.setdefault((window[0].stop - window[0].start, window[1].stop - window[1].start), []).append(
            job
        )
    for group in by_shape.values():
        for start in range(0, len(group), WINDOW_BATCH):
            chunk = group[start : start + WINDOW_BATCH]
            region_hole = torch.stack(
                [torch.from_numpy(region).float()[None] for _, _, region, _ in chunk]
            ).to(device)
            crops = [(slice(i, i + 1), slice(None), *window) for i, window, _, _ in chunk]
            window_labels = torch.cat([labels[c] for c in crops]) * region_hole  # only what this call paints
            window_severity = (
                None if severity is None else torch.cat([severity[c] for c in crops]) * region_hole
            )
            generators = [torch.Generator().manual_seed(seed) for *_, seed in chunk]
            painted = run_generator(
                G, torch.cat([images[c] for c in crops]), region_hole, window_labels, generators, device, amp,
                window_severity,
            )  # fmt: skip
            for crop, out, mask in zip(crops, painted, region_hole, strict=True):
                result[crop] = torch.where(mask.bool(), out, result[crop][0])[None]
    return result, regions


def _windows(hole: np.ndarray, tile: int) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """The windows tiled mode paints for one float hole [H, W]: (window slices, bool region it
    composites) per window, in order of the hole's connected regions; a region inside an
    earlier region's window is painted there (a pit cluster is one window, not one per pit)."""
    height, width = hole.shape
    count, components, stats = label(hole)
    done = np.zeros(count, dtype=bool)
    done[0] = True  # background
    windows = []
    for k in range(1, count):
        if done[k]:
            continue
        x, y, w, h = stats[k, :4]
        y0, y1 = _window(y, y + h, height, tile)
        x0, x1 = _window(x, x + w, width, tile)
        inside = (
            (stats[:, 0] >= x0)
            & (stats[:, 1] >= y0)
            & (stats[:, 0] + stats[:, 2] <= x1)
            & (stats[:, 1] + stats[:, 3] <= y1)
            & ~done
        )
        inside[k] = True  # a region larger than any window is painted in its own (clipped) window
        windows.append(
            ((slice(y0, y1), slice(x0, x1)), np.isin(components[y0:y1, x0:x1], np.flatnonzero(inside)))
        )
        done |= inside
    return windows


def _window_seed(item: dict, number: int) -> int:
    """The noise seed of window `number` of `item` in tiled mode."""
    words = np.random.SeedSequence([item_seed(item), number]).generate_state(1, np.uint64)
    return int(words[0] >> 1)


def _window(start: int, stop: int, limit: int, tile: int) -> tuple[int, int]:
    """A span of >= tile pixels (rounded up to a multiple of 8) centred on [start, stop)."""
    size = min(limit, max(tile, -(-(stop - start + 16) // 8) * 8))
    centre = (start + stop) // 2
    lo = int(np.clip(centre - size // 2, 0, limit - size))
    return lo, lo + size


def item_seed(item: dict) -> int:
    """The noise seed of a synthesis item: a function of (seed, index, attempt) unless the item
    carries its own (`noise_seed`)."""
    if "noise_seed" in item:
        return item["noise_seed"]
    key = [item["seed"], item["index"], 7] + ([item["attempt"]] if item.get("attempt") else [])
    words = np.random.SeedSequence(key).generate_state(1, np.uint64)
    return int(words[0] >> 1)
