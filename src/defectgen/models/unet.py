"""The segmenter's network: a segmentation_models_pytorch U-Net with one output channel per
class, and its loss (BCE + Dice over the valid pixels). Built from explicit arguments; its
shape can be read back from a state dict (`unet_shape`). The evaluation trains it
(`evaluate/segmenter.py`); GAN training can use a trained one as a guide (`gan/guide.py`).

Pretrained encoder weights come only from a local file (`encoder_weights`): nothing is
downloaded at run time.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from defectgen.errors import ConfigError, DataError
from defectgen.fileio import is_torch_file

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
