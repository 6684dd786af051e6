"""Tensor conventions, written once and checked at the boundaries.

- image: float [N, C, H, W] in [-1, 1] (C = 1 grayscale, 3 colour);
- hole / mask: float {0, 1} [N, 1, H, W], 1 = defect / pixels to paint;
- labels: float {0, 1} [N, K, H, W], one channel per defect class (channel k-1 = class k).
On disk and in numpy: uint8 images [H, W, C] and bool masks [K, H, W].
"""

from __future__ import annotations

import numpy as np
import torch


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, C] -> float [C, H, W] in [-1, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 image [H, W, C], got {image.dtype} {image.shape}")
    if not image.flags.writeable or not image.flags.c_contiguous:  # e.g. np.asarray(PIL image)
        image = np.array(image, order="C")
    return torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # one new tensor


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """float [C, H, W] in [-1, 1] -> uint8 [H, W, C] (rounded, clipped)."""
    if image.ndim != 3:
        raise ValueError(f"expected [C, H, W], got {tuple(image.shape)}")
    pixels = image.detach().to(torch.float32, copy=True).add_(1.0).mul_(127.5).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def check_batch(image: torch.Tensor, hole: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ValueError unless (image, hole, labels) follow the conventions above."""
    if image.ndim != 4:
        raise ValueError(f"image must be [N, C, H, W], got {tuple(image.shape)}")
    n, _, h, w = image.shape
    if hole.shape != (n, 1, h, w):
        raise ValueError(f"hole must be [N, 1, H, W] = {(n, 1, h, w)}, got {tuple(hole.shape)}")
    if labels.ndim != 4 or labels.shape[0] != n or labels.shape[2:] != (h, w):
        raise ValueError(f"labels must be [N, K, {h}, {w}], got {tuple(labels.shape)}")
