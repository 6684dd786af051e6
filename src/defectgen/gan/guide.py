"""A segmenter that guides the generator: "the segmenter sees class k in mask k" as a loss.

`--set guide=EVAL/runs/real_s1.pt` loads a U-Net that `defectgen evaluate` trained on real data
of the training half (the `real` arm's state dict of one seed) and freezes it. At every G step
it segments the composited crops, and the generator is charged its segmentation loss
(`evaluate.segmenter.segmentation_loss`, BCE + Dice) over the hole: the painted pixels inside
mask k must read as class k, the painted ring around them as background. LaMa uses a
segmentation network's features for its perceptual loss for the same reason (they know what
things are); ours is trained on the defects themselves.

A generator trained this way can learn what *this* U-Net answers to rather than what defects
look like, so its label fidelity must be judged by another one: the guide's SHA-256 travels in
the checkpoint and the synthesis folder, and `evaluate` refuses to judge a set with the guide.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectgen.errors import DataError
from defectgen.models.unet import PAD_MULTIPLE, build_segmenter, segmentation_loss, unet_shape


def load_guide(path: str | Path, encoder: str, channels: int, num_classes: int) -> nn.Module:
    """The frozen U-Net of `path` (a state dict written by `defectgen evaluate`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: guide not found; pass a U-Net that `defectgen evaluate` wrote "
            "(EVAL/runs/real_s<seed>.pt)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        depth, widths = unet_shape(state)  # the U-Net's size, from its own weights
        model = build_segmenter(encoder, channels, num_classes, encoder_depth=depth, decoder_channels=widths)
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - any failure means the file is not such a U-Net
        raise DataError(
            f"{path}: not a U-Net state dict for encoder {encoder}, {channels} channel(s) and {num_classes} "
            f"classes ({str(err)[:200]}); pass the real arm's .pt of an evaluation of this dataset and set "
            "guide_encoder to its encoder"
        ) from None
    return model.eval().requires_grad_(False)


def guide_loss(
    guide: nn.Module, fake: Tensor, labels: Tensor, hole: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """The guide's segmentation loss on composited crops `fake` [N, C, H, W] against `labels`
    [N, K, H, W], over the pixels of `hole` [N, 1, H, W]; the crops are padded (replicate) to
    the multiple of 32 the U-Net needs."""
    height, width = fake.shape[-2:]
    pad = (0, (-width) % PAD_MULTIPLE, 0, (-height) % PAD_MULTIPLE)
    logits = guide(F.pad(fake, pad, mode="replicate"))[..., :height, :width].float()
    loss = segmentation_loss(logits, labels.float(), hole.float())
    return loss, {"guide": loss.item()}
