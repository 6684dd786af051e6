"""The segmenter every arm trains: a segmentation_models_pytorch U-Net, BCE + Dice loss, one
output channel per class. Trained on fixed-size crops, it predicts whole images at native
resolution (padded to a multiple of 32 as the encoder needs, then cropped back).

Pretrained encoder weights come only from a local file (`encoder_weights`): nothing is
downloaded at run time.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from rich.progress import Progress

from defectgen.errors import ConfigError, DataError
from defectgen.tensors import image_to_tensor

PAD_MULTIPLE = 32


def build_segmenter(
    encoder: str,
    in_channels: int,
    num_classes: int,
    encoder_weights: Path | None = None,
    seed: int = 0,
    encoder_depth: int = 5,
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
):
    """A U-Net whose initial weights are a function of `seed` alone (the global RNG is left as
    it was), so every arm at one seed starts from the same weights. `encoder_depth` stages of
    the encoder are used, with one decoder stage of `decoder_channels[i]` channels each."""
    if len(decoder_channels) != encoder_depth:
        raise ConfigError(
            f"decoder_channels has {len(decoder_channels)} stages but encoder_depth is {encoder_depth}: "
            "give one decoder width per encoder stage"
        )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = smp.Unet(
                encoder_name=encoder,
                encoder_weights=None,
                encoder_depth=encoder_depth,
                decoder_channels=tuple(decoder_channels),
                in_channels=in_channels,
                classes=num_classes,
            )
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"unknown segmentation encoder {encoder!r} ({err}); e.g. resnet18, resnet34"
        ) from err
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, Path(encoder_weights))
    return model.to(memory_format=torch.channels_last)  # NHWC: faster CPU prediction (RESULTS.md)


def unet_shape(state: dict) -> tuple[int, tuple[int, ...]]:
    """(encoder_depth, decoder_channels) of a U-Net state dict, read from its decoder blocks,
    so a U-Net of any size that `evaluate` saved can be rebuilt from its weights alone."""
    widths = []
    while f"decoder.blocks.{len(widths)}.conv1.0.weight" in state:
        widths.append(int(state[f"decoder.blocks.{len(widths)}.conv1.0.weight"].shape[0]))
    if not widths:
        raise ValueError("no U-Net decoder blocks in this state dict")
    return len(widths), tuple(widths)


def load_encoder_weights(encoder: torch.nn.Module, path: Path) -> None:
    """Load an encoder state dict from a local file (weights_only). A 3-channel first conv is
    summed over its input channels for grayscale data, as smp does for pretrained weights."""
    if not path.is_file():
        raise DataError(f"{path}: encoder weights file not found")
    from defectgen.checkpoint import is_torch_file

    if not is_torch_file(path):
        raise DataError(
            f"{path}: not a weights file (not a file that PyTorch writes); give a saved state dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{path}: refused — it holds objects other than tensors (it could run code when loaded); "
            "give a plain state dict"
        ) from err
    except Exception as err:  # noqa: BLE001 - any other failure means a corrupt or truncated file
        raise DataError(f"{path}: corrupt or truncated weights file ({type(err).__name__})") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = encoder.state_dict()
    loaded = {}
    for key, value in state.items():
        if key not in own or not isinstance(value, torch.Tensor):
            continue
        target = own[key]
        if value.shape != target.shape and value.ndim == 4 and value.shape[0] == target.shape[0]:
            value = value.sum(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1) / target.shape[1]
        if value.shape == target.shape:
            loaded[key] = value
    if not loaded:
        raise DataError(f"{path}: no tensor matches the {type(encoder).__name__} encoder; wrong file?")
    encoder.load_state_dict(loaded, strict=False)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE + Dice (multilabel) over the pixels where `valid` [N, 1, H, W] is 1.

    Pixels with valid 0 (a synthetic item's painted seam outside its label) count in neither
    term: BCE is averaged over valid pixels, and Dice sees them as smp's `ignore_index`."""
    weight = valid.expand_as(masks)
    bce = F.binary_cross_entropy_with_logits(logits, masks, weight=weight, reduction="sum")
    bce = bce / weight.sum().clamp(min=1)
    target = torch.where(weight > 0, masks, torch.full_like(masks, IGNORE))
    return bce + _DICE(logits, target)


IGNORE = -1.0
_DICE = smp.losses.DiceLoss(mode="multilabel", from_logits=True, ignore_index=IGNORE)


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
    model.train()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=steps)
        for step in range(steps):
            images, masks, valid = next_batch(step)
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                "cpu" if images.device.type == "cpu" else images.device.type,
                dtype=torch.bfloat16,
                enabled=use_bf16,
            ):
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
    tensor = F.pad(tensor, pad, mode=mode).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
        logits = model(tensor).float()
    return torch.sigmoid(logits[:, :, :height, :width]).numpy()


@torch.no_grad()
def probabilities(model: torch.nn.Module, image: np.ndarray, use_bf16: bool = False) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [K, H, W] per-class probabilities at native resolution."""
    return probabilities_batch(model, [image], use_bf16)[0]
