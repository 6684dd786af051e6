"""Training and running the segmenter every arm trains (the U-Net of `models/unet.py`):
trained on fixed-size crops, it predicts whole images at native resolution (padded to a
multiple of 32 as the encoder needs, then cropped back).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from defectgen import ui
from defectgen.errors import ConfigError
from defectgen.models.unet import PAD_MULTIPLE, segmentation_loss
from defectgen.tensors import image_to_tensor


def _schedule(optimizer, lr: float, steps: int):
    """One-cycle (10 % warm-up, at least 2 steps of it); under 4 steps a constant rate, since
    torch's OneCycleLR divides by zero when its warm-up ends on step 0."""
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2.0 / steps)
    )


def train_segmenter(
    model: torch.nn.Module,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float = 3e-4,
    use_bf16: bool = False,
    log_every: int = 10,
    on_eval: Callable[[int], None] | None = None,
    eval_every: int | None = None,
    description: str = "segmenter",
    progress: bool = True,
) -> dict:
    """Train `model` for `steps` batches (images, masks, valid) from `next_batch(step)`; returns
    {'curve', 'seconds'}. Nothing here draws random numbers: the batches carry all randomness."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = _schedule(optimizer, lr, steps)
    curve: list[list[float]] = []
    running: list[float] = []
    start = time.perf_counter()
    device = next(model.parameters()).device  # batches are drawn on the CPU, trained where the model is
    model.train()
    with ui.progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=steps)
        for step in range(steps):
            images, masks, valid = (t.to(device, non_blocking=True) for t in next_batch(step))
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(images).float()
            loss = segmentation_loss(logits, masks, valid)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"{description}: loss became {loss.item()} at step {step + 1}; try a lower --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running.append(loss.item())
            if (step + 1) % log_every == 0 or step + 1 == steps:
                curve.append([step + 1, float(np.mean(running))])
                running = []
            if on_eval is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
                model.eval()
                on_eval(step + 1)
                model.train()
            bar.advance(task)
    model.eval()
    return {"curve": curve, "seconds": time.perf_counter() - start}


def predict(
    model: torch.nn.Module, image: np.ndarray, threshold: float = 0.5, use_bf16: bool = False
) -> np.ndarray:
    """uint8 [H, W, C] -> bool [K, H, W] at native resolution (one fixed threshold)."""
    return probabilities(model, image, use_bf16) > threshold


@torch.no_grad()
def probabilities_batch(
    model: torch.nn.Module, images: list[np.ndarray], use_bf16: bool = False
) -> np.ndarray:
    """Images of one size, uint8 [H, W, C] each -> float32 [N, K, H, W] (one forward pass)."""
    tensor = torch.stack([image_to_tensor(image) for image in images])  # [N, C, H, W]
    height, width = tensor.shape[2:]
    pad = (0, (-width) % PAD_MULTIPLE, 0, (-height) % PAD_MULTIPLE)
    mode = "reflect" if pad[1] < width and pad[3] < height else "replicate"
    device = next(model.parameters()).device
    tensor = F.pad(tensor, pad, mode=mode).to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        logits = model(tensor).float()
    return torch.sigmoid(logits[:, :, :height, :width]).cpu().numpy()


@torch.no_grad()
def probabilities(model: torch.nn.Module, image: np.ndarray, use_bf16: bool = False) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [K, H, W] per-class probabilities at native resolution."""
    return probabilities_batch(model, [image], use_bf16)[0]
